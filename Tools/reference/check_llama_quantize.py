"""Compares `lathe convert --type T` with llama.cpp's `llama-quantize` on the same float32 model, by hand.

    /work/main/.venv/bin/python Tools/reference/check_llama_quantize.py SRC.gguf \
        --lathe .build/release/lathe --llama-quantize /path/to/llama-quantize [--work DIR] [TYPE ...]

SRC is any GGUF model Lathe reads (e.g. SmolLM2-135M-Instruct.Q4_1.gguf). The script writes it as F32
with Lathe (`lathe convert SRC --output DIR/f32.gguf --type f32`, i.e. dequantised), then quantises that
file with both tools for each TYPE (default: Q4_K_M Q5_K_M Q6_K Q4_K_S Q8_0 Q4_0 Q4_1 Q5_0) and compares
them tensor by tensor (by name: llama-quantize sorts tensors by layer, Lathe keeps the source's order):
the type each tool chose, and the bytes. llama-quantize runs without an importance matrix, so both use
ggml's reference encoders. Prints one line per type; exits 1 if a tensor's type or bytes differ.
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from gguf import GGUFReader

DEFAULT_TYPES = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q4_K_S", "Q8_0", "Q4_0", "Q4_1", "Q5_0"]


def run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("types", nargs="*", default=DEFAULT_TYPES)
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--llama-quantize", required=True)
    ap.add_argument("--work", help="folder for the files (default: a temporary folder)")
    args = ap.parse_args()
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="lathe-llama-quantize-"))
    work.mkdir(parents=True, exist_ok=True)
    f32 = work / "f32.gguf"
    if not f32.exists():
        run([args.lathe, "convert", args.src, "--output", str(f32), "--type", "f32"])
    failed = False
    print(f"{'type':7} {'tensors':>7} {'same type':>9} {'identical':>9}  types (llama-quantize)")
    for qtype in args.types:
        ours, theirs = work / f"lathe-{qtype}.gguf", work / f"llama-{qtype}.gguf"
        run([args.lathe, "convert", str(f32), "--output", str(ours), "--type", qtype.lower()])
        run([args.llama_quantize, str(f32), str(theirs), qtype])
        a = {t.name: t for t in GGUFReader(ours).tensors}
        b = {t.name: t for t in GGUFReader(theirs).tensors}
        if set(a) != set(b):
            print(f"{qtype}: tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
            failed = True
            continue
        same_type = identical = 0
        counts: dict[str, int] = {}
        for name, t in a.items():
            u = b[name]
            counts[u.tensor_type.name] = counts.get(u.tensor_type.name, 0) + 1
            if t.tensor_type != u.tensor_type:
                print(f"  {name}: Lathe {t.tensor_type.name}, llama-quantize {u.tensor_type.name}")
                continue
            same_type += 1
            x, y = np.asarray(t.data).view(np.uint8).reshape(-1), np.asarray(u.data).view(np.uint8).reshape(-1)
            if x.size == y.size and np.array_equal(x, y):
                identical += 1
            else:
                print(f"  {name} ({t.tensor_type.name}): {int(np.count_nonzero(x != y)) if x.size == y.size else 'size'} bytes differ")
        failed |= identical != len(a)
        mix = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"{qtype:7} {len(a):7d} {same_type:9d} {identical:9d}  {mix}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
