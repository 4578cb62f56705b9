"""Writes the GGUF fixtures for Tests/LatheIOTests/GGUFTests.swift with gguf-py.

    python3 -m venv /tmp/ggufvenv && /tmp/ggufvenv/bin/pip install gguf numpy
    /tmp/ggufvenv/bin/python Tools/reference/make_gguf_fixtures.py

Outputs, in Tests/Fixtures/gguf/:
  all_types.gguf   GGUF v3, default alignment (32): a metadata value of every GGUF type (u8 ... f64,
                   bool, strings incl. unicode and empty ones), arrays of every element type, nested
                   arrays (two and three levels), a 40-entry token list, a long chat template; and a
                   tensor of every type Lathe dequantises (F32 in 1-D and 4-D, F16 with subnormals,
                   infinities and a NaN, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K in
                   3-D, Q6_K, Q8_K) plus an IQ4_NL tensor Lathe lists but does not dequantise.
  align64.gguf     general.alignment = 64 (u32) and three tensors (F32, Q8_0, Q4_K).
  expected.json    for each file: version, alignment, data offset, every metadata key in file order
                   with its type and value, and for each tensor its type, GGML dims (ne, ne0 first),
                   numpy shape, offset, byte count and the dequantised float32 values as uint32 bit
                   patterns (`bits`, row-major in numpy order; absent for IQ4_NL).

Tensor data: the legacy types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) are gguf-py's `quantize` of random
normal values; gguf-py cannot quantize K-quants, so those blocks are random bytes whose fp16 (Q8_K:
fp32) scales are overwritten with finite values. The expected values are gguf-py's
`gguf.quants.dequantize` of the bytes written, except Q8_K, which gguf-py does not dequantise: its
expected values are `d * qs` in numpy (ggml's `dequantize_row_q8_K`), computed in float32.

Value encoding in expected.json (exact, no decimal rounding): integers as decimal strings, floats
as bit-pattern hex strings ("0x3f800000" for f32, 16 hex digits for f64), bools as JSON booleans,
strings as strings, arrays as lists; the type is "u8" ... "f64", "bool", "str" or "arr[<type>]".

The script reads both files back with gguf-py's GGUFReader and checks every key and tensor against
what it wrote; it exits non-zero on a mismatch. Output is deterministic (fixed seeds).
The Swift tests read these files and never need Python.
"""
import json
import pathlib
import struct
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from gguf.quants import dequantize, quantize

OUT = pathlib.Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "gguf"

TYPE_NAMES = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32", V.INT32: "i32",
              V.UINT64: "u64", V.INT64: "i64", V.FLOAT32: "f32", V.FLOAT64: "f64", V.BOOL: "bool", V.STRING: "str"}

# Every metadata key of all_types.gguf after general.architecture: (key, value, type, element type).
# Nested arrays: gguf-py's writer gives inner arrays of Python ints/floats/strs the types i32/f32/str.
TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"tok{i}" for i in range(34)] + ["Ġthe", "ü", "日本"]
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
                 "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}") * 2
METADATA = [
    ("general.name", "Lathe GGUF fixture", V.STRING, None),
    ("general.file_type", 7, V.UINT32, None),
    ("general.quantization_version", 2, V.UINT32, None),
    ("test.u8", 200, V.UINT8, None),
    ("test.i8", -100, V.INT8, None),
    ("test.u16", 60000, V.UINT16, None),
    ("test.i16", -30000, V.INT16, None),
    ("test.u32", 4_000_000_000, V.UINT32, None),
    ("test.i32", -2_000_000_000, V.INT32, None),
    ("test.u64", 2**63 + 5, V.UINT64, None),
    ("test.u64_small", 12_345_678_901_234, V.UINT64, None),
    ("test.i64", -(2**62) - 3, V.INT64, None),
    ("test.f32", 3.14159, V.FLOAT32, None),
    ("test.f32_neg_zero", -0.0, V.FLOAT32, None),
    ("test.f64", 2.718281828459045, V.FLOAT64, None),
    ("test.f64_tiny", 5e-324, V.FLOAT64, None),
    ("test.bool_true", True, V.BOOL, None),
    ("test.bool_false", False, V.BOOL, None),
    ("test.string", "hello", V.STRING, None),
    ("test.string_unicode", "h\u00e9llo, \u4e16\u754c \U0001F30D\n\t\"quoted\" \\", V.STRING, None),
    ("test.string_empty", "", V.STRING, None),
    ("test.arr_u8", [0, 1, 255], V.ARRAY, V.UINT8),
    ("test.arr_i8", [-128, 0, 127], V.ARRAY, V.INT8),
    ("test.arr_u16", [0, 65535], V.ARRAY, V.UINT16),
    ("test.arr_i16", [-32768, 32767], V.ARRAY, V.INT16),
    ("test.arr_u32", [0, 4_294_967_295], V.ARRAY, V.UINT32),
    ("test.arr_i32", [-2_147_483_648, 2_147_483_647, 7], V.ARRAY, V.INT32),
    ("test.arr_u64", [0, 2**64 - 1], V.ARRAY, V.UINT64),
    ("test.arr_i64", [-(2**63), 2**63 - 1], V.ARRAY, V.INT64),
    ("test.arr_f32", [1.5, -2.25, 1e-45, 3.4028234663852886e38], V.ARRAY, V.FLOAT32),
    ("test.arr_f64", [0.1, -1e308], V.ARRAY, V.FLOAT64),
    ("test.arr_bool", [True, False, True], V.ARRAY, V.BOOL),
    ("test.arr_str", ["a", "\u00fc\u00f1\u00ee", "", "\U0001F600"], V.ARRAY, V.STRING),
    ("test.arr_nested", [[1, 2, 3], [4, 5]], V.ARRAY, V.ARRAY),
    ("test.arr_nested_str", [["x", "y"], ["z"]], V.ARRAY, V.ARRAY),
    ("test.arr_nested3", [[[1.5]], [[2.5, 3.5], [4.5]]], V.ARRAY, V.ARRAY),
    ("tokenizer.ggml.model", "gpt2", V.STRING, None),
    ("tokenizer.ggml.tokens", TOKENS, V.ARRAY, V.STRING),
    ("tokenizer.ggml.scores", [float(-i) / 4 for i in range(len(TOKENS))], V.ARRAY, V.FLOAT32),
    ("tokenizer.ggml.token_type", [3, 3, 3] + [1] * (len(TOKENS) - 3), V.ARRAY, V.INT32),
    ("tokenizer.ggml.bos_token_id", 1, V.UINT32, None),
    ("tokenizer.chat_template", CHAT_TEMPLATE, V.STRING, None),
]


def element_type(value):
    """The type gguf-py's writer gives a nested array element (GGUFValueType.get_type)."""
    return V.get_type(value)


def type_name(vtype, sub, value):
    """"u8" ... "str", or "arr[<element type>]" (nested arrays: the type of their first element)."""
    if vtype != V.ARRAY:
        return TYPE_NAMES[vtype]
    if sub is None or sub == V.ARRAY:
        sub = element_type(value[0])
    if sub == V.ARRAY:
        return "arr[" + type_name(V.ARRAY, None, value[0]) + "]"
    return "arr[" + TYPE_NAMES[sub] + "]"


def encode(vtype, value):
    """The exact JSON encoding of one scalar value (see the module docstring)."""
    if vtype in (V.FLOAT32,):
        return "0x%08x" % struct.unpack("<I", struct.pack("<f", value))[0]
    if vtype == V.FLOAT64:
        return "0x%016x" % struct.unpack("<Q", struct.pack("<d", value))[0]
    if vtype == V.BOOL:
        return bool(value)
    if vtype == V.STRING:
        return value
    return str(int(value))


def encode_value(vtype, sub, value):
    if vtype != V.ARRAY:
        return encode(vtype, value)
    if sub is None or sub == V.ARRAY:
        sub = element_type(value[0])
    if sub == V.ARRAY:
        return [encode_value(V.ARRAY, None, v) for v in value]
    return [encode(sub, v) for v in value]


def f16_scales(rng, n, scale):
    """n finite fp16 scales as bytes."""
    return (rng.standard_normal(n) * scale).astype(np.float16).view(np.uint8).reshape(n, 2)


def k_quant_blocks(rng, qtype, rows):
    """Random K-quant blocks for `rows` rows of 256 elements with finite scales."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(rows, type_size), dtype=np.uint8)
    # Scale fields (ggml-common.h): Q2_K d,dmin at 80,82; Q3_K d at 108; Q4_K/Q5_K d,dmin at 0,2;
    # Q6_K d at 208; Q8_K float d at 0.
    if qtype == T.Q2_K:
        blocks[:, 80:82] = f16_scales(rng, rows, 0.05)
        blocks[:, 82:84] = f16_scales(rng, rows, 0.05)
    elif qtype == T.Q3_K:
        blocks[:, 108:110] = f16_scales(rng, rows, 0.05)
    elif qtype in (T.Q4_K, T.Q5_K):
        blocks[:, 0:2] = f16_scales(rng, rows, 0.05)
        blocks[:, 2:4] = f16_scales(rng, rows, 0.05)
    elif qtype == T.Q6_K:
        blocks[:, 208:210] = f16_scales(rng, rows, 0.05)
    elif qtype == T.Q8_K:
        blocks[:, 0:4] = (rng.standard_normal(rows) * 0.01).astype(np.float32).view(np.uint8).reshape(rows, 4)
    return blocks


def dequantize_q8_k(blocks):
    """ggml's dequantize_row_q8_K: y = d * qs (d float32, qs int8), in float32."""
    d = blocks[:, 0:4].copy().view(np.float32)
    qs = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * qs).reshape(-1)


def tensors_all_types(rng):
    """(name, numpy shape, ggml type, bytes as uint8 2-D array, expected float32 values or None)."""
    out = []
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    out.append(("f32.4d", x.shape, T.F32, x, x))
    x = rng.standard_normal(7).astype(np.float32)
    out.append(("norm.\u00fc.weight", x.shape, T.F32, x, x))
    h = rng.standard_normal((3, 10)).astype(np.float16)
    h.reshape(-1)[:6] = np.array([6e-8, -6e-8, 65504, -0.0, np.inf, -np.inf], dtype=np.float16)
    h.view(np.uint16).reshape(-1)[6] = 0x7E00  # quiet NaN
    h.view(np.uint16).reshape(-1)[7] = 0x0001  # smallest subnormal
    h.view(np.uint16).reshape(-1)[8] = 0x03FF  # largest subnormal
    out.append(("f16", h.shape, T.F16, h, h.astype(np.float32)))
    bf = (rng.standard_normal((2, 8)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    bf[0, :4] = [0x7F80, 0xFF80, 0x0001, 0x8000]  # +inf, -inf, subnormal, -0
    raw = bf.view(np.uint8)
    out.append(("bf16", (2, 8), T.BF16, raw, dequantize(raw, T.BF16)))
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        x = rng.standard_normal((4, 64)).astype(np.float32)
        if qtype == T.Q4_0:
            x[1, :32] = 0  # an all-zero block (d = 0)
        q = quantize(x, qtype)
        out.append((f"blk.0.{qtype.name.lower()}.weight", x.shape, qtype, q, dequantize(q, qtype)))
    for qtype in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K):
        shape = (2, 1, 256) if qtype == T.Q5_K else (2, 256)
        q = k_quant_blocks(rng, qtype, 2)
        values = dequantize_q8_k(q) if qtype == T.Q8_K else dequantize(q, qtype)
        out.append((f"blk.1.{qtype.name.lower()}.weight", shape, qtype, q.reshape(shape[:-1] + (-1,)), values))
    raw = rng.integers(0, 256, size=(2, 18), dtype=np.uint8)
    raw[:, 0:2] = f16_scales(rng, 2, 0.1)
    out.append(("iq4_nl.unsupported", (2, 32), T.IQ4_NL, raw, None))
    return out


def tensors_align64(rng):
    out = []
    x = rng.standard_normal((3, 5)).astype(np.float32)
    out.append(("a.f32", x.shape, T.F32, x, x))
    x = rng.standard_normal((2, 32)).astype(np.float32)
    q = quantize(x, T.Q8_0)
    out.append(("b.q8_0", x.shape, T.Q8_0, q, dequantize(q, T.Q8_0)))
    q = k_quant_blocks(rng, T.Q4_K, 1)
    out.append(("c.q4_k", (1, 256), T.Q4_K, q, dequantize(q, T.Q4_K)))
    return out


def write(path, metadata, tensors, alignment=None):
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value, vtype, sub in metadata:
        if vtype == V.ARRAY and sub != V.ARRAY:
            w.add_key_value(key, value, V.ARRAY, sub_type=sub)
        elif vtype == V.ARRAY:
            w.add_array(key, value)
        else:
            w.add_key_value(key, value, vtype)
    for name, shape, qtype, data, _ in tensors:
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, np.ascontiguousarray(data))
        else:
            w.add_tensor(name, np.ascontiguousarray(data), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def describe(path, metadata, tensors, alignment):
    reader = gguf.GGUFReader(str(path))
    keys = [("general.architecture", "llama", V.STRING, None)]
    if alignment is not None:
        keys.append(("general.alignment", alignment, V.UINT32, None))
    keys += metadata
    expected_meta = [{"key": k, "type": type_name(t, s, v), "value": encode_value(t, s, v)} for k, v, t, s in keys]

    # Self-check: gguf-py reads back every key, in this order, with these values.
    read_keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    if read_keys != [k for k, *_ in keys]:
        sys.exit(f"{path.name}: keys read back {read_keys} differ from the keys written")
    for key, value, vtype, sub in keys:
        got = reader.fields[key].contents()
        want = value
        if vtype == V.FLOAT32:
            want = float(np.float32(value))
        elif vtype == V.ARRAY and sub == V.FLOAT32:
            want = [float(np.float32(v)) for v in value]
        if vtype == V.ARRAY and sub == V.ARRAY:
            continue  # ReaderField.contents() does not unpack nested arrays; the Swift tests check them
        if got != want and not (isinstance(want, float) and np.isnan(want)):
            sys.exit(f"{path.name}: key {key}: read back {got!r}, wrote {want!r}")

    by_name = {t.name: t for t in reader.tensors}
    out = []
    for name, shape, qtype, data, values in tensors:
        t = by_name[name]
        ne = [int(n) for n in t.shape]
        if ne != list(reversed(shape)) or t.tensor_type != qtype:
            sys.exit(f"{path.name}: tensor {name}: read back ne {ne} type {t.tensor_type!r}")
        raw = np.asarray(data).reshape(-1).view(np.uint8)
        if bytes(t.data.reshape(-1).view(np.uint8)) != raw.tobytes():
            sys.exit(f"{path.name}: tensor {name}: bytes read back differ")
        entry = {"name": name, "type": qtype.name, "type_id": int(qtype), "ne": ne, "shape": list(shape),
                 "offset": int(t.data_offset - reader.data_offset), "n_bytes": int(t.n_bytes)}
        if values is not None:
            v = np.asarray(values, dtype=np.float32).reshape(-1)
            if v.size != int(np.prod(shape)):
                sys.exit(f"{path.name}: tensor {name}: {v.size} expected values for shape {shape}")
            if qtype != T.Q8_K:  # gguf-py's dequantize of the bytes read back gives the same bits
                again = np.asarray(dequantize(np.asarray(t.data), qtype), dtype=np.float32).reshape(-1)
                if again.view(np.uint32).tobytes() != v.view(np.uint32).tobytes():
                    sys.exit(f"{path.name}: tensor {name}: dequantising the bytes read back differs")
            entry["bits"] = [int(b) for b in v.view(np.uint32)]
        out.append(entry)
    return {"version": 3, "alignment": alignment or 32, "data_offset": int(reader.data_offset),
            "file_size": path.stat().st_size, "metadata": expected_meta, "tensors": out}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20260821)
    files = {}
    t1 = tensors_all_types(rng)
    write(OUT / "all_types.gguf", METADATA, t1)
    files["all_types.gguf"] = describe(OUT / "all_types.gguf", METADATA, t1, None)
    meta2 = [("general.name", "aligned to 64", V.STRING, None)]
    t2 = tensors_align64(rng)
    write(OUT / "align64.gguf", meta2, t2, alignment=64)
    files["align64.gguf"] = describe(OUT / "align64.gguf", meta2, t2, 64)

    expected = {"generator": "Tools/reference/make_gguf_fixtures.py", "gguf_py_version": gguf_version(),
                "numpy_version": np.__version__, "files": files}
    text = json.dumps(expected, indent=None, separators=(",", ":"), ensure_ascii=False)
    # One tensor or key per line keeps diffs readable.
    text = text.replace(',{"name"', ',\n{"name"').replace(',{"key"', ',\n{"key"')
    (OUT / "expected.json").write_text(text + "\n", encoding="utf-8")
    for name in files:
        print(f"{name}: {(OUT / name).stat().st_size} bytes, {len(files[name]['tensors'])} tensors, "
              f"{len(files[name]['metadata'])} keys")
    print(f"expected.json: {(OUT / 'expected.json').stat().st_size} bytes")


def gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # noqa: BLE001
        return "unknown"


if __name__ == "__main__":
    main()
