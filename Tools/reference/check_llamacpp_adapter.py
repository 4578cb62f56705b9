#!/usr/bin/env python3
"""Lathe's llama.cpp LoRA adapters (`lathe convert-adapter ... --output X.gguf`) run in llama.cpp as
the PEFT adapter runs in Lathe: the same greedy tokens and nearly the same perplexity.

Run from the repository root after `swift build -c release`, with llama.cpp built natively (see
docs/LLM.md: the llama-cpp-python==0.3.36 sdist, targets llama-completion and llama-perplexity):
    python3 Tools/reference/check_llamacpp_adapter.py [--model GGUF] [--llama-bin DIR] [--text FILE] ADAPTER...
ADAPTER: PEFT (or mlx-lm) adapter folders trained on the model (default: runs/lora-math/adapter and
runs/lora-sentiment/adapter). For each adapter:

1. `lathe convert-adapter` writes it as a llama.cpp adapter (f32).
2. Greedy continuations (48 tokens) of a few prompts: `llama-completion --lora X.gguf --temp 0` against
   `lathe generate --adapter FOLDER --temperature 0` and `lathe generate --adapter X.gguf` (Lathe
   reading the GGUF file back), and both without the adapter: on the Q4_1 file the two engines' greedy
   texts part after a few tokens even without an adapter (llama.cpp quantizes every activation row to
   8 bits), so the shared prefix is compared with the base's.
3. Perplexity on the first 40,000 characters of the bundled Shakespeare (context 512): llama-perplexity
   with and without `--lora`, and `lathe perplexity` with and without `--adapter`.
Needs only the Python standard library. llama.cpp runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
unset, 2 threads.
"""
import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LATHE = os.path.join(ROOT, ".build", "release", "lathe")
PROMPTS = [
    "Question: Tom has 3 boxes with 12 apples each. He gives away 7 apples. How many apples does he have left?\nAnswer:",
    "Review: The acting was wooden and the plot made no sense, but the soundtrack was lovely.\nSentiment:",
    "The capital of France is",
]
ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return r.stdout, r.stderr


def llama_generate(bin_dir, model, lora, prompt, n):
    cmd = [os.path.join(bin_dir, "llama-completion"), "-m", model, "-p", prompt, "-n", str(n), "--temp", "0", "-t", "2",
           "-no-cnv", "--no-display-prompt", "--no-warmup", "-c", "512", "--seed", "0"]
    if lora:
        cmd += ["--lora", lora]
    out, _ = run(cmd)
    # llama.cpp prints " [end of text]" where the model ends its turn; Lathe stops there.
    return out.replace(" [end of text]", "").rstrip("\n")


def lathe_generate(model, adapter, prompt, n):
    cmd = [LATHE, "generate", model, "--prompt", prompt, "--temperature", "0", "--max-tokens", str(n), "--threads", "2"]
    if adapter:
        cmd += ["--adapter", adapter]
    out, _ = run(cmd)
    assert out.startswith(prompt), out[:200]
    return out[len(prompt):].rstrip("\n")


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def llama_ppl(bin_dir, model, lora, text):
    cmd = [os.path.join(bin_dir, "llama-perplexity"), "-m", model, "-f", text, "-c", "512", "-t", "2"]
    if lora:
        cmd += ["--lora", lora]
    out, err = run(cmd)
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out + err)
    return float(m.group(1)), float(m.group(2))


def lathe_ppl(model, adapter, text):
    cmd = [LATHE, "perplexity", model, "--file", text, "--context", "512", "--threads", "2"]
    if adapter:
        cmd += ["--adapter", adapter]
    out, _ = run(cmd)
    m = re.search(r"perplexity ([0-9.]+) \+/- ([0-9.]+)", out)
    return float(m.group(1)), float(m.group(2))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=os.path.expanduser("~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--llama-bin", default="/work/llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin")
    p.add_argument("--text", help="perplexity text (default: the first 40,000 characters of the bundled Shakespeare)")
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("adapters", nargs="*", default=[os.path.join(ROOT, "runs/lora-math/adapter"), os.path.join(ROOT, "runs/lora-sentiment/adapter")])
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="lathe-llamacpp-adapter-")
    text = a.text
    if text is None:
        text = os.path.join(tmp, "shakespeare-40k.txt")
        with gzip.open(os.path.join(ROOT, "Sources/LatheData/Resources/shakespeare.txt.gz"), "rt", encoding="utf-8") as f:
            open(text, "w", encoding="utf-8").write(f.read()[:40000])
    failures = 0
    base_ppl = llama_ppl(a.llama_bin, a.model, None, text), lathe_ppl(a.model, None, text)
    print(f"base: llama.cpp PPL {base_ppl[0][0]:.4f} +/- {base_ppl[0][1]:.4f}, Lathe {base_ppl[1][0]:.4f} +/- {base_ppl[1][1]:.4f}")
    for adapter in a.adapters:
        name = os.path.basename(os.path.dirname(adapter.rstrip("/"))) if os.path.basename(adapter.rstrip("/")) == "adapter" else os.path.basename(adapter.rstrip("/"))
        gguf = os.path.join(tmp, name + ".gguf")
        out, _ = run([LATHE, "convert-adapter", "--model", a.model, "--adapter", adapter, "--output", gguf])
        print(f"\n== {name}: {out.strip()} ({os.path.getsize(gguf):,} bytes)")
        for prompt in PROMPTS:
            llama = llama_generate(a.llama_bin, a.model, gguf, prompt, a.tokens)
            ours = lathe_generate(a.model, adapter, prompt, a.tokens)
            ours_gguf = lathe_generate(a.model, gguf, prompt, a.tokens)
            plain = llama_generate(a.llama_bin, a.model, None, prompt, a.tokens)
            ours_plain = lathe_generate(a.model, None, prompt, a.tokens)
            same = common_prefix(llama, ours)
            print(f"prompt {prompt[:40]!r}...")
            print(f"  llama.cpp --lora : {llama!r}")
            print(f"  Lathe --adapter  : {ours!r}")
            print(f"  same text: {'yes' if llama == ours else f'first {same} of {len(llama)} characters'}; "
                  f"Lathe with the GGUF adapter {'the same' if ours_gguf == ours else 'DIFFERENT'}; "
                  f"llama.cpp without the adapter {'the same as with it' if plain == llama else 'differs'}; "
                  f"without the adapter llama.cpp and Lathe share {common_prefix(plain, ours_plain)} characters")
            failures += ours_gguf != ours
        lp, sp = llama_ppl(a.llama_bin, a.model, gguf, text), lathe_ppl(a.model, adapter, text)
        gp = lathe_ppl(a.model, gguf, text)
        print(f"perplexity (Shakespeare 40k, c 512): llama.cpp --lora {lp[0]:.4f} +/- {lp[1]:.4f}, Lathe --adapter {sp[0]:.4f} +/- {sp[1]:.4f} "
              f"({100 * (lp[0] / sp[0] - 1):+.2f}%), Lathe with the GGUF adapter {gp[0]:.4f}; base {base_ppl[0][0]:.4f} / {base_ppl[1][0]:.4f}")
        failures += abs(lp[0] / sp[0] - 1) > 0.01
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
