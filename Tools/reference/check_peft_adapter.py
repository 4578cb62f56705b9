#!/usr/bin/env python3
"""Loads adapters that Lathe wrote into PEFT, onto transformers' copy of the base, and compares
PEFT's logits with the logits Lathe computed with them (Lathe -> PEFT interop).

Lathe's PEFTAdapterTests write their five-step-trained LoRA and DoRA adapters, with Lathe's
logits on the training batch (lathe_logits.json), when LATHE_KEEP_ADAPTERS names a folder:

    LATHE_KEEP_ADAPTERS=/tmp/lathe-adapters swift test -c release --skip-build --filter PEFTAdapterTests
    .venv/bin/python Tools/reference/check_peft_adapter.py /tmp/lathe-adapters/*

Each argument is an adapter folder holding lathe_logits.json ({"base": fixture name under
Tests/Fixtures/llm, "ids": [[B x T]], "logits": [B*T*V floats]}). Prints the largest difference
per folder and exits non-zero when one exceeds 1e-4.
"""
import json
import os
import sys

import peft
import torch
from transformers import AutoModelForCausalLM

LLM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "llm")


def main(folders):
    worst = 0.0
    for folder in folders:
        with open(os.path.join(folder, "lathe_logits.json")) as f:
            expected = json.load(f)
        base = AutoModelForCausalLM.from_pretrained(os.path.join(LLM, expected["base"]), dtype=torch.float32,
                                                    attn_implementation="eager")
        model = peft.PeftModel.from_pretrained(base, folder).eval()
        ids = torch.tensor(expected["ids"])
        with torch.no_grad():
            logits = model(ids).logits.flatten()
        gap = (logits - torch.tensor(expected["logits"])).abs().max().item()
        adapted = sum(1 for _, m in model.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer))
        print(f"{folder}: PEFT {peft.__version__} loaded {adapted} adapted layers "
              f"(use_dora={model.peft_config['default'].use_dora}); max |PEFT - Lathe| logits {gap:.3g}")
        worst = max(worst, gap)
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
