#!/usr/bin/env python3
"""Writes the seeds of Tools/fuzz/safetensors_fuzz.swift to Tools/fuzz/safetensors_seeds/.

Valid files come from the reference writer (safetensors.torch.save_file), one per dtype and a few
layouts; the malformed ones are built by hand (8-byte length, JSON header, data). The fuzzer's own
finds (fuzz-*) are kept by hand in the same folder and left alone here. Run from the repository
root with the project's venv: .venv/bin/python Tools/fuzz/make_safetensors_seeds.py
"""
import json
import os
import struct

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors_seeds")


def raw(name, header, data=b"", pad=True, length=None):
    """A file from a header (dict or text) and data; the length field is the header's unless given."""
    text = header if isinstance(header, (str, bytes)) else json.dumps(header, separators=(",", ":"))
    body = text.encode() if isinstance(text, str) else text
    if pad:
        body += b" " * ((8 - len(body) % 8) % 8)
    n = len(body) if length is None else length
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(struct.pack("<Q", n) + body + data)


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if not f.startswith("fuzz-"):
            os.remove(os.path.join(OUT, f))

    # Valid files from the reference writer, one per dtype, with the values at each type's edges.
    floats = torch.tensor([[0.0, -0.0, 1.0, -2.5, 65504.0, 1e-8],
                           [float("inf"), float("-inf"), float("nan"), 3.4e38, 1.17e-38, 6e-8]])
    dtypes = {
        "f32": floats, "f64": floats.double(), "f16": floats.half(), "bf16": floats.bfloat16(),
        "i64": torch.tensor([[0, 1, -1], [2**63 - 1, -2**63, 2**53 + 1]], dtype=torch.int64),
        "i32": torch.tensor([[0, 1, -1], [2**31 - 1, -2**31, 2**24 + 1]], dtype=torch.int32),
        "i16": torch.tensor([0, -1, 32767, -32768], dtype=torch.int16),
        "i8": torch.tensor([0, 1, -1, 127, -128], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 128, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "f8_e4m3": torch.tensor([0.0, 1.0, -448.0, 0.015625]).to(torch.float8_e4m3fn),
        "f8_e5m2": torch.tensor([0.0, 1.0, -57344.0]).to(torch.float8_e5m2),
        "u16": torch.tensor([0, 65535], dtype=torch.uint16),
        "u32": torch.tensor([0, 2**32 - 1], dtype=torch.uint32),
        "u64": torch.tensor([0, 2**63], dtype=torch.uint64),
    }
    for name, t in dtypes.items():
        save_file({"t": t}, os.path.join(OUT, f"dtype-{name}.safetensors"))
    save_file({k: v for k, v in dtypes.items() if not k.startswith(("f8", "u16", "u32", "u64", "i16"))},
              os.path.join(OUT, "all-loadable.safetensors"), metadata={"format": "pt", "note": "é ü 中 \u0000 \"q\""})
    save_file({"scalar": torch.tensor(1.5), "empty": torch.zeros(0), "empty3": torch.zeros(2, 0, 3, dtype=torch.float16),
               "w.weight": torch.ones(3, 2, dtype=torch.bfloat16)}, os.path.join(OUT, "shapes.safetensors"))
    save_file({}, os.path.join(OUT, "no-tensors.safetensors"), metadata={"k": "v"})
    save_file({"é": torch.ones(1), "中文 name\n\"quoted\"": torch.ones(2, dtype=torch.int8)}, os.path.join(OUT, "unicode-names.safetensors"))

    # Valid files only a hand-made header gives: an odd offset for F16/BF16, F4 and F6, unpadded
    # headers, whitespace, keys in any order.
    raw("odd-offset-f16.safetensors", {"a": entry("U8", [1], 0, 1), "h": entry("F16", [2], 1, 5), "b": entry("BF16", [1], 5, 7)},
        b"\x07" + struct.pack("<e", 1.5) + struct.pack("<e", -0.0) + b"\x80\x3f")
    raw("f4-f6.safetensors", {"f4": entry("F4", [2, 2], 0, 2), "f6": entry("F6_E2M3", [4], 2, 5), "f8m": entry("F8_E8M0", [1], 5, 6)},
        b"\x12\x34\xff\x00\xaa\x7f")
    raw("unpadded.safetensors", {"x": entry("F32", [1], 0, 4)}, struct.pack("<f", 2.0), pad=False)
    raw("whitespace.safetensors", ' \n{ "__metadata__" : { } ,\t"x" : { "shape" : [ ] , "data_offsets" : [ 0 , 8 ] , "dtype" : "F64" } }\r\n ',
        struct.pack("<d", 1e300))
    raw("c64.safetensors", {"z": entry("C64", [1], 0, 8)}, struct.pack("<ff", 1.0, -1.0))

    # Malformed: the length field.
    open(os.path.join(OUT, "bad-empty.safetensors"), "wb").close()
    with open(os.path.join(OUT, "bad-short.safetensors"), "wb") as f:
        f.write(b"\x08\x00\x00")
    raw("bad-length-past-end.safetensors", {"x": entry("F32", [1], 0, 4)}, struct.pack("<f", 1.0), length=4096)
    raw("bad-length-over-limit.safetensors", "{}", length=100_000_008)
    raw("bad-length-max.safetensors", "{}", length=2**64 - 1)
    raw("bad-length-short.safetensors", {"x": entry("F32", [1], 0, 4)}, struct.pack("<f", 1.0), length=10)
    # The layout of the data.
    raw("bad-overlap.safetensors", {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, bytes(12))
    raw("bad-hole.safetensors", {"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}, bytes(12))
    raw("bad-hole-first.safetensors", {"a": entry("F32", [1], 4, 8)}, bytes(8))
    raw("bad-trailing.safetensors", {"a": entry("F32", [1], 0, 4)}, bytes(9))
    raw("bad-truncated.safetensors", {"a": entry("F32", [4], 0, 16)}, bytes(10))
    raw("bad-span.safetensors", {"a": entry("F32", [3], 0, 8)}, bytes(8))
    raw("bad-reversed.safetensors", {"a": entry("F32", [0], 8, 0)}, bytes(8))
    raw("empty-tensors-same-offset.safetensors", {"a": entry("F32", [0], 0, 0), "b": entry("I8", [0, 5], 0, 0), "c": entry("U8", [1], 0, 1)}, b"\x01")
    # Shapes and numbers.
    raw("bad-shape-overflow.safetensors", {"a": entry("F32", [2**32, 2**32], 0, 4)}, bytes(4))
    raw("bad-shape-bytes-overflow.safetensors", {"a": entry("I64", [2**61], 0, 8)}, bytes(8))
    raw("bad-shape-zero-last-overflow.safetensors", {"a": entry("F32", [2**62, 4, 0], 0, 0)})
    raw("bad-shape-zero-first-overflow.safetensors", {"a": entry("F32", [0, 2**62, 4], 0, 0)})
    raw("bad-shape-zero-middle-overflow.safetensors", {"a": entry("F64", [2**62, 0, 4], 0, 0)})
    raw("bad-shape-negative.safetensors", '{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', bytes(4))
    raw("bad-shape-fraction.safetensors", '{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}', bytes(4))
    raw("bad-shape-exponent.safetensors", '{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}', bytes(4))
    raw("bad-shape-huge-number.safetensors", '{"a":{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,4]}}', bytes(4))
    raw("bad-offsets-negative.safetensors", '{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}', bytes(1))
    raw("bad-offsets-three.safetensors", '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}', bytes(1))
    raw("bad-offsets-strings.safetensors", '{"a":{"dtype":"U8","shape":[1],"data_offsets":["0","1"]}}', bytes(1))
    raw("bad-f4-half-byte.safetensors", {"a": entry("F4", [3], 0, 2)}, bytes(2))
    # Keys, dtypes, metadata.
    raw("bad-duplicate-key.safetensors", '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2))
    raw("bad-duplicate-field.safetensors", '{"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}}', bytes(1))
    raw("bad-names-canonically-equal.safetensors", '{"\\u00e9":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"e\\u0301":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\x01\x02")
    raw("bad-metadata-keys-canonically-equal.safetensors", '{"__metadata__":{"K":"1","\\u212a":"2"}}')
    raw("shape-zero-big.safetensors", {"a": entry("F64", [2**62, 0, 1], 0, 0), "b": entry("F16", [0, 2**62], 0, 0)})
    raw("bad-dtype-unknown.safetensors", {"a": entry("F128", [1], 0, 16)}, bytes(16))
    raw("bad-dtype-number.safetensors", '{"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}', bytes(4))
    raw("bad-dtype-lowercase.safetensors", {"a": entry("f32", [1], 0, 4)}, bytes(4))
    raw("bad-missing-shape.safetensors", '{"a":{"dtype":"F32","data_offsets":[0,4]}}', bytes(4))
    raw("bad-entry-array.safetensors", '{"a":["F32",[1],[0,4]]}', bytes(4))
    raw("bad-metadata-number.safetensors", '{"__metadata__":{"epoch":3}}')
    raw("bad-metadata-nested.safetensors", '{"__metadata__":{"a":{"b":"c"}}}')
    raw("bad-metadata-null.safetensors", '{"__metadata__":{"a":null}}')
    raw("bad-metadata-array.safetensors", '{"__metadata__":["a","b"]}')
    raw("bad-metadata-string.safetensors", '{"__metadata__":"x"}')
    raw("metadata-as-tensor-name.safetensors", '{"__metadata__":{"__metadata__":"x"},"x":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}}', b"\x02")
    # Not a header at all.
    raw("bad-not-json.safetensors", "PK\x03\x04 this is a zip")
    raw("bad-not-utf8.safetensors", b'{"\xff\xfe":{}}')
    raw("bad-array-root.safetensors", "[]")
    raw("bad-nul-in-header.safetensors", b'{"a\x00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', bytes(1))
    raw("bad-deep.safetensors", '{"__metadata__":' + "[" * 100 + "]" * 100 + "}")
    raw("bad-string-escape.safetensors", '{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', bytes(1))

    for f in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, f))
        assert size < 20_000, f
    print(f"{len(os.listdir(OUT))} seeds in {OUT}")


if __name__ == "__main__":
    main()
