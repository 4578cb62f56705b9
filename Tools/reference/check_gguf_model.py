"""Compares Lathe's GGUF dequantisation of a real model with gguf-py's, by hand (not a test).

    swiftc -O -parse-as-library ... -o /tmp/gguf_dequantize     # see gguf_dequantize.swift
    /tmp/ggufvenv/bin/python Tools/reference/check_gguf_model.py \
        ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/gguf_dequantize \
        token_embd.weight blk.0.ffn_down.weight blk.29.attn_q.weight

For each tensor it runs the Swift tool (one fresh process per tensor, so its peak RSS is that of
opening the file and dequantising that tensor alone), reads the float32 values it wrote, and
compares them bit for bit with `gguf.quants.dequantize` of the same bytes (read with GGUFReader).
It prints one line per tensor: type, shape, mismatching elements, largest absolute difference,
Lathe's open and dequantise times and peak RSS against the tensor's float32 size and the file size.
Exits 1 if any value differs.
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

import gguf
from gguf.quants import dequantize


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    model, tool, names = pathlib.Path(sys.argv[1]).expanduser(), sys.argv[2], sys.argv[3:]
    reader = gguf.GGUFReader(str(model))
    tensors = {t.name: t for t in reader.tensors}
    size = model.stat().st_size
    failed = False
    print(f"{model.name}: {size / 2**20:.1f} MiB, gguf-py {gguf_version()}")
    for name in names:
        t = tensors[name]
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "values.f32")
            run = subprocess.run([tool, str(model), name, out], check=True, capture_output=True, text=True)
            report = json.loads(run.stdout)
            ours = np.fromfile(out, dtype="<f4")
        theirs = np.asarray(dequantize(np.asarray(t.data), t.tensor_type), dtype=np.float32).reshape(-1)
        if ours.shape != theirs.shape:
            print(f"{name}: Lathe gave {ours.size} values, gguf-py {theirs.size}")
            failed = True
            continue
        differ = int(np.count_nonzero(ours.view(np.uint32) != theirs.view(np.uint32)))
        max_diff = float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)))) if ours.size else 0.0
        failed |= differ != 0
        mib = 2**20
        print(f"{name}: {t.tensor_type.name} ne {list(int(n) for n in t.shape)}, {ours.size:,} values, "
              f"{differ} differ bitwise, max |diff| {max_diff:g}; Lathe open {report['open_seconds']} s, "
              f"dequantise {report['dequantize_seconds']} s, peak RSS {report['peak_rss_after_dequantize'] / mib:.1f} MiB "
              f"(at start {report['peak_rss_start'] / mib:.1f}, after open {report['peak_rss_after_open'] / mib:.1f} MiB; tensor as float32 {ours.nbytes / mib:.1f} MiB, "
              f"its blocks {report['tensor_bytes'] / mib:.1f} MiB, file {size / mib:.1f} MiB)")
    sys.exit(1 if failed else 0)


def gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # noqa: BLE001
        return "unknown"


if __name__ == "__main__":
    main()
