#!/usr/bin/env python3
"""The HF CPU performance anchor: transformers vs strata on one model, one machine, one run.

    build/interop-venv/bin/python bench/hf_cpu_baseline.py [--layers N | --full-depth | --model DIR]
        [--prompt 512] [--gen 32] [--threads 2] [--runs 1] [--json]

Both sides get the same model, the same thread count, the same prompt length and the same
number of greedy decode steps, measured the same way:
  prefill  one forward pass over the prompt with the KV cache, logits of the last token only
           (what generation does): prompt tokens / seconds;
  decode   `--gen` single-token steps, each feeding back the greedy token, KV cache on:
           steps / their summed seconds.
Rows:
  bf16  transformers (torch CPU, bf16 weights and compute) vs `strata bench run` on the bf16 model;
  nf4   transformers + bitsandbytes 4-bit NF4 (BitsAndBytesConfig, quantized on load, compute
        bf16, blocksize 64, no double quant) vs `strata bench run` on `strata convert --quant nf4`
        of the same model (the same format).  If bitsandbytes' CPU 4-bit path is unavailable in
        the pinned version, the row says why and is skipped.
Ratios are strata / HF (above 1: strata is faster).  Each side's best of `--runs` runs counts.

The model is made with `strata synth --like granite-4.1-3b` under --workdir (default
/tmp/strata-hf-bench, reused between invocations): a shallow one by default (--layers 4) so the
script runs in a few minutes on two cores; --full-depth for all 40 layers (about 6 GB in bf16,
plus as much again while transformers holds its copy).  Run it with the interop venv
(tests/interop/run builds build/interop-venv); see bench/README.md."""
import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time

# bitsandbytes wraps its CPU kernels in torch.compile, which would spend minutes in the C++
# compiler on two cores (the interop suite disables it the same way); never reach for the Hub.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(k, "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIKE = "granite-4.1-3b"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", help="an existing bf16 model directory instead of a synth one")
    g.add_argument("--layers", type=int, default=4,
                   help=f"decoder layers of the synth {LIKE}-shaped model (default 4)")
    g.add_argument("--full-depth", action="store_true", help=f"all layers of {LIKE} (40)")
    p.add_argument("--prompt", type=int, default=512, help="prompt tokens (default 512)")
    p.add_argument("--gen", type=int, default=32, help="greedy decode steps (default 32)")
    p.add_argument("--threads", type=int, default=2, help="threads of both sides (default 2)")
    p.add_argument("--runs", type=int, default=1, help="repetitions, best counts (default 1)")
    p.add_argument("--workdir", default="/tmp/strata-hf-bench",
                   help="where synth and converted models go (default /tmp/strata-hf-bench)")
    p.add_argument("--strata", default=os.environ.get("STRATA_EXE",
                                                      os.path.join(ROOT, "build/tools/strata")),
                   help="the strata binary (default $STRATA_EXE or build/tools/strata)")
    p.add_argument("--skip-nf4", action="store_true", help="the bf16 row only")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = p.parse_args(argv)
    if a.prompt < 1 or a.gen < 1 or a.threads < 1 or a.runs < 1 or a.layers < 1:
        p.error("--prompt, --gen, --threads, --runs and --layers must be positive")
    return a


def log(msg):
    print(f"hf_cpu_baseline: {msg}", file=sys.stderr, flush=True)


def strata(args, *cmd, env=None):
    """Runs `strata CMD...` (extra environment `env`); its stdout. Failures end the script with
    strata's message."""
    p = subprocess.run([args.strata, *map(str, cmd)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    if p.returncode:
        sys.exit(f"hf_cpu_baseline: strata {' '.join(map(str, cmd))} failed "
                 f"(exit {p.returncode}):\n{p.stderr}")
    return p.stdout


def ensure_models(args):
    """(bf16 model dir, strata nf4 dir): made under --workdir unless already there."""
    os.makedirs(args.workdir, exist_ok=True)
    if args.model:
        src = os.path.abspath(args.model)
        nf4 = os.path.join(args.workdir, os.path.basename(src.rstrip("/")) + "-strata-nf4")
    else:
        tag = "full" if args.full_depth else f"L{args.layers}"
        src = os.path.join(args.workdir, f"{LIKE}-{tag}")
        nf4 = src + "-strata-nf4"
        if not os.path.exists(os.path.join(src, "config.json")):
            log(f"strata synth --like {LIKE} ({tag}) -> {src}")
            depth = [] if args.full_depth else ["--layers", args.layers]
            strata(args, "synth", "--like", LIKE, *depth, "--force", src)
    if not os.path.exists(os.path.join(nf4, "config.json")) or \
            os.path.getmtime(os.path.join(nf4, "config.json")) < \
            os.path.getmtime(os.path.join(src, "config.json")):
        log(f"strata convert --quant nf4 -> {nf4}")
        strata(args, "convert", src, nf4, "--quant", "nf4", "--force", "--quiet")
    return src, nf4


def prompt_ids(config, n):
    """Fixed pseudo-random ordinary token ids (no special or control ids)."""
    import numpy as np
    special = {config.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    special |= set(config.get("adapter_token_ids") or [])
    rng = np.random.default_rng(20260601)
    ids = [int(t) for t in rng.integers(0, config["vocab_size"], size=2 * n) if t not in special]
    return ids[:n]


def hf_measure(model, ids, gen, runs):
    """Best prefill and decode tok/s of `runs` runs, each on a fresh KV cache."""
    import torch
    x = torch.tensor([ids])
    best_prefill = best_decode = 0.0
    with torch.inference_mode():
        # warm-up: first-call allocations and lazy initialisation are not the steady state
        out = model(x[:, :16], use_cache=True, logits_to_keep=1)
        model(out.logits[:, -1].argmax(-1, keepdim=True), past_key_values=out.past_key_values,
              use_cache=True, logits_to_keep=1)
        for _ in range(runs):
            t0 = time.perf_counter()
            out = model(x, use_cache=True, logits_to_keep=1)
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            prefill_s = time.perf_counter() - t0
            cache, decode_s = out.past_key_values, 0.0
            for _ in range(gen):
                t1 = time.perf_counter()
                out = model(tok, past_key_values=cache, use_cache=True, logits_to_keep=1)
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                cache = out.past_key_values
                decode_s += time.perf_counter() - t1
            best_prefill = max(best_prefill, len(ids) / prefill_s)
            best_decode = max(best_decode, gen / decode_s)
    return best_prefill, best_decode


def hf_row(path, ids, args, quantized):
    """transformers on the CPU, bf16 or bnb NF4: {"prefill_tok_s", "decode_tok_s", ...} or
    {"skipped": why}."""
    import torch
    from transformers import AutoModelForCausalLM
    kwargs = {"dtype": torch.bfloat16, "device_map": "cpu"}
    what = "bf16"
    if quantized:
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except Exception as e:  # noqa: BLE001 (any import failure means: no bnb row)
            return {"skipped": f"bitsandbytes unavailable: {type(e).__name__}: {e}"}
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=False)
        what = "bnb nf4"
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()
    except Exception as e:  # noqa: BLE001
        if not quantized:
            raise
        return {"skipped": f"transformers + bitsandbytes could not load 4-bit on the CPU: "
                           f"{type(e).__name__}: {e}"}
    load_s = time.perf_counter() - t0
    log(f"HF {what}: loaded in {load_s:.1f} s; prefill {len(ids)} + decode {args.gen}")
    try:
        prefill, decode = hf_measure(model, ids, args.gen, args.runs)
    except Exception as e:  # noqa: BLE001
        if not quantized:
            raise
        return {"skipped": f"bitsandbytes' CPU 4-bit forward failed: {type(e).__name__}: {e}"}
    finally:
        del model
        gc.collect()
    row = {"prefill_tok_s": prefill, "decode_tok_s": decode, "load_s": load_s}
    if quantized:
        row["note"] = bnb_cpu_path()
    return row


def bnb_cpu_path():
    """Which CPU 4-bit matmul bitsandbytes used: its optimized one comes from the `kernels`
    package (kernels-community), which the pinned stack does not have."""
    import importlib.util
    if importlib.util.find_spec("kernels") is None:
        return ("bitsandbytes' CPU 4-bit matmul ran its torch fallback (dequantize + bf16 matmul): "
                "the `kernels` package of its optimized gemm_4bit is not installed")
    return "bitsandbytes' CPU 4-bit matmul from the `kernels` package"


def strata_row(path, args):
    out = strata(args, "bench", "run", "--model", path, "--threads", args.threads, "--prompt",
                 args.prompt, "--gen", args.gen, "--runs", args.runs, "--json")
    r = json.loads(out)
    log(f"strata {r.get('weight_format')}: prefill {r['prefill_tok_s']:.1f} tok/s, "
        f"decode {r['decode_tok_s']:.2f} tok/s (kernels {r.get('kernels')})")
    keep = ("prefill_tok_s", "decode_tok_s", "load_s", "weight_format", "kernels", "prefill_mode",
            "isa", "bandwidth_gbps", "ceiling_tok_s", "peak_rss_bytes")
    row = {k: r[k] for k in keep if k in r}
    # The opt-in bf16 prefill: the numerics transformers' bf16 rows use (bf16 operands, f32
    # accumulation), so the fair prefill comparison for them.
    b = json.loads(strata(args, "bench", "run", "--model", path, "--threads", args.threads,
                          "--prompt", args.prompt, "--gen", 1, "--runs", args.runs, "--json",
                          env={"STRATA_PREFILL": "bf16"}))
    if b.get("prefill_mode") == "bf16":
        row["prefill_bf16_tok_s"] = b["prefill_tok_s"]
        log(f"strata {r.get('weight_format')}: prefill {b['prefill_tok_s']:.1f} tok/s "
            "with STRATA_PREFILL=bf16")
    return row


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) * 1024
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem,
            "kernel": platform.release(), "python": platform.python_version()}


def versions():
    import importlib.metadata as md
    v = {}
    for name in ("torch", "transformers", "bitsandbytes", "accelerate"):
        try:
            v[name] = md.version(name)
        except md.PackageNotFoundError:
            v[name] = None
    return v


def ratio(s, h, key):
    return s[key] / h[key] if "skipped" not in h and h.get(key) else None


def print_table(res):
    m = res["machine"]
    print(f"model     {res['model']} ({res['layers']} layers), prompt {res['prompt']}, "
          f"decode {res['gen']} greedy steps, {res['threads']} threads, best of {res['runs']}")
    print(f"machine   {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 2**30:.0f} GiB; "
          f"load average {res['loadavg_before'][0]:.2f} before, "
          f"{res['loadavg_after'][0]:.2f} after")
    print("versions  " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) +
          f"; strata {res['strata']}")
    print()
    head = ("row", "HF prefill", "strata prefill", "ratio", "bf16 opt-in", "ratio", "HF decode",
            "strata decode", "ratio")
    print("%-6s %12s %15s %7s %12s %7s %11s %14s %7s   (tok/s; ratio = strata / HF)" % head)
    for row in res["rows"]:
        h, s = row["hf"], row["strata"]
        if "skipped" in h:
            print("%-6s %12s %15.1f %7s %11s %14.2f %7s" % (row["name"], "skipped",
                  s["prefill_tok_s"], "-", "skipped", s["decode_tok_s"], "-"))
            print(f"       HF: {h['skipped']}")
            continue
        pb = s.get("prefill_bf16_tok_s")
        print("%-6s %12.1f %15.1f %6.2fx %12s %7s %11.2f %14.2f %6.2fx" % (
            row["name"], h["prefill_tok_s"], s["prefill_tok_s"], row["prefill_ratio"],
            "%.1f" % pb if pb else "-", "%.2fx" % (pb / h["prefill_tok_s"]) if pb else "-",
            h["decode_tok_s"], s["decode_tok_s"], row["decode_ratio"]))
    for row in res["rows"]:
        if row["hf"].get("note"):
            print(f"note      {row['name']}: {row['hf']['note']}")
    kernels = {row["strata"].get("kernels") for row in res["rows"]}
    print(f"strata    kernels {', '.join(sorted(k for k in kernels if k))}, "
          f"isa {res['rows'][0]['strata'].get('isa')}, "
          f"prefill mode {res['rows'][0]['strata'].get('prefill_mode')}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not os.access(args.strata, os.X_OK):
        sys.exit(f"hf_cpu_baseline: no strata binary at {args.strata} (build it, or --strata)")
    import torch
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)   # strata's children
    src, nf4 = ensure_models(args)
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    ids = prompt_ids(config, args.prompt)
    res = {"model": src, "nf4_model": nf4, "layers": config["num_hidden_layers"],
           "prompt": args.prompt, "gen": args.gen, "threads": args.threads, "runs": args.runs,
           "command": " ".join([os.path.relpath(sys.executable, ROOT)] + sys.argv),
           "strata": os.path.relpath(os.path.abspath(args.strata), ROOT),
           "machine": machine(), "versions": versions(), "loadavg_before": os.getloadavg(),
           "rows": []}
    rows = [("bf16", src, False)] + ([] if args.skip_nf4 else [("nf4", nf4, True)])
    for name, strata_path, quantized in rows:
        hf = hf_row(src, ids, args, quantized)
        if "skipped" in hf:
            log(f"HF {name}: skipped: {hf['skipped']}")
        else:
            log(f"HF {name}: prefill {hf['prefill_tok_s']:.1f} tok/s, "
                f"decode {hf['decode_tok_s']:.2f} tok/s")
        st = strata_row(strata_path, args)
        res["rows"].append({"name": name, "hf": hf, "strata": st,
                            "prefill_ratio": ratio(st, hf, "prefill_tok_s"),
                            "decode_ratio": ratio(st, hf, "decode_tok_s")})
    res["loadavg_after"] = os.getloadavg()
    if args.json:
        json.dump(res, sys.stdout, indent=2)
        print()
    else:
        print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
