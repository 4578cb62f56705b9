#!/usr/bin/env python3
"""Checks that the tokenizer files `lathe convert` writes for a GGUF model (tokenizer.json,
tokenizer_config.json, special_tokens_map.json) give Lathe's ids in Hugging Face's libraries
(by hand, not a test: the Swift tests never need Python).

Run from the repository root after `swift build -c release` (a venv with tokenizers and transformers):
    .venv/bin/python Tools/reference/check_hf_tokenizer.py [--text FILE ...] [GGUF ...]

For each GGUF model given (default: the fetched SmolLM2 Q4_1 and Gemma 3 270M Q4_K_M), the model
is converted to a folder (bf16: the weights do not matter here), and on each text (default:
/work/data/shakespeare-40k.txt and Tests/Fixtures/text/multilingual.txt), with and without the
special tokens the tokenizer adds, the ids of
  - `lathe tokenize MODEL.gguf` (Lathe's GGUF tokenizer, which follows llama.cpp),
  - `lathe tokenize FOLDER` (Lathe reading the tokenizer.json it wrote),
  - `tokenizers.Tokenizer.from_file(FOLDER/tokenizer.json)`,
  - `transformers.AutoTokenizer.from_pretrained(FOLDER)`
must be identical, and AutoTokenizer's decoding of the ids must give the text back (Gemma's
vocabulary, and SmolLM2's byte-level one, can spell any text; SentencePiece decodes a "▁" of the
text as a space). Each text is also checked line by
line when it is short (a fresh encode per line, so line starts, where prefix spaces and BOS go, are many).
Exits 1 on any mismatch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from tokenizers import Tokenizer
from transformers import AutoTokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LATHE = os.path.join(ROOT, ".build", "release", "lathe")
MODELS = os.path.expanduser(os.environ.get("LATHE_MODELS", "~/.cache/lathe/models"))


def lathe(*args):
    return subprocess.run([LATHE, *args], check=True, capture_output=True, text=True).stdout


def lathe_ids(model, path, special):
    return json.loads(lathe("tokenize", model, "--file", path, "--json", *([] if special else ["--no-special"])))["ids"]


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"at {i}: {a[max(0, i - 3):i + 4]} vs {b[max(0, i - 3):i + 4]}"
    return "none" if len(a) == len(b) else f"lengths {len(a)} vs {len(b)}"


def check(gguf, texts, tmp):
    name = os.path.basename(gguf)
    folder = os.path.join(tmp, name + ".hf")
    lathe("convert", gguf, "--output", folder, "--dtype", "bf16")
    fast = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(folder)
    sentencepiece = json.loads(fast.to_str())["model"]["byte_fallback"]
    ok = True
    for path in texts:
        with open(path, encoding="utf-8", newline="") as f:  # keep \r\n as it is
            text = f.read()
        for special in (True, False):
            reference = lathe_ids(gguf, path, special)
            results = {
                "lathe on the folder": lathe_ids(folder, path, special),
                "tokenizers": fast.encode(text, add_special_tokens=special).ids,
                "AutoTokenizer": auto(text, add_special_tokens=special)["input_ids"],
            }
            for who, ids in results.items():
                same = ids == reference
                ok &= same
                print(f"{name} {os.path.basename(path)} {'with' if special else 'without'} special tokens: {who}: "
                      f"{len(ids)} ids, {'same as' if same else 'DIFFERENT from'} lathe on the GGUF ({len(reference)})"
                      + ("" if same else f", first difference {first_difference(ids, reference)}"))
        # The ids without BOS, special tokens kept: the text has special-looking tokens in it.
        # SentencePiece decodes a "▁" written in the text as the space it stands for.
        decoded = auto.decode(lathe_ids(gguf, path, False), skip_special_tokens=False)
        same = decoded == (text.replace("\u2581", " ") if sentencepiece else text)
        ok &= same
        print(f"{name} {os.path.basename(path)}: AutoTokenizer decodes Lathe's ids to the text: {'yes' if same else 'NO'}")
        if len(text) > 10_000:
            continue
        # Line by line (short texts only: one lathe run a line): many fresh starts, where prefix
        # spaces and BOS go, and short inputs.
        lines = text.split("\n")
        batch = auto(lines, add_special_tokens=True)["input_ids"]
        batch_fast = [e.ids for e in fast.encode_batch(lines, add_special_tokens=True)]
        differing = 0
        for line, a, b in zip(lines, batch, batch_fast):
            reference = json.loads(lathe("tokenize", gguf, "--text", line, "--json"))["ids"]
            if not a == b == reference:
                differing += 1
                print(f"  line {line[:60]!r}: AutoTokenizer {a[:12]}, tokenizers {b[:12]}, lathe {reference[:12]}")
        ok &= differing == 0
        print(f"{name} {os.path.basename(path)} line by line: {len(lines) - differing}/{len(lines)} lines give Lathe's ids")
    return ok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("gguf", nargs="*", default=[os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"),
                                               os.path.join(MODELS, "gemma-3-270m-q4_k_m.gguf")])
    p.add_argument("--text", action="append",
                   help="a UTF-8 text file (repeatable; default: Shakespeare 40k and Tests/Fixtures/text/multilingual.txt)")
    a = p.parse_args()
    texts = a.text or ["/work/data/shakespeare-40k.txt", os.path.join(ROOT, "Tests", "Fixtures", "text", "multilingual.txt")]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for gguf in a.gguf:
            ok &= check(gguf, texts, tmp)
    print("all identical" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
