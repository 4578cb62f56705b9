#!/usr/bin/env python3
"""fp32 GEMM: Lathe against NumPy (OpenBLAS), side by side in one run.

For each thread count, runs `lathe bench gemm --json` and bench/gemm_reference.py on the
same shapes, alternating between the two for --rounds rounds, keeps each one's best
GFLOP/s per shape, and prints a markdown table of the ratios.

The NumPy reference runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its own
environment (not Lathe's), so that OpenBLAS uses its kernel for this CPU instead of one the
environment forces (e.g. Haswell/AVX2 on an AVX-512 CPU, about half the speed); the kernel that
ran, as threadpoolctl reports it, names the NumPy column, with a warning if it is Haswell.

Usage: python3 bench/compare_gemm.py [--lathe PATH] [--threads 1,2] [--rounds 3] [--shapes ...]
(bench/compare gemm runs it inside bench/.venv, which has NumPy and threadpoolctl.)
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SHAPES = ("256x256x256,512x512x512,1024x1024x1024,2048x2048x2048,"
                  "64x64x128,1024x128x512,1024x512x128,1024x512x128:tA,1024x512x128:tB")

ap = argparse.ArgumentParser()
ap.add_argument("--lathe", default=os.path.join(HERE, "..", ".build", "release", "lathe"))
ap.add_argument("--threads", default="1,2")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--shapes", default=DEFAULT_SHAPES)
ap.add_argument("--peak", type=float, default=0.0, help="one core's FMA peak in GFLOP/s, for a %% of peak column")
args = ap.parse_args()

if not os.path.exists(args.lathe):
    sys.exit(f"{args.lathe} not found: build it first with `swift build -c release`")


def lathe(shape, threads):
    out = subprocess.run([args.lathe, "bench", "gemm", "--json", "--threads", str(threads), "--repeat", "3",
                          "--shapes", shape], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["gflops"]


OPENBLAS_FORCING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
NUMPY_ENV = {k: v for k, v in os.environ.items() if k not in OPENBLAS_FORCING}
BLAS = set()  # (description, warning or "") of every reference run


def numpy(shape, threads):
    dims, _, flags = shape.partition(":")
    trans = ("t" if "tA" in flags else "n") + ("t" if "tB" in flags else "n")
    out = subprocess.run([sys.executable, os.path.join(HERE, "gemm_reference.py"), "--threads", str(threads),
                          "--sizes", dims, "--trans", trans, "--reps", "3"],
                         check=True, capture_output=True, text=True, env=NUMPY_ENV).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for row in rows:
        if "blas" in row:
            b = row["blas"]
            if "error" in b:
                BLAS.add((f"NumPy {b.get('numpy', '?')} (BLAS kernel unknown)", b["error"]))
            else:
                ver = ".".join(str(b.get("version") or "?").split(".")[:3])
                arch = b.get("architecture") or "?"
                warn = ("OpenBLAS ran its Haswell (AVX2) kernel although OPENBLAS_CORETYPE was unset: "
                        "the NumPy figures understate it" if arch.lower() == "haswell" else "")
                BLAS.add((f"NumPy {b.get('numpy', '?')} (OpenBLAS {ver}, {arch} kernel)", warn))
    return [r for r in rows if "gflops" in r][-1]["gflops"]


rows = []
for threads in [int(t) for t in args.threads.split(",")]:
    for shape in args.shapes.split(","):
        best = {"lathe": 0.0, "numpy": 0.0}
        for r in range(args.rounds):
            # Alternate which goes first so drift on a shared machine hits both.
            order = [("lathe", lathe), ("numpy", numpy)] if r % 2 == 0 else [("numpy", numpy), ("lathe", lathe)]
            for name, fn in order:
                best[name] = max(best[name], fn(shape, threads))
        rows.append((shape, threads, best["lathe"], best["numpy"]))
        print(f"{shape:>20} threads {threads}: lathe {best['lathe']:7.1f}  numpy {best['numpy']:7.1f}  "
              f"ratio {best['lathe'] / best['numpy']:.2f}", file=sys.stderr)

ref = " / ".join(sorted({d for d, _ in BLAS})) or "NumPy"
for _, warn in sorted(BLAS):
    if warn:
        print(f"WARNING: {warn}", file=sys.stderr)
        print(f"**WARNING: {warn}.**\n")
forced = {k: os.environ[k] for k in OPENBLAS_FORCING if k in os.environ}
print(f"Reference: {ref}; {' and '.join(OPENBLAS_FORCING)} unset for it"
      + (f" (this environment sets {', '.join(f'{k}={v}' for k, v in forced.items())})" if forced else "") + ".\n")
print("| shape (MxNxK) | threads | Lathe GFLOP/s | NumPy GFLOP/s | Lathe / NumPy |"
      + (" Lathe % of peak |" if args.peak else ""))
print("|---|---:|---:|---:|---:|" + ("---:|" if args.peak else ""))
for shape, threads, l, n in rows:
    line = f"| {shape} | {threads} | {l:.1f} | {n:.1f} | {l / n:.2f}x |"
    if args.peak:
        line += f" {100 * l / (args.peak * threads):.0f}% |"
    print(line)
