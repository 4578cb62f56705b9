"""Writes Tests/Fixtures/merge: tiny random Llama models (Hugging Face folders), mergekit YAML
configs, and mergekit's merged tensors for each config, which LatheMergeTests compares with
`lathe merge` (within 1e-6).

Reference: mergekit 0.1.5 (pip install mergekit==0.1.5), torch CPU. Run from the repository root:

    /work/venv-mergekit/bin/python Tools/reference/make_merge_fixtures.py

DARE and DELLA draw random masks. mergekit draws them with torch.bernoulli; Lathe with its
Philox-4x32-10 generator (Sources/LatheTensor/Random.swift) keyed by the seed, the output tensor's
name and the input's position among the non-base inputs (Merger.maskGenerator). So that both
draw the same masks, this script replaces torch.bernoulli, while mergekit merges, by the same
Philox stream (keep entry i when uniform_i < p_i, uniform_i = (word_i >> 8) * 2^-24). Everything
else is mergekit's own code.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import yaml

import mergekit
from mergekit.config import MergeConfiguration
from mergekit.merge import run_merge
from mergekit.options import MergeOptions
import mergekit.merge_methods.generalized_task_arithmetic as gta
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "merge")
MERGEKIT_VERSION = "0.1.5"
SEED = 0
M32 = np.uint64(0xFFFFFFFF)


def philox(seed, counters):
    """Philox-4x32-10 blocks for uint64 `counters` (as RandomGenerator.philox)."""
    c0 = counters & M32
    c1 = counters >> np.uint64(32)
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0 = np.uint64(seed & 0xFFFFFFFF)
    k1 = np.uint64(seed >> 32)
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        n0 = (p1 >> np.uint64(32)) ^ c1 ^ k0
        n2 = (p0 >> np.uint64(32)) ^ c3 ^ k1
        c1 = p1 & M32
        c3 = p0 & M32
        c0, c2 = n0, n2
        k0 = (k0 + np.uint64(0x9E3779B9)) & M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & M32
    return np.stack([c0, c1, c2, c3], axis=1)


def mask_uniforms(seed, tensor_name, input_index, count):
    """Uniforms in [0, 1) of Merger.maskGenerator(seed, tensor, input)."""
    h = 0xCBF29CE484222325
    for b in tensor_name.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    key = h ^ ((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    offset = input_index << 40
    blocks = (count + 3) // 4
    words = philox(key, np.arange(blocks, dtype=np.uint64) + np.uint64(offset)).reshape(-1)[:count]
    return (words >> np.uint64(8)).astype(np.float32) * np.float32(2.0**-24)


_context = {"name": None, "input": -1, "draws": 0}
_real_merge_group = gta.GeneralizedTaskArithmeticMerge.merge_group
_real_sparsify = gta.sparsify


def _merge_group(self, group, /, **parameters):
    _context["name"] = group.metadata.name
    _context["input"] = -1
    return _real_merge_group(self, group, **parameters)


def _sparsify(tensor, **kwargs):
    _context["input"] += 1
    return _real_sparsify(tensor, **kwargs)


def _bernoulli(probs, *args, **kwargs):
    _context["draws"] += 1
    u = mask_uniforms(SEED, _context["name"], _context["input"], probs.numel())
    keep = torch.from_numpy(u).reshape(probs.shape) < probs.float()
    return keep.to(probs.dtype)


gta.GeneralizedTaskArithmeticMerge.merge_group = _merge_group
gta.sparsify = _sparsify
torch.bernoulli = _bernoulli


def tiny_llama(seed, vocab=32, hidden=8, intermediate=16, layers=4, base=None, scale=0.05):
    """A random Llama state dict; with `base`, base + scale * noise (a "fine-tune")."""
    g = torch.Generator().manual_seed(seed)
    heads, kv = 2, 1
    head_dim = hidden // heads
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (heads * head_dim, hidden), p + "self_attn.k_proj.weight": (kv * head_dim, hidden),
            p + "self_attn.v_proj.weight": (kv * head_dim, hidden), p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
            p + "mlp.gate_proj.weight": (intermediate, hidden), p + "mlp.up_proj.weight": (intermediate, hidden),
            p + "mlp.down_proj.weight": (hidden, intermediate),
        })
    state = {}
    for name, shape in sorted(shapes.items()):
        noise = torch.randn(shape, generator=g)
        if base is None:
            state[name] = (1 + 0.1 * noise) if name.endswith("norm.weight") else 0.2 * noise
        else:
            state[name] = base[name] + scale * noise
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "head_dim": head_dim, "rms_norm_eps": 1e-5, "max_position_embeddings": 64,
        "tie_word_embeddings": False, "hidden_act": "silu", "rope_theta": 10000.0, "torch_dtype": "float32",
        "bos_token_id": 1, "eos_token_id": 2,
    }
    return state, config


def save_model(folder, state, config, tokenizer=False):
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if tokenizer:
        # Enough for the tokenizer-copy test; not a working tokenizer.
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"model_max_length": 64, "fixture": os.path.basename(folder)}, f)


# name -> config (model paths relative to the fixture folder)
CONFIGS = {
    "linear": {
        "merge_method": "linear", "dtype": "float32",
        "models": [
            {"model": "models/base", "parameters": {"weight": 1.0}},
            {"model": "models/a", "parameters": {"weight": [0.2, 0.8]}},
            {"model": "models/b", "parameters": {"weight": [{"filter": "self_attn", "value": 0.3}, {"value": 0.7}]}},
        ],
    },
    "linear_unnormalized": {
        "merge_method": "linear", "dtype": "float32", "parameters": {"normalize": False},
        "models": [{"model": "models/a", "parameters": {"weight": 0.6}}, {"model": "models/b", "parameters": {"weight": 0.3}}],
    },
    "slerp": {
        "merge_method": "slerp", "base_model": "models/base", "dtype": "float32",
        "models": [{"model": "models/base"}, {"model": "models/unrelated"}],
        "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                             {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]},
    },
    "slerp_parallel": {
        "merge_method": "slerp", "base_model": "models/base", "dtype": "float32",
        "models": [{"model": "models/base"}, {"model": "models/near"}], "parameters": {"t": 0.3},
    },
    "task_arithmetic": {
        "merge_method": "task_arithmetic", "base_model": "models/base", "dtype": "float32",
        "parameters": {"lambda": 0.9},
        "models": [{"model": "models/a", "parameters": {"weight": 0.7}},
                   {"model": "models/b", "parameters": {"weight": [0.3, 1.0]}}],
    },
    "ties": {
        "merge_method": "ties", "base_model": "models/base", "dtype": "float32",
        "parameters": {"normalize": True},
        "models": [{"model": "models/a", "parameters": {"weight": 0.6, "density": [0.3, 0.7]}},
                   {"model": "models/b", "parameters": {"weight": 0.5, "density": [{"filter": "mlp", "value": 0.4}, {"value": 0.6}]}},
                   {"model": "models/c", "parameters": {"weight": 0.4, "density": 0.5}}],
    },
    "dare_linear": {
        "merge_method": "dare_linear", "base_model": "models/base", "dtype": "float32",
        "models": [{"model": "models/a", "parameters": {"weight": 0.6, "density": 0.6}},
                   {"model": "models/b", "parameters": {"weight": 0.4, "density": [0.4, 0.8]}}],
    },
    "dare_ties": {
        "merge_method": "dare_ties", "base_model": "models/base", "dtype": "float32",
        "models": [{"model": "models/a", "parameters": {"weight": 0.5, "density": 0.5}},
                   {"model": "models/b", "parameters": {"weight": 0.5, "density": 0.7}},
                   {"model": "models/c", "parameters": {"weight": 0.3, "density": 0.6}}],
    },
    "della": {
        "merge_method": "della", "base_model": "models/base", "dtype": "float32",
        "parameters": {"epsilon": 0.1, "lambda": 1.1},
        "models": [{"model": "models/a", "parameters": {"weight": 0.5, "density": 0.5}},
                   {"model": "models/b", "parameters": {"weight": 0.5, "density": 0.6}}],
    },
    "della_linear": {
        "merge_method": "della_linear", "base_model": "models/base", "dtype": "float32",
        "parameters": {"epsilon": 0.15},
        "models": [{"model": "models/a", "parameters": {"weight": 0.5, "density": 0.5}},
                   {"model": "models/b", "parameters": {"weight": 0.5, "density": 0.4}}],
    },
    "breadcrumbs": {
        "merge_method": "breadcrumbs", "base_model": "models/base", "dtype": "float32",
        "models": [{"model": "models/a", "parameters": {"weight": 0.5, "density": 0.8, "gamma": 0.05}},
                   {"model": "models/b", "parameters": {"weight": 0.5, "density": 0.7, "gamma": 0.1}}],
    },
    "breadcrumbs_ties": {
        "merge_method": "breadcrumbs_ties", "base_model": "models/base", "dtype": "float32",
        "models": [{"model": "models/a", "parameters": {"weight": 0.5, "density": 0.8, "gamma": 0.05}},
                   {"model": "models/b", "parameters": {"weight": 0.5, "density": 0.7}}],
    },
    "model_stock": {
        "merge_method": "model_stock", "base_model": "models/base", "dtype": "float32",
        "models": [{"model": "models/a"}, {"model": "models/b"}, {"model": "models/c"}],
    },
    "model_stock_filter_wise": {
        "merge_method": "model_stock", "base_model": "models/base", "dtype": "float32",
        "parameters": {"filter_wise": True},
        "models": [{"model": "models/a"}, {"model": "models/b"}],
    },
    "passthrough": {
        "merge_method": "passthrough", "dtype": "float32",
        "slices": [
            {"sources": [{"model": "models/base", "layer_range": [0, 2]}]},
            {"sources": [{"model": "models/a", "layer_range": [1, 4], "parameters": {"scale": [{"filter": "o_proj", "value": 0.5}, {"value": 1.0}]}}]},
        ],
    },
    "slices_linear": {
        "merge_method": "linear", "dtype": "float32",
        "parameters": {"weight": 0.5},
        "slices": [
            {"sources": [{"model": "models/base", "layer_range": [0, 2]}, {"model": "models/a", "layer_range": [0, 2], "parameters": {"weight": [0.1, 0.9]}}]},
            {"parameters": {"weight": 0.25},
             "sources": [{"model": "models/b", "layer_range": [2, 4]}, {"model": "models/c", "layer_range": [1, 3], "parameters": {"weight": 0.75}}]},
        ],
    },
}


def main():
    import importlib.metadata
    assert importlib.metadata.version("mergekit") == MERGEKIT_VERSION, "the fixtures were made with mergekit " + MERGEKIT_VERSION
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(os.path.join(ROOT, "configs"))
    os.makedirs(os.path.join(ROOT, "expected"))
    base, cfg = tiny_llama(1)
    save_model(os.path.join(ROOT, "models/base"), base, cfg, tokenizer=True)
    for name, seed in [("a", 2), ("b", 3), ("c", 4)]:
        state, c = tiny_llama(seed, base=base)
        save_model(os.path.join(ROOT, "models", name), state, c, tokenizer=True)
    unrelated, c = tiny_llama(5)
    save_model(os.path.join(ROOT, "models/unrelated"), unrelated, c)
    near, c = tiny_llama(6, base=base, scale=1e-4)
    save_model(os.path.join(ROOT, "models/near"), near, c)
    # Incompatible models for the checks.
    v, c = tiny_llama(7, vocab=40)
    save_model(os.path.join(ROOT, "models/vocab40"), v, c)
    w, c = tiny_llama(8, intermediate=24)
    save_model(os.path.join(ROOT, "models/wide"), w, c)

    cwd = os.getcwd()
    # Model paths are relative to the configs' folder (mergekit: to the working directory).
    os.chdir(os.path.join(ROOT, "configs"))
    try:
        for name, config in CONFIGS.items():
            config = json.loads(json.dumps(config).replace('"models/', '"../models/'))
            with open(name + ".yaml", "w") as f:
                f.write(f"# mergekit {MERGEKIT_VERSION} merged this config into expected/{name}.safetensors\n")
                yaml.safe_dump(config, f, sort_keys=False)
            out = os.path.join("/tmp", "lathe-merge-fixture-" + name)
            shutil.rmtree(out, ignore_errors=True)
            draws = _context["draws"]
            run_merge(MergeConfiguration.model_validate(config), out, options=MergeOptions(copy_tokenizer=False, lazy_unpickle=False, out_shard_size=1 << 40, write_model_card=False))
            if config["merge_method"].startswith(("dare", "della")):
                assert _context["draws"] > draws, f"{name}: the Philox masks were not used"
            tensors = {}
            for f in sorted(os.listdir(out)):
                if f.endswith(".safetensors"):
                    tensors.update(load_file(os.path.join(out, f)))
            with open(os.path.join(out, "config.json")) as f:
                layers = json.load(f)["num_hidden_layers"]
            save_file({k: v.float().contiguous() for k, v in tensors.items()}, os.path.join("..", "expected", name + ".safetensors"),
                      metadata={"format": "pt", "mergekit": MERGEKIT_VERSION, "num_hidden_layers": str(layers)})
            print(f"{name}: {len(tensors)} tensors, {layers} layers")
            shutil.rmtree(out)
    finally:
        os.chdir(cwd)


if __name__ == "__main__":
    main()
