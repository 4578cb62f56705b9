"""Writes the safetensors fixtures for Tests/LatheIOTests with PyTorch and safetensors.

    .venv/bin/pip install torch safetensors
    .venv/bin/python Tools/reference/make_io_fixtures.py

Outputs, in Tests/Fixtures/io/:
  torch_written.safetensors  tensors of dtypes f32/f16/bf16/i64/i32/i8/u8/bool/f64, a scalar,
                             an empty tensor, and two metadata strings
  torch_layout.safetensors   the same tensors without the f64 one and with a single metadata
                             string: Lathe must write exactly these bytes for the same tensors
                             (one key because the reference writer orders metadata keys by hash)
  torch_written.json         for each tensor: dtype, shape, exact values and the raw bytes in hex;
                             the metadata of both files

The Swift tests read these files and never need Python.
"""
import json
import pathlib

import safetensors
import torch
from safetensors.torch import load_file, save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "io"


def tensors():
    return {
        "weight": torch.tensor([[0.5, -1.25, 3.1415927], [1e-3, -0.0, 65504.0]], dtype=torch.float32),
        "layer.0.half": torch.tensor([1.0, -2.5, 0.333251953125, 65504.0], dtype=torch.float16),
        "layer.0.brain": torch.tensor([[1.0, -3.140625], [1e10, 0.0078125]], dtype=torch.bfloat16),
        "index": torch.tensor([0, -7, 2**40], dtype=torch.int64),
        "i32": torch.tensor([-5, 2**31 - 1], dtype=torch.int32),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "mask": torch.tensor([[True, False], [False, True]]),
        "scalar": torch.tensor(42.0, dtype=torch.float32),
        "empty": torch.zeros(0, dtype=torch.float32),
    }


def describe(t):
    values = t.to(torch.float64).flatten().tolist() if t.is_floating_point() else [int(v) for v in t.flatten().tolist()]
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "values": values, "hex": raw.hex()}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    written = dict(tensors())
    written["double"] = torch.tensor([0.1, -2.5], dtype=torch.float64)
    meta_written = {"format": "pt", "source": "Tools/reference/make_io_fixtures.py"}
    save_file(written, OUT / "torch_written.safetensors", metadata=meta_written)
    layout = tensors()
    meta_layout = {"format": "pt"}
    save_file(layout, OUT / "torch_layout.safetensors", metadata=meta_layout)

    expected = {
        "generator": "Tools/reference/make_io_fixtures.py",
        "torch_version": torch.__version__,
        "safetensors_version": safetensors.__version__,
        "torch_written": {"metadata": meta_written, "tensors": {k: describe(v) for k, v in written.items()}},
        "torch_layout": {"metadata": meta_layout, "tensors": {k: describe(v) for k, v in layout.items()}},
    }
    (OUT / "torch_written.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")

    # Self-check: the files load back to the same tensors.
    for name, ref in (("torch_written", written), ("torch_layout", layout)):
        back = load_file(OUT / f"{name}.safetensors")
        assert back.keys() == ref.keys()
        for k in ref:
            assert back[k].dtype == ref[k].dtype and back[k].shape == ref[k].shape, k
            assert torch.equal(back[k], ref[k]), k
    for f in sorted(OUT.iterdir()):
        print(f"{f.name}: {f.stat().st_size} bytes")


if __name__ == "__main__":
    main()
