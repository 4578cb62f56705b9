#!/usr/bin/env python3
"""NumPy (OpenBLAS) sgemm reference timings, to compare with bench/c/gemm_bench.

Usage: python3 bench/gemm_reference.py --threads 1 --sizes 256,512,1024x128x512 --trans nn,nt
Prints one JSON line per case: {"m","n","k","transA","transB","threads","gflops","median"}
(gflops = best sample, median = median sample; each sample runs >= ~20 ms of calls).
"""
import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--sizes", default="256,512,1024,2048,64x64x128,1024x128x512,1024x512x128")
ap.add_argument("--trans", default="nn", help="comma list of nn, nt, tn, tt")
ap.add_argument("--reps", type=int, default=7)
args = ap.parse_args()

# Thread count must be fixed before NumPy (and its BLAS) is imported.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
import numpy as np  # noqa: E402


def bench(m, n, k, ta, tb):
    rng = np.random.default_rng(0)
    # Store A as [K,M] when transposed so that op(A) = A.T is a transposed view (BLAS trans flag).
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    opa = a.T if ta else a
    opb = b.T if tb else b
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(opa, opb, out=c)  # warm-up
    t0 = time.perf_counter()
    np.matmul(opa, opb, out=c)
    one = time.perf_counter() - t0
    inner = 1 if one > 0.02 else int(0.02 / max(one, 1e-9)) + 1
    flops = 2.0 * m * n * k
    samples = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            np.matmul(opa, opb, out=c)
        samples.append(flops * inner / (time.perf_counter() - t0) * 1e-9)
    samples.sort()
    return samples[-1], samples[len(samples) // 2]


for tok in args.sizes.split(","):
    parts = [int(x) for x in tok.split("x")]
    m, n, k = parts if len(parts) == 3 else parts * 3
    for tr in args.trans.split(","):
        ta, tb = tr[0] == "t", tr[1] == "t"
        best, med = bench(m, n, k, ta, tb)
        print(json.dumps({"impl": "numpy", "m": m, "n": n, "k": k, "transA": int(ta),
                          "transB": int(tb), "threads": args.threads,
                          "gflops": round(best, 1), "median": round(med, 1)}))
        sys.stdout.flush()
