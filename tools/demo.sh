#!/usr/bin/env bash
# The built-in demo (tools/run with no arguments; $1 is the strata binary).
#
# Builds once, cached next to the binary's build directory (build/demo/), a
# tiny Granite Switch model with random weights and 3 adapters plus the
# byte-level tokenizer of tests/data/demo, converts it to NF4, shows its
# adapters and a placement plan over two simulated GPUs, and generates with
# and without adapters, reporting which adapter produced each token.
# STRATA_DEMO_CACHE=DIR puts the model elsewhere (the tests do).
set -euo pipefail
strata=$(realpath "$1")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${STRATA_DEMO_CACHE:-$(cd "$(dirname "$strata")/.." && pwd)/demo}
model=$cache/tiny-switch-nf4
say() { printf '\n== %s\n' "$*"; }

if [ ! -f "$model/model.safetensors" ] || [ ! -f "$model/tokenizer.json" ]; then
    say "creating the demo model in $cache (once)"
    rm -rf "$cache/tmp" && mkdir -p "$cache/tmp"
    "$strata" synth --like tiny --adapters 3 --rank 8 --seed 7 "$cache/tmp/bf16"
    cp "$root/tests/data/demo/tokenizer.json" "$root/tests/data/demo/tokenizer_config.json" \
        "$cache/tmp/bf16/"
    "$strata" convert "$cache/tmp/bf16" "$cache/tmp/nf4" --quant nf4 --quiet
    rm -rf "$model" && mv "$cache/tmp/nf4" "$model" && rm -rf "$cache/tmp"
fi

say "a tiny Granite Switch model (random weights, NF4): strata adapters -m $model"
"$strata" adapters -m "$model"

say "where each unit would go over two simulated 1 MiB GPUs: strata plan --devices sim:2x1MiB"
echo "   (a plan only: the runs below execute on the CPU)"
if ! "$strata" plan --model "$model" --devices sim:2x1MiB --ctx 128 2>&1; then
    echo "(the planner could not plan this; skipped)"
fi

prompt="Is the sky blue?"
run() { "$strata" run -m "$model" -p "$prompt" -n 12 --ctx 128 --show-adapter "$@"; }
say "no adapter: strata run -p \"$prompt\" (random weights: the text is noise)"
run
say "adapter_1, a LoRA adapter: its control token goes first, every token uses it"
run --adapter adapter_1
say "adapter_2, an aLoRA adapter: its control token goes just before the generation prompt,"
echo "   so the prompt runs on the base model and only the answer on the adapter"
run --adapter adapter_2 --json | grep -o '"adapter_indices": \[[0-9,]*\]' | tr -dc '0-9,\n' |
    awk -F, '{ for (i = 1; i <= NF; i++) { if (i > 1 && $i != $(i-1)) { printf "%d x adapter %s, ", n, $(i-1); n = 0 } n++ }
               printf "%d x adapter %s\n", n, $NF }' | sed 's/^/   adapter index per position: /'
run --adapter adapter_2
say "a chat of two turns with adapter_2: the second turn reuses the cached positions before"
echo "   the first turn's control token (the template puts it before the newest prompt only)"
printf 'Hello\nAnd now?\n' | "$strata" run -m "$model" --chat -n 8 --ctx 256 --adapter adapter_2
