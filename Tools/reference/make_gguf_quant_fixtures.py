"""Writes Tests/Fixtures/gguf/quantize.json: awkward float32 rows and the GGML blocks that the
reference encoders make of them, for Tests/LatheIOTests/GGUFQuantizeTests.swift.

    /work/main/.venv/bin/python Tools/reference/make_gguf_quant_fixtures.py [--ggml-lib PATH]

Two oracles:
  gguf-py   `gguf.quants.quantize` (pip package `gguf`) for F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0;
  ggml      `ggml_quantize_chunk` from llama.cpp's libggml-base (the function llama-quantize calls,
            with no importance matrix) for every type Lathe writes, K-quants included, through
            ctypes. Default library: $LATHE_GGML_LIB or the llama.cpp build under /work/llamacpp.
            Without it the K-quant cases are left out (the script says so).

Rows (256 floats each, so one K-quant super-block and eight 32-element blocks): normal noise,
zeros, a constant, outliers, tiny and huge magnitudes (fp16 scales that underflow to 0 or overflow
to inf), exact rounding ties for Q8_0/Q4_0/Q5_0/Q4_1, equal magnitudes of opposite sign (Q4_0/Q5_0
take the first), positive-only and negative-only rows, sparse rows, sub-blocks of very different
scales (the K-quants' 6-bit scales), values near the float32 subnormals (1/d still finite: inputs whose 1/d overflows make NaN codes, undefined
behaviour in ggml's C), a block of negative zeros. Where the two oracles disagree the case
records both (`ggml` wins for Lathe, which follows ggml): the script prints every disagreement.

Output: {"rows": [{"name", "values": hex of the little-endian float32 bytes}],
         "expected": {TYPE: {row name: hex of the blocks}}, "oracle": {TYPE: "gguf-py" | "ggml"},
         "disagreements": [{"type", "row", "gguf_py", "ggml"}]}
Deterministic (fixed seed); the Swift tests read it and never need Python.
"""
import argparse
import ctypes
import json
import os
import pathlib
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "gguf" / "quantize.json"
DEFAULT_LIB = "/work/llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/libggml-base.so"

GGUF_PY_TYPES = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
GGML_TYPES = GGUF_PY_TYPES + [T.Q4_K, T.Q5_K, T.Q6_K]
N = 256


def rows() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(20240607)
    out: list[tuple[str, np.ndarray]] = []

    def add(name: str, v) -> None:
        a = np.asarray(v, dtype=np.float32).reshape(-1)
        assert a.size == N, (name, a.size)
        out.append((name, a))

    add("normal", rng.standard_normal(N))
    add("normal_small", rng.standard_normal(N) * 0.02)  # like transformer weights
    add("zeros", np.zeros(N))
    add("constant", np.full(N, 0.75))
    add("constant_negative", np.full(N, -1.25))
    outliers = rng.standard_normal(N) * 0.01
    outliers[[3, 77, 140, 255]] = [5.0, -9.0, 40.0, -0.5]
    add("outliers", outliers)
    add("tiny", rng.standard_normal(N) * 1e-30)
    add("tiny_subnormal_scale", rng.standard_normal(N) * 3e-6)  # fp16 scales become subnormal
    add("huge", rng.standard_normal(N) * 1e6)  # fp16 scales overflow to inf
    add("near_float32_subnormal", rng.standard_normal(N) * 1e-36)  # 1/d still finite
    neg_zero = rng.standard_normal(N)
    neg_zero[:32] = -0.0  # a block of negative zeros: ggml's scale is -0, gguf-py's +0
    neg_zero[32:64] = 0.0
    add("negative_zeros", neg_zero)
    # Exact ties: Q8_0 with max 127 has d = 1, so k + 0.5 lands halfway; Q4_0 with a first
    # largest value of -8 has d = 1 and q = trunc(x + 8.5); Q4_1 with min 0, max 15 has d = 1.
    ties = np.concatenate([
        np.array([127.0] + [k + 0.5 for k in range(-15, 16)]),                  # Q8_0 halves
        np.array([-8.0] + [k / 2 for k in range(-15, 16)]),                      # Q4_0 grid
        np.array([0.0, 15.0] + [k + 0.5 for k in range(0, 15)] + [k / 2 for k in range(15)]),
        np.array([-16.0] + [k / 2 for k in range(-31, 31, 2)]),                  # Q5_0 grid
        rng.integers(-8, 8, 32).astype(np.float64),
        np.array([0.1 * k for k in range(32)]),
        np.array([1.0 / 3.0 * k for k in range(-16, 16)]),
        np.array([2.0 ** -k for k in range(32)]),
    ])
    add("ties", ties)
    first = rng.standard_normal(N)
    for b in range(8):  # equal magnitudes of opposite sign: the first one sets d's sign
        first[32 * b + 5] = 3.0 if b % 2 == 0 else -3.0
        first[32 * b + 20] = -first[32 * b + 5]
    add("opposite_extremes", first)
    add("positive_only", rng.random(N) + 0.5)
    add("negative_only", -(rng.random(N) + 0.5))
    sparse = np.zeros(N)
    sparse[rng.choice(N, 10, replace=False)] = rng.standard_normal(10)
    add("sparse", sparse)
    scales = rng.standard_normal(N)
    for b in range(16):
        scales[16 * b:16 * b + 16] *= 10.0 ** (b % 7 - 3)
    add("mixed_scales", scales)
    half_zero = rng.standard_normal(N)
    half_zero[:128] = 0
    add("half_zero", half_zero)
    return out


def load_ggml(path: str | None):
    path = path or os.environ.get("LATHE_GGML_LIB") or DEFAULT_LIB
    if not pathlib.Path(path).is_file():
        return None, path
    lib = ctypes.CDLL(path)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    return lib, path


def ggml_quantize(lib, qtype: T, x: np.ndarray) -> bytes:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros(x.size // block * size, dtype=np.uint8)
    n = lib.ggml_quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, 1, x.size, None)
    assert n == out.size, (qtype.name, n, out.size)
    return out.tobytes()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ggml-lib", help="libggml-base.so of a llama.cpp build")
    args = ap.parse_args()
    lib, lib_path = load_ggml(args.ggml_lib)
    if lib is None:
        print(f"no libggml-base at {lib_path}: the K-quant cases are left out", file=sys.stderr)

    data = rows()
    expected: dict[str, dict[str, str]] = {}
    oracle: dict[str, str] = {}
    disagreements = []
    for qtype in GGML_TYPES:
        if qtype not in GGUF_PY_TYPES and lib is None:
            continue
        per_row = {}
        for name, x in data:
            py = quantize(x.reshape(1, -1), qtype).tobytes() if qtype in GGUF_PY_TYPES else None
            c = ggml_quantize(lib, qtype, x) if lib is not None else None
            if py is not None and c is not None and py != c:
                diff = [i for i in range(len(py)) if py[i] != c[i]]
                disagreements.append({"type": qtype.name, "row": name, "gguf_py": py.hex(), "ggml": c.hex()})
                print(f"{qtype.name} {name}: gguf-py and ggml differ at {len(diff)} bytes (first {diff[:8]})")
            per_row[name] = (c if c is not None else py).hex()
        expected[qtype.name] = per_row
        oracle[qtype.name] = "ggml" if lib is not None else "gguf-py"

    doc = {
        "generator": "Tools/reference/make_gguf_quant_fixtures.py",
        "gguf_py_version": getattr(gguf, "__version__", None) or _gguf_version(),
        "numpy_version": np.__version__,
        "ggml_lib": lib_path if lib is not None else None,
        "block_elements": N,
        "rows": [{"name": name, "values": x.astype("<f4").tobytes().hex()} for name, x in data],
        "expected": expected,
        "oracle": oracle,
        "disagreements": disagreements,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(data)} rows x {len(expected)} types, "
          f"{len(disagreements)} gguf-py/ggml disagreements, {OUT.stat().st_size} bytes")
    return 0


def _gguf_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())
