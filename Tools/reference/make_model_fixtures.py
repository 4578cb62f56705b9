#!/usr/bin/env python3
"""Generate golden training fixtures for Lathe's model tests from PyTorch.

For each model (mlp, cnn, resnet, gpt) writes, under Tests/Fixtures/models/<name>/:

    init.safetensors    state_dict before training (parameters and buffers, incl.
                        BatchNorm running_mean / running_var / num_batches_tracked (int64))
    batch.safetensors   the one fixed batch: "x" (float32 images / int64 token ids),
                        "y" (int64 class ids / next-token targets)
    grads1.safetensors  gradient of every parameter at step 1 (keys = parameter names)
    final.safetensors   state_dict after 5 AdamW steps
    expected.json       model name, constructor config, optimizer settings, the 5
                        losses (each computed before that step's update), torch version

Training: model.train(); for each of 5 steps on the same batch:
    opt.zero_grad(); loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)) (mean);
    loss.backward(); opt.step()
with torch.optim.AdamW(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), one
parameter group holding all parameters (so weight decay also applies to biases, norms
and embeddings).

Self-checks (the script exits non-zero on failure):
  * reload init.safetensors + batch.safetensors into a freshly (differently) initialised
    model, retrain: losses, grads1 and final state must be bit-identical;
  * an explicit AdamW written out op by op (see adamw_reference_step) reproduces
    torch.optim.AdamW bit for bit;
  * informational: the same 5 steps in float64 from the same init, to show how far
    float32 rounding alone moves the losses and weights (a tolerance hint for the
    Swift side, recorded in expected.json under "float64_reference").

Run from anywhere: .venv/bin/python Tools/reference/make_model_fixtures.py
"""

import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from models import CharGPT, DigitsCNN, DigitsMLP, SmallResNet  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(REPO_ROOT, "Tests", "Fixtures", "models")
GENERATOR = "Tools/reference/make_model_fixtures.py"

STEPS = 5
OPTIM = {"name": "AdamW", "lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}
MODEL_SEED = 0       # torch.manual_seed before building the model
DATA_SEED = 1234     # separate generator for the batch

torch.set_default_dtype(torch.float32)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


# ---------------------------------------------------------------------------
# Models and batches
# ---------------------------------------------------------------------------

SPECS = {
    "mlp": (DigitsMLP, dict(in_features=64, hidden=128, classes=10, hidden2=64)),
    "cnn": (DigitsCNN, dict(in_channels=1, classes=10, dropout=0.0, image=8)),
    "resnet": (SmallResNet, dict(in_channels=1, classes=10, widths=[16, 32])),
    "gpt": (CharGPT, dict(vocab=65, context=16, d_model=32, heads=4, layers=2, rope=True)),
}


def build(name, seed=MODEL_SEED, dtype=torch.float32):
    cls, cfg = SPECS[name]
    torch.manual_seed(seed)
    kwargs = dict(cfg)
    if name == "resnet":
        kwargs["widths"] = tuple(kwargs["widths"])
    model = cls(**kwargs).to(dtype)
    model.train()
    return model


def make_batch(name):
    g = torch.Generator().manual_seed(DATA_SEED)
    if name == "mlp":
        # sklearn-digits-like pixels: integers 0..16 scaled by 1/16
        x = torch.randint(0, 17, (16, 64), generator=g).to(torch.float32) / 16.0
        y = torch.randint(0, 10, (16,), generator=g, dtype=torch.int64)
    elif name in ("cnn", "resnet"):
        x = torch.randint(0, 17, (8, 1, 8, 8), generator=g).to(torch.float32) / 16.0
        y = torch.randint(0, 10, (8,), generator=g, dtype=torch.int64)
    elif name == "gpt":
        cfg = SPECS["gpt"][1]
        seq = torch.randint(0, cfg["vocab"], (4, cfg["context"] + 1), generator=g, dtype=torch.int64)
        x = seq[:, :-1].contiguous()
        y = seq[:, 1:].contiguous()
    else:
        raise ValueError(name)
    return {"x": x, "y": y}


def loss_fn(model, batch):
    logits = model(batch["x"])
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), batch["y"].reshape(-1))  # reduction="mean"


def snapshot(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

def make_optimizer(model):
    return torch.optim.AdamW(
        model.parameters(), lr=OPTIM["lr"], betas=tuple(OPTIM["betas"]), eps=OPTIM["eps"],
        weight_decay=OPTIM["weight_decay"], foreach=False,  # the plain per-tensor loop (CPU default)
    )


def adamw_reference_step(params, grads, state, step, lr, beta1, beta2, eps, wd):
    """torch.optim.AdamW's single-tensor CPU update, written out op by op (same order).

    step is 1-based; bias corrections are computed in double precision (Python floats)
    and enter the float32 ops as scalars.
    """
    for i, (p, g) in enumerate(zip(params, grads)):
        if i not in state:
            state[i] = (torch.zeros_like(p), torch.zeros_like(p))
        m, v = state[i]
        p.mul_(1 - lr * wd)                          # 1. decoupled weight decay (before the moments)
        m.lerp_(g, 1 - beta1)                        # 2. m = m + (1-beta1)*(g - m)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # 3. v = beta2*v + (1-beta2)*g*g
        bc1 = 1 - beta1 ** step
        bc2 = 1 - beta2 ** step
        step_size = lr / bc1
        denom = (v.sqrt() / (bc2 ** 0.5)).add_(eps)  # 4. sqrt(v)/sqrt(bc2) + eps
        p.addcdiv_(m, denom, value=-step_size)      # 5. p -= lr/bc1 * m/denom


def train(model, batch, steps=STEPS, reference_optimizer=False):
    """Returns (losses, grads of step 1, final state_dict)."""
    losses, grads1 = [], None
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    opt = None if reference_optimizer else make_optimizer(model)
    ref_state = {}
    for step in range(1, steps + 1):
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        else:
            for p in params:
                p.grad = None
        loss = loss_fn(model, batch)
        loss.backward()
        losses.append(loss.item())
        if step == 1:
            grads1 = {n: p.grad.detach().clone().contiguous() for n, p in zip(names, params)}
        if opt is not None:
            opt.step()
        else:
            with torch.no_grad():
                adamw_reference_step(params, [p.grad for p in params], ref_state, step, OPTIM["lr"],
                                     OPTIM["betas"][0], OPTIM["betas"][1], OPTIM["eps"], OPTIM["weight_decay"])
    return losses, grads1, snapshot(model)


def same(a, b):
    if a.keys() != b.keys():
        return False
    return all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def max_abs_diff(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def fmt_shape(t):
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def generate(name):
    out = os.path.join(OUT_DIR, name)
    os.makedirs(out, exist_ok=True)
    paths = {k: os.path.join(out, f"{k}.safetensors") for k in ("init", "batch", "grads1", "final")}
    paths["expected"] = os.path.join(out, "expected.json")

    model = build(name)
    init = snapshot(model)
    batch = make_batch(name)
    save_file(init, paths["init"])
    save_file(batch, paths["batch"])

    losses, grads1, final = train(model, batch)
    save_file(grads1, paths["grads1"])
    save_file(final, paths["final"])

    ok = True
    # Self-check 1: reload from disk into a differently initialised model, retrain.
    fresh = build(name, seed=MODEL_SEED + 999)
    assert not same(snapshot(fresh), init), "fresh model should start from different weights"
    fresh.load_state_dict(load_file(paths["init"]), strict=True)
    losses2, grads2, final2 = train(fresh, load_file(paths["batch"]))
    if losses2 != losses or not same(grads2, load_file(paths["grads1"])) or not same(final2, load_file(paths["final"])):
        print(f"  SELF-CHECK FAILED ({name}): reload + retrain differs: {losses} vs {losses2}")
        ok = False

    # Self-check 2: the explicit AdamW update reproduces torch.optim.AdamW exactly.
    ref = build(name, seed=MODEL_SEED + 999)
    ref.load_state_dict(init, strict=True)
    losses3, _, final3 = train(ref, batch, reference_optimizer=True)
    if losses3 != losses or not same(final3, final):
        print(f"  SELF-CHECK FAILED ({name}): explicit AdamW differs: max |diff| {max_abs_diff(final3, final):.3g}")
        ok = False

    # Informational: the same run in float64 (float32 rounding sensitivity).
    m64 = build(name, seed=MODEL_SEED + 999, dtype=torch.float64)
    m64.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in init.items()}, strict=True)
    b64 = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    losses64, grads64, final64 = train(m64, b64)
    per_key = {k: max_abs_diff({k: final[k]}, {k: final64[k]}) for k in final if final[k].is_floating_point()}
    f64 = {
        "losses": losses64,
        "max_abs_loss_diff": max(abs(a - b) for a, b in zip(losses, losses64)),
        "max_abs_grad1_diff": max_abs_diff(grads1, grads64),
        "max_abs_final_diff": max_abs_diff({k: v for k, v in final.items() if v.is_floating_point()},
                                           {k: v for k, v in final64.items() if v.is_floating_point()}),
        # Entries whose final value differs from the float64 run by > 1e-3: their step-1 gradient
        # is pure rounding noise (true gradient 0, e.g. a conv bias right before BatchNorm), and
        # Adam normalises noise to ~lr per step. Compare these loosely (atol ~ STEPS * lr) or skip.
        "noise_dominated": sorted(k for k, d in per_key.items() if d > 1e-3),
        "final_max_abs_diff_per_key": per_key,
    }

    expected = {
        "model": name,
        "config": SPECS[name][1],
        "optimizer": OPTIM,
        "loss": "cross_entropy(logits.reshape(-1, V), y.reshape(-1)), reduction mean",
        "steps": STEPS,
        "losses": losses,
        "model_seed": MODEL_SEED,
        "data_seed": DATA_SEED,
        "torch_version": torch.__version__,
        "generator": GENERATOR,
        "float64_reference": f64,
    }
    with open(paths["expected"], "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")

    # Summary
    n_params = sum(p.numel() for p in model.parameters())
    print(f"== {name}  {SPECS[name][0].__name__}({', '.join(f'{k}={v}' for k, v in SPECS[name][1].items())})"
          f"  params={n_params}")
    print("  state_dict:")
    param_names = {n for n, _ in model.named_parameters()}
    for k, v in init.items():
        kind = "param" if k in param_names else "buffer"
        print(f"    {k:32s} {str(v.dtype).replace('torch.', ''):8s} {fmt_shape(v):16s} {kind}")
    print(f"  batch: x {str(batch['x'].dtype).replace('torch.', '')} {fmt_shape(batch['x'])}, "
          f"y {str(batch['y'].dtype).replace('torch.', '')} {fmt_shape(batch['y'])}")
    print("  losses:  " + ", ".join(repr(l) for l in losses))
    print("  float64: " + ", ".join(f"{l:.9g}" for l in losses64)
          + f"   (max |loss diff| {f64['max_abs_loss_diff']:.3g}, grads1 {f64['max_abs_grad1_diff']:.3g},"
            f" final {f64['max_abs_final_diff']:.3g})")
    total = 0
    for k in ("init", "batch", "grads1", "final", "expected"):
        size = os.path.getsize(paths[k])
        total += size
        print(f"  {os.path.relpath(paths[k], REPO_ROOT):48s} {size:9d} bytes")
    if f64["noise_dominated"]:
        print(f"  noise-dominated (float32 rounding decides them; compare loosely): {', '.join(f64['noise_dominated'])}")
    print(f"  self-check: {'ok' if ok else 'FAILED'}")
    return ok, total


def main():
    names = sys.argv[1:] or list(SPECS)
    all_ok, grand = True, 0
    for name in names:
        ok, total = generate(name)
        all_ok &= ok
        grand += total
    print(f"total {grand} bytes ({grand / 1024 / 1024:.2f} MiB) under {os.path.relpath(OUT_DIR, REPO_ROOT)}/; "
          f"torch {torch.__version__}")
    if grand >= 2 * 1024 * 1024:
        print("WARNING: fixtures exceed 2 MiB")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
