#!/usr/bin/env python3
"""Check that weights move between Lathe and PyTorch with the same results.

Two commands (run from anywhere; paths are relative to the current directory):

  lathe-model   A model trained by `lathe train` (digits-cnn or digits-mlp) loads into the
                PyTorch reference model with load_state_dict(strict=True) and gives the same
                predictions (identical) and logits (close) as `lathe eval` on the same samples.

      lathe train Recipes/digits-cnn.yaml
      lathe eval Recipes/digits-cnn.yaml --model runs/digits-cnn/model.safetensors \\
          --predictions test.json
      check_interop.py lathe-model runs/digits-cnn/model.safetensors test.json

  torch-train   Trains the digits CNN in PyTorch on Lathe's training split (the indices in a
                predictions JSON of `lathe eval --split train`), saves its state_dict as
                safetensors, and evaluates it in PyTorch on the test split (indices from a
                test predictions JSON). Then evaluate the same file with Lathe and compare:

      lathe eval Recipes/digits-cnn.yaml --split train --predictions train.json
      check_interop.py torch-train train.json test.json torch_cnn.safetensors
      lathe eval Recipes/digits-cnn.yaml --model torch_cnn.safetensors --predictions lathe_on_torch.json
      check_interop.py lathe-model torch_cnn.safetensors lathe_on_torch.json

The digits are read from Lathe's bundled Sources/LatheData/Resources/digits.csv.gz (pixel
counts 0..16 divided by 16, as Digits.load() does); a predictions JSON's "indices" are rows of
that file. Exit status 1 when a check fails.
"""

import argparse
import gzip
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from models import DigitsCNN, DigitsMLP  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DIGITS_CSV = os.path.join(REPO_ROOT, "Sources", "LatheData", "Resources", "digits.csv.gz")


def load_digits(path=DIGITS_CSV):
    """All 1797 digits: x float32 [N, 1, 8, 8] in [0, 1] (pixels / 16), y int64 [N]."""
    with gzip.open(path, "rt") as f:
        rows = [[int(v) for v in line.split(",")] for line in f if line.strip()]
    data = torch.tensor(rows, dtype=torch.float32)
    x = (data[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    y = data[:, 64].to(torch.int64)
    return x, y


def build_model(name, state):
    """The PyTorch reference model for a Lathe model name, sized from the state dict."""
    if name == "digits-cnn":
        w = state["conv1.weight"]
        fc1_in = state["fc1.weight"].shape[1]
        side = int(round((fc1_in / 64) ** 0.5))
        return DigitsCNN(in_channels=w.shape[1], classes=state["fc2.weight"].shape[0], image=side * 4)
    if name == "digits-mlp":
        return DigitsMLP(in_features=state["0.weight"].shape[1], hidden=state["0.weight"].shape[0],
                         classes=state["4.weight"].shape[0], hidden2=state["2.weight"].shape[0])
    raise SystemExit(f"unsupported model '{name}' (digits-cnn or digits-mlp)")


def model_name(path, predictions=None):
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    name = meta.get("lathe.model") or (predictions or {}).get("model_name")
    if name is None:
        keys = set(load_file(path).keys())
        name = "digits-cnn" if "conv1.weight" in keys else "digits-mlp"
    return name


@torch.no_grad()
def logits_of(model, name, x):
    model.eval()
    if name == "digits-mlp":
        x = x.flatten(1)
    return model(x)


def accuracy(pred, labels):
    return (pred == labels).double().mean().item()


def cmd_lathe_model(args):
    with open(args.predictions) as f:
        p = json.load(f)
    if p.get("data", "digits") != "digits":
        raise SystemExit(f"{args.predictions}: data '{p.get('data')}'; only the bundled digits are supported here")
    name = model_name(args.model, p)
    state = load_file(args.model)
    model = build_model(name, state)
    # Same keys, shapes and dtypes as PyTorch's own state_dict, or this raises.
    missing = sorted(set(model.state_dict()) ^ set(state))
    model.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():
        if v.dtype != state[k].dtype:
            print(f"FAIL: {k} is {state[k].dtype} in the file, {v.dtype} in PyTorch")
            return 1
    print(f"{args.model}: {name}, {len(state)} tensors, load_state_dict(strict=True) OK"
          + ("" if not missing else f" (key differences {missing})"))

    x, y = load_digits()
    idx = torch.tensor(p["indices"], dtype=torch.int64)
    labels = y[idx]
    ok = True
    if labels.tolist() != p["labels"]:
        print("FAIL: the labels in the JSON are not the digits file's labels at those indices")
        ok = False
    logits = logits_of(model, name, x[idx])
    pred = logits.argmax(1)
    lathe_pred = torch.tensor(p["predictions"], dtype=torch.int64)
    same = (pred == lathe_pred).sum().item()
    print(f"samples: {len(idx)} ({p.get('split', '?')} split)")
    print(f"accuracy  Lathe {100 * accuracy(lathe_pred, labels):.2f}%   PyTorch {100 * accuracy(pred, labels):.2f}%")
    print(f"predictions identical: {same}/{len(idx)}")
    if same != len(idx):
        ok = False
        bad = (pred != lathe_pred).nonzero().flatten()[:10].tolist()
        print(f"FAIL: first differing samples (positions): {bad}")
    if "logits" in p:
        lathe_logits = torch.tensor(p["logits"], dtype=torch.float32)
        diff = (logits - lathe_logits).abs().max().item()
        scale = logits.abs().max().item()
        print(f"logits: max |PyTorch - Lathe| = {diff:.3g} (largest |logit| {scale:.3g})")
        if diff > args.atol + args.rtol * scale:
            print(f"FAIL: logits differ by more than {args.atol} + {args.rtol} * {scale:.3g}")
            ok = False
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def train_cnn(x, y, epochs, seed=0, lr=3e-3, batch_size=32, weight_decay=0.01, log=print):
    """The digits CNN trained in PyTorch (train mode, AdamW, shuffled mini-batches)."""
    torch.manual_seed(seed)
    model = DigitsCNN(in_channels=1, classes=10, dropout=0.0, image=8)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        total, batches = 0.0, 0
        for start in range(0, len(x) - batch_size + 1, batch_size):
            b = order[start:start + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[b]), y[b])
            loss.backward()
            opt.step()
            total, batches = total + loss.item(), batches + 1
        log(f"epoch {epoch + 1}: mean training loss {total / max(batches, 1):.4f}")
    model.eval()
    return model


def cmd_torch_train(args):
    with open(args.train_json) as f:
        train_idx = torch.tensor(json.load(f)["indices"], dtype=torch.int64)
    with open(args.test_json) as f:
        test = json.load(f)
    test_idx = torch.tensor(test["indices"], dtype=torch.int64)
    if set(train_idx.tolist()) & set(test_idx.tolist()):
        raise SystemExit("the train and test indices overlap: are these the train and test splits of the same recipe?")
    torch.set_num_threads(1)
    x, y = load_digits()
    print(f"training the digits CNN in PyTorch {torch.__version__} on {len(train_idx)} samples, {args.epochs} epochs")
    model = train_cnn(x[train_idx], y[train_idx], args.epochs, seed=args.seed)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, args.out, metadata={"format": "pt", "lathe.model": "digits-cnn"})
    logits = logits_of(model, "digits-cnn", x[test_idx])
    pred = logits.argmax(1)
    print(f"saved {args.out} ({len(state)} tensors: {', '.join(state)})")
    print(f"PyTorch test accuracy: {100 * accuracy(pred, y[test_idx]):.2f}% of {len(test_idx)}")
    if "predictions" in test and "model" in test:
        print(f"(Lathe's own model {test['model']} on the same split: {100 * test['accuracy']:.2f}%)")
    if args.predictions:
        with open(args.predictions, "w") as f:
            json.dump({"generator": "check_interop.py torch-train", "model": args.out, "model_name": "digits-cnn",
                       "data": "digits", "split": test.get("split", "test"), "count": len(test_idx),
                       "accuracy": accuracy(pred, y[test_idx]), "indices": test_idx.tolist(),
                       "labels": y[test_idx].tolist(), "predictions": pred.tolist(), "logits": logits.tolist()}, f)
    print("next: lathe eval RECIPE --model", args.out, "--predictions lathe_on_torch.json; "
          "check_interop.py lathe-model", args.out, "lathe_on_torch.json")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("lathe-model", help="load Lathe weights into PyTorch and compare predictions")
    a.add_argument("model", help="a safetensors state dict (digits-cnn or digits-mlp)")
    a.add_argument("predictions", help="the JSON of `lathe eval --predictions` for these weights")
    a.add_argument("--atol", type=float, default=1e-4)
    a.add_argument("--rtol", type=float, default=1e-5)
    b = sub.add_parser("torch-train", help="train the digits CNN in PyTorch on Lathe's split")
    b.add_argument("train_json", help="predictions JSON of `lathe eval --split train` (for its indices)")
    b.add_argument("test_json", help="predictions JSON of `lathe eval --split test` (for its indices)")
    b.add_argument("out", help="where to write the PyTorch state dict (safetensors)")
    b.add_argument("--epochs", type=int, default=10)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--predictions", help="also write PyTorch's test predictions as JSON")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    sys.exit(cmd_lathe_model(args) if args.command == "lathe-model" else cmd_torch_train(args))


if __name__ == "__main__":
    main()
