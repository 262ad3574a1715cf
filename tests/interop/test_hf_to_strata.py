"""Check 2: a model quantized by transformers + bitsandbytes on the CPU and
written by `save_pretrained` loads in strata: every quantized weight strata
dequantizes equals bnb's, bit for bit, and strata's logits on the file equal
the f32 arithmetic of the quantized model upstream (within 1e-4)."""
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

import bnb_ref
import models
import strata_cli
from conftest import RANDOM_MODELS, rng_for
from test_convert_to_hf import bit_mismatches

CONFIGS = {
    "nf4": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
    "nf4-dq": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True),
    "fp4": dict(load_in_4bit=True, bnb_4bit_quant_type="fp4"),
    "fp4-dq": dict(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=True),
    "int8": dict(load_in_8bit=True),
}
SOURCES = ["granite-dense", "switch-3a-with-buffers", *RANDOM_MODELS]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("src", SOURCES)
def test_transformers_quantized_loads_in_strata(src, cfg, model_path, workdir):
    path = model_path(src)
    q = BitsAndBytesConfig(**CONFIGS[cfg], bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=q, device_map="cpu",
                                                 attn_implementation="eager")
    out = str(workdir / f"hf-{src}-{cfg}")
    model.save_pretrained(out)
    modules = bnb_ref.quantized_modules(model)
    assert modules, f"{src}: transformers quantized nothing"
    stored = bnb_ref.stored_quantized_weights(out)
    assert stored == {n + ".weight" for n in modules}, f"{out}: stored quantized weights {sorted(stored)}"
    bad = bit_mismatches(out, modules)
    assert not bad, f"{out}: bnb and strata dequantize differently:\n" + "\n".join(bad)

    ref_model = bnb_ref.replace_with_dequantized(model)
    rng = rng_for("hf-to-strata", src, cfg)
    for n in (1, int(rng.integers(2, 40))):
        toks = models.random_tokens(rng, path, n)
        ref = models.reference_logits(ref_model, toks)
        got = strata_cli.logits(out, toks)
        d = float(np.abs(got - ref).max())
        assert d <= 1e-4, f"{out}: tokens {toks}: max |strata - upstream| = {d:.3g} > 1e-4"
