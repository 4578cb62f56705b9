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
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
