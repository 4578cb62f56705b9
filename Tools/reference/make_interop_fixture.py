#!/usr/bin/env python3
"""Generate the PyTorch-trained digits CNN fixture for Lathe's interop test.

Writes Tests/Fixtures/interop/:

    digits_cnn_torch.safetensors   the state_dict of models.DigitsCNN (image=8, dropout 0) after
                                   EPOCHS epochs of AdamW in train mode on digits rows
                                   HELD_OUT..1796 (so BatchNorm running statistics and
                                   num_batches_tracked are PyTorch's own)
    expected.json                  PyTorch's eval-mode results on the held-out rows 0..HELD_OUT-1
                                   of the bundled digits file: indices, labels, predictions,
                                   logits (shortest float32 decimals), correct, accuracy

The Swift test (Tests/LatheNNTests/InteropTests.swift) loads the state dict into Lathe's
DigitsCNN with strict key checking, evaluates the same rows in eval mode, and must give the
same predictions, logits within 1e-4 and the same accuracy. It never needs Python.

Run from anywhere: .venv/bin/python Tools/reference/make_interop_fixture.py
Deterministic (one thread, deterministic algorithms, fixed seeds).
"""

import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from check_interop import load_digits, logits_of, train_cnn  # noqa: E402
from models import DigitsCNN  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(REPO_ROOT, "Tests", "Fixtures", "interop")
HELD_OUT = 200
EPOCHS = 3
SEED = 0


def shortest(v):
    """The shortest decimal that round-trips the float32 value."""
    s = np.format_float_positional(np.float32(v), unique=True, trim="-")
    assert np.float32(float(s)) == np.float32(v), (v, s)
    return s


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT_DIR, exist_ok=True)
    x, y = load_digits()
    train_x, train_y = x[HELD_OUT:], y[HELD_OUT:]
    model = train_cnn(train_x, train_y, EPOCHS, seed=SEED)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    weights = os.path.join(OUT_DIR, "digits_cnn_torch.safetensors")
    save_file(state, weights, metadata={"format": "pt", "generator": "Tools/reference/make_interop_fixture.py"})

    idx = list(range(HELD_OUT))
    logits = logits_of(model, "digits-cnn", x[:HELD_OUT])
    pred = logits.argmax(1)
    correct = int((pred == y[:HELD_OUT]).sum())
    # Margin between the top two logits: a tiny one would make the "identical predictions"
    # check fragile across float rounding.
    top2 = logits.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).min().item()

    rows = ",\n".join("    [" + ",".join(shortest(v) for v in row) + "]" for row in logits.tolist())
    text = "{\n" + ",\n".join([
        '  "generator": "Tools/reference/make_interop_fixture.py"',
        f'  "torch_version": "{torch.__version__}"',
        f'  "training": {json.dumps({"rows": [HELD_OUT, len(x)], "epochs": EPOCHS, "optimizer": "AdamW", "lr": 3e-3, "weight_decay": 0.01, "batch_size": 32, "seed": SEED})}',
        f'  "indices": {json.dumps(idx, separators=(",", ":"))}',
        f'  "labels": {json.dumps(y[:HELD_OUT].tolist(), separators=(",", ":"))}',
        f'  "predictions": {json.dumps(pred.tolist(), separators=(",", ":"))}',
        f'  "correct": {correct}',
        f'  "accuracy": {correct / HELD_OUT}',
        f'  "min_top2_margin": {margin}',
        '  "logits": [\n' + rows + "\n  ]",
    ]) + "\n}\n"
    expected = os.path.join(OUT_DIR, "expected.json")
    with open(expected, "w") as f:
        f.write(text)

    # Self-check: reload both files into a fresh model and reproduce the logits bit for bit.
    fresh = DigitsCNN(in_channels=1, classes=10, dropout=0.0, image=8)
    fresh.load_state_dict(load_file(weights), strict=True)
    with open(expected) as f:
        e = json.load(f)
    again = logits_of(fresh, "digits-cnn", x[e["indices"]])
    assert torch.equal(again, torch.tensor(e["logits"], dtype=torch.float32)), "reloaded logits differ"
    assert again.argmax(1).tolist() == e["predictions"]

    print("state_dict:")
    for k, v in state.items():
        print(f"  {k:28s} {str(v.dtype):14s} {list(v.shape)}")
    print(f"PyTorch eval-mode accuracy on rows 0..{HELD_OUT - 1}: {correct}/{HELD_OUT} = {100 * correct / HELD_OUT:.2f}%")
    print(f"smallest top-2 logit margin: {margin:.4g}")
    for p in (weights, expected):
        print(f"{os.path.relpath(p, REPO_ROOT)}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
