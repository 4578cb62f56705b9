#!/usr/bin/env python3
"""PyTorch training-step throughput for the reference models (the baseline for Lathe).

Times full training steps (zero_grad, forward, mean cross-entropy, backward, AdamW step)
on one fixed random batch, float32 on CPU, and prints one JSON line per model:

    {"model": "mlp", "threads": 1, "batch": 64, "steps_per_second": ..., "best_steps_per_second": ...}

Models (defaults):
    mlp     DigitsMLP (64-128-64-10), x [64, 64]
    cnn     DigitsCNN (8x8 digits), x [64, 1, 8, 8]
    resnet  SmallResNet (16, 32) on 8x8 digits, x [64, 1, 8, 8]   (not in the default list)
    gpt     CharGPT vocab 65, context 64, d 128, 4 heads, 4 layers, RoPE; idx [16, 64]

Each model: --warmup untimed steps, then --repeat timed runs of --steps steps each;
steps_per_second is the median over the runs, best_steps_per_second the fastest run.
The same work as `lathe bench train` (bench/compare runs the two interleaved).

Usage: python3 bench/reference/train_step.py [--threads 1] [--models mlp,cnn,gpt]
                                             [--steps 50] [--warmup 10] [--repeat 5]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import CharGPT, DigitsCNN, DigitsMLP, SmallResNet  # noqa: E402


def setup(name, batch):
    g = torch.Generator().manual_seed(0)
    if name == "mlp":
        model = DigitsMLP()
        x = torch.randint(0, 17, (batch, 64), generator=g).float() / 16
        y = torch.randint(0, 10, (batch,), generator=g)
    elif name in ("cnn", "resnet"):
        model = DigitsCNN() if name == "cnn" else SmallResNet()
        x = torch.randint(0, 17, (batch, 1, 8, 8), generator=g).float() / 16
        y = torch.randint(0, 10, (batch,), generator=g)
    elif name == "gpt":
        model = CharGPT(vocab=65, context=64, d_model=128, heads=4, layers=4, rope=True)
        seq = torch.randint(0, 65, (batch, 65), generator=g)
        x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    else:
        raise SystemExit(f"unknown model {name!r}")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    return model, opt, x, y


def step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    loss.backward()
    opt.step()
    return loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="mlp,cnn,gpt")
    ap.add_argument("--steps", type=int, default=50, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=0, help="override the batch size (0: 64 for digits models, 16 for gpt)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models.split(","):
        batch = args.batch or (16 if name == "gpt" else 64)
        model, opt, x, y = setup(name, batch)
        for _ in range(args.warmup):
            step(model, opt, x, y)
        rates = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                loss = step(model, opt, x, y)
            loss.item()
            rates.append(args.steps / (time.perf_counter() - t0))
        print(json.dumps({"model": name, "threads": args.threads, "batch": batch,
                          "steps_per_second": round(statistics.median(rates), 3),
                          "best_steps_per_second": round(max(rates), 3)}), flush=True)


if __name__ == "__main__":
    main()
