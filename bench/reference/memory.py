#!/usr/bin/env python3
"""PyTorch peak resident memory of char GPT training steps (the baseline of `lathe bench memory`).

For each of no checkpointing and torch.utils.checkpoint around every block, runs a fresh child
process that builds the model, AdamW and a synthetic batch, reads VmRSS, runs 1 + --repeat
training steps (zero_grad, forward, cross-entropy, backward, AdamW step) and reads its peak
(ru_maxrss / VmHWM). One JSON line per configuration:

    {"checkpointing": false, "peak_rss_mb": ..., "baseline_rss_mb": ..., "ms_per_step": ...}

Usage: python3 bench/reference/memory.py [--threads 1] [--batch 32] [--context 256] [--d-model 128]
                                         [--layers 4] [--heads 4] [--repeat 3]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def rss_mb():
    """(VmRSS, VmHWM) in MB from /proc/self/status, or ru_maxrss twice where there is none."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    try:
        fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, max(peak, int(fields["VmHWM"].split()[0]) / 1024)
    except (OSError, KeyError):
        return peak, peak


def child(args):
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from models import CharGPT

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CharGPT(vocab=65, context=args.context, d_model=args.d_model, heads=args.heads, layers=args.layers, rope=True)
    if args.checkpointing:
        for block in model.blocks:
            block.forward = (lambda f: lambda x: checkpoint(f, x, use_reentrant=False))(block.forward)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, 65, (args.batch, args.context + 1), generator=g)
    x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()

    before, _ = rss_mb()
    step()
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    _, peak = rss_mb()
    print(json.dumps({"checkpointing": bool(args.checkpointing), "threads": args.threads, "batch": args.batch,
                      "context": args.context, "baseline_rss_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
                      "step_delta_mb": round(peak - before, 1),
                      "ms_per_step": round(statistics.median(times) * 1e3, 2)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--checkpointing", type=int, default=-1, help=argparse.SUPPRESS)  # set in the children
    args = ap.parse_args()
    if args.checkpointing >= 0:
        child(args)
        return
    for ckpt in (0, 1):
        cmd = [sys.executable, os.path.abspath(__file__), "--checkpointing", str(ckpt)] + \
              [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "checkpointing"]
        sys.stdout.write(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
