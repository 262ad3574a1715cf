"""Check 1: what `strata convert` writes loads in transformers + bitsandbytes
(`AutoModelForCausalLM.from_pretrained(..., device_map="cpu")`), and every
quantized weight bnb dequantizes equals `strata dequantize`, bit for bit
(a zero's sign aside, see bnb_ref.bits)."""
import numpy as np
import pytest
from transformers import AutoModelForCausalLM

import bnb_ref
import models
import strata_cli
from conftest import FORMATS, RANDOM_MODELS, note

SOURCES = ["granite-dense", "switch-3a-with-buffers", "switch-3a-bf16", *RANDOM_MODELS]


def load_as_user(path):
    return AutoModelForCausalLM.from_pretrained(path, device_map="cpu", output_loading_info=True)


def bit_mismatches(path, modules):
    """Names of the modules whose bnb dequantization differs from strata's."""
    bad = []
    for name, mod in modules.items():
        ref = bnb_ref.dequantized(mod)
        got = strata_cli.dequantize(path, name + ".weight")
        if ref.shape != got.shape:
            bad.append(f"{name}: {got.size} values from strata, {ref.size} from bnb")
        elif not np.array_equal(bnb_ref.bits(ref), bnb_ref.bits(got)):
            n = int(np.count_nonzero(bnb_ref.bits(ref) != bnb_ref.bits(got)))
            bad.append(f"{name}: {n} of {ref.size} values differ "
                       f"(max |d| {np.abs(ref - got).max():.3g})")
        if not bnb_ref.public_api_agrees(mod):
            note(f"bnb's public dequantize_4bit is wrong on shape "
                 f"{tuple(mod.weight.quant_state.shape)} (bnb-format.md §7): compared with bnb's "
                 "kernel on the flat tensor instead")
    return bad


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("src", SOURCES)
def test_strata_convert_loads_in_transformers(src, fmt, converted):
    out = converted(src, fmt)
    model, info = load_as_user(out)
    # The Gen A switch buffers have their own test below.
    missing = set(info["missing_keys"]) - set(models.SWITCH_BUFFERS)
    assert not missing, f"{out}: transformers found no value for {sorted(missing)}"
    assert not info["unexpected_keys"], f"{out}: unexpected keys {sorted(info['unexpected_keys'])}"
    assert not info["mismatched_keys"], f"{out}: shape mismatches {info['mismatched_keys']}"
    assert not info["error_msgs"], f"{out}: {info['error_msgs']}"
    modules = bnb_ref.quantized_modules(model)
    stored = bnb_ref.stored_quantized_weights(out)
    loaded = {n + ".weight" for n in modules}
    assert loaded == stored, (f"{out}: quantized in the file but not by bnb: {sorted(stored - loaded)}; "
                              f"bnb modules without stored state: {sorted(loaded - stored)}")
    assert modules, f"{out}: no quantized layer"
    bad = bit_mismatches(out, modules)
    assert not bad, f"{out}: bnb and strata dequantize differently:\n" + "\n".join(bad)


@pytest.mark.xfail(strict=True, reason=(
    "strata convert drops model.adapter_token_ids / token_to_group_mask / adapter_hiding_matrix "
    "(derived data to strata), but upstream granite-switch needs them in the file: "
    "from_pretrained leaves them uninitialised (tests/data/model/README.md, behaviour 1), "
    "so the converted model routes adapters with garbage in transformers"))
def test_strata_convert_keeps_the_switch_buffers_upstream_needs(converted):
    out = converted("switch-3a-with-buffers", "nf4")
    model, info = load_as_user(out)
    lost = sorted(set(info["missing_keys"]) & set(models.SWITCH_BUFFERS))
    assert not lost, f"{out}: upstream gets no value for {lost}"
