"""What bitsandbytes says a quantized weight is.

bnb's public CPU `dequantize_4bit` (0.50.x, AVX-512 machines) indexes absmax
per row instead of per flat block when in_features is a multiple of 16 but not
of the blocksize (bnb-format.md §7).  The golden bnb data therefore takes bnb's
own CPU kernel on the flattened tensor (one row), where row and flat indexing
coincide; so does this module.  `public_api_agrees` tells whether the public
call on the true shape gave the same bits."""
import copy
import glob
import json
import os

import numpy as np
import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F

QUANTIZED_TYPES = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)


def bits(a):
    """The f32 bit patterns, -0.0 counted as +0.0: bnb's own paths disagree on
    the sign of FP4 code 8's zero (tests/data/bnb/README.md), so the sign of a
    zero is not part of the format."""
    return np.where(a == 0, np.float32(0), a).astype(np.float32).view(np.uint32)


def quantized_modules(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, QUANTIZED_TYPES)}


def _flat_state(qs):
    qs = copy.copy(qs)
    qs.dtype = torch.float32
    qs.shape = torch.Size([1, qs.shape.numel()])
    return qs


def dequantized(module):
    """The module's weight as bnb dequantizes it, f32, flattened."""
    w = module.weight
    if isinstance(module, bnb.nn.Linear4bit):
        return F.dequantize_4bit(w.data, _flat_state(w.quant_state)).numpy().ravel()
    return F.int8_vectorwise_dequant(w.data, w.SCB).float().numpy().ravel()


def public_api_agrees(module):
    w = module.weight
    if not isinstance(module, bnb.nn.Linear4bit):
        return True
    qs = copy.copy(w.quant_state)
    qs.dtype = torch.float32
    pub = F.dequantize_4bit(w.data, qs).numpy().ravel()
    return np.array_equal(bits(pub), bits(dequantized(module)))


def replace_with_dequantized(model):
    """Swaps every bnb Linear for an f32 nn.Linear holding bnb's dequantization
    and makes every other parameter f32:
    the arithmetic of the quantized model in f32 (bnb's own CPU matmuls use a
    bf16 kernel on AVX512-BF16 machines, and that kernel refuses in_features
    that are not a multiple of the blocksize)."""
    for name, mod in quantized_modules(model).items():
        out_f, in_f = mod.out_features, mod.in_features
        lin = torch.nn.Linear(in_f, out_f, bias=mod.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(dequantized(mod).reshape(out_f, in_f)))
            if mod.bias is not None:
                lin.bias.copy_(mod.bias.float())
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, lin)
    # The rest in f32 too (a quantized model refuses .float()).
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.data = p.data.float()
    return model.eval()


def stored_quantized_weights(path):
    """Names of the quantized weights stored in a checkpoint directory (4-bit:
    those with a quant_state entry; LLM.int8: those with an SCB)."""
    names = set()
    for f in glob.glob(os.path.join(path, "*.safetensors")):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for k in header:
            if ".weight.quant_state.bitsandbytes__" in k:
                names.add(k.split(".quant_state.")[0])
            elif k.endswith(".SCB"):
                names.add(k[: -len(".SCB")] + ".weight")
    return names
