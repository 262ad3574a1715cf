"""Shared fixtures of the interop suite: the seed of the random models, the
versions under test, the models themselves (generated once per session)."""
import importlib.metadata
import os
import sys
import time
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import strata_cli  # noqa: E402

PACKAGES = ("torch", "transformers", "bitsandbytes", "accelerate", "safetensors", "tokenizers",
            "granite-switch", "huggingface-hub", "numpy")
SEED = int(os.environ.get("STRATA_INTEROP_SEED") or time.time_ns() % 1_000_000_007)

# Fresh random models of every run: (name -> (kind, dtype)).  A failure names the
# model; the seed printed in the header regenerates it.
RANDOM_MODELS = {
    "random-dense-f32": ("dense", "float32"),
    "random-dense-bf16": ("dense", "bfloat16"),
    "random-switch-f32": ("switch", "float32"),
    "random-switch-f16": ("switch", "float16"),
    # attention_bias: q/k/v/o biases (upstream's switch puts them on the
    # fused qkv_proj and o_proj base layers)
    "random-dense-bias": ("dense", "float32", {"attention_bias": True}),
    "random-switch-bias": ("switch", "float32", {"attention_bias": True}),
}

# strata convert options per quantized format.
FORMATS = {
    "nf4": ["--quant", "nf4"],
    "nf4-dq": ["--quant", "nf4", "--double-quant"],
    "fp4": ["--quant", "fp4"],
    "fp4-dq": ["--quant", "fp4", "--double-quant"],
    "int8": ["--quant", "int8"],
    # --skip: strata matches whole path components ("proj" names none) and
    # writes the paths it left out, so transformers leaves out the same ones
    "nf4-skip": ["--quant", "nf4", "--skip", "model.layers.1,mlp.down_proj,proj"],
}


# Observations worth seeing in a passing run (what upstream did, bnb quirks),
# printed after the results.
NOTES = []


def note(line):
    if line not in NOTES:
        NOTES.append(line)


def pytest_terminal_summary(terminalreporter):
    if NOTES:
        terminalreporter.section("interop notes")
        for line in NOTES:
            terminalreporter.write_line(line)


def versions():
    out = {}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


def pytest_report_header(config):
    v = " ".join(f"{k}=={x}" for k, x in versions().items())
    return [f"interop versions: {v}",
            f"interop seed: {SEED} (rerun with STRATA_INTEROP_SEED={SEED})",
            f"strata: {strata_cli.EXE}"]


@pytest.fixture(scope="session", autouse=True)
def _record_run(record_testsuite_property):
    """Versions and seed go into the junit file next to the results."""
    for k, x in versions().items():
        record_testsuite_property(k, x)
    record_testsuite_property("seed", SEED)
    if not os.access(strata_cli.EXE, os.X_OK):
        pytest.skip(f"no strata executable at {strata_cli.EXE} (build it or set STRATA_EXE)")


def rng_for(*tags):
    """An independent random stream per test, derived from the run's seed."""
    key = zlib.crc32("/".join(map(str, tags)).encode())
    return np.random.default_rng([SEED, key])


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("interop")


@pytest.fixture(scope="session")
def model_path(workdir):
    """name -> directory: a golden model of tests/data/model, or a random one
    (generated on first use)."""
    made = {}

    def get(name):
        if name in models.GOLDEN_MODELS:
            return models.GOLDEN_MODELS[name]
        if name not in made:
            kind, dtype, *extra = RANDOM_MODELS[name]
            path = str(workdir / name)
            make = models.random_dense if kind == "dense" else models.random_switch
            cfg = make(path, rng_for("model", name), dtype, **(extra[0] if extra else {}))
            keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "num_adapters", "adapter_ranks",
                    "hiding_groups", "hiding_policy", "tie_word_embeddings", "attention_bias")
            note(f"{name}: " + ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg))
            made[name] = path
        return made[name]
    return get


@pytest.fixture(scope="session")
def converted(model_path, workdir):
    """(source model, format) -> directory written by strata convert (once)."""
    made = {}

    def get(src, fmt):
        if (src, fmt) not in made:
            out = str(workdir / f"strata-{src}-{fmt}")
            strata_cli.convert(model_path(src), out, *FORMATS[fmt])
            made[src, fmt] = out
        return made[src, fmt]
    return get
