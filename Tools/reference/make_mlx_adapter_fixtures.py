#!/usr/bin/env python3
"""mlx-lm LoRA and DoRA adapters on the tiny Llama fixture, made and applied by mlx-lm itself, with
the logits mlx-lm computes with them.

Run from the repository root (a venv with mlx[cpu], mlx-lm, torch and transformers):
    .venv/bin/pip install "mlx[cpu]" mlx-lm
    .venv/bin/python Tools/reference/make_mlx_adapter_fixtures.py
Tested with mlx 0.32.4 (CPU build on Linux x86_64) and mlx-lm 0.32.2. Writes
Tests/Fixtures/lora/<name>/; the Swift tests only read these files.

Each folder is what `mlx_lm.lora --train` leaves: adapter_config.json (the run's arguments, as
mlx_lm.utils.save_config writes them: fine_tune_type, num_layers, lora_parameters {rank, scale,
dropout[, keys]}, ...) and adapters.safetensors (the trainable parameters, tree-flattened:
`model.layers.N.<key>.lora_a` [in, r], `.lora_b` [r, out], DoRA's `.m` [out]). The adapters are
made by mlx-lm's own linear_to_lora_layers, given random non-zero weights (so every term shows in
the logits), saved as its trainer saves them, then loaded into a fresh model by mlx-lm's
load_adapters, which gives the logits in expected.json: {"base", "ids" [B x T], "logits" [B*T*V]}.

- llama-mlx-lora: LoRA, num_layers 1 (the last block), no `keys` (mlx-lm 0.32 then adapts every
  linear layer of the block), rank 4, scale 20.
- llama-mlx-dora: DoRA, num_layers -1 (every block), keys self_attn.q_proj and self_attn.v_proj,
  rank 2, scale 2.5.

The base's logits in mlx-lm are checked against transformers' first (mlx-lm's Llama reads
`rope_theta` at the top level of config.json, transformers 5 writes it in `rope_parameters`, so
the script passes it explicitly).
"""
import json
import os
import shutil
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx_lm
import numpy as np
import torch
from mlx.utils import tree_flatten
from mlx_lm.tuner.utils import linear_to_lora_layers, load_adapters
from mlx_lm.utils import load_model, save_config
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
LLM = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "llm")
OUT = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "lora")
BASE = "llama-tiny"


def rounded(a):
    return [float(f"{v:.8g}") for v in np.asarray(a, dtype=np.float64).flatten().tolist()]


def mlx_base():
    path = Path(LLM) / BASE
    config = json.load(open(path / "config.json"))
    theta = config.get("rope_parameters", {}).get("rope_theta", 10000.0)
    model, _ = load_model(path, model_config={"rope_theta": theta})
    return model


def logits(model, ids):
    out = model(mx.array(ids))
    mx.eval(out)
    return np.array(out.astype(mx.float32))


def check_base(ids):
    hf = AutoModelForCausalLM.from_pretrained(os.path.join(LLM, BASE), dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    gap = np.abs(logits(mlx_base(), ids) - ref).max()
    assert gap < 1e-4, f"mlx-lm's base logits differ from transformers' by {gap}"
    print("base: max |mlx-lm - transformers| logits", gap)
    return ref


def fixture(name, fine_tune_type, num_layers, lora_parameters, seed, ids, base_logits):
    mx.random.seed(seed)
    model = mlx_base()
    model.freeze()
    linear_to_lora_layers(model, num_layers, lora_parameters, use_dora=(fine_tune_type == "dora"))
    # Random, non-zero adapter weights (B starts at zero in training), magnitudes moved off the norms.
    rng = np.random.default_rng(seed)
    updates = []
    for key, value in tree_flatten(model.trainable_parameters()):
        leaf = key.rsplit(".", 1)[-1]
        v = np.array(value)
        if leaf in ("lora_a", "lora_b"):
            v = (0.2 * rng.standard_normal(v.shape)).astype(np.float32)
        elif leaf == "m":
            v = (v * (1 + 0.1 * rng.standard_normal(v.shape))).astype(np.float32)
        updates.append((key, mx.array(v)))
    model.load_weights(updates, strict=False)
    folder = os.path.join(OUT, name)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    # As mlx_lm.lora's train_model: the run's arguments, then the trainable parameters.
    args = {"model": BASE, "train": True, "fine_tune_type": fine_tune_type, "optimizer": "adam", "optimizer_config": {"adam": {}},
            "data": "data/", "seed": seed, "num_layers": num_layers, "batch_size": 4, "iters": 1000, "val_batches": 25,
            "learning_rate": 1e-5, "steps_per_report": 10, "steps_per_eval": 200, "resume_adapter_file": None,
            "adapter_path": folder, "save_every": 100, "test": False, "test_batches": 500, "max_seq_length": 2048,
            "config": None, "grad_checkpoint": False, "lr_schedule": None, "lora_parameters": lora_parameters,
            "mask_prompt": False}
    args["adapter_path"] = "adapters"  # a fixture name, not this machine's path
    save_config(args, Path(folder) / "adapter_config.json")
    mx.save_safetensors(os.path.join(folder, "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    # A fresh base with the folder applied by mlx-lm's loader.
    applied = load_adapters(mlx_base(), folder)
    out = logits(applied, ids)
    assert np.abs(out - logits(model, ids)).max() == 0
    effect = np.abs(out - base_logits).max()
    assert effect > 0.05, f"the adapter hardly changes the logits ({effect})"
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump({"generator": "Tools/reference/make_mlx_adapter_fixtures.py", "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__,
                   "base": BASE, "ids": ids, "logits_shape": list(out.shape), "logits": rounded(out)}, f, separators=(",", ":"))
        f.write("\n")
    names = sorted(k for k, _ in tree_flatten(model.trainable_parameters()))
    print(name, f"{len(names)} tensors ({names[0]}, ...); adapter changes logits by up to {effect:.3f}")


def main():
    ids = np.random.default_rng(7).integers(0, 96, size=(2, 9)).tolist()
    base_logits = check_base(ids)
    fixture("llama-mlx-lora", "lora", 1, {"rank": 4, "dropout": 0.0, "scale": 20.0}, 21, ids, base_logits)
    fixture("llama-mlx-dora", "dora", -1, {"rank": 2, "dropout": 0.0, "scale": 2.5, "keys": ["self_attn.q_proj", "self_attn.v_proj"]},
            22, ids, base_logits)


if __name__ == "__main__":
    main()
