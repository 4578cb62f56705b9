#!/usr/bin/env python3
"""PyTorch inference latency for the reference models (the baseline of `lathe bench infer`).

Eval mode under torch.inference_mode(), float32 on CPU, and the reference int8 row:
torch.ao.quantization.quantize_dynamic on the nn.Linear layers (int8 weights, activations
quantised per call; convolutions stay fp32). One JSON line per model, variant and batch:

    {"model": "mlp", "variant": "fp32", "batch": 1, "threads": 1, "ms": ..., "best_ms": ...}

Models: mlp (x [B, 64]), cnn (x [B, 1, 8, 8]) and cnn28 (the same CNN on x [B, 1, 28, 28]) at each --batches size; gpt (char GPT,
context 64, d 128, 4 heads, 4 layers) at batch 1. Each of --repeat timings runs enough calls to
last --min-time seconds; ms is the median per call, best_ms the fastest.

Usage: python3 bench/reference/infer.py [--threads 1] [--models mlp,cnn,gpt] [--batches 1,64]
                                        [--variants fp32,int8] [--repeat 7] [--min-time 0.05]
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import CharGPT, DigitsCNN, DigitsMLP, SmallResNet  # noqa: E402


def setup(name, batch):
    g = torch.Generator().manual_seed(0)
    if name == "mlp":
        return DigitsMLP(), torch.randint(0, 17, (batch, 64), generator=g).float() / 16
    if name in ("cnn", "cnn28", "resnet"):
        side = 28 if name == "cnn28" else 8
        model = SmallResNet() if name == "resnet" else DigitsCNN(image=side)
        return model, torch.randint(0, 17, (batch, 1, side, side), generator=g).float() / 16
    if name == "gpt":
        return (CharGPT(vocab=65, context=64, d_model=128, heads=4, layers=4, rope=True),
                torch.randint(0, 65, (batch, 64), generator=g))
    raise SystemExit(f"unknown model {name!r}")


def prepare(model, variant):
    if variant == "fp32":
        return model
    if variant == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notice of torch.ao.quantization
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    raise SystemExit(f"unknown variant {variant!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="mlp,cnn,cnn28,gpt")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--variants", default="fp32,int8")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.05)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models.split(","):
        for batch in ([1] if name == "gpt" else [int(b) for b in args.batches.split(",")]):
            base, x = setup(name, batch)
            base.eval()
            for variant in args.variants.split(","):
                model = prepare(base, variant)
                with torch.inference_mode():
                    model(x)
                    t0 = time.perf_counter()
                    model(x)
                    once = time.perf_counter() - t0
                    inner = max(1, int(args.min_time / max(once, 1e-9)))
                    samples = []
                    for _ in range(args.repeat):
                        t0 = time.perf_counter()
                        for _ in range(inner):
                            model(x)
                        samples.append((time.perf_counter() - t0) / inner)
                med = statistics.median(samples)
                print(json.dumps({"model": name, "variant": variant, "batch": batch, "threads": args.threads,
                                  "ms": round(med * 1e3, 4), "best_ms": round(min(samples) * 1e3, 4),
                                  "samples_per_second": round(batch / med, 1)}), flush=True)


if __name__ == "__main__":
    main()
