#!/usr/bin/env python3
"""NumPy (OpenBLAS) sgemm reference timings, to compare with `lathe bench gemm` and bench/c/gemm_bench.

Usage: python3 bench/gemm_reference.py --threads 1 --sizes 256,512,1024x128x512 --trans nn,nt
                                       [--keep-openblas-env]
Prints first one JSON line describing the BLAS that ran (from threadpoolctl, if installed):
  {"impl": "numpy", "blas": {"numpy", "internal_api", "version", "architecture", "threading_layer",
   "num_threads", "filepath"}, "unset_env": {"OPENBLAS_CORETYPE": <value it had or null>, ...}}
then one JSON line per case: {"m","n","k","transA","transB","threads","gflops","median"}
(gflops = best sample, median = median sample; each sample runs >= ~20 ms of calls).

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from this process's environment before NumPy
loads OpenBLAS (which reads them once, at load), so OpenBLAS picks the kernel of the CPU it runs
on; a CORETYPE of e.g. Haswell on an AVX-512 CPU runs the AVX2 kernel at about half the speed.
--keep-openblas-env keeps them (to measure what they do). bench/compare.py and
bench/compare_gemm.py also start this script without them.
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
ap.add_argument("--keep-openblas-env", action="store_true",
                help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE if set (default: unset them before loading OpenBLAS)")
args = ap.parse_args()

# Thread count and kernel choice must be fixed before NumPy (and its BLAS) is loaded.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
unset = {}
if not args.keep_openblas_env:
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        unset[var] = os.environ.pop(var, None)
import numpy as np  # noqa: E402


def blas_info():
    info = {"numpy": np.__version__}
    try:
        import threadpoolctl
    except ImportError:
        info["error"] = "threadpoolctl not installed: kernel unknown"
        return info
    pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        info["error"] = "threadpoolctl found no BLAS library"
        return info
    p = pools[0]
    for key in ("internal_api", "version", "architecture", "threading_layer", "num_threads", "filepath"):
        info[key] = p.get(key)
    if len(pools) > 1:
        info["others"] = [f"{q.get('internal_api')} {q.get('version')} {q.get('filepath')}" for q in pools[1:]]
    return info


print(json.dumps({"impl": "numpy", "blas": blas_info(), "unset_env": unset,
                  "kept_env": {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                               if os.environ.get(v) is not None}}))
sys.stdout.flush()


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
