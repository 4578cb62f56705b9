#!/usr/bin/env python3
"""One LoRA training step: Lathe (`lathe bench lora-step`) against PyTorch + PEFT.

Two modes.

Reference (default): in this process, load a Hugging Face folder with transformers'
AutoModelForCausalLM in float32, add PEFT LoRA adapters the way `lathe bench lora-step` does
(LoRAStepBenchmark.swift: rank R, alpha 2R, dropout 0, every linear layer but the output --
PEFT's "all-linear" -- A Kaiming-uniform, B zero), AdamW on the adapters only (lr 1e-4, betas
0.9/0.999, eps 1e-8, weight decay 0), model.train(), and time full steps on one fixed
[batch, seq] batch of pseudo-random token ids: zero_grad, forward with labels = ids (causal LM
cross-entropy, shifted by one, mean), backward, AdamW step, loss.item(). --warmup steps first,
then --steps timed ones; tokens/s = batch * seq / median step time. As Lathe does, the resident
set is read after loading (model, adapters, optimiser), the peak is reset there
(/proc/self/clear_refs) and read after the steps. One JSON line.

    --compile: the same step function through torch.compile(step, dynamic=False) (inductor);
    compilation happens in the first warm-up step and is reported as compile_seconds, never timed.

Compare (--compare): alternate Lathe and the reference (eager, and compiled with --with-compile)
in fresh processes under /usr/bin/time -v, --rounds rounds per thread count, the order reversed
every round; print every row as JSON and a markdown table of medians (ratio = Lathe tokens/s /
PyTorch tokens/s, median of the per-round ratios). The reference processes run with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from the environment and OMP_NUM_THREADS = N,
torch.set_num_threads(N); Lathe gets --threads N and OMP_NUM_THREADS = N too.

Usage:
  python bench/lora_step.py /tmp/smollm2-hf --threads 1 --batch 4 --seq 128 --rank 8 [--compile]
  python bench/lora_step.py /tmp/smollm2-hf --compare --threads 1 2 --batch 4 --seq 128 --rank 8 --rounds 3 \
      [--with-compile] [--lathe .build/release/lathe]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_mb():
    """(VmRSS, VmHWM) in MB (MiB: kB / 1024) from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def reference(args):
    import torch
    torch.set_num_threads(args.threads)
    import transformers
    import peft
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    config = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    adapted = sum(1 for n, _ in model.named_modules() if n.endswith(".lora_A"))
    opt = torch.optim.AdamW(trainable, lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        return loss

    run = torch.compile(step, dynamic=False) if args.compile else step
    before, _ = rss_mb()
    reset = reset_peak()
    losses = []
    t0 = time.perf_counter()
    losses.append(run().item())
    first = time.perf_counter() - t0
    for _ in range(args.warmup - 1):
        losses.append(run().item())
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(run().item())
        times.append(time.perf_counter() - t0)
    _, peak = rss_mb()
    ms = statistics.median(times) * 1e3
    row = {"tool": "pytorch", "mode": "compile" if args.compile else "eager", "threads": args.threads,
           "batch": args.batch, "seq": args.seq, "rank": args.rank, "adapted_layers": adapted,
           "trainable_parameters": sum(p.numel() for p in trainable),
           "attn_implementation": getattr(model.config, "_attn_implementation", None),
           "baseline_rss_mb": round(before, 1), "peak_rss_mb": round(peak, 1), "peak_is_steps_only": reset,
           "ms_per_step": round(ms, 1), "tokens_per_s": round(args.batch * args.seq / ms * 1e3, 1),
           "step_ms": [round(t * 1e3, 1) for t in times], "loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
           "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    if args.compile:
        row["compile_seconds"] = round(first, 1)
    print(json.dumps(row), flush=True)


def max_rss_mb(stderr):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return round(int(m.group(1)) / 1024, 1) if m else None


def load_average():
    return float(open("/proc/loadavg").read().split()[0])


def run_one(tool, args, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if tool == "lathe":
        cmd = [args.lathe, "bench", "lora-step", args.model, "--batch", str(args.batch), "--seq", str(args.seq),
               "--rank", str(args.rank), "--threads", str(threads), "--repeat", str(args.steps), "--json"]
    else:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
        cmd = [sys.executable, os.path.abspath(__file__), args.model, "--threads", str(threads), "--batch", str(args.batch),
               "--seq", str(args.seq), "--rank", str(args.rank), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        if tool == "compile":
            cmd.append("--compile")
    load = load_average()
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        row = {"tool": tool, "threads": threads, "error": (p.stderr or p.stdout)[-2000:]}
    else:
        row = json.loads(lines[-1])
        if tool == "lathe":
            row["tool"] = "lathe"
            row["tokens_per_s"] = round(args.batch * args.seq / row["ms_per_step"] * 1e3, 1)
        else:
            row["tool"] = tool
    row.update({"process_max_rss_mb": max_rss_mb(p.stderr), "wall_seconds": round(wall, 1), "load_before": load})
    print(json.dumps(row), flush=True)
    return row


def compare(args):
    tools = ["lathe", "eager"] + (["compile"] if args.with_compile else [])
    rows = []
    for threads in args.thread_counts:
        for r in range(args.rounds):
            order = tools if r % 2 == 0 else list(reversed(tools))
            for tool in order:
                row = run_one(tool, args, threads)
                row["round"] = r
                rows.append(row)
    print()
    print(f"batch {args.batch} x seq {args.seq}, rank {args.rank}, {args.rounds} round(s), {args.steps} timed steps each")
    head = "| threads | Lathe tokens/s | PyTorch eager tokens/s |" + (" torch.compile tokens/s |" if args.with_compile else "")
    head += " ratio vs eager |" + (" ratio vs compile |" if args.with_compile else "")
    head += " Lathe peak MB (process) | eager peak MB (process) |" + (" compile peak MB (process) |" if args.with_compile else "")
    print(head)
    print("|" + "|".join(["---:"] * (head.count("|") - 1)) + "|")
    for threads in args.thread_counts:
        def ok(tool):
            return [x for x in rows if x["threads"] == threads and x["tool"] == tool and "error" not in x]

        def med(tool, key):
            v = [x[key] for x in ok(tool) if x.get(key) is not None]
            return statistics.median(v) if v else float("nan")

        def ratio(tool):
            per = []
            for r in range(args.rounds):
                a = [x for x in ok("lathe") if x["round"] == r]
                b = [x for x in ok(tool) if x["round"] == r]
                if a and b:
                    per.append(a[0]["tokens_per_s"] / b[0]["tokens_per_s"])
            return statistics.median(per) if per else float("nan")

        def mem(tool):
            return f"{med(tool, 'peak_rss_mb'):,.0f} ({med(tool, 'process_max_rss_mb'):,.0f})"

        cells = [str(threads), f"{med('lathe', 'tokens_per_s'):.1f}", f"{med('eager', 'tokens_per_s'):.1f}"]
        if args.with_compile:
            cells.append(f"{med('compile', 'tokens_per_s'):.1f}")
        cells.append(f"{ratio('eager'):.2f}x")
        if args.with_compile:
            cells.append(f"{ratio('compile'):.2f}x")
        cells += [mem("lathe"), mem("eager")] + ([mem("compile")] if args.with_compile else [])
        print("| " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a Hugging Face folder (float32), e.g. what `lathe convert MODEL.gguf --output DIR` writes")
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first one compiles with --compile)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (Lathe: --repeat)")
    ap.add_argument("--compile", action="store_true", help="reference mode: torch.compile the step")
    ap.add_argument("--compare", action="store_true", help="alternate Lathe and the reference in fresh processes")
    ap.add_argument("--with-compile", action="store_true", help="--compare: also the torch.compile reference")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lathe", default=os.path.join(HERE, "..", ".build", "release", "lathe"))
    args = ap.parse_args()
    args.warmup = max(args.warmup, 1)
    if args.compare:
        args.thread_counts = args.threads
        compare(args)
    else:
        args.threads = args.threads[0]
        reference(args)


if __name__ == "__main__":
    main()
