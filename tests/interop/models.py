"""Reference models: the golden checkpoints of tests/data/model, fresh random
tiny Granite / Granite Switch checkpoints written by the real
`save_pretrained`, and loading them through the upstream code."""
import copy
import json
import os

import numpy as np
import torch
import granite_switch.hf  # noqa: F401  (registers granite_switch with the Auto classes)
from transformers import AutoConfig, AutoModelForCausalLM

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
GOLDEN_MODELS = {
    "granite-dense": f"{DATA}/model/granite-dense",
    "switch-3a": f"{DATA}/model/switch-3a",
    "switch-3a-with-buffers": f"{DATA}/model/switch-3a-with-buffers",
    "switch-3a-bf16": f"{DATA}/model/switch-3a-bf16",
}
SWITCH_BUFFERS = ("model.adapter_token_ids", "model.token_to_group_mask",
                  "model.adapter_hiding_matrix")
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def config_of(path):
    with open(f"{path}/config.json") as f:
        return json.load(f)


def is_switch(path):
    return config_of(path).get("model_type") == "granite_switch"


def load_reference(path, **kwargs):
    """The upstream model in f32 (eager attention) and transformers' loading info.

    Upstream leaves the three Gen A switch buffers uninitialised when the
    checkpoint lacks them (tests/data/model/README.md, behaviour 1); like the
    golden data, the reference then uses the values upstream's own
    constructor derives from config.json.  `info["rebuilt_buffers"]` names them."""
    kwargs.setdefault("dtype", torch.float32)
    kwargs.setdefault("device_map", "cpu")
    model, info = AutoModelForCausalLM.from_pretrained(
        path, attn_implementation="eager", output_loading_info=True, **kwargs)
    info["rebuilt_buffers"] = sorted(set(info["missing_keys"]) & set(SWITCH_BUFFERS))
    if info["rebuilt_buffers"]:
        fresh = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
        derived = dict(fresh.named_buffers())
        own = dict(model.named_buffers())
        with torch.no_grad():
            for name in info["rebuilt_buffers"]:
                own[name].copy_(derived[name])
    model.eval()
    return model, info


def reference_logits(model, tokens):
    """Logits [T, V] (divided by logits_scaling, as upstream returns them)."""
    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=False)
    return out.logits[0].float().numpy()


def random_tokens(rng, path, n, max_controls=2):
    """n random ordinary tokens; for a switch model up to max_controls control
    tokens at random positions (position 0 included)."""
    cfg = config_of(path)
    controls = cfg.get("adapter_token_ids") or []
    ordinary = [t for t in range(cfg["vocab_size"]) if t not in controls]
    toks = [int(t) for t in rng.choice(ordinary, size=n)]
    if controls:
        for _ in range(int(rng.integers(0, max_controls + 1))):
            toks[int(rng.integers(0, n))] = int(rng.choice(controls))
    return toks


# ---------------------------------------------------------------- random models

def _fill_random(model, rng, config):
    """Weights at a scale where attention, MLP and adapters all move the logits.
    LoRA stacks use the composer's layout: an adapter of rank r < max_lora_rank
    has rows r.. of lora_A and columns r.. of lora_B zero."""
    ranks = config.get("adapter_ranks") or []
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            if name.endswith("norm.weight"):
                v = 1.0 + 0.2 * rng.standard_normal(shape)
            elif "embed_tokens" in name:
                v = 0.1 * rng.standard_normal(shape)
            elif ".lora_" in name:
                fan_in = shape[-1]
                v = rng.standard_normal(shape) / np.sqrt(fan_in)
                v *= 1.0 if ".lora_A" in name else 0.5
                for k, r in enumerate(ranks):
                    if ".lora_A" in name:
                        v[k, :, r:, :] = 0
                    else:
                        v[k, :, :, r:] = 0
            else:
                v = rng.standard_normal(shape) / np.sqrt(shape[-1])
            p.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))


def _dims(rng):
    heads = int(rng.choice([1, 2, 4]))
    kv = int(rng.choice([d for d in (1, 2, 4) if heads % d == 0]))
    head_dim = int(rng.choice([8, 16, 32]))
    return {
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "hidden_size": heads * head_dim,
        "intermediate_size": int(rng.integers(8, 161)),
        "embedding_multiplier": float(rng.choice([1.0, 6.0, 12.0])),
        "residual_multiplier": float(rng.choice([0.22, 0.5, 1.0])),
        "attention_multiplier": float(rng.choice([1.0 / head_dim, 0.0625, 0.2])),
        "logits_scaling": float(rng.choice([1.0, 4.0, 8.0])),
        "rms_norm_eps": float(rng.choice([1e-5, 1e-6])),
        "rope_parameters": {"rope_theta": float(rng.choice([10000.0, 1e6])), "rope_type": "default"},
        "tie_word_embeddings": bool(rng.integers(0, 2)),
    }


def random_dense(path, rng, dtype="float32", **overrides):
    """A random plain Granite model saved by transformers; returns its config.
    `overrides` are config fields set last (e.g. attention_bias=True)."""
    cfg = config_of(GOLDEN_MODELS["granite-dense"])
    cfg.update(_dims(rng))
    cfg.update(vocab_size=int(rng.integers(40, 301)), num_hidden_layers=int(rng.integers(1, 4)))
    cfg.update(overrides)
    return _save(path, cfg, rng, dtype)


def random_switch(path, rng, dtype="float32", **overrides):
    """A random Gen A Granite Switch model (1-3 adapters, control tokens at the
    end of the vocabulary, random hiding groups and policy) saved by upstream;
    `overrides` as for random_dense."""
    cfg = config_of(GOLDEN_MODELS["switch-3a"])
    dims = _dims(rng)
    cfg.update(dims)
    n = int(rng.integers(1, 4))
    base_vocab = int(rng.integers(40, 301))
    names = [f"ad{k}" for k in range(n)]
    ranks = [int(r) for r in rng.integers(1, 9, size=n)]
    groups = {}
    for g in range(int(rng.integers(1, 3))):
        members = [a for a in names if rng.integers(0, 2)] or [names[0]]
        groups[f"grp{g}"] = members
    policy = {}
    for who in ["base"] + names:
        hidden = [g for g in groups if rng.integers(0, 2)]
        if hidden:
            policy[who] = hidden
    cfg.update(
        vocab_size=base_vocab + n,
        num_hidden_layers=int(rng.integers(1, 4)) + 1,  # + the switch's cache slot
        shared_intermediate_size=dims["intermediate_size"],
        num_adapters=n, adapter_names=names, adapter_ranks=ranks, max_lora_rank=max(ranks),
        adapter_token_ids=list(range(base_vocab, base_vocab + n)),
        control_dims=int(rng.choice([len(groups), 8])),
        hiding_groups=groups, hiding_policy=policy,
        # GraniteMoeHybridConfig checks (mamba_expand * hidden) % mamba_n_heads
        # even without mamba layers (tests/data/model/README.md, item 10).
        mamba_n_heads=dims["hidden_size"], mamba_d_head=cfg["mamba_expand"],
        projection_head_dim=dims["hidden_size"] // dims["num_attention_heads"],
        head_dim=dims["hidden_size"] // dims["num_attention_heads"],
    )
    cfg["layer_types"] = ["attention"] * cfg["num_hidden_layers"]
    cfg.update(overrides)
    return _save(path, cfg, rng, dtype)


def _save(path, cfg, rng, dtype):
    cfg = copy.deepcopy(cfg)
    cfg["dtype"] = dtype
    for k in ("transformers_version", "architectures"):
        cfg.pop(k, None)
    # Through a config.json, as a user's edited config would be read.
    os.makedirs(path, exist_ok=True)
    with open(f"{path}/config.json", "w") as f:
        json.dump(cfg, f)
    config = AutoConfig.from_pretrained(path)
    torch.manual_seed(int(rng.integers(0, 2**31)))
    model = AutoModelForCausalLM.from_config(config)
    _fill_random(model, rng, cfg)
    model.to(TORCH_DTYPES[dtype]).save_pretrained(path)
    return config_of(path)
