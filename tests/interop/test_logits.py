"""Check 3: `strata logits` against the upstream model (transformers'
GraniteForCausalLM; granite-switch's GraniteSwitchForCausalLM) in f32 on random
token sequences: |delta logit| <= 1e-4, full sequence and prefill + decode, and
for switch models the adapter index of every position exactly."""
import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

import bnb_ref
import models
import strata_cli
from conftest import RANDOM_MODELS, rng_for

TOL = 1e-4


def compare(path, model, toks, what):
    ref = models.reference_logits(model, toks)
    switch = models.is_switch(path)
    got = strata_cli.logits(path, toks, indices=switch)
    if switch:
        got, idx = got
        up = model.model._last_adapter_indices[0].tolist()
        assert idx.tolist() == up, f"{what}: tokens {toks}: adapter indices {idx.tolist()}, upstream {up}"
    d = float(np.abs(got - ref).max())
    assert d <= TOL, f"{what}: tokens {toks}: max |strata - upstream| = {d:.3g} > {TOL}"
    k = int(len(toks) // 2)
    if k:
        inc = strata_cli.logits(path, toks, prefill=k)
        d = float(np.abs(inc - ref).max())
        assert d <= TOL, f"{what}: tokens {toks}, prefill {k}: max |strata - upstream| = {d:.3g}"
    return d


@pytest.mark.parametrize("name", list(models.GOLDEN_MODELS))
def test_upstream_reproduces_the_golden_logits(name):
    """The pinned stack is the one the golden data came from: otherwise the
    differential checks below would compare against something else."""
    path = models.GOLDEN_MODELS[name]
    model, info = models.load_reference(path)
    with open(f"{path}/cases/manifest.json") as f:
        cases = json.load(f)["cases"]
    n = 0
    for case in cases:
        if case["kind"] != "forward" or "attention_mask" in case:
            continue
        data = load_file(os.path.join(path, "cases", case["file"]))
        for row, toks in enumerate(data["input_ids"].tolist()):
            ref = models.reference_logits(model, toks)
            d = float(np.abs(ref - data["logits"][row]).max())
            assert d <= TOL, f"{name}/{case['name']}: upstream here differs from the golden by {d:.3g}"
            n += 1
    assert n, f"{name}: no unpadded forward case"


@pytest.mark.parametrize("src", [*models.GOLDEN_MODELS, *RANDOM_MODELS])
def test_logits_match_upstream(src, model_path):
    path = model_path(src)
    model, info = models.load_reference(path)
    rng = rng_for("logits", src)
    for n in (1, 2, int(rng.integers(3, 17)), int(rng.integers(17, 65))):
        compare(path, model, models.random_tokens(rng, path, n, max_controls=3), src)


@pytest.mark.parametrize("fmt", ["nf4-dq", "fp4", "int8"])
@pytest.mark.parametrize("src", ["granite-dense", "switch-3a-with-buffers",
                                 "random-dense-bf16", "random-switch-f32", "random-switch-bias"])
def test_quantized_logits_match_upstream(src, fmt, converted):
    """strata on its converted checkpoint vs the f32 arithmetic upstream does
    with the weights bnb dequantizes from the same file."""
    out = converted(src, fmt)
    model, info = models.load_reference(out)
    model = bnb_ref.replace_with_dequantized(model)
    rng = rng_for("quantized-logits", src, fmt)
    for n in (1, int(rng.integers(2, 40))):
        compare(out, model, models.random_tokens(rng, out, n), f"{src} {fmt}")
