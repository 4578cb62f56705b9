"""Checks `lathe convert HF_FOLDER --output X.gguf --type T` against llama.cpp's own converter, by hand.

    /work/main/.venv/bin/python Tools/reference/check_hf_to_gguf.py --lathe .build/release/lathe \
        --converter /path/to/llama.cpp/convert_hf_to_gguf.py [--gguf SmolLM2-135M-Instruct.Q4_1.gguf] [--work DIR] [--type f16]

1. Makes a Hugging Face folder from a Llama-family GGUF file with transformers (its GGUF reader gives the
   dequantised weights in Hugging Face's conventions and builds a fast tokenizer; the weights are saved
   as float32 safetensors with a fresh LlamaForCausalLM, as LLM.md describes).
2. Writes that folder as GGUF with Lathe and with llama.cpp's convert_hf_to_gguf.py (same --outtype).
3. Compares the two files: the metadata keys and values (general.* keys the converter derives from
   model cards, and keys Lathe does not write, are listed), and the tensors: names, order, types,
   shapes and bytes.
Exits 1 if a tensor differs. Needs torch, transformers, gguf (the converter also imports its own gguf-py).
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from gguf import GGUFReader, GGUFValueType


def make_folder(gguf_path: pathlib.Path, out: pathlib.Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    if (out / "model.safetensors").exists():
        return
    cfg = dict(load_gguf_checkpoint(str(gguf_path), return_tensors=False)["config"])
    cfg.pop("model_type", None)
    cfg.pop("_model_name_or_path", None)
    config = LlamaConfig(**cfg)
    model = LlamaForCausalLM(config)
    read = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)
    with torch.no_grad():
        missing, unexpected = model.load_state_dict(read["tensors"], strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    model.tie_weights()
    model.save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tok.save_pretrained(out)


def value(f):
    if f.types[0] == GGUFValueType.ARRAY:
        return [bytes(f.parts[i]) for i in f.data]
    return bytes(f.parts[f.data[0]])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--converter", required=True)
    ap.add_argument("--gguf", default=os.path.expanduser("~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--work")
    ap.add_argument("--type", default="f16")
    args = ap.parse_args()
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="lathe-hf-gguf-"))
    folder = work / "hf"
    folder.mkdir(parents=True, exist_ok=True)
    make_folder(pathlib.Path(args.gguf), folder)
    ours, theirs = work / f"lathe-{args.type}.gguf", work / f"llamacpp-{args.type}.gguf"
    r = subprocess.run([args.lathe, "convert", str(folder), "--output", str(ours), "--type", args.type], capture_output=True, text=True)
    print(r.stdout.strip() or r.stderr.strip())
    if r.returncode != 0:
        return 1
    r = subprocess.run([sys.executable, args.converter, str(folder), "--outtype", args.type, "--outfile", str(theirs)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr[-3000:])
        return 1
    a, b = GGUFReader(ours), GGUFReader(theirs)
    fa = {k: f for k, f in a.fields.items() if not k.startswith("GGUF.")}
    fb = {k: f for k, f in b.fields.items() if not k.startswith("GGUF.")}
    same = [k for k in fa if k in fb and value(fa[k]) == value(fb[k])]
    print(f"metadata: {len(fa)} keys (Lathe), {len(fb)} (converter), {len(same)} identical")
    for k in fa:
        if k in fb and k not in same:
            print(f"  differs: {k}: Lathe {value(fa[k])[:3] if isinstance(value(fa[k]), list) else value(fa[k])[:80]!r}, "
                  f"converter {value(fb[k])[:3] if isinstance(value(fb[k]), list) else value(fb[k])[:80]!r}")
    print(f"  only in Lathe's: {sorted(set(fa) - set(fb))}")
    print(f"  only in the converter's: {sorted(set(fb) - set(fa))}")
    ta, tb = a.tensors, b.tensors
    print(f"tensors: {len(ta)} (Lathe), {len(tb)} (converter); same order: {[t.name for t in ta] == [t.name for t in tb]}")
    by_name = {t.name: t for t in tb}
    bad = 0
    for t in ta:
        u = by_name.get(t.name)
        if u is None:
            print(f"  {t.name}: not in the converter's file")
            bad += 1
            continue
        x, y = np.asarray(t.data).view(np.uint8).reshape(-1), np.asarray(u.data).view(np.uint8).reshape(-1)
        if t.tensor_type != u.tensor_type or list(t.shape) != list(u.shape) or not np.array_equal(x, y):
            bad += 1
            print(f"  {t.name}: Lathe {t.tensor_type.name} {list(t.shape)}, converter {u.tensor_type.name} {list(u.shape)}, "
                  f"{int(np.count_nonzero(x != y)) if x.size == y.size else 'different sizes'} bytes differ")
    print(f"tensors identical: {len(ta) - bad} of {len(ta)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
