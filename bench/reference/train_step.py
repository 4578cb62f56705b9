#!/usr/bin/env python3
"""PyTorch training-step throughput for the reference models (the baseline for Lathe).

Times full training steps (zero_grad, forward, mean cross-entropy, backward, AdamW step)
on one fixed random batch, float32 on CPU, and prints one JSON line per model:

    {"model": "mlp", "threads": 1, "batch": 64, "mode": "eager", "steps_per_second": ...,
     "best_steps_per_second": ...}

--compile times the same step under torch.compile (default inductor backend, which generates
C++/OpenMP kernels and so needs a C++ compiler, g++ by default): the whole step function
(zero_grad, forward, loss, backward, AdamW step) goes through torch.compile(step, dynamic=False).
Dynamo breaks the graph at loss.backward(), so this gives two compiled graphs: zero_grad +
forward + loss (with its backward compiled ahead of time by AOTAutograd), and the AdamW step
(the optimizer step is compiled too). Same model, same initial weights, same batch, same
AdamW(lr 1e-3, weight decay 0.01) as eager; the losses agree with eager to float rounding.
Compilation happens in the first warm-up step (at least 2 warm-up steps are run in this mode),
never in the timed runs; the JSON line adds "mode": "compile", "compile_seconds" (wall time of
the first step, compilation included; inductor's on-disk cache makes repeats cheaper),
"backend", "cxx" and "recompiles_while_timed" (should be 0). If compilation fails, the line has
"steps_per_second": null and "error" instead of exiting.

Models (defaults):
    mlp     DigitsMLP (64-128-64-10), x [64, 64]
    cnn     DigitsCNN (8x8 digits), x [64, 1, 8, 8]
    resnet  SmallResNet (16, 32) on 8x8 digits, x [64, 1, 8, 8]   (not in the default list)
    gpt     CharGPT vocab 65, context 64, d 128, 4 heads, 4 layers, RoPE; idx [16, 64]

Each model: --warmup untimed steps, then --repeat timed runs of --steps steps each;
steps_per_second is the median over the runs, best_steps_per_second the fastest run.
The same work as `lathe bench train` (bench/compare runs the two interleaved).

Usage: python3 bench/reference/train_step.py [--threads 1] [--models mlp,cnn,gpt]
                                             [--steps 50] [--warmup 10] [--repeat 5] [--compile]
"""
import argparse
import json
import os
import statistics
import subprocess
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


def cxx_version():
    """The C++ compiler inductor will call, with its version line, or raises if there is none."""
    from torch._inductor import cpp_builder

    cxx = cpp_builder.get_cpp_compiler()
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0] if out else cxx


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="mlp,cnn,gpt")
    ap.add_argument("--steps", type=int, default=50, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=0, help="override the batch size (0: 64 for digits models, 16 for gpt)")
    ap.add_argument("--compile", action="store_true",
                    help="time torch.compile(step) instead of eager (compilation excluded from the timing)")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend with --compile")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cxx = None
    if args.compile:
        from torch._dynamo.utils import counters
        try:
            cxx = cxx_version()
        except Exception as e:  # noqa: BLE001 -- reported, not fatal: inductor will fail below with its own reason
            cxx = f"none ({type(e).__name__}: {e})"
    for name in args.models.split(","):
        batch = args.batch or (16 if name == "gpt" else 64)
        model, opt, x, y = setup(name, batch)
        row = {"model": name, "threads": args.threads, "batch": batch, "mode": "compile" if args.compile else "eager"}
        fn, warmup = step, args.warmup
        if args.compile:
            torch._dynamo.reset()  # nothing compiled for one model carries over to the next
            # dynamic=False: one fixed batch shape, no symbolic-shape recompilation.
            fn, warmup = torch.compile(step, backend=args.backend, dynamic=False), max(args.warmup, 2)
            row.update(backend=args.backend, cxx=cxx)
            t0 = time.perf_counter()
            try:
                fn(model, opt, x, y).item()
            except Exception as e:  # noqa: BLE001 -- e.g. no C++ compiler: report why, keep the other rows
                msg = str(e).strip().splitlines()
                row.update(steps_per_second=None, best_steps_per_second=None,
                           error=f"{type(e).__name__}: {msg[0] if msg else ''}"[:500])
                print(json.dumps(row), flush=True)
                continue
            row["compile_seconds"] = round(time.perf_counter() - t0, 2)
            warmup -= 1
        for _ in range(warmup):
            fn(model, opt, x, y)
        graphs = counters["stats"]["unique_graphs"] if args.compile else 0
        rates = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                loss = fn(model, opt, x, y)
            loss.item()
            rates.append(args.steps / (time.perf_counter() - t0))
        if args.compile:
            row["recompiles_while_timed"] = counters["stats"]["unique_graphs"] - graphs
        row.update(steps_per_second=round(statistics.median(rates), 3), best_steps_per_second=round(max(rates), 3))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
