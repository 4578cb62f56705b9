#!/usr/bin/env python3
"""Lathe against its references, side by side, interleaved: writes BENCHMARKS.md and an SVG chart.

Workloads (each at every --threads count, --rounds rounds, the order of Lathe and the
reference alternating from round to round so drift on a shared machine hits both):

  machine  measured limits: fp32 FMA peak and memory bandwidth (`lathe bench machine`)
  gemm     fp32 GEMM GFLOP/s: `lathe bench gemm` vs NumPy/OpenBLAS (bench/gemm_reference.py)
  train    training steps/s: `lathe bench train` vs PyTorch eager and PyTorch under torch.compile
           (inductor), both bench/reference/train_step.py (the latter with --compile)
  infer    inference latency: `lathe bench infer` vs PyTorch fp32 and dynamic int8, eager
           (bench/reference/infer.py)
  memory   peak RSS of char GPT steps with/without checkpointing: `lathe bench memory` vs
           PyTorch eager with torch.utils.checkpoint (bench/reference/memory.py), 1 round
  llm      (not in the default set: --only llm) quantized GGUF language models, prompt processing
           (pp512) and generation (tg128) tokens/s: `lathe bench llm` vs llama.cpp's llama-bench
           (--llama-bench, $LLAMA_BENCH or llama-bench on PATH; built natively), beside the
           machine's limits: decode = measured bandwidth / bytes read per token, prompt = FMA peak
           / (2 x matmul MACs per token). Its BENCHMARKS.md section carries its own date, versions
           and machine figures; a run of llm alone replaces that section and keeps the rest of the
           file (and the chart), a run without llm keeps an existing llm section.
  merge    (not in the default set: --only merge) `lathe merge` vs mergekit (mergekit-yaml from --mergekit,
           $MERGEKIT or PATH) on three SmolLM2-135M-sized float32 folders (bench/merge/compare.py makes
           them and compares the outputs): wall time and peak RSS (/usr/bin/time -v) of one fresh process
           per tool, method and round, and the largest difference between the merges. Like llm, its
           BENCHMARKS.md section stands alone: a run of merge alone replaces only that section.

  finetune (not in the default set: --only finetune) one LoRA training step of SmolLM2-135M-Instruct
           (rank 8 on every linear layer but the output, AdamW, one fixed batch of --finetune-shapes
           BxT token ids): `lathe bench lora-step` vs PyTorch + PEFT eager and under torch.compile
           (bench/lora_step.py, transformers' float32 copy of the same weights), tokens/s and peak RSS
           of fresh processes. The float32 folder both read is written once by `lathe convert` from
           the GGUF file (Tools/fetch-models) under --finetune-work. Its BENCHMARKS.md section stands
           alone, like merge's.

Figures: per round each side's median (GEMM: best) over its repetitions; the table shows the
median over rounds for each side and the median of the per-round ratios. Ratio = Lathe speed /
reference speed (> 1: Lathe faster). Run through bench/compare (it sets up bench/.venv).

The NumPy reference runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment
(only its own: Lathe and PyTorch get the environment as is), so that OpenBLAS uses the kernel of
this CPU rather than one forced by the environment (OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU
halves its speed); the kernel that actually ran is read with threadpoolctl and printed, with a
warning if it is Haswell anyway. PyTorch's CPU wheel does its GEMMs in its bundled oneMKL and
its convolutions in oneDNN, which do not read OPENBLAS_* (checked: same torch matmul speed with
and without them), so the PyTorch references keep the environment.

merge: mergekit runs in its own virtualenv (its Python and torch) with OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE removed, both tools with OMP_NUM_THREADS = LATHE_NUM_THREADS = N; the outputs are
removed before every run so each writes afresh.

llm: both Lathe and llama-bench run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (neither
reads them today; removed so that neither can be slowed by them), the same thread count, the same
token counts and repetitions; each side's tokens/s of a round is tokens / mean seconds over its
repetitions (for llama-bench computed from its samples_ns, after its own warm-up run).

torch.compile: the whole training step goes through torch.compile(step, dynamic=False) with the
default inductor backend (it needs a C++ compiler, g++); compilation happens in the warm-up,
outside the timings, and its time is reported separately. --no-compile skips that column.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GEMM_SHAPES = ("256x256x256,512x512x512,1024x1024x1024,2048x2048x2048,"
               "64x64x128,1024x128x512,1024x512x128,1024x512x128:tA,1024x512x128:tB")
# Timed steps per repetition, warm-up steps: sized so that one repetition lasts ~0.1-1 s.
TRAIN_STEPS = {"mlp": (200, 20), "cnn": (20, 3), "gpt": (5, 2), "resnet": (10, 2)}

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--lathe", default=os.path.join(ROOT, ".build", "release", "lathe"))
ap.add_argument("--threads", default=None, help="thread counts, comma-separated (default: 1 and the core count)")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--only", default="machine,gemm,train,infer,memory",
                help="workloads, comma-separated, among machine,gemm,train,infer,memory (the default), llm, merge and finetune")
ap.add_argument("--models", default="mlp,cnn,gpt", help="models of the train workload (and of infer unless --infer-models)")
ap.add_argument("--infer-models", default=None, help="models of the infer workload (default: mlp,cnn,cnn28,gpt among --models plus cnn28)")
ap.add_argument("--memory-threads", type=int, default=1,
                help="threads for the memory workload (peak memory hardly depends on it; 1 keeps its time bounded)")
ap.add_argument("--quick", action="store_true", help="few steps, small shapes: a smoke test, figures not for quoting")
ap.add_argument("--gemm-shapes", default=None,
                help="GEMM shapes MxNxK[:tA][:tB], comma-separated (default: a fixed list; a shorter one with --quick)")
ap.add_argument("--no-compile", action="store_true", help="train: skip the torch.compile reference (eager only)")
ap.add_argument("--llama-bench", default=os.environ.get("LLAMA_BENCH") or shutil.which("llama-bench"),
                help="llm: llama.cpp's llama-bench (default: $LLAMA_BENCH, else llama-bench on PATH)")
ap.add_argument("--llm-models", default="SmolLM2-135M-Instruct.Q4_1.gguf,gemma-3-270m-q4_k_m.gguf",
                help="llm: GGUF files, comma-separated; bare names are looked up in $LATHE_MODELS, else "
                     "~/.cache/lathe/models (Tools/fetch-models)")
ap.add_argument("--llm-repeat", type=int, default=3, help="llm: repetitions of pp and tg per process and round")
ap.add_argument("--mergekit", default=os.environ.get("MERGEKIT") or shutil.which("mergekit-yaml"),
                help="merge: mergekit's mergekit-yaml, in its virtualenv (default: $MERGEKIT, else mergekit-yaml on PATH)")
ap.add_argument("--merge-methods", default="linear,ties", help="merge: methods, comma-separated, among linear,ties,slerp")
ap.add_argument("--merge-work", default="/tmp/lathe-merge-bench", help="merge: folder of the inputs (made once) and outputs")
ap.add_argument("--finetune-model", default="SmolLM2-135M-Instruct.Q4_1.gguf",
                help="finetune: the GGUF file (bare names are looked up like --llm-models) whose float32 copy both sides train")
ap.add_argument("--finetune-shapes", default="4x128,1x128", help="finetune: batch x tokens, comma-separated")
ap.add_argument("--finetune-steps", type=int, default=3, help="finetune: timed steps per process (after one untimed step)")
ap.add_argument("--finetune-work", default="/tmp/lathe-finetune-bench", help="finetune: folder of the float32 copy (made once)")
ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
ap.add_argument("--svg", default=os.path.join(ROOT, "docs", "benchmarks.svg"))
ap.add_argument("--no-write", action="store_true", help="print the report instead of writing the files")
ap.add_argument("--command", default="bench/compare", help="the command line to quote in the report")
args = ap.parse_args()

if not os.path.exists(args.lathe):
    sys.exit(f"{args.lathe} not found: build it first with `swift build -c release`")
CORES = os.cpu_count() or 1
THREADS = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, CORES})
ONLY = set(args.only.split(","))
WORKLOADS = {"machine", "gemm", "train", "infer", "memory", "llm", "merge", "finetune"}
if ONLY - WORKLOADS:
    sys.exit(f"--only: unknown workload(s) {', '.join(sorted(ONLY - WORKLOADS))}")
MODELS = args.models.split(",")
INFER_MODELS = (args.infer_models.split(",") if args.infer_models
                else [m for m in ["mlp", "cnn", "cnn28", "gpt"] if m in MODELS or (m == "cnn28" and "cnn" in MODELS)])
T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:6.0f} s] {msg}", file=sys.stderr, flush=True)


# Set in this environment to force an OpenBLAS kernel and cache size; removed for the NumPy reference only.
OPENBLAS_FORCING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
OPENBLAS_FORCED = {v: os.environ[v] for v in OPENBLAS_FORCING if v in os.environ}


def env_for(threads, drop=()):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LATHE_NUM_THREADS"):
        env[var] = str(threads)
    for var in drop:
        env.pop(var, None)
    return env


def run_json(cmd, threads, drop=()):
    """Runs cmd, returns its stdout's JSON lines as dicts."""
    res = subprocess.run(cmd, capture_output=True, text=True, env=env_for(threads, drop), cwd=ROOT)
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def lathe(*a, threads):
    return run_json([args.lathe, "bench", *a, "--json", "--threads", str(threads)], threads)


def python(script, *a, threads, drop=()):
    return run_json([sys.executable, os.path.join(HERE, script), *a, "--threads", str(threads)], threads, drop)


LOADS = []  # 1-minute load averages seen at the start of each round


def load_now():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def interleaved(label, threads, *fns):
    """Runs fns (Lathe first, then the references) for --rounds rounds, in the given order in even rounds
    and the reverse order in odd ones; returns one tuple of results per round, in the order of fns."""
    out = []
    for r in range(args.rounds):
        LOADS.append(load_now())
        order = list(range(len(fns))) if r % 2 == 0 else list(reversed(range(len(fns))))
        res = [None] * len(fns)
        for i in order:
            res[i] = fns[i]()
        out.append(tuple(res))
        log(f"{label}, {threads} thread(s): round {r + 1}/{args.rounds} done")
    return out


def fmt_opt(x):
    return "—" if x is None else f"{x:.1f}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---- machine ---------------------------------------------------------------------------------
machine = {"cpu": platform.processor() or "unknown", "cores": CORES, "isa": "?", "fma": {}, "copy": {}, "triad": {}}
try:
    for line in open("/proc/cpuinfo"):
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "model name":
            machine["cpu"] = val
        elif key == "cpu family":
            machine["family"] = val
        elif key == "model" and "model_id" not in machine:
            machine["model_id"] = val
except OSError:
    pass

if ONLY & {"machine", "gemm", "llm"}:
    log("machine limits (lathe bench machine)")
    for row in lathe("machine", "--seconds", "0.2" if args.quick else "1", "--repeat", "1" if args.quick else "3",
                     "--array-mb", "64" if args.quick else "256", threads=max(THREADS)):
        m, t = row["metric"], row["threads"]
        if m == "cpu":
            machine["isa"], machine["lanes"] = row["isa"], row["fma_lanes"]
        elif m == "fma_peak":
            machine["fma"][t] = row["value"]
        elif m.startswith("bandwidth_"):
            machine[m.split("_")[1]][t] = row["value"]
    log(f"FMA peak {machine['fma']} GFLOP/s, triad {machine['triad']} GB/s")


def peak_for(threads):
    if threads in machine["fma"]:
        return machine["fma"][threads]
    if 1 in machine["fma"]:
        return machine["fma"][1] * threads
    return None


# ---- gemm ------------------------------------------------------------------------------------
gemm_rows = []
BLAS_SEEN = []  # the "blas" info line of every NumPy reference run (bench/gemm_reference.py)
if "gemm" in ONLY:
    shapes = args.gemm_shapes or ("256x256x256,512x512x512,64x64x128,1024x128x512,1024x512x128:tA" if args.quick
                                  else GEMM_SHAPES)

    def numpy_gemm(threads):
        # gemm_reference.py takes sizes x transposes; one call per transpose flag.
        groups = {}
        for s in shapes.split(","):
            dims, _, flags = s.partition(":")
            groups.setdefault(("t" if "tA" in flags else "n") + ("t" if "tB" in flags else "n"), []).append(dims)
        out = {}
        for trans, dims in groups.items():
            for row in python("gemm_reference.py", "--sizes", ",".join(dims), "--trans", trans, "--reps", "3",
                              threads=threads, drop=OPENBLAS_FORCING):
                if "blas" in row:
                    BLAS_SEEN.append(dict(row["blas"], requested_threads=threads, kept_env=row.get("kept_env", {})))
                    continue
                flags = ("tA" if row["transA"] else "") + ("tB" if row["transB"] else "")
                out[f"{row['m']}x{row['n']}x{row['k']}" + (f":{flags}" if flags else "")] = row["gflops"]
        return out

    for t in THREADS:
        rounds = interleaved("gemm", t,
                             lambda: {r["shape"]: r["gflops"] for r in lathe("gemm", "--repeat", "3", "--shapes", shapes, threads=t)},
                             lambda: numpy_gemm(t))
        for s in shapes.split(","):
            lv, nv = [r[0][s] for r in rounds], [r[1][s] for r in rounds]
            gemm_rows.append({"shape": s, "threads": t, "lathe": med(lv), "ref": med(nv),
                              "ratio": med([a / b for a, b in zip(lv, nv) if a and b])})


def cpu_has_avx512():
    try:
        return any(line.startswith("flags") and " avx512f" in line for line in open("/proc/cpuinfo"))
    except OSError:
        return True  # unknown: warn about a Haswell kernel anyway


CPU_AVX512 = cpu_has_avx512()


def blas_summary():
    """(description of the OpenBLAS that ran, warnings) from the reference runs' threadpoolctl info."""
    if not BLAS_SEEN:
        return None, []
    warnings, kinds = [], []
    for b in BLAS_SEEN:
        if "error" in b:
            warnings.append(f"NumPy reference: {b['error']}")
            kinds.append(f"NumPy {b.get('numpy', '?')} (BLAS kernel unknown)")
            continue
        api = b.get("internal_api") or "?"
        ver = ".".join(str(b.get("version") or "?").split(".")[:3])
        name = "OpenBLAS" if api == "openblas" else api
        arch = b.get("architecture")
        kinds.append(f"NumPy {b.get('numpy', '?')} ({name} {ver}" + (f", {arch} kernel" if arch else "") + ")")
        if arch and arch.lower() == "haswell" and CPU_AVX512:
            warnings.append("NumPy's OpenBLAS ran its Haswell (AVX2) kernel although OPENBLAS_CORETYPE was unset for it: "
                            "on an AVX-512 CPU that is about half its speed, the NumPy figures understate it")
        if b.get("kept_env"):
            warnings.append(f"the NumPy reference still saw {b['kept_env']}")
        if b.get("num_threads") not in (None, b["requested_threads"]):
            warnings.append(f"OpenBLAS ran {b['num_threads']} thread(s) where {b['requested_threads']} were asked")
    kinds = list(dict.fromkeys(kinds))
    return " / ".join(kinds), list(dict.fromkeys(warnings))


BLAS_DESC, BLAS_WARNINGS = blas_summary()
if BLAS_DESC:
    log(f"GEMM reference: {BLAS_DESC}; {', '.join(OPENBLAS_FORCING)} unset for it"
        + (f" (this environment has {OPENBLAS_FORCED})" if OPENBLAS_FORCED else ""))
for w in BLAS_WARNINGS:
    log("WARNING: " + w)

# ---- train -----------------------------------------------------------------------------------
train_rows = []
COMPILE_INFO = {}  # backend, C++ compiler, errors of the torch.compile reference
if "train" in ONLY:
    for t in THREADS:
        for m in MODELS:
            steps, warm = (2, 1) if args.quick else TRAIN_STEPS[m]
            rep = "2" if args.quick else "3"
            common = ["--models", m, "--steps", str(steps), "--warmup", str(warm), "--repeat", rep]
            fns = [lambda: lathe("train", *common, threads=t)[0],
                   lambda: python("reference/train_step.py", *common, threads=t)[0]]
            if not args.no_compile:
                fns.append(lambda: python("reference/train_step.py", *common, "--compile", threads=t)[0])
            rounds = interleaved(f"train {m}", t, *fns)
            lv = [r[0]["steps_per_second"] for r in rounds]
            ev = [r[1]["steps_per_second"] for r in rounds]
            row = {"model": m, "threads": t, "lathe": med(lv), "eager": med(ev),
                   "ratio_eager": med([a / b for a, b in zip(lv, ev) if a and b])}
            if not args.no_compile:
                comp = [r[2] for r in rounds]
                cv = [c["steps_per_second"] for c in comp]
                row.update(compile=med(cv), ratio_compile=med([a / b for a, b in zip(lv, cv) if a and b]),
                           compile_seconds=med([c.get("compile_seconds") for c in comp]),
                           recompiles=sum(c.get("recompiles_while_timed") or 0 for c in comp))
                for c in comp:
                    COMPILE_INFO.setdefault("backend", c.get("backend"))
                    COMPILE_INFO.setdefault("cxx", c.get("cxx"))
                    if c.get("error"):
                        COMPILE_INFO.setdefault("errors", {})[m] = c["error"]
                        log(f"WARNING: torch.compile failed for {m}: {c['error']}")
                if row["recompiles"]:
                    log(f"WARNING: torch.compile recompiled {row['recompiles']} time(s) inside the timed steps of {m}")
                log(f"train {m}, {t} thread(s): Lathe {fmt_opt(row['lathe'])}, eager {fmt_opt(row['eager'])}, "
                    f"compile {fmt_opt(row['compile'])} steps/s (compile {fmt_opt(row['compile_seconds'])} s)")
            train_rows.append(row)

# ---- infer -----------------------------------------------------------------------------------
infer_rows = []
if "infer" in ONLY:
    mt = "0.01" if args.quick else "0.04"
    rep = "3" if args.quick else "5"
    for t in THREADS:
        rounds = interleaved("infer", t,
                             lambda: lathe("infer", "--models", ",".join(INFER_MODELS), "--repeat", rep, "--min-time", mt, threads=t),
                             lambda: python("reference/infer.py", "--models", ",".join(INFER_MODELS), "--variants", "fp32,int8",
                                            "--repeat", rep, "--min-time", mt, threads=t))
        # PyTorch's int8 row is dynamic quantization: compare it with Lathe's dynamic int8.
        for _, ref_rows in rounds:
            for row in ref_rows:
                if row["variant"] == "int8":
                    row["variant"] = "int8-dynamic"
        keys = []
        for row in rounds[0][0] + rounds[0][1]:
            k = (row["model"], row["batch"], row["variant"])
            if k not in keys:
                keys.append(k)
        for k in keys:
            def pick(rows):
                return next((r["ms"] for r in rows if (r["model"], r["batch"], r["variant"]) == k), None)
            lv, rv = [pick(r[0]) for r in rounds], [pick(r[1]) for r in rounds]
            ratios = [b / a for a, b in zip(lv, rv) if a and b]
            # Lathe's own speed-up of this variant over its fp32, per round.
            fp32 = [next((r["ms"] for r in rr[0] if (r["model"], r["batch"], r["variant"]) == (k[0], k[1], "fp32")), None)
                    for rr in rounds]
            own = [f / a for f, a in zip(fp32, lv) if f and a]
            infer_rows.append({"model": k[0], "batch": k[1], "variant": k[2], "threads": t, "lathe": med(lv), "ref": med(rv),
                               "ratio": med(ratios) if ratios else None, "vs_fp32": med(own) if own else None})

# ---- memory ----------------------------------------------------------------------------------
memory_rows, memory_config = [], ""
if "memory" in ONLY and "gpt" in MODELS:
    t = args.memory_threads
    LOADS.append(load_now())
    cfg = ["--batch", "8", "--context", "128"] if args.quick else ["--batch", "32", "--context", "256"]
    cfg += ["--d-model", "128", "--layers", "4", "--heads", "4", "--repeat", "1" if args.quick else "3"]
    log(f"memory: lathe bench memory {' '.join(cfg)}, {t} thread(s)")
    lrows = lathe("memory", *cfg, threads=t)
    log("memory: bench/reference/memory.py")
    rrows = python("reference/memory.py", *cfg, threads=t)
    memory_config = lrows[0]["config"]
    for lr in lrows:
        rr = next(r for r in rrows if r["checkpointing"] == lr["checkpointing"])
        memory_rows.append({"checkpointing": lr["checkpointing"], "threads": t, "lathe": lr, "ref": rr,
                            "ratio": rr["ms_per_step"] / lr["ms_per_step"]})
    log("memory done")

# ---- llm -------------------------------------------------------------------------------------
llm_rows, LLM_MODELS, LLAMA = [], [], {}
LLM_LOADS = []  # load averages at the start of the llm rounds (also in LOADS)
LLM_T0 = time.time()


def model_path(name):
    name = os.path.expanduser(name)
    if os.sep in name or os.path.exists(name):
        return os.path.abspath(name)
    return os.path.join(os.environ.get("LATHE_MODELS") or os.path.expanduser("~/.cache/lathe/models"), name)


def gguf_costs(path):
    """Bytes read and matmul multiply-adds per token of a GGUF decoder, from `lathe inspect --json`.

    Bytes per decoded token: every tensor but the token embedding (all matrices, norms), the output
    projection (output.weight if the file has one, else the tied token embedding, read whole: every
    vocabulary row is scored), and one embedding row. The KV cache read is left out (under 1% at tg128
    for these models). MACs per prompt token: the elements of the blocks' matrices (one multiply-add
    per weight per token); the LM head runs for the last prompt token only and attention is left out."""
    res = subprocess.run([args.lathe, "inspect", "--json", path], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"lathe inspect {path} failed: {res.stderr[-2000:]}")
    info = json.loads(res.stdout)
    tensors = info["tensors"]
    emb = next(t for t in tensors if t["name"] == "token_embd.weight")
    has_output = any(t["name"] == "output.weight" for t in tensors)
    rest = sum(t["bytes"] for t in tensors if t["name"] != "token_embd.weight")
    row = emb["bytes"] // emb["shape"][0]
    types = {}
    for t in tensors:
        if len(t["shape"]) == 2:
            types[t["type"]] = types.get(t["type"], 0) + 1
    return {"bytes_per_token": rest + (0 if has_output else emb["bytes"]) + row,
            "output_bytes": next((t["bytes"] for t in tensors if t["name"] == "output.weight"), emb["bytes"]),
            "tied": not has_output,
            "macs_per_token": sum(t["elements"] for t in tensors if t["name"].startswith("blk.") and len(t["shape"]) == 2),
            "file_bytes": info["file_size"], "matrix_types": types,
            "arch": next((m.get("value") for m in info.get("metadata", []) if m.get("key") == "general.architecture"), None)}


def llama_build_info(exe):
    """llama-bench's version line and the build's CMake options and compiler flags (from its build folder)."""
    out = {"path": exe}
    res = subprocess.run([exe, "--version"], capture_output=True, text=True)
    lines = [x.strip() for x in (res.stdout + res.stderr).splitlines() if x.strip()]
    out["version"] = "; ".join(lines[:2])
    build = os.path.dirname(os.path.dirname(os.path.realpath(exe)))  # build/bin/llama-bench -> build
    cache = os.path.join(build, "CMakeCache.txt")
    if os.path.exists(cache):
        keep = ("CMAKE_BUILD_TYPE", "GGML_NATIVE", "GGML_OPENMP", "GGML_BLAS", "GGML_LLAMAFILE", "GGML_CPU_REPACK",
                "GGML_AVX512", "LLAMA_CURL")
        opts = {}
        for line in open(cache):
            m = re.match(r"([A-Z0-9_]+):[A-Z]+=(.*)", line.strip())
            if m and m.group(1) in keep:
                opts[m.group(1)] = m.group(2)
        out["cmake"] = " ".join(f"-D{k}={opts[k]}" for k in keep if k in opts)
        src = None
        for line in open(cache):
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                src = line.split("=", 1)[1].strip()
        out["source"] = src
    flags = os.path.join(build, "ggml", "src", "CMakeFiles", "ggml-cpu.dir", "flags.make")
    if os.path.exists(flags):
        text = open(flags).read()
        cflags = re.search(r"^C_FLAGS = (.*)$", text, re.M)
        if cflags:
            # The optimisation and target flags; warnings are left out.
            out["cflags"] = " ".join(f for f in cflags.group(1).split() if not f.startswith(("-W", "-std")))
        defs = re.search(r"^C_DEFINES = (.*)$", text, re.M)
        if defs:
            out["defines"] = " ".join(d[2:] for d in defs.group(1).split() if d.startswith("-DGGML_USE_"))
    if "-march=native" in out.get("cflags", ""):
        # What -march=native meant to the compiler on this machine.
        res = subprocess.run(["cc", "-march=native", "-Q", "--help=target"], capture_output=True, text=True)
        march = re.search(r"^\s*-march=\s+(\S+)", res.stdout, re.M)
        isa = [f for f in ("avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512bf16", "avx512vbmi", "avxvnni")
               if re.search(rf"^\s*-m{f}\s+\[enabled\]", res.stdout, re.M)]
        if march:
            out["native"] = f"{march.group(1)}" + (f" + {', '.join(i.upper().replace('AVX512', 'AVX512-') for i in isa)}" if isa else "")
    return out


def llama_bench(path, pp, tg, threads):
    """{test: tokens/s} of one llama-bench process (its own warm-up, then --llm-repeat repetitions)."""
    cmd = [args.llama_bench, "-m", path, "-p", str(pp), "-n", str(tg), "-r", str(args.llm_repeat), "-t", str(threads), "-o", "json"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env_for(threads, OPENBLAS_FORCING), cwd=ROOT)
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    out = {}
    for r in json.loads(res.stdout):
        LLAMA.setdefault("build_commit", r.get("build_commit"))
        LLAMA.setdefault("build_number", r.get("build_number"))
        LLAMA.setdefault("settings", {k: r.get(k) for k in ("n_batch", "n_ubatch", "type_k", "type_v", "flash_attn", "repack",
                                                             "load_mode", "poll")})
        if r["n_threads"] != threads:
            sys.exit(f"llama-bench ran {r['n_threads']} threads where {threads} were asked")
        n, test = (r["n_prompt"], f"pp{r['n_prompt']}") if r["n_prompt"] else (r["n_gen"], f"tg{r['n_gen']}")
        ns = r["samples_ns"]
        out[test] = n / (sum(ns) / len(ns) / 1e9)
    return out


def lathe_llm(path, pp, tg, threads):
    rows = run_json([args.lathe, "bench", "llm", path, "--prompt-tokens", str(pp), "--gen-tokens", str(tg),
                     "--repeat", str(args.llm_repeat), "--json", "--threads", str(threads)], threads, OPENBLAS_FORCING)
    for r in rows:
        if r["threads"] != threads:
            sys.exit(f"lathe bench llm ran {r['threads']} threads where {threads} were asked")
    return {r["test"]: r["tokens_per_second"] for r in rows}


if "llm" in ONLY:
    if not args.llama_bench or not os.path.exists(args.llama_bench):
        sys.exit("llm: llama-bench not found: pass --llama-bench PATH or set LLAMA_BENCH (llama.cpp built natively, "
                 "e.g. from the llama-cpp-python sdist: cmake -S vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release "
                 "-DGGML_NATIVE=ON -DLLAMA_CURL=OFF && cmake --build build --target llama-bench)")
    LLAMA.update(llama_build_info(args.llama_bench))
    log(f"llm reference: {LLAMA.get('version')}; {LLAMA.get('cmake', '')} {LLAMA.get('cflags', '')}")
    pp, tg = (64, 16) if args.quick else (512, 128)
    for name in args.llm_models.split(","):
        path = model_path(name)
        if not os.path.exists(path):
            sys.exit(f"llm: {path} not found (Tools/fetch-models fetches the default models)")
        LLM_MODELS.append(dict(gguf_costs(path), name=os.path.basename(path), path=path))
    for t in THREADS:
        for m in LLM_MODELS:
            n0 = len(LOADS)
            rounds = interleaved(f"llm {m['name']}", t, lambda: lathe_llm(m["path"], pp, tg, t),
                                 lambda: llama_bench(m["path"], pp, tg, t))
            LLM_LOADS.extend(LOADS[n0:])
            for test in (f"pp{pp}", f"tg{tg}"):
                lv, rv = [r[0].get(test) for r in rounds], [r[1].get(test) for r in rounds]
                if test.startswith("tg"):
                    bw = max([machine[k][t] for k in ("copy", "triad") if t in machine[k]], default=None)
                    bound = bw * 1e9 / m["bytes_per_token"] if bw else None
                else:
                    p = peak_for(t)
                    bound = p * 1e9 / (2 * m["macs_per_token"]) if p else None
                row = {"model": m["name"], "threads": t, "test": test, "lathe": med(lv), "ref": med(rv),
                       "ratio": med([a / b for a, b in zip(lv, rv) if a and b]), "bound": bound}
                llm_rows.append(row)
                log(f"llm {m['name']} {test}, {t} thread(s): Lathe {fmt_opt(row['lathe'])}, llama.cpp {fmt_opt(row['ref'])} "
                    f"tokens/s, bound {fmt_opt(bound)}")
LLM_ELAPSED = time.time() - LLM_T0


# ---- report ----------------------------------------------------------------------------------
# ---- merge -----------------------------------------------------------------------------------
merge_rows, MERGE = [], {}
MERGE_LOADS = []
MERGE_T0 = time.time()
MERGE_SCRIPT = os.path.join(HERE, "merge", "compare.py")


def merge_timed(cmd, env):
    """(wall seconds, peak RSS MiB) of one fresh process under /usr/bin/time -v."""
    t0 = time.time()
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env, cwd=args.merge_work)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"merge: failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return wall, int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024


if "merge" in ONLY:
    if not args.mergekit or not os.path.exists(args.mergekit):
        sys.exit("merge: mergekit-yaml not found: pass --mergekit PATH (in mergekit's virtualenv) or set MERGEKIT")
    if not os.path.exists("/usr/bin/time"):
        sys.exit("merge: /usr/bin/time (GNU time) is needed for peak RSS")
    mk_python = os.path.join(os.path.dirname(args.mergekit), "python")
    os.makedirs(args.merge_work, exist_ok=True)
    log(f"merge: inputs under {args.merge_work} (made once)")
    prep = run_json([mk_python, MERGE_SCRIPT, "--prepare-only", "--lathe", args.lathe, "--work", args.merge_work], 1)[-1]
    MERGE["model_mib"] = prep["model_mib"]
    MERGE["version"] = subprocess.run([mk_python, "-c", "import importlib.metadata as m; print(m.version('mergekit'))"],
                                      capture_output=True, text=True).stdout.strip() or "?"
    MERGE["torch"] = subprocess.run([mk_python, "-c", "import torch; print(torch.__version__)"],
                                    capture_output=True, text=True).stdout.strip() or "?"
    for method in args.merge_methods.split(","):
        if method not in prep["configs"]:
            sys.exit(f"merge: no config for method {method} (bench/merge/compare.py has {', '.join(prep['configs'])})")
        cfg = os.path.join(args.merge_work, f"{method}.yaml")
        with open(cfg, "w") as f:
            f.write(prep["configs"][method])
        out_l, out_m = os.path.join(args.merge_work, f"out-lathe-{method}"), os.path.join(args.merge_work, f"out-mergekit-{method}")
        for t in THREADS:
            def run_lathe(t=t):
                shutil.rmtree(out_l, ignore_errors=True)
                return merge_timed([args.lathe, "merge", cfg, "--output", out_l], env_for(t))

            def run_mergekit(t=t):
                shutil.rmtree(out_m, ignore_errors=True)
                return merge_timed([args.mergekit, cfg, out_m, "--no-write-model-card", "--out-shard-size", "100B"],
                                   env_for(t, OPENBLAS_FORCING))
            MERGE_LOADS.append(load_now())
            rounds = interleaved(f"merge {method}", t, run_lathe, run_mergekit)
            row = {"method": method, "threads": t,
                   "lathe_s": med([r[0][0] for r in rounds]), "ref_s": med([r[1][0] for r in rounds]),
                   "lathe_mib": med([r[0][1] for r in rounds]), "ref_mib": med([r[1][1] for r in rounds]),
                   "ratio": med([r[1][0] / r[0][0] for r in rounds]),
                   "diff": run_json([mk_python, MERGE_SCRIPT, "--diff", out_l, out_m], 1)[-1]["max_abs_diff"]}
            merge_rows.append(row)
            log(f"merge {method}, {t} thread(s): Lathe {row['lathe_s']:.1f} s {row['lathe_mib']:.0f} MiB, mergekit "
                f"{row['ref_s']:.1f} s {row['ref_mib']:.0f} MiB, max diff {row['diff']:.2g}")
MERGE_ELAPSED = time.time() - MERGE_T0

# ---- finetune --------------------------------------------------------------------------------
finetune_rows, FINETUNE, FINETUNE_LOADS = [], {}, []
FINETUNE_T0 = time.time()


def finetune_run(tool, model, batch, seq, threads):
    """One fresh process of bench/lora_step.py's runner (Lathe, or PyTorch + PEFT eager / compiled): its JSON row."""
    import contextlib
    import types
    sys.path.insert(0, HERE)
    import lora_step
    ns = types.SimpleNamespace(lathe=args.lathe, model=model, batch=batch, seq=seq, rank=8,
                               steps=args.finetune_steps, warmup=1)
    with contextlib.redirect_stdout(sys.stderr):
        row = lora_step.run_one(tool, ns, threads)
    if "error" in row:
        sys.exit(f"finetune: {tool} failed at {batch}x{seq}, {threads} thread(s):\n{row['error']}")
    return row


if "finetune" in ONLY:
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        sys.exit(f"finetune: {e.name} is missing from this Python: run through bench/compare (it installs torch, "
                 "transformers and peft into bench/.venv)")
    gguf = args.finetune_model
    if os.sep not in gguf:
        gguf = os.path.join(os.environ.get("LATHE_MODELS") or os.path.expanduser("~/.cache/lathe/models"), gguf)
    if not os.path.exists(gguf):
        sys.exit(f"finetune: {gguf} not found: fetch it with Tools/fetch-models")
    folder = os.path.join(args.finetune_work, os.path.basename(gguf).rsplit(".gguf", 1)[0] + "-f32")
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        log(f"finetune: writing the float32 copy {folder}")
        os.makedirs(args.finetune_work, exist_ok=True)
        r = subprocess.run([args.lathe, "convert", gguf, "--output", folder, "--dtype", "f32"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"finetune: lathe convert failed:\n{r.stderr[-2000:]}")
    FINETUNE["model"] = os.path.basename(gguf)
    FINETUNE["versions"] = subprocess.run(
        [sys.executable, "-c", "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)"],
        capture_output=True, text=True).stdout.split()
    refs = ["eager"] + ([] if args.no_compile else ["compile"])
    for shape in args.finetune_shapes.split(","):
        batch, seq = (int(x) for x in shape.lower().split("x"))
        for t in THREADS:
            fns = [lambda tool=tool, t=t: finetune_run(tool, folder, batch, seq, t) for tool in ["lathe"] + refs]
            FINETUNE_LOADS.append(load_now())
            rounds = interleaved(f"finetune {batch}x{seq}", t, *fns)
            row = {"batch": batch, "seq": seq, "threads": t}
            for i, tool in enumerate(["lathe"] + refs):
                row[tool] = {"tokens_per_s": med([r[i]["tokens_per_s"] for r in rounds]),
                             "peak_mb": med([r[i].get("peak_rss_mb") for r in rounds])}
                if i:
                    row[tool]["ratio"] = med([r[0]["tokens_per_s"] / r[i]["tokens_per_s"] for r in rounds])
            finetune_rows.append(row)
            log(f"finetune {batch}x{seq}, {t} thread(s): Lathe {row['lathe']['tokens_per_s']:.1f} tokens/s, "
                + ", ".join(f"{tool} {row[tool]['tokens_per_s']:.1f} ({row[tool]['ratio']:.2f}x)" for tool in refs))
FINETUNE_ELAPSED = time.time() - FINETUNE_T0

ELAPSED = time.time() - T0


def fmt(x, digits=1):
    return "—" if x is None else f"{x:.{digits}f}"


def ratio(x):
    return "—" if x is None else f"{x:.2f}x"


def versions():
    out = {}
    numpy_seen = [b["numpy"] for b in BLAS_SEEN if b.get("numpy")]
    if numpy_seen:
        out["numpy"] = numpy_seen[0]
    else:
        try:
            import numpy
            out["numpy"] = numpy.__version__
        except ImportError:
            pass
    try:
        import re
        import torch
        out["torch"] = torch.__version__
        cfg = torch.__config__.show()
        blas = re.search(r"BLAS_INFO=(\w+)", cfg)
        mkl = re.search(r"Math Kernel Library Version ([\w.]+)", cfg)
        dnn = re.search(r"MKL-DNN v([\w.]+)", cfg)
        parts = []
        if blas:
            parts.append(f"BLAS: {'oneMKL ' + mkl.group(1) if blas.group(1) == 'mkl' and mkl else blas.group(1)}")
        if dnn:
            parts.append(f"oneDNN {dnn.group(1)}")
        try:
            parts.append(f"ATen CPU capability {torch.backends.cpu.get_cpu_capability()}")
        except AttributeError:
            pass
        out["torch_backends"] = ", ".join(parts)
    except ImportError:
        pass
    try:
        out["lathe"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                      cwd=ROOT).stdout.strip()
    except OSError:
        pass
    return out


# How Lathe holds each GGUF type at run time, as bytes held / bytes in the file (GGUFGroupwise in
# Sources/LatheLM/GGUFQuantized.swift): Q8_0, Q4_0 and Q4_1 as stored; Q5_0 as int8 codes with the fp16
# scale (34 bytes per 32 weights against 22); every other type is dequantised to float32 at load. Keep
# this in step with GGUFGroupwise.supports: it only explains the Lathe figures, the limits use the file.
# Bytes Lathe's decode layout reads per byte of the file, per type (GGUFGroupwise and the repacked
# 16-row layout of qgemv_q8.c): the legacy types as stored (Q5_0 at 5 bits); Q4_K as int4 groups of
# 32 with float32 scale and min (24 bytes per 32 weights against 18), Q5_K as 5-bit codes with
# float32 scale and min (28 against 22), Q6_K as int8 groups of 16 with float32 scales (40 against
# 26.25). Types not listed are float32 at run time.
LATHE_HELD = {"F32": 1.0, "Q8_0": 1.0, "Q4_0": 1.0, "Q4_1": 1.0, "Q5_0": 1.0, "Q4_K": 24 / 18, "Q5_K": 28 / 22, "Q6_K": 40 / 26.25}
FILE_BYTES_PER_32 = {"Q4_K": 18, "Q5_K": 22, "Q6_K": 26.25}
LLM_HEADING = "## LLM inference — Lathe vs llama.cpp (llama-bench)"


def lathe_bytes_per_token(path):
    """Bytes per decoded token with the matrices Lathe does not keep quantized counted as float32."""
    info = json.loads(subprocess.run([args.lathe, "inspect", "--json", path], capture_output=True, text=True).stdout)
    total, emb = 0, None
    for t in info["tensors"]:
        size = t["bytes"] * LATHE_HELD[t["type"]] if t["type"] in LATHE_HELD else 4 * t["elements"]
        if t["name"] == "token_embd.weight":
            emb = (size, t["shape"][0])
        else:
            total += size
    tied = not any(t["name"] == "output.weight" for t in info["tensors"])
    return total + (emb[0] if tied else 0) + emb[0] // emb[1]


def llm_section():
    """The llm section of BENCHMARKS.md, self-contained: it may be kept or replaced on its own."""
    v = versions()
    loads = [x for x in LLM_LOADS if x is not None]
    pp, tg = (64, 16) if args.quick else (512, 128)
    L = [LLM_HEADING, "",
         f"Produced by `{args.command}` on {datetime.date.today().isoformat()} (this workload: {LLM_ELAPSED / 60:.1f} min; "
         f"Lathe {v.get('lathe', '?')})"
         + (f"; 1-minute load average at the start of its rounds {min(loads):.1f} to {max(loads):.1f} on {CORES} cores, "
            "counting this run's own process" if loads else "") + ".", ""]
    if args.quick:
        L += ["**Quick run (`--quick`): small token counts, figures not for quoting.**", ""]
    ver = LLAMA.get("version", "?")
    src = LLAMA.get("source") or ""
    sdist = re.search(r"llama_cpp_python-([\w.]+)", src)
    L += [f"Reference: llama.cpp's `llama-bench` ({ver})"
          + (f", the llama.cpp vendored in the llama-cpp-python {sdist.group(1)} sdist (PyPI)" if sdist else "")
          + (f", source `{src}`" if src else "")
          + ", built natively: CMake " + (f"`{LLAMA['cmake']}`" if LLAMA.get("cmake") else "(options unknown)")
          + (f", CPU backend compiled with `{LLAMA['cflags']}`" if LLAMA.get("cflags") else "")
          + (f" (here `-march=native` = {LLAMA['native']})" if LLAMA.get("native") else "")
          + (f" and {LLAMA['defines']}" if LLAMA.get("defines") else "") + ". "
          + ("llama-bench settings otherwise its defaults: " + ", ".join(
              f"{k} {({-1: 'auto', 0: 'off', 1: 'on'}.get(val, val) if k == 'flash_attn' else {True: 'on', False: 'off'}.get(val, val) if k == 'repack' else val)}"
              for k, val in LLAMA["settings"].items()) + "." if LLAMA.get("settings") else ""), "",
          f"`lathe bench llm MODEL --prompt-tokens {pp} --gen-tokens {tg} --repeat {args.llm_repeat} --threads N` against "
          f"`llama-bench -m MODEL -p {pp} -n {tg} -r {args.llm_repeat} -t N -o json`, one process each per round, "
          f"{args.rounds} round(s), the order reversed every round. pp{pp}: {pp} prompt tokens in one pass on an empty "
          f"cache (logits of the last token only); tg{tg}: {tg} tokens one at a time from an empty cache; both tools do "
          "one warm-up of each first. A round's figure is tokens / mean seconds over the repetitions (llama-bench's "
          "from its samples_ns); the table shows the median over rounds and the median of the per-round ratios "
          "Lathe / llama.cpp. Both processes run with " + " and ".join(f"`{x}`" for x in OPENBLAS_FORCING)
          + " removed from their environment (neither reads them) and OMP_NUM_THREADS = N.", "",
          "Limits, from this run's `lathe bench machine`: **decode** (tg) = measured memory bandwidth (the larger of "
          "STREAM copy and triad at that thread count) / bytes read per token, with the bytes of the file as stored "
          "(every tensor but the token embedding, the output projection — the tied embedding, read whole — and one "
          "embedding row; the KV cache, under 1% here, is left out); **prompt** (pp) = measured fp32 FMA peak / "
          "(2 × matmul multiply-adds per token: the blocks' matrices; attention and the last token's output "
          "projection are left out). % of limit = speed / limit. Neither limit is a hard ceiling (int8 dot "
          "products do more than the fp32 FMA peak; caches hold part of a small model), but both say how much of "
          "the machine each tool uses.", "",
          "| machine | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in THREADS) + " |",
          "|---|" + "---:|" * len(THREADS)]
    ts = THREADS
    for label, d, unit in (("fp32 FMA peak", machine["fma"], "GFLOP/s"), ("bandwidth, copy", machine["copy"], "GB/s"),
                           ("bandwidth, triad", machine["triad"], "GB/s")):
        L.append(f"| {label} | " + " | ".join(f"{d[t]:.1f} {unit}" if t in d else "—" for t in ts) + " |")
    L += ["", "| model | file | matrix types | bytes read per token | of which output projection | matmul MACs per token |",
          "|---|---:|---|---:|---:|---:|"]
    for m in LLM_MODELS:
        types = ", ".join(f"{k} ×{n}" for k, n in sorted(m["matrix_types"].items(), key=lambda kv: -kv[1]))
        L.append(f"| {m['name']} | {m['file_bytes'] / 1e6:.1f} MB | {types} | {m['bytes_per_token'] / 1e6:.1f} MB | "
                 f"{m['output_bytes'] / 1e6:.1f} MB{' (tied)' if m['tied'] else ''} | {m['macs_per_token'] / 1e6:.1f} M |")
    L += ["", f"| model | test | threads | Lathe tokens/s | llama.cpp tokens/s | ratio | limit tokens/s | Lathe % of limit | "
          "llama.cpp % of limit |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    order = {m["name"]: i for i, m in enumerate(LLM_MODELS)}
    for r in sorted(llm_rows, key=lambda r: (order[r["model"]], r["test"].startswith("tg"), r["threads"])):
        b = r["bound"]
        pct = lambda x: f"{100 * x / b:.0f}%" if x and b else "—"
        L.append(f"| {r['model']} | {r['test']} | {r['threads']} | {fmt(r['lathe'])} | {fmt(r['ref'])} | {ratio(r['ratio'])} | "
                 f"{fmt(b, 0)} | {pct(r['lathe'])} | {pct(r['ref'])} |")
    L.append("")
    for m in LLM_MODELS:
        wider = sorted(k for k in m["matrix_types"] if LATHE_HELD.get(k) != 1.0)
        if wider:
            lb = lathe_bytes_per_token(m["path"])
            f32 = [k for k in wider if k not in LATHE_HELD]
            held = [k for k in wider if k in LATHE_HELD]
            L += [f"{m['name']}: Lathe keeps {', '.join(k for k, f in LATHE_HELD.items() if f == 1.0 and k != 'F32')} "
                  "matrices as stored at run time"
                  + "".join(f", {k} with float32 scales ({LATHE_HELD[k] * FILE_BYTES_PER_32[k]:.0f} bytes per 32 weights against "
                            f"{FILE_BYTES_PER_32[k]:g})" for k in held)
                  + (f", and dequantises the others ({', '.join(f32)} here) to float32 at load" if f32 else "")
                  + f": it reads about {lb / 1e6:.0f} MB per decoded token where the file (and llama.cpp) needs "
                  f"{m['bytes_per_token'] / 1e6:.0f} MB; the limits above are those of the file as stored.", ""]
    L += ["Reproduce (llama-bench built as in README.md, Benchmarks; the models from `Tools/fetch-models`):", "",
          "```sh", f"LLAMA_BENCH=/path/to/llama.cpp/build/bin/llama-bench {args.command}", "```", ""]
    return L


MERGE_HEADING = "## Model merging — Lathe vs mergekit"


def produced_by(elapsed, references, loads):
    """The first line of a self-contained section: command, date, time, versions, load."""
    return (f"Produced by `{args.command}` on {datetime.date.today().isoformat()} (this workload: {elapsed / 60:.1f} min; "
            f"Lathe {versions().get('lathe', '?')}, {references})"
            + (f"; 1-minute load average at the start of its rounds {min(loads):.1f} to {max(loads):.1f} on {CORES} cores"
               if loads else "") + ".")


def merge_section():
    """The merge section of BENCHMARKS.md, self-contained like the llm one."""
    loads = [x for x in MERGE_LOADS if x is not None]
    mib = MERGE["model_mib"]
    L = [MERGE_HEADING, "",
         produced_by(MERGE_ELAPSED, f"mergekit {MERGE['version']} with torch {MERGE['torch']}", loads), "",
         f"Inputs: SmolLM2-135M-Instruct's GGUF written as a float32 Hugging Face folder by `lathe convert` ({mib:.0f} MiB "
         "of weights) and two copies with Gaussian noise (std 0.01) added, as fine-tunes of it (bench/merge/compare.py); "
         "both tools read the same folders with the same config and write a float32 folder, one file. "
         f"`lathe merge CONFIG --output OUT` against `mergekit-yaml CONFIG OUT --no-write-model-card --out-shard-size 100B`, "
         f"one fresh process each per round, {args.rounds} round(s), the order reversed every round, the output removed "
         "before each run; mergekit from its own virtualenv with " + " and ".join(f"`{x}`" for x in OPENBLAS_FORCING)
         + " removed from its environment, both with OMP_NUM_THREADS = LATHE_NUM_THREADS = N. Seconds and peak RSS "
         "(/usr/bin/time -v) are medians over rounds; ratio = the median of the per-round mergekit seconds / Lathe "
         "seconds (> 1: Lathe faster); max abs diff compares the last round's two outputs tensor by tensor. Peak memory "
         f"beside one model's weights: {mib:.0f} MiB.", ""]
    if args.quick:
        L += ["**Quick run (`--quick`): figures not for quoting.**", ""]
    L += ["| method | threads | Lathe s | mergekit s | ratio | Lathe peak MiB | mergekit peak MiB | max abs diff |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in merge_rows:
        L.append(f"| {r['method']} | {r['threads']} | {r['lathe_s']:.1f} | {r['ref_s']:.1f} | {ratio(r['ratio'])} | "
                 f"{r['lathe_mib']:.0f} | {r['ref_mib']:.0f} | {r['diff']:.2g} |")
    L += ["", "Reproduce (mergekit installed in a virtualenv of its own, `pip install mergekit`):", "",
          "```sh", f"MERGEKIT=/path/to/venv/bin/mergekit-yaml {args.command}", "```", ""]
    return L


FINETUNE_HEADING = "## LoRA step — Lathe vs PyTorch + PEFT"
# Earlier runs of bench/lora_step.py, written by hand (kept as they are by every run).
FINETUNE_HISTORY_HEADING = "## LoRA step — earlier runs of bench/lora_step.py"


def finetune_section():
    """The finetune section of BENCHMARKS.md, self-contained like the merge one."""
    loads = [x for x in FINETUNE_LOADS if x is not None]
    v = FINETUNE["versions"] + ["?"] * 3
    compiled = not args.no_compile
    L = [FINETUNE_HEADING, "",
         produced_by(FINETUNE_ELAPSED, f"PyTorch {v[0]}, transformers {v[1]}, PEFT {v[2]}", loads), "",
         f"One LoRA training step of {FINETUNE['model']}'s weights in float32 (the folder `lathe convert --dtype f32` writes; "
         "transformers loads the same folder): rank 8, alpha 16, dropout 0 on every linear layer but the output (PEFT's "
         "`all-linear`), A Kaiming-uniform and B zero, AdamW (lr 1e-4) on the adapters only; one fixed batch of "
         "pseudo-random token ids with labels = ids (causal cross-entropy, mean). `lathe bench lora-step` against "
         "bench/lora_step.py (PyTorch eager" + (", and the same step under `torch.compile`, compiled in the untimed "
         "first step" if compiled else "") + f"); one fresh process per tool and round, {args.rounds} round(s), the order "
         f"reversed every round; each process times {args.finetune_steps} steps after one untimed step (median). "
         "PyTorch runs with " + " and ".join(f"`{x}`" for x in OPENBLAS_FORCING) + " removed from its environment, "
         "both sides with N threads. Tokens/s and peak RSS (after loading, the peak counted from there: model, adapters "
         "and optimiser included) are medians over rounds; ratio = the median of the per-round Lathe tokens/s / PyTorch "
         "tokens/s (> 1: Lathe faster).", ""]
    if args.quick:
        L += ["**Quick run (`--quick`): figures not for quoting.**", ""]
    head = "| batch × tokens | threads | Lathe tokens/s | eager tokens/s |" + (" compile tokens/s |" if compiled else "")
    head += " ratio vs eager |" + (" ratio vs compile |" if compiled else "")
    head += " Lathe peak MB | eager peak MB |" + (" compile peak MB |" if compiled else "")
    L += [head, "|---|" + "---:|" * (head.count("|") - 2)]
    tools = ["lathe", "eager"] + (["compile"] if compiled else [])
    for r in finetune_rows:
        cells = [f"{r['batch']} × {r['seq']}", str(r["threads"])]
        cells += [f"{r[t]['tokens_per_s']:.1f}" for t in tools]
        cells += [ratio(r[t]["ratio"]) for t in tools[1:]]
        cells += [fmt(r[t]["peak_mb"], 0) for t in tools]
        L.append("| " + " | ".join(cells) + " |")
    L += ["", "Reproduce (transformers and PEFT are installed into bench/.venv by bench/compare; the model from "
          "`Tools/fetch-models`):", "", "```sh", args.command, "```", ""]
    return L


def splice_section(old_text, heading, section):
    """old_text with its section under heading replaced by section (inserted before ## Reproduce, or at the end, if absent)."""
    lines = old_text.rstrip("\n").split("\n")
    start = next((i for i, x in enumerate(lines) if x == heading), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = section
    else:
        at = next((i for i, x in enumerate(lines) if x == "## Reproduce"), len(lines))
        lines[at:at] = section
    return "\n".join(lines) + "\n"


def old_section(path, heading):
    """The section under heading of an existing BENCHMARKS.md, as lines, or None."""
    try:
        lines = open(path).read().rstrip("\n").split("\n")
    except OSError:
        return None
    start = next((i for i, x in enumerate(lines) if x == heading), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def report(svg_rel):
    v = versions()
    L = ["# Benchmarks", "",
         f"Produced by `{args.command}` on {datetime.date.today().isoformat()} in {ELAPSED / 60:.1f} min "
         f"(Lathe {v.get('lathe', '?')}, NumPy {v.get('numpy', '?')}, PyTorch {v.get('torch', '?')}, "
         f"Python {platform.python_version()}).", "",
         "Ratio = Lathe speed / reference speed: above 1 Lathe is faster. Lathe and the reference(s) run the "
         f"same work in alternation, {args.rounds} round(s), the order reversed each round; each side's figure is "
         "the median over rounds and the ratio is the median of the per-round ratios. The machine is shared "
         "with other jobs, so absolute figures are noisy; the ratios are the figures to quote.", ""]
    loads = [x for x in LOADS if x is not None]
    if loads:
        L += [f"1-minute load average at the start of the rounds: {min(loads):.1f} to {max(loads):.1f} "
              f"(median {statistics.median(loads):.1f}) on {CORES} cores, counting this run's own process. Above about "
              f"{CORES} the other jobs on the machine take cores from the benchmarks: thread-parallel figures then "
              "measure how each library copes with a busy core (OpenMP/OpenBLAS threads wait on the "
              "descheduled one at every barrier) more than its speed.", ""]
    if args.quick:
        L += ["**Quick run (`--quick`): tiny step counts, figures not for quoting.**", ""]
    for w in BLAS_WARNINGS:
        L += [f"**WARNING: {w}.**", ""]
    L += ["## Machine", "", "| | |", "|---|---|",
          f"| CPU | {machine['cpu']}" + (f" (family {machine['family']}, model {machine['model_id']})" if "family" in machine else "")
          + f", {machine['cores']} cores |",
          f"| kernels Lathe uses | {machine['isa']} ({machine.get('lanes', '?')} fp32 lanes) |"]
    if BLAS_DESC:
        forced = ", ".join(f"{k}={val}" for k, val in OPENBLAS_FORCED.items())
        L.append(f"| GEMM reference | {BLAS_DESC}, kernel as reported by threadpoolctl; "
                 f"{' and '.join(OPENBLAS_FORCING)} unset for it"
                 + (f" (this environment sets {forced}, which would force a slower kernel; Lathe and PyTorch keep it)"
                    if forced else "") + " |")
    if train_rows or infer_rows or memory_rows:
        L.append(f"| PyTorch reference | PyTorch {v.get('torch', '?')}"
                 + (f" ({v['torch_backends']})" if v.get("torch_backends") else "")
                 + "; eager" + (", and torch.compile (inductor) for training" if any(r.get("compile") for r in train_rows) else "")
                 + "; OPENBLAS_* do not apply to it |")
    for t in sorted(machine["fma"]):
        L.append(f"| fp32 FMA peak, {t} thread(s) | {machine['fma'][t]:.0f} GFLOP/s (measured) |")
    for kind in ("copy", "triad"):
        for t in sorted(machine[kind]):
            L.append(f"| memory bandwidth, {kind}, {t} thread(s) | {machine[kind][t]:.1f} GB/s (measured) |")
    L += ["", "FMA peak: `lathe bench machine`, independent FMA chains in the widest registers of the ISA above, "
          "best of many short trials. Bandwidth: STREAM-like copy/triad over three 256 MB arrays, bytes read + "
          "written. % of peak below divides by the measured FMA peak for that thread count.", ""]
    if svg_rel:
        L += [f"![Lathe / reference speed ratios]({svg_rel})", ""]
    if gemm_rows:
        L += [f"## GEMM (fp32) — Lathe vs {BLAS_DESC or 'NumPy (OpenBLAS)'}", "",
              "`lathe bench gemm` vs `bench/gemm_reference.py` (`np.matmul` into a preallocated output); "
              "best GFLOP/s of 3 timings per round. " + " and ".join(f"`{x}`" for x in OPENBLAS_FORCING)
              + " are removed from the NumPy process's environment so that OpenBLAS picks its kernel for this CPU"
              + (" (this environment sets " + ", ".join(f"`{k}={val}`" for k, val in OPENBLAS_FORCED.items())
                 + ", which forces a slower kernel)" if OPENBLAS_FORCED else "")
              + "; the kernel named is the one threadpoolctl reports from inside that process.", "",
              "| workload (MxNxK) | threads | Lathe GFLOP/s | NumPy GFLOP/s | ratio | Lathe % of peak |",
              "|---|---:|---:|---:|---:|---:|"]
        for r in gemm_rows:
            p = peak_for(r["threads"])
            L.append(f"| {r['shape']} | {r['threads']} | {fmt(r['lathe'])} | {fmt(r['ref'])} | {ratio(r['ratio'])} | "
                     + (f"{100 * r['lathe'] / p:.0f}% |" if p else "— |"))
        L.append("")
    if train_rows:
        has_compile = "compile" in train_rows[0]
        L += ["## Training steps — Lathe vs PyTorch eager" + (" and torch.compile" if has_compile else ""), "",
              "Full steps (zero grad, forward, mean cross-entropy, backward, AdamW lr 1e-3 wd 0.01) on one synthetic "
              "batch: mlp = digits MLP 64-128-64-10, x [64, 64]; cnn = digits CNN, x [64, 1, 8, 8]; gpt = char GPT "
              "d_model 128, 4 layers, 4 heads, context 64, vocab 65, batch 16. "
              "`lathe bench train` vs `bench/reference/train_step.py`"
              + (" (eager) and `bench/reference/train_step.py --compile`" if has_compile else " (eager)")
              + "; median steps/s of 3 timings per round.", ""]
        if has_compile:
            cs = ", ".join(f"{r['model']} {fmt(r['compile_seconds'])} s" for r in train_rows
                           if r["threads"] == train_rows[0]["threads"] and r.get("compile_seconds") is not None)
            L += [f"torch.compile: the whole step function goes through `torch.compile(step, dynamic=False)`, backend "
                  f"{COMPILE_INFO.get('backend') or 'inductor'} (C++ compiler: {COMPILE_INFO.get('cxx') or '?'}). "
                  "Dynamo breaks the graph at `loss.backward()`, so two graphs are compiled: zero grad + forward + "
                  "loss, whose backward AOTAutograd compiles too, and the AdamW step (the optimizer step is compiled, "
                  "not eager). Same model, initial weights, batch and optimizer as eager (the losses agree to float "
                  "rounding). Compilation happens in the first warm-up step of each process, outside the timings"
                  + (f"; it took (median over rounds{', ' + str(train_rows[0]['threads']) + ' thread(s)' if len(THREADS) > 1 else ''}) "
                     f"{cs}, less than a cold compile since inductor keeps compiled kernels in an on-disk cache"
                     if cs else "") + ". "
                  "Lathe, eager and compiled PyTorch run in turn, the order reversed every round; each ratio is the "
                  "median of the per-round ratios.", ""]
            for m, err in COMPILE_INFO.get("errors", {}).items():
                L += [f"**torch.compile failed for {m}**: `{err}`", ""]
            L += ["| workload | threads | Lathe steps/s | PyTorch eager steps/s | torch.compile steps/s | ratio vs eager | "
                  "ratio vs compile |", "|---|---:|---:|---:|---:|---:|---:|"]
            for r in train_rows:
                L.append(f"| {r['model']} | {r['threads']} | {fmt(r['lathe'], 2)} | {fmt(r['eager'], 2)} | "
                         f"{fmt(r['compile'], 2)} | {ratio(r['ratio_eager'])} | {ratio(r['ratio_compile'])} |")
        else:
            L += ["| workload | threads | Lathe steps/s | PyTorch eager steps/s | ratio vs eager |", "|---|---:|---:|---:|---:|"]
            for r in train_rows:
                L.append(f"| {r['model']} | {r['threads']} | {fmt(r['lathe'], 2)} | {fmt(r['eager'], 2)} | "
                         f"{ratio(r['ratio_eager'])} |")
        L.append("")
    if infer_rows:
        L += ["## Inference latency — Lathe vs PyTorch (eager)", "",
              "Eval mode, no autodiff (`torch.inference_mode()`, eager PyTorch), ms per call (median of 5 timings per round). gpt = char GPT forward on 64 tokens. "
              "The int8 reference is `torch.ao.quantization.quantize_dynamic` on the Linear layers (the CNN's "
              "convolutions stay fp32), compared with Lathe's `int8-dynamic`; Lathe's `int8` (static, calibrated) and "
              "`int4-weight` (group-wise int4 weights, group 32) have no PyTorch counterpart here (—). "
              "Lathe's quantized variants fold the batch norms and quantize every layer, as `lathe quantize` does; "
              "`fp32-folded` is fp32 with the batch norms folded, to separate the two effects. "
              "cnn28 is the same CNN on 28x28 images (the Fashion-MNIST model). "
              "Ratio = PyTorch ms / Lathe ms; vs fp32 = Lathe fp32 ms / Lathe ms of the variant (same round).", "",
              "| workload | batch | variant | threads | Lathe ms | PyTorch ms | ratio | vs fp32 |",
              "|---|---:|---|---:|---:|---:|---:|---:|"]
        for r in infer_rows:
            L.append(f"| {r['model']} | {r['batch']} | {r['variant']} | {r['threads']} | {fmt(r['lathe'], 3)} | "
                     f"{fmt(r['ref'], 3)} | {ratio(r['ratio'])} | {ratio(r['vs_fp32']) if r['variant'] != 'fp32' else '—'} |")
        L.append("")
    if memory_rows:
        L += ["## Memory of a training step — Lathe vs PyTorch (eager)", "",
              f"{memory_config} (activations dominate), {memory_rows[0]['threads']} thread(s), each configuration in a "
              "fresh process: peak resident set (VmHWM / ru_maxrss) after 1 + 3 steps, and what the steps added over "
              "the resident set before the first step. Checkpointing: `CharGPT.checkpointing = true` in Lathe, "
              "`torch.utils.checkpoint` around every block in PyTorch. Ratio = step speed, Lathe / PyTorch.", "",
              "| workload | checkpointing | threads | Lathe peak MB (added) | PyTorch peak MB (added) | Lathe ms/step | PyTorch ms/step | ratio |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in memory_rows:
            lr, rr = r["lathe"], r["ref"]
            L.append(f"| gpt train step | {'yes' if r['checkpointing'] else 'no'} | {r['threads']} | "
                     f"{lr['peak_rss_mb']:.0f} (+{lr['step_delta_mb']:.0f}) | {rr['peak_rss_mb']:.0f} (+{rr['step_delta_mb']:.0f}) | "
                     f"{lr['ms_per_step']:.0f} | {rr['ms_per_step']:.0f} | {ratio(r['ratio'])} |")
        L.append("")
    # The llm and merge sections: this run's, else an earlier run's (with its own date), kept as it was.
    for rows, heading, section in ((llm_rows, LLM_HEADING, llm_section), (finetune_rows, FINETUNE_HEADING, finetune_section),
                                   ([], FINETUNE_HISTORY_HEADING, None), (merge_rows, MERGE_HEADING, merge_section)):
        if rows:
            L += section()
        else:
            L += old_section(args.out, heading) or []
    L += ["## Reproduce", "", "```sh", args.command, "```", "",
          "`bench/compare` creates `bench/.venv` (NumPy, threadpoolctl, PyTorch CPU) on first use and builds Lathe "
          "in release; see README.md, Benchmarks.", ""]
    return "\n".join(L)


def svg_chart():
    """Horizontal bars of log2(ratio) around 1, grouped by workload kind."""
    import math
    items = [("GEMM", f"{r['shape']} ×{r['threads']}", r["ratio"]) for r in gemm_rows]
    items += [("train", f"{r['model']} ×{r['threads']} vs eager", r["ratio_eager"]) for r in train_rows]
    items += [("train", f"{r['model']} ×{r['threads']} vs compile", r["ratio_compile"]) for r in train_rows
              if r.get("ratio_compile")]
    items += [("infer", f"{r['model']} b{r['batch']} {r['variant']} ×{r['threads']}", r["ratio"])
              for r in infer_rows if r["ratio"] is not None]
    items += [("memory", f"gpt step{' ckpt' if r['checkpointing'] else ''} ×{r['threads']}", r["ratio"]) for r in memory_rows]
    items += [("llm", f"{r['model'].split('.')[0].split('-q')[0]} {r['test']} ×{r['threads']}", r["ratio"]) for r in llm_rows]
    if not items:
        return None
    items = [i for i in items if i[2]]
    if not items:
        return None
    lim = max(1.0, max(abs(math.log2(v)) for _, _, v in items))
    lim = math.ceil(lim)
    row_h, left, width, top = 18, 250, 420, 40
    height = top + row_h * (len(items) + len({k for k, _, _ in items})) + 40
    cx = left + width / 2

    def x_of(v):
        return cx + math.log2(v) / lim * (width / 2)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="18" font-size="13" font-weight="bold">Lathe speed / reference speed '
           f'(log scale; right of 1 = Lathe faster; ×N = threads)</text>']
    for e in range(-lim, lim + 1):
        x = x_of(2.0 ** e)
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 30}" stroke="{"#444" if e == 0 else "#ddd"}"/>')
        lab = f"{2 ** e:g}" if e >= 0 else f"1/{2 ** -e}"
        out.append(f'<text x="{x:.1f}" y="{height - 16}" text-anchor="middle">{lab}</text>')
    y, kind = top, None
    for k, label, v in items:
        if k != kind:
            kind = k
            y += row_h
            out.append(f'<text x="10" y="{y - 4}" font-weight="bold">{k}</text>')
        x = x_of(v)
        x0, w = (cx, x - cx) if v >= 1 else (x, cx - x)
        color = "#2a9d4b" if v >= 1 else "#d1495b"
        out.append(f'<text x="{left - 8}" y="{y + 12}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" fill="{color}"/>')
        out.append(f'<text x="{(x + 4) if v >= 1 else (x - 4):.1f}" y="{y + 12}" '
                   f'text-anchor="{"start" if v >= 1 else "end"}">{v:.2f}</text>')
        y += row_h
    out.append("</svg>")
    return "\n".join(out) + "\n"


# A run of llm, merge and/or finetune alone (with or without machine) replaces those sections of an existing
# BENCHMARKS.md and leaves the rest of it, and the chart, as they are.
SPLICE = bool(llm_rows or merge_rows or finetune_rows) and not (gemm_rows or train_rows or infer_rows or memory_rows) and os.path.exists(args.out)
if SPLICE:
    svg = None
    text = open(args.out).read()
    if llm_rows:
        text = splice_section(text, LLM_HEADING, llm_section())
    if merge_rows:
        text = splice_section(text, MERGE_HEADING, merge_section())
    if finetune_rows:
        text = splice_section(text, FINETUNE_HEADING, finetune_section())
else:
    svg = svg_chart()
    svg_rel = os.path.relpath(args.svg, os.path.dirname(os.path.abspath(args.out))) if svg else None
    text = report(svg_rel)
if args.no_write:
    print(text)
else:
    if svg:
        os.makedirs(os.path.dirname(os.path.abspath(args.svg)), exist_ok=True)
        with open(args.svg, "w") as f:
            f.write(svg)
    with open(args.out, "w") as f:
        f.write(text)
    log(f"wrote {args.out}" + (f" and {args.svg}" if svg else ""))
    print(text)
log(f"total {ELAPSED / 60:.1f} min")
