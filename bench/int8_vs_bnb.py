#!/usr/bin/env python3
"""The accuracy anchor of the int8 kernels: how far strata's STRATA_KERNELS=int8 moves a
quantized model's logits from the exact result, next to how far bitsandbytes' own CPU forward
(transformers loading the same checkpoint, compute dtype as saved) moves them.

    build/interop-venv/bin/python bench/int8_vs_bnb.py [--seed 1234] [--workdir DIR] [--json]

Models: a random Granite dense and a random Gen A Granite Switch, bf16, written by the real
`save_pretrained` (tests/interop/models.py), with bnb-friendly dimensions (hidden 128,
intermediate 256: bitsandbytes 0.50's CPU 4-bit forward refuses in_features that are not a
multiple of the blocksize, so the golden models, with an MLP of 96, cannot be used).  Each is
converted by `strata convert` to NF4 + double quant, FP4 and LLM.int8.  For random prompts of
8, 24 and 48 tokens, all positions' logits:
  ex   strata, exact kernels: the dequantized weights in f32 (equal to the dequantized f32
       model within 1e-4, tests/tools/test_convert.sh);
  i8   strata, STRATA_KERNELS=int8;
  bnb  transformers + bitsandbytes on the converted checkpoint, torch bf16 (as saved);
  f32  transformers on the unquantized model in f32 (the format's own error is |ex - f32|).
Reported: RMS and max of |i8 - ex| and |bnb - ex|, and each against f32.  Uses the interop
suite's pinned stack and the strata binary $STRATA_EXE or build/tools/strata."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
import models  # noqa: E402

FORMATS = {"nf4-dq": ["--quant", "nf4", "--double-quant"], "fp4": ["--quant", "fp4"],
           "int8": ["--quant", "int8"]}
DIMS = dict(num_attention_heads=4, num_key_value_heads=2, hidden_size=128, intermediate_size=256)


def strata_logits(exe, path, toks, kernels, out):
    env = dict(os.environ, STRATA_KERNELS=kernels)
    subprocess.run([exe, "logits", "--model", path, "--tokens", ",".join(map(str, toks)),
                    "--out", out], env=env, check=True, stderr=subprocess.DEVNULL)
    return np.fromfile(out, dtype="<f4").astype(np.float64)


def hf_logits(model, toks):
    with torch.no_grad():
        out = model(torch.tensor([toks]), use_cache=False).logits[0]
    return out.float().numpy().astype(np.float64).ravel()


def make_models(workdir, rng):
    srcs = {}
    for kind in ("dense", "switch"):
        src = os.path.join(workdir, f"random-{kind}-bf16")
        if not os.path.exists(os.path.join(src, "config.json")):
            if kind == "dense":
                models.random_dense(src, rng, dtype="bfloat16", vocab_size=256,
                                    num_hidden_layers=3, **DIMS)
            else:
                models.random_switch(src, rng, dtype="bfloat16", shared_intermediate_size=256,
                                     head_dim=32, projection_head_dim=32, mamba_n_heads=128,
                                     **DIMS)
        srcs[kind] = src
    return srcs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--workdir", default="/tmp/strata-int8-vs-bnb")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    exe = os.environ.get("STRATA_EXE") or os.path.join(ROOT, "build", "tools", "strata")
    os.makedirs(a.workdir, exist_ok=True)
    # Models and prompts draw from their own streams: the prompts are the same
    # whether the models were made now or reused from --workdir.
    model_rng, rng = np.random.default_rng(a.seed), np.random.default_rng(a.seed + 1)
    rms = lambda v: float(np.sqrt(np.mean(v * v)))
    out = os.path.join(a.workdir, "logits.bin")
    rows = []
    for kind, src in make_models(a.workdir, model_rng).items():
        ref, _ = models.load_reference(src)
        for fmt, args in FORMATS.items():
            path = f"{src}-{fmt}"
            if not os.path.exists(os.path.join(path, "config.json")):
                subprocess.run([exe, "convert", src, path, "--quiet", *args], check=True)
            bnb_model, _ = models.load_reference(path, dtype=torch.bfloat16)
            acc = {k: [] for k in ("i8_ex", "bnb_ex", "ex_f32", "i8_f32", "bnb_f32")}
            mx = {"i8_ex": 0.0, "bnb_ex": 0.0}
            for n in (8, 24, 48):
                toks = models.random_tokens(rng, path, n)
                f = hf_logits(ref, toks)
                b = hf_logits(bnb_model, toks)
                ex = strata_logits(exe, path, toks, "exact", out)
                i8 = strata_logits(exe, path, toks, "int8", out)
                for k, d in (("i8_ex", i8 - ex), ("bnb_ex", b - ex), ("ex_f32", ex - f),
                             ("i8_f32", i8 - f), ("bnb_f32", b - f)):
                    acc[k].append(rms(d))
                    if k in mx:
                        mx[k] = max(mx[k], float(np.abs(d).max()))
            row = {"model": kind, "format": fmt, **{f"rms_{k}": float(np.mean(v))
                                                    for k, v in acc.items()},
                   "max_i8_ex": mx["i8_ex"], "max_bnb_ex": mx["bnb_ex"]}
            rows.append(row)
            del bnb_model
    if a.json:
        json.dump({"seed": a.seed, "rows": rows}, sys.stdout, indent=1)
        print()
        return
    print(f"seed {a.seed}; RMS over all logits of 3 prompts (max in brackets)")
    print("model   format  |i8 - ex|          |bnb - ex|         format's own |ex - f32|")
    for r in rows:
        print(f"{r['model']:7s} {r['format']:7s} {r['rms_i8_ex']:.4f} ({r['max_i8_ex']:.4f})"
              f"    {r['rms_bnb_ex']:.4f} ({r['max_bnb_ex']:.4f})    {r['rms_ex_f32']:.4f}")


if __name__ == "__main__":
    main()
