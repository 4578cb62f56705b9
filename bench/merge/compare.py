#!/usr/bin/env python3
"""`lathe merge` beside mergekit on three SmolLM2-135M-sized models: wall time, peak RSS
(/usr/bin/time -v) and the largest difference between the two merges.

    python3 bench/merge/compare.py --mergekit /work/venv-mergekit/bin/mergekit-yaml \
        --lathe .build/release/lathe --methods linear ties --threads 2

One process of each per method, Lathe first (a quick look). `bench/compare --only merge` runs the
same configs in rounds, the order alternating, and writes BENCHMARKS.md's merge section; it calls
this file, with mergekit's Python (which has NumPy and safetensors), for the inputs
(`--prepare-only`) and the differences (`--diff A B`).

Inputs (made once under --work): the SmolLM2 GGUF written as a float32 Hugging Face folder by
`lathe convert`, and two copies perturbed by Gaussian noise (std 0.01), as fine-tunes of it.
Both tools read the same folders and write float32 folders. Peak memory is compared with the
size of one float32 model (the goal: below it + 20%).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
from safetensors.numpy import load_file, save_file

CONFIGS = {
    "linear": "merge_method: linear\ndtype: float32\nmodels:\n"
              "  - {model: base, parameters: {weight: 0.4}}\n  - {model: a, parameters: {weight: 0.3}}\n  - {model: b, parameters: {weight: 0.3}}\n",
    "ties": "merge_method: ties\nbase_model: base\ndtype: float32\nmodels:\n"
            "  - {model: a, parameters: {weight: 0.5, density: 0.5}}\n  - {model: b, parameters: {weight: 0.5, density: 0.5}}\n",
    "slerp": "merge_method: slerp\nbase_model: base\ndtype: float32\nparameters: {t: [0, 0.5, 1]}\nmodels: [base, a]\n",
}


def make_inputs(lathe, gguf, work):
    base = os.path.join(work, "base")
    if not os.path.exists(os.path.join(base, "model.safetensors")):
        subprocess.run([lathe, "convert", gguf, "--output", base], check=True, stdout=sys.stderr)
    for name, seed in [("a", 1), ("b", 2)]:
        folder = os.path.join(work, name)
        if os.path.exists(os.path.join(folder, "model.safetensors")):
            continue
        shutil.copytree(base, folder, dirs_exist_ok=True)
        rng = np.random.default_rng(seed)
        tensors = load_file(os.path.join(base, "model.safetensors"))
        out = {k: (v + rng.normal(0, 0.01, v.shape).astype(np.float32)) for k, v in tensors.items()}
        save_file(out, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    return base


def timed(cmd, env):
    t0 = time.time()
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    return wall, peak_kb / 1024


def max_diff(a_folder, b_folder):
    def tensors(folder):
        out = {}
        for f in sorted(os.listdir(folder)):
            if f.endswith(".safetensors"):
                out.update(load_file(os.path.join(folder, f)))
        return out
    a, b = tensors(a_folder), tensors(b_folder)
    assert set(a) == set(b), set(a) ^ set(b)
    return max(float(np.abs(a[k].astype(np.float32) - b[k].astype(np.float32)).max()) for k in a)


def mergekit_env(env):
    """mergekit's environment: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed, so that nothing forced
    from outside slows the reference (torch's GEMMs do not read them; removed all the same)."""
    return {k: v for k, v in env.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prepare-only", action="store_true", help="make the inputs under --work, print the size of one as JSON")
    p.add_argument("--diff", nargs=2, metavar=("A", "B"), help="print the largest difference between two merged folders as JSON")
    p.add_argument("--lathe", default=".build/release/lathe")
    p.add_argument("--mergekit", default="mergekit-yaml")
    p.add_argument("--gguf", default=os.path.expanduser("~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--work", default="/tmp/lathe-merge-bench")
    p.add_argument("--methods", nargs="+", default=["linear", "ties"])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if a.diff:
        print(json.dumps({"max_abs_diff": max_diff(*a.diff)}))
        return
    lathe = os.path.abspath(a.lathe)
    os.makedirs(a.work, exist_ok=True)
    base = make_inputs(lathe, a.gguf, a.work)
    model_mb = os.path.getsize(os.path.join(base, "model.safetensors")) / 2**20
    if a.prepare_only:
        print(json.dumps({"model_mib": model_mb, "configs": CONFIGS}))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), LATHE_NUM_THREADS=str(a.threads), HF_HUB_OFFLINE="1")
    print(f"inputs: 3 x SmolLM2-135M float32 ({model_mb:.0f} MiB each); goal: peak < {model_mb * 1.2:.0f} MiB; {a.threads} threads")
    print("| method | Lathe s | mergekit s | Lathe peak MiB | mergekit peak MiB | max abs diff |")
    print("|---|---|---|---|---|---|")
    for method in a.methods:
        cfg = os.path.join(a.work, f"{method}.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIGS[method])
        out_l, out_m = os.path.join(a.work, f"out-lathe-{method}"), os.path.join(a.work, f"out-mergekit-{method}")
        shutil.rmtree(out_l, ignore_errors=True)
        shutil.rmtree(out_m, ignore_errors=True)
        os.chdir(a.work)
        tl, ml = timed([lathe, "merge", cfg, "--output", out_l], env)
        tm, mm = timed([a.mergekit, cfg, out_m, "--no-write-model-card", "--out-shard-size", "100B"], mergekit_env(env))
        print(f"| {method} | {tl:.1f} | {tm:.1f} | {ml:.0f} | {mm:.0f} | {max_diff(out_l, out_m):.2g} |", flush=True)


if __name__ == "__main__":
    main()
