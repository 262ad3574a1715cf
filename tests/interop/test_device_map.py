"""Check 5: device maps cross between strata and accelerate.

* `strata plan --save-device-map` is accepted by accelerate: it covers every
  parameter and persistent buffer of the model (`check_device_map`; the Gen A
  switch buffers, which strata derives from config.json, are named on the
  embedding's device), and `from_pretrained(device_map=...)` dispatches with
  it and computes what the single-device model computes.
  Without CUDA, accelerator indices are loaded as "cpu" (said in the output):
  the map's structure is what is under test there.
* `infer_auto_device_map` output for the same model and budgets is accepted by
  `strata plan --device-map`, and strata places every unit where accelerate
  put it; where accelerate puts model.norm and lm_head on different devices,
  strata keeps its head unit whole on lm_head's device and says so."""
import json

import numpy as np
import pytest
import torch
from accelerate import infer_auto_device_map, init_empty_weights
from accelerate.utils import check_device_map, compute_module_sizes
from transformers import AutoConfig, AutoModelForCausalLM

import bnb_ref
import models
import strata_cli
from conftest import note, rng_for

SOURCES = ["granite-dense", "switch-3a-with-buffers", "random-dense-f32", "random-switch-f32"]


def source(name, model_path, converted):
    return converted(name[: -len("+nf4")], "nf4") if name.endswith("+nf4") else model_path(name)


def empty_model(path):
    with init_empty_weights():
        m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    m.tie_weights()
    return m


def strata_device_map(path, tmp_path, devices, max_memory=None):
    f = tmp_path / "strata-map.json"
    args = ["plan", "--model", path, "--ctx", 64, "--devices", devices, "--save-device-map", f]
    if max_memory:
        args += ["--max-memory", max_memory]
    strata_cli.run(*args)
    with open(f) as fh:
        return json.load(fh)


def for_this_machine(device_map):
    gpus = torch.cuda.device_count()
    if all(v == "cpu" or (isinstance(v, int) and v < gpus) for v in device_map.values()):
        return device_map
    note("no CUDA device: the accelerator entries of strata's maps were loaded on the cpu "
         "(the maps' structure is what these runs check)")
    return {k: (v if v == "cpu" or (isinstance(v, int) and v < gpus) else "cpu")
            for k, v in device_map.items()}


# accelerate warns about every key that is not a submodule, and the switch
# buffers are buffers of `model`: transformers needs them named all the same.
@pytest.mark.filterwarnings("ignore:The following device_map keys do not match any submodules")
@pytest.mark.parametrize("devices", ["cpu", "sim-split"])
@pytest.mark.parametrize("src", SOURCES + ["granite-dense+nf4"])
def test_strata_device_map_accepted_by_accelerate(src, devices, model_path, converted, tmp_path):
    path = source(src, model_path, converted)
    if devices == "cpu":
        dm = strata_device_map(path, tmp_path, "cpu")
    else:
        # Budgets that leave part of the model to each simulated GPU and the host.
        info = json.loads(strata_cli.run("plan", "--model", path, "--ctx", 64, "--devices",
                                         "sim:2x1GiB", "--json").stdout)
        reserve = info["tiers"][0]["reserve"]
        sizes = [u["weight_bytes"] + u["kv_bytes"] for u in info["units"]]
        b = reserve + max(max(sizes), sum(sizes) // 3)
        dm = strata_device_map(path, tmp_path, "sim:2x1GiB", f"0={b},1={b},cpu=4GiB")
        assert len(set(dm.values())) >= 2, f"{src}: the plan did not split: {dm}"
    if models.is_switch(path):
        # upstream's persistent switch buffers, on the embedding's device
        assert {k: dm.get(k) for k in models.SWITCH_BUFFERS} == \
            {k: dm["model.embed_tokens"] for k in models.SWITCH_BUFFERS}, f"{src}: {dm}"
    check_device_map(empty_model(path), dm)  # raises when a tensor has no device
    loaded, info = models.load_reference(path, device_map=for_this_machine(dm))
    ref, _ = models.load_reference(path)
    if src.endswith("+nf4"):
        # bnb's own CPU matmul refuses in_features that are not a multiple of 64
        ref, loaded = bnb_ref.replace_with_dequantized(ref), bnb_ref.replace_with_dequantized(loaded)
    rng = rng_for("device-map", src, devices)
    toks = models.random_tokens(rng, path, int(rng.integers(2, 30)))
    a, b = models.reference_logits(loaded, toks), models.reference_logits(ref, toks)
    d = float(np.abs(a - b).max())
    assert d <= 1e-5, f"{src}: dispatched with strata's map {dm}: logits differ by {d:.3g}"


def accelerate_budgets(model, variant):
    """Budgets (accelerate's max_memory) that split the model in several ways."""
    sizes = compute_module_sizes(model)
    layer = max(v for k, v in sizes.items() if k.count(".") == 2 and ".layers." in k)
    embed = sizes["model.embed_tokens"]
    if variant == "two-gpus-and-cpu":
        return {0: embed + layer + layer // 2, 1: layer + layer // 2, "cpu": 10**10}
    if variant == "gpu1-only":
        return {0: layer // 2, 1: embed + layer + layer // 2, "cpu": 10**10}
    return {0: 10**10, 1: 10**10, "cpu": 10**10}  # "all-fits"


def resolve(device_map, name):
    """Where accelerate puts `name`: its most specific covering key."""
    best = None
    for k, v in device_map.items():
        if k == "" or name == k or name.startswith(k + "."):
            if best is None or len(k) > len(best[0]):
                best = (k, v)
    return None if best is None else best[1]


@pytest.mark.parametrize("variant", ["two-gpus-and-cpu", "gpu1-only", "all-fits"])
@pytest.mark.parametrize("src", SOURCES + ["granite-dense+nf4"])
def test_accelerate_device_map_accepted_by_strata(src, variant, model_path, converted, tmp_path):
    path = source(src, model_path, converted)
    if src.endswith("+nf4"):
        # the quantized sizes accelerate sees on a loaded bnb model
        model = AutoModelForCausalLM.from_pretrained(path, device_map="cpu")
        model.tie_weights()
    else:
        model = empty_model(path)
    budgets = accelerate_budgets(model, variant)
    dm = infer_auto_device_map(model, max_memory=budgets,
                               no_split_module_classes=model._no_split_modules)
    f = tmp_path / "accelerate-map.json"
    f.write_text(json.dumps(dm))
    back = tmp_path / "back.json"
    p = strata_cli.run("plan", "--model", path, "--ctx", 64, "--devices", "sim:2x1GiB",
                       "--device-map", f, "--save-device-map", back, check=False)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, f"{src}: strata refuses accelerate's map {dict(dm)}:\n{err}"
    placed = json.loads(back.read_text())
    # The final norm and lm_head are one unit: where accelerate splits them,
    # strata places both where lm_head is and says so in one line.
    norm, head = resolve(dm, "model.norm"), resolve(dm, "lm_head")
    notice = (f"model.norm is on {norm} but lm_head on {head}: strata keeps the final norm with "
              f"lm_head (one unit, the head) and places both on {head}")
    if norm != head:
        note(f"{src} / {variant}: accelerate split the head ({norm} / {head}); "
             f"strata: {err.strip()}")
        assert [line for line in err.splitlines() if notice in line] == err.splitlines(), \
            f"{src}: accelerate map {dict(dm)}: stderr is not the one notice line:\n{err}"
    else:
        assert notice not in err and "model.norm is on" not in err, err
    assert placed.get("model.norm") == head and placed.get("lm_head") == head, \
        f"{src}: accelerate map {dict(dm)}: strata saved the head as {placed}"
    # the derived switch buffers travel with the embedding (strata places nothing of theirs)
    buffers = {k: placed.pop(k) for k in models.SWITCH_BUFFERS if k in placed}
    if models.is_switch(path):
        assert buffers == {k: placed["model.embed_tokens"] for k in models.SWITCH_BUFFERS}, \
            f"{src}: saved map {placed} | {buffers}"
    else:
        assert not buffers, f"{src}: a plain model's saved map names switch buffers: {buffers}"
    # every other unit exactly where accelerate put it
    wrong = {u: (t, resolve(dm, u)) for u, t in placed.items()
             if u != "model.norm" and t != resolve(dm, u)}
    assert not wrong, \
        f"{src}: accelerate map {dict(dm)}: strata placed (strata, accelerate) {wrong}"
