#!/usr/bin/env python3
"""The HF-style offload anchor on a GPU, in PyTorch: what accelerate's CPU offload hooks do
per decode token (each layer's weights copied to the GPU synchronously from pageable host
memory, then its matmuls run), timed next to the same matmuls with every layer resident on
the GPU.  tools/gpu_check.sh runs it where torch with CUDA is installed, next to
`strata bench run --devices cuda --host-exec stream` on the same shapes.

Shapes default to granite-4.1-3b (hidden 2560, 40 q / 8 kv heads of 64, MLP 8192, 40 layers);
weights are random bf16.  Per layer and token: the q, k, v, o, gate, up and down projections
of one token (F.linear, bf16).  Attention over the cache is left out: at one token it is small
next to the weight traffic, and both sides of the comparison would carry it alike.

    python3 bench/hf_offload_anchor.py [--layers 40] [--tokens 1] [--runs 3] [--json]
    python3 bench/hf_offload_anchor.py --device cpu --layers 2    # a dry run of the script
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=2560)
    ap.add_argument("--mlp", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=40)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--layers", type=int, default=40)
    ap.add_argument("--tokens", type=int, default=1, help="tokens per forward (1: decode)")
    ap.add_argument("--steps", type=int, default=8, help="forwards per timed run")
    ap.add_argument("--runs", type=int, default=3, help="timed runs; the best is reported")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = ap.parse_args()

    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"hf_offload_anchor: torch is not installed ({e})", file=sys.stderr)
        return 2
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("hf_offload_anchor: torch has no usable CUDA device", file=sys.stderr)
        return 2

    hd = a.hidden // a.heads
    shapes = {  # out, in
        "q": (a.heads * hd, a.hidden), "k": (a.kv_heads * hd, a.hidden),
        "v": (a.kv_heads * hd, a.hidden), "o": (a.hidden, a.heads * hd),
        "gate": (a.mlp, a.hidden), "up": (a.mlp, a.hidden), "down": (a.hidden, a.mlp),
    }
    g = torch.Generator().manual_seed(0)
    # pageable host copies, as a model offloaded to the CPU keeps them
    host = [{n: ((torch.rand(s, generator=g) - 0.5) / s[1] ** 0.5).to(torch.bfloat16)
             for n, s in shapes.items()} for _ in range(a.layers)]
    layer_bytes = sum(t.numel() * t.element_size() for t in host[0].values())
    x0 = (torch.rand((a.tokens, a.hidden), generator=g) - 0.5).to(torch.bfloat16).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def layer(w, x):
        q = F.linear(x, w["q"])
        F.linear(x, w["k"])     # eager mode runs every call: k and v cost what they cost
        F.linear(x, w["v"])
        x = x + F.linear(q, w["o"])
        h = F.silu(F.linear(x, w["gate"])) * F.linear(x, w["up"])
        return x + F.linear(h, w["down"])

    def resident_step(ws, x):
        for w in ws:
            x = layer(w, x)
        return x

    def offload_step(x):
        for hw in host:
            # accelerate's pre-forward hook: the weights to the execution device, synchronously
            w = {n: t.to(dev, non_blocking=False, copy=True) for n, t in hw.items()}
            x = layer(w, x)
            del w  # post-forward hook: back to "meta"; the device copy is freed
        return x

    def best_ms(fn):
        fn()
        sync()
        best = float("inf")
        for _ in range(a.runs):
            sync()
            t0 = time.perf_counter()
            for _ in range(a.steps):
                fn()
            sync()
            best = min(best, (time.perf_counter() - t0) / a.steps)
        return best * 1e3

    dev_ws = [{n: t.to(dev) for n, t in hw.items()} for hw in host]
    resident_ms = best_ms(lambda: resident_step(dev_ws, x0))
    del dev_ws
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    offload_ms = best_ms(lambda: offload_step(x0))
    total = layer_bytes * a.layers
    out = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__, "layers": a.layers, "tokens": a.tokens,
        "layer_bytes": layer_bytes, "weights_bytes": total,
        "resident_ms_per_step": resident_ms, "offload_ms_per_step": offload_ms,
        "offload_copy_gb_s": total / (offload_ms * 1e-3) * 1e-9,
        "resident_tok_s": a.tokens / (resident_ms * 1e-3),
        "offload_tok_s": a.tokens / (offload_ms * 1e-3),
    }
    if a.json:
        print(json.dumps(out))
    else:
        print(f"device     {out['device']} (torch {out['torch']}), {a.layers} layers of "
              f"{layer_bytes / 2**20:.1f} MiB bf16, {a.tokens} token(s) per step")
        print(f"resident   {resident_ms:.3f} ms per step ({out['resident_tok_s']:.2f} tok/s): "
              f"every layer on the device")
        print(f"offload    {offload_ms:.3f} ms per step ({out['offload_tok_s']:.2f} tok/s): each "
              f"layer copied from pageable host memory, then run (accelerate's hooks); "
              f"{out['offload_copy_gb_s']:.2f} GB/s of weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
