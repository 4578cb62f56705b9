"""Checks a GGUF file Lathe wrote (`lathe convert SRC --output OUT.gguf --type T`) against gguf-py, by hand.

    /work/main/.venv/bin/python Tools/reference/check_gguf_quantize.py OUT.gguf SRC.gguf [--ggml-lib libggml-base.so]

Reads both files with gguf-py's GGUFReader and, for every tensor of OUT:
  * a type gguf-py quantises (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): dequantises SRC's tensor with
    `gguf.quants.dequantize`, quantises it again with `gguf.quants.quantize` and compares the bytes;
  * F32: the bytes against SRC's dequantised values;
  * K-quants (gguf-py cannot quantise them): with --ggml-lib, against ggml's `ggml_quantize_chunk` (what
    llama-quantize calls) through ctypes; otherwise only counted.
It also checks that the metadata is SRC's except general.file_type and general.quantization_version.
Prints one line per type (tensors, identical, differing, bytes) and exits 1 if any tensor differs.
"""
import argparse
import ctypes
import sys
from collections import defaultdict

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import dequantize, quantize

PY_TYPES = {T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0}


def field_value(f):
    if not f.types:
        return None
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        return [bytes(f.parts[i]).hex() for i in f.data]
    return bytes(f.parts[f.data[0]]).hex()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("src")
    ap.add_argument("--ggml-lib")
    args = ap.parse_args()
    out, src = GGUFReader(args.out), GGUFReader(args.src)
    lib = None
    if args.ggml_lib:
        lib = ctypes.CDLL(args.ggml_lib)
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]

    bad = 0
    skip = {"general.file_type", "general.quantization_version", "GGUF.kv_count", "GGUF.tensor_count"}
    for key, f in src.fields.items():
        if key in skip or key.startswith("split."):
            continue
        g = out.fields.get(key)
        if g is None or field_value(g) != field_value(f):
            print(f"metadata {key}: differs or missing")
            bad += 1
    ft = out.fields["general.file_type"]
    print(f"metadata: {len(out.fields) - 3} keys, general.file_type = {int(ft.parts[ft.data[0]][0])}")

    src_tensors = {t.name: t for t in src.tensors}
    stats = defaultdict(lambda: [0, 0, 0, 0])  # tensors, identical, differing, bytes
    for t in out.tensors:
        s = src_tensors[t.name]
        qtype = T(t.tensor_type)
        got = np.asarray(t.data).view(np.uint8).reshape(-1)
        row = stats[qtype.name]
        row[0] += 1
        row[3] += got.size
        values = dequantize(np.asarray(s.data), T(s.tensor_type)).astype(np.float32).reshape(-1, int(t.shape[0]))
        if qtype == T.F32:
            want = values.reshape(-1).view(np.uint8)
        elif qtype in PY_TYPES:
            want = np.asarray(quantize(values, qtype)).view(np.uint8).reshape(-1)
        elif lib is not None:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            x = np.ascontiguousarray(values, dtype=np.float32)
            want = np.zeros(x.size // block * size, dtype=np.uint8)
            n = lib.ggml_quantize_chunk(int(qtype), x.ctypes.data, want.ctypes.data, 0, x.shape[0], x.shape[1], None)
            assert n == want.size
        else:
            continue
        if want.size == got.size and np.array_equal(want, got):
            row[1] += 1
        else:
            row[2] += 1
            bad += 1
            n = min(want.size, got.size)
            diff = int(np.count_nonzero(want[:n] != got[:n]))
            print(f"{t.name} ({qtype.name}): {diff} of {got.size} bytes differ")
    oracle = "gguf-py" + (" / ggml" if lib is not None else "")
    print(f"{'type':6} {'tensors':>7} {'identical':>9} {'differ':>6} {'bytes':>12}   (against {oracle})")
    for name, (n, same, diff, size) in sorted(stats.items()):
        print(f"{name:6} {n:7d} {same:9d} {diff:6d} {size:12d}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
