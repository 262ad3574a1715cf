"""Checks 1 and 2 on the golden bnb checkpoints (tests/data/bnb/tiny_*).  They
are toy models, not transformers architectures, so their layers are loaded
straight into bnb's modules the way transformers does it
(`Params4bit.from_prequantized`; `Int8Params` + `SCB`).

* strata reads what bnb wrote: `strata dequantize` equals bnb's dequantization
  of every quantized layer, bit for bit;
* bnb reads what strata writes: `strata quantize` of the layers' source weights
  (from the golden manifest) loads into the same modules, and bnb dequantizes
  it to strata's values."""
import json
import os

import numpy as np
import pytest
import torch
import bitsandbytes as bnb
from safetensors.torch import load_file, save_file

import bnb_ref
import strata_cli

BNB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "bnb")
CHECKPOINTS = {"tiny_nf4_dq_bf16": ["--type", "nf4", "--double-quant"],
               "tiny_fp4_nodq_fp16": ["--type", "fp4"],
               "tiny_int8_fp16": ["--type", "int8"]}
TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def bnb_layers(path):
    """{weight name: bnb module} for every quantized weight of a safetensors file."""
    sd = load_file(path)
    out = {}
    for name in bnb_ref.stored_quantized_weights(os.path.dirname(path)):
        prefix = name[: -len("weight")]
        bias = sd.get(prefix + "bias")
        if prefix + "SCB" in sd:
            w = sd[name]
            mod = bnb.nn.Linear8bitLt(w.shape[1], w.shape[0], bias=bias is not None,
                                      has_fp16_weights=False)
            # what transformers' 8-bit quantizer does with a pre-quantized weight
            assert int(sd.get(prefix + "weight_format", torch.tensor(0))) == 0, name
            mod.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
            mod.weight.SCB = sd[prefix + "SCB"]
        else:
            stats = {k[len(name) + 1:]: v for k, v in sd.items() if k.startswith(name + ".")}
            qs_json = json.loads(bytes(next(v for k, v in stats.items()
                                            if k.startswith("quant_state.")).tolist()))
            out_f, in_f = qs_json["shape"]
            mod = bnb.nn.Linear4bit(in_f, out_f, bias=bias is not None, quant_type=qs_json["quant_type"])
            mod.weight = bnb.nn.Params4bit.from_prequantized(
                data=sd[name], quantized_stats=stats, requires_grad=False, device="cpu")
        out[name] = mod
    return out


def compare(path, layers):
    bad = []
    for name, mod in layers.items():
        ref, got = bnb_ref.dequantized(mod), strata_cli.dequantize(path, name)
        if ref.shape != got.shape or not np.array_equal(bnb_ref.bits(ref), bnb_ref.bits(got)):
            bad.append(name)
    return bad


@pytest.mark.parametrize("ckpt", CHECKPOINTS)
def test_strata_reads_golden_bnb_checkpoint(ckpt):
    path = os.path.join(BNB, ckpt, "model.safetensors")
    layers = bnb_layers(path)
    assert len(layers) == 2, f"{ckpt}: quantized layers {sorted(layers)}"
    bad = compare(path, layers)
    assert not bad, f"{ckpt}: strata and bnb dequantize differently: {bad}"


@pytest.mark.parametrize("ckpt", CHECKPOINTS)
def test_bnb_reads_strata_quantize_output(ckpt, tmp_path):
    with open(os.path.join(BNB, "manifest.json")) as f:
        manifest = json.load(f)
    blob = open(os.path.join(BNB, "data.bin"), "rb").read()
    case = next(c for c in manifest["cases"] if c["kind"] == "tiny_model" and c["dir"] == ckpt)
    src = {}
    for key, array in case["outputs"].items():
        if key.endswith(".source_weight"):
            a = manifest["arrays"][array]
            raw = bytearray(blob[a["offset"]: a["offset"] + a["nbytes"]])
            t = torch.frombuffer(raw, dtype=TORCH[a["dtype"]]).reshape(a["shape"]).clone()
            src[key.replace(".source_weight", ".weight")] = t
    assert len(src) == 2, sorted(case["outputs"])
    save_file(src, str(tmp_path / "src.safetensors"))
    out = tmp_path / "q" / "model.safetensors"
    out.parent.mkdir()
    strata_cli.run("quantize", tmp_path / "src.safetensors", out, *CHECKPOINTS[ckpt])
    layers = bnb_layers(str(out))
    assert sorted(layers) == sorted(src), f"{ckpt}: bnb found {sorted(layers)}"
    bad = compare(str(out), layers)
    assert not bad, f"{ckpt}: strata and bnb dequantize strata's output differently: {bad}"
