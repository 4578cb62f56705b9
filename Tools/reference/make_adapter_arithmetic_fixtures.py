#!/usr/bin/env python3
"""Two PEFT LoRA adapters on llama-tiny and what PEFT's `add_weighted_adapter` makes of them.

Run from the repository root (a venv with torch, transformers and peft; see README.md here):
    .venv/bin/python Tools/reference/make_adapter_arithmetic_fixtures.py
Writes Tests/Fixtures/lora/arithmetic/. The Swift tests only read these files.

- a/: r 4, alpha 8, q/v/down projections, rank_pattern {"down_proj": 2}, alpha_pattern {"v_proj": 16};
- b/: r 4, alpha 6, q/v/o projections (o_proj only in b, down_proj only in a);
- <case>/: the adapter `add_weighted_adapter(["a", "b"], weights, case, combination_type, ...)` adds,
  saved with save_pretrained; cases.json lists each case's arguments.
The random methods (dare_*) are left out: their masks come from torch's generator.
"""
import json
import os
import shutil
import tempfile

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
LLM = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "llm")
OUT = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "lora", "arithmetic")

WEIGHTS = [0.8, -0.5]
CASES = [
    {"name": "cat", "combination_type": "cat"},
    {"name": "linear", "combination_type": "linear"},
    {"name": "svd", "combination_type": "svd"},
    {"name": "svd_rank3", "combination_type": "svd", "svd_rank": 3},
    {"name": "ties_svd", "combination_type": "ties_svd", "density": 0.5},
    {"name": "magnitude_prune_svd", "combination_type": "magnitude_prune_svd", "density": 0.6, "svd_rank": 6},
    {"name": "ties", "combination_type": "ties", "density": 0.5, "majority_sign_method": "frequency"},
    {"name": "magnitude_prune", "combination_type": "magnitude_prune", "density": 0.7},
]


def base():
    return AutoModelForCausalLM.from_pretrained(os.path.join(LLM, "llama-tiny"), dtype=torch.float32)


def save(model, name, folder):
    config = model.peft_config[name]
    config.base_model_name_or_path = "llama-tiny"
    if not isinstance(config.target_modules, str):
        config.target_modules = sorted(config.target_modules)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, selected_adapters=[name])
        src = tmp if name == "default" else os.path.join(tmp, name)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(os.path.join(src, f), os.path.join(folder, f))


def make_input(name, config, seed):
    torch.manual_seed(seed)
    model = get_peft_model(base(), config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_A" in n or "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    save(model, "default", os.path.join(OUT, name))


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    make_input("a", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                               rank_pattern={"down_proj": 2}, alpha_pattern={"v_proj": 16}, lora_dropout=0.0,
                               task_type="CAUSAL_LM"), 21)
    make_input("b", LoraConfig(r=4, lora_alpha=6, target_modules=["q_proj", "v_proj", "o_proj"], lora_dropout=0.0,
                               task_type="CAUSAL_LM"), 22)
    for case in CASES:
        model = PeftModel.from_pretrained(base(), os.path.join(OUT, "a"), adapter_name="a")
        model.load_adapter(os.path.join(OUT, "b"), adapter_name="b")
        kwargs = {k: v for k, v in case.items() if k != "name"}
        model.add_weighted_adapter(["a", "b"], WEIGHTS, case["name"], **kwargs)
        save(model, case["name"], os.path.join(OUT, case["name"]))
        # Sanity: the cat adapter's delta is the weighted sum of the inputs' deltas.
        if case["name"] == "cat":
            layer = model.base_model.model.model.layers[0].self_attn.q_proj
            want = WEIGHTS[0] * layer.get_delta_weight("a") + WEIGHTS[1] * layer.get_delta_weight("b")
            gap = (layer.get_delta_weight("cat") - want).abs().max().item()
            assert gap < 1e-6, gap
        print(case["name"], "written")
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"generator": "Tools/reference/make_adapter_arithmetic_fixtures.py", "peft": peft.__version__,
                   "transformers": transformers.__version__, "torch": torch.__version__, "weights": WEIGHTS,
                   "adapters": ["a", "b"], "cases": CASES}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
