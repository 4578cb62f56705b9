#!/usr/bin/env python3
"""Checks that Hugging Face folders written by `lathe convert` load in `transformers` and give the
same results (by hand, not a test: the Swift tests never need Python).

Run from the repository root after `swift build -c release` (a venv with torch and transformers):
    .venv/bin/python Tools/reference/check_hf_export.py [--text /work/data/shakespeare-40k.txt] [GGUF ...]

1. Each tiny fixture folder (Tests/Fixtures/llm/*-tiny, made by make_llm_fixtures.py) is written
   again by `lathe convert` (float32), loaded with AutoModelForCausalLM and run on the fixture's
   prompt and cached decoding steps: the logits must equal expected.json within 1e-4.
2. Each GGUF model given (default: the fetched SmolLM2 Q4_1 and Gemma 3 270M Q4_K_M) is written as
   a folder (float32: the dequantised weights, Llama q/k rows and Gemma norms back in Hugging
   Face's conventions), and transformers' perplexity on the exported folder, computed the way
   llama-perplexity and `lathe perplexity` do (non-overlapping chunks, BOS first, second half
   scored, the token ids from `lathe tokenize` on the GGUF), is compared with
   `lathe perplexity` on the GGUF file itself. The two must agree within 0.1%.
Exits 1 on any mismatch.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
LATHE = os.path.join(ROOT, ".build", "release", "lathe")
MODELS = os.path.expanduser(os.environ.get("LATHE_MODELS", "~/.cache/lathe/models"))


def lathe(*args):
    return subprocess.run([LATHE, *args], check=True, capture_output=True, text=True).stdout


def check_fixture(name, out):
    src = os.path.join(ROOT, "Tests", "Fixtures", "llm", name)
    lathe("convert", src, "--output", out)
    expected = json.load(open(os.path.join(src, "expected.json")))
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    prompt = torch.tensor([expected["prompt"]])
    with torch.no_grad():
        r = model(prompt, use_cache=True)
        gap = (r.logits[0] - torch.tensor(expected["prompt_logits"])).abs().max().item()
        past = r.past_key_values
        for i, token in enumerate(expected["decode"]):
            r = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
            past = r.past_key_values
            gap = max(gap, (r.logits[0, -1] - torch.tensor(expected["decode_logits"][i])).abs().max().item())
    ok = gap < 1e-4
    print(f"{name:14s} transformers on the folder Lathe wrote: max |logit difference| {gap:.2e} {'ok' if ok else 'MISMATCH'}")
    return ok


def check_gguf(path, text, out, context, chunks):
    lathe("convert", path, "--output", out)
    ids = json.loads(lathe("tokenize", path, "--file", text, "--no-special", "--json"))["ids"][: context * chunks]
    with_special = json.loads(lathe("tokenize", path, "--text", "a", "--json"))["ids"]
    plain = json.loads(lathe("tokenize", path, "--text", "a", "--no-special", "--json"))["ids"]
    bos = with_special[0] if len(with_special) > len(plain) else None
    reference = json.loads(lathe("perplexity", path, "--file", text, "--context", str(context), "--chunks", str(chunks), "--json"))
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for c in range(len(ids) // context):
            chunk = ids[c * context:(c + 1) * context]
            if bos is not None:
                chunk[0] = bos
            logits = model(torch.tensor([chunk])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            for j in range(context // 2, context - 1):
                nll -= logp[j, chunk[j + 1]].item()
                count += 1
    ppl = math.exp(nll / count)
    gap = abs(ppl / reference["perplexity"] - 1)
    ok = gap < 1e-3 and count == reference["tokens_scored"]
    print(f"{os.path.basename(path)}: transformers on the exported folder {ppl:.4f}, lathe on the GGUF {reference['perplexity']:.4f} "
          f"({gap * 100:.3f}%, {count} tokens) {'ok' if ok else 'MISMATCH'}")
    return ok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("gguf", nargs="*", default=[os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"),
                                               os.path.join(MODELS, "gemma-3-270m-q4_k_m.gguf")])
    p.add_argument("--text", default="/work/data/shakespeare-40k.txt")
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--chunks", type=int, default=4)
    a = p.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["llama-tiny", "llama3-tiny", "qwen2-tiny", "qwen3-tiny", "mistral-tiny", "gemma2-tiny", "gemma3-tiny", "gpt2-tiny"]:
            ok &= check_fixture(name, os.path.join(tmp, name))
        for path in a.gguf:
            ok &= check_gguf(path, a.text, os.path.join(tmp, os.path.basename(path) + ".hf"), a.context, a.chunks)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
