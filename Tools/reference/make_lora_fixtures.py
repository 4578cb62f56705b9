#!/usr/bin/env python3
"""PEFT LoRA and DoRA adapters on the tiny decoder fixtures, with the logits PEFT computes with
them and five AdamW steps of PEFT training.

Run from the repository root (a venv with torch, transformers and peft; see README.md here):
    .venv/bin/python Tools/reference/make_lora_fixtures.py
Writes Tests/Fixtures/lora/<name>/. The Swift tests only read these files.

Inference fixtures (adapter weights random, B non-zero, so that every term shows in the logits):
- llama-lora: llama-tiny, r 4, alpha 8, q/v/o/down projections by name suffix, rank_pattern
  {"down_proj": 2}, alpha_pattern {"o_proj": 16}.
- qwen2-dora: qwen2-tiny (q/k/v biases), DoRA with rsLoRA, the seven projections of layer 1 only
  (layers_to_transform [1]).
Each holds adapter_config.json + adapter_model.safetensors as PEFT's save_pretrained writes them,
and expected.json: {"base": fixture folder, "ids": [[B x T]], "logits": [[[B x T x V]]]}.

Training fixtures (train-lora, train-dora): PEFT's own initialisation (seeded), then five AdamW
steps (train-lora: a regex target, r 4; train-dora: all-linear, r 2; lr 1e-2, weight decay 0.01, betas 0.9/0.999, eps 1e-8, no dropout) on one fixed batch with
-100 labels. initial/ is the adapter before training, trained/ after the fifth step, and
expected.json holds {"ids", "labels", "lr", "weight_decay", "losses": [loss before each step],
"final_loss": loss after the fifth}.
"""
import json
import os
import shutil

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
LLM = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "llm")
OUT = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "lora")


def rounded(t):
    return [float(f"{v:.8g}") for v in t.flatten().tolist()]


def base(name):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(LLM, name), dtype=torch.float32,
                                                 attn_implementation="eager")
    return model


def randomize(model, seed):
    """Random A, B (non-zero) and magnitudes, so that the adapter changes the logits visibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "lora_magnitude_vector" in name:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))


def save(model, folder, base_name):
    config = model.peft_config["default"]
    config.base_model_name_or_path = base_name  # a fixture name, not this machine's path
    if not isinstance(config.target_modules, str):
        config.target_modules = sorted(config.target_modules)  # a set: sorted, so the file is reproducible
    if os.path.exists(folder):
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    readme = os.path.join(folder, "README.md")  # PEFT's model card template: not part of the adapter
    if os.path.exists(readme):
        os.remove(readme)


def write_json(path, obj):
    obj = {"generator": "Tools/reference/make_lora_fixtures.py", "peft": peft.__version__,
           "transformers": transformers.__version__, "torch": torch.__version__, **obj}
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def inference_fixture(name, base_name, config, seed):
    torch.manual_seed(seed)
    model = get_peft_model(base(base_name), config)
    randomize(model, seed)
    model.eval()
    folder = os.path.join(OUT, name)
    save(model, folder, base_name)
    g = torch.Generator().manual_seed(seed + 100)
    ids = torch.randint(0, 96, (2, 9), generator=g)
    with torch.no_grad():
        logits = model(ids).logits
    # Reload from the folder: the written files give the same logits.
    reloaded = peft.PeftModel.from_pretrained(base(base_name), folder).eval()
    with torch.no_grad():
        gap = (reloaded(ids).logits - logits).abs().max().item()
        plain = base(base_name)(ids).logits
    assert gap == 0, gap
    effect = (plain - logits).abs().max().item()
    assert effect > 0.05, f"the adapter hardly changes the logits ({effect})"
    write_json(os.path.join(folder, "expected.json"), {"base": base_name, "ids": ids.tolist(),
                                                       "logits_shape": list(logits.shape), "logits": rounded(logits)})
    print(name, "adapter changes logits by up to", round(effect, 3))


def training_fixture(name, config, seed):
    torch.manual_seed(seed)
    model = get_peft_model(base("llama-tiny"), config)
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    save(model, os.path.join(folder, "initial"), "llama-tiny")
    g = torch.Generator().manual_seed(seed + 100)
    ids = torch.randint(0, 96, (2, 8), generator=g)
    labels = ids.clone()
    labels[0, :3] = -100   # a masked prompt
    labels[1, 6:] = -100   # padding at the end
    lr, wd = 1e-2, 0.01
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    model.train()
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = model(input_ids=ids, labels=labels).loss.item()
    save(model, os.path.join(folder, "trained"), "llama-tiny")
    write_json(os.path.join(folder, "expected.json"), {
        "base": "llama-tiny", "ids": ids.tolist(), "labels": labels.tolist(), "lr": lr, "weight_decay": wd,
        "betas": [0.9, 0.999], "eps": 1e-8, "losses": losses, "final_loss": final})
    print(name, "losses", [round(x, 5) for x in losses + [final]])


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    inference_fixture("llama-lora", "llama-tiny", LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
        rank_pattern={"down_proj": 2}, alpha_pattern={"o_proj": 16}, lora_dropout=0.0, task_type="CAUSAL_LM"), 11)
    inference_fixture("qwen2-dora", "qwen2-tiny", LoraConfig(
        r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        layers_to_transform=[1], use_dora=True, use_rslora=True,
        lora_dropout=0.0, task_type="CAUSAL_LM"), 12)
    training_fixture("train-lora", LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*\.(q_proj|v_proj|gate_proj)", lora_dropout=0.0, task_type="CAUSAL_LM"), 13)
    training_fixture("train-dora", LoraConfig(
        r=2, lora_alpha=4, target_modules="all-linear",
        use_dora=True, lora_dropout=0.0, task_type="CAUSAL_LM"), 14)


if __name__ == "__main__":
    main()
