#!/usr/bin/env bash
# strata bench run on the small golden models: text and JSON output, the
# numbers are present and sane (not their size: that is BENCHMARKS.md's job),
# bad options are refused; placement on simulated accelerators reports tiers,
# bytes streamed and tokens/s, and bad placement values are refused.
source "$(dirname "$0")/lib.sh"
D=$STRATA_TEST_DATA/model

"$STRATA_EXE" bench run --model "$D/granite-dense" --prompt 12 --gen 5 --runs 2 --threads 1 \
    >"$TMP/out" 2>"$TMP/err"; rc=$?
check "text exits 0" [ $rc -eq 0 ]
check "prefill line" grep -qE '^prefill +12 tokens: [0-9.]+ tok/s \(f32\)' "$TMP/out"
check "decode line" grep -qE '^decode +5 steps: [0-9.]+ tok/s' "$TMP/out"
check "ceiling line" grep -qE '^ceiling +[0-9.]+ tok/s; decode at [0-9.]+%' "$TMP/out"
check "bandwidth line" grep -qE '^bandwidth +[0-9.]+ GB/s \(best probe pass, same run; before the steps: median [0-9.]+, slowest [0-9.]+\)' "$TMP/out"
check "paired line" grep -qE '^paired +each step against the probe pass right before it: median [0-9.]+% \(quartiles [0-9.]+-[0-9.]+%\)' "$TMP/out"
check "own-read line" grep -qE '^own read +each step against a plain read of its weight bytes right before it \(best [0-9.]+ GB/s\): median [0-9.]+% \(quartiles [0-9.]+-[0-9.]+%\)' "$TMP/out"
check "stderr empty" [ ! -s "$TMP/err" ]

"$STRATA_EXE" bench run --model "$D/switch-3a" --prompt 20 --gen 4 --json >"$TMP/json" 2>"$TMP/err"
rc=$?
check "json exits 0" [ $rc -eq 0 ]
check "json fields sane" python3 - "$TMP/json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for k in ["prefill_tok_s", "decode_tok_s", "ttft_s", "bandwidth_gbps", "ceiling_tok_s",
          "ratio", "best_step_ratio", "peak_rss_bytes", "prefill_cpu_s", "decode_cpu_s",
          "paired_ratio_q1", "paired_ratio_median", "paired_ratio_q3"]:
    assert j[k] > 0, (k, j[k])
assert j["paired_ratio_q1"] <= j["paired_ratio_median"] <= j["paired_ratio_q3"]
assert 0 < j["bandwidth_gbps_min"] <= j["bandwidth_gbps_median"] <= j["bandwidth_gbps"], j
assert j["own_read_gbps"] > 0 and j["own_read_ratio_q1"] > 0, j
assert j["own_read_ratio_q1"] <= j["own_read_ratio_median"] <= j["own_read_ratio_q3"]
assert j["prompt"] == 20 and j["gen"] == 4 and j["runs"] == 1
assert j["weight_format"] == "f32" and j["prefill_mode"] in ("f32", "bf16", "int8")
assert j["kernels"] in ("exact", "int8")
# weights of one token: 3 layers of the small model + head + one embedding row
assert 100_000 < j["weight_bytes_per_token"] < 10_000_000, j["weight_bytes_per_token"]
assert j["step_bytes_mean"] > j["weight_bytes_per_token"]
assert j["best_step_tok_s"] >= j["decode_tok_s"] * 0.999
PY

"$STRATA_EXE" bench run --prompt 4 >"$TMP/out" 2>"$TMP/err"; rc=$?
check "no --model: usage error" [ $rc -eq 2 ]
check "no --model: says so" contains "$TMP/err" "--model DIR is required"
"$STRATA_EXE" bench run --model "$D/switch-3a" --gen -1 >"$TMP/out" 2>"$TMP/err"; rc=$?
check "bad --gen refused" [ $rc -eq 2 ]
"$STRATA_EXE" bench run --model "$TMP/none" --prompt 4 --gen 1 >"$TMP/out" 2>"$TMP/err"; rc=$?
check "missing model: exit 1" [ $rc -eq 1 ]
check "missing model: names it" contains "$TMP/err" "$TMP/none"
"$STRATA_EXE" bench run --model "$D/switch-3a" --threads 0 >"$TMP/out" 2>"$TMP/err"; rc=$?
check "--threads 0 refused" [ $rc -eq 2 ]

# Placement (the flags of strata run) on a tiny synthetic model: two 200 KiB
# sim accelerators at ctx 24 hold the embedding and at most two of the three
# layers, so the rest is on the host: streamed through a staging slot
# (--prefetch 0: one slot fits) or run on the CPU.
"$STRATA_EXE" synth --like tiny --force "$TMP/tiny" >/dev/null 2>&1
check "synth tiny model" [ -f "$TMP/tiny/config.json" ]
# --force over an earlier checkpoint: its weight files go, so the new ones are
# what loads (an old model.safetensors once won over new shards)
"$STRATA_EXE" synth --like tiny --force --seed 7 --shard-size 100KB "$TMP/tiny" >/dev/null 2>&1
check "synth --force: only the new shards" [ ! -e "$TMP/tiny/model.safetensors" ] && \
    [ -e "$TMP/tiny/model.safetensors.index.json" ]
"$STRATA_EXE" synth --like tiny --seed 7 --shard-size 100KB "$TMP/fresh7" >/dev/null 2>&1
"$STRATA_EXE" logits -m "$TMP/tiny" --tokens 1,2 --out "$TMP/a.bin" >/dev/null 2>&1
"$STRATA_EXE" logits -m "$TMP/fresh7" --tokens 1,2 --out "$TMP/b.bin" >/dev/null 2>&1
check "synth --force: the new weights load" cmp -s "$TMP/a.bin" "$TMP/b.bin"
"$STRATA_EXE" synth --like tiny --force "$TMP/tiny" >/dev/null 2>&1
check "synth --force back to one file: no shards left" [ ! -e "$TMP/tiny/model.safetensors.index.json" ]
for bad in "--adapters abc" "--adapters 3x" "--rank 4abc" "--layers 0" "--layers -4" \
           "--seed foo" "--layers 2000" "--adapters 1 --layers 1024"; do
    # shellcheck disable=SC2086  # the options are split on purpose
    "$STRATA_EXE" synth --like tiny $bad "$TMP/never" >/dev/null 2>&1
    check "synth $bad: refused" [ $? -eq 2 ] && [ ! -e "$TMP/never" ]
done
mkdir -p "$TMP/noidx/model.safetensors.index.json"     # the index cannot be written
"$STRATA_EXE" synth --like tiny --force --shard-size 100KB "$TMP/noidx" >/dev/null 2>&1
check "synth: an index that cannot be written fails" [ $? -ne 0 ]

# Many tensors in one shard: the header reservation grows with the layer count
# (a fixed 64 KiB overflowed at 70 dense layers).
for a in 0 3; do
    "$STRATA_EXE" synth --like tiny --adapters $a --layers 80 "$TMP/deep$a" >/dev/null 2>"$TMP/err"
    check "synth 80 layers (adapters $a) in one shard" [ $? -eq 0 ]
    "$STRATA_EXE" logits -m "$TMP/deep$a" --tokens 1,2 --out "$TMP/deep.bin" >/dev/null 2>&1
    check "synth 80 layers (adapters $a) runs" [ $? -eq 0 ]
    rm -rf "$TMP/deep$a"
done
place=(--model "$TMP/tiny" --prompt 12 --gen 4 --ctx 24 --threads 1 --devices sim:2x200KiB)
for mode in stream cpu; do
    extra=()
    [ $mode = stream ] && extra=(--prefetch 0)
    "$STRATA_EXE" bench run "${place[@]}" --host-exec $mode "${extra[@]}" --json \
        >"$TMP/place.json" 2>"$TMP/err"; rc=$?
    check "placed ($mode) exits 0" [ $rc -eq 0 ]
    [ $rc -eq 0 ] || cat "$TMP/err"
    check "placed ($mode): tiers, bytes streamed, tokens/s" python3 - "$TMP/place.json" $mode <<'PY'
import json, sys
j, mode = json.load(open(sys.argv[1])), sys.argv[2]
assert j["prefill_tok_s"] > 0 and j["decode_tok_s"] > 0, j
p = j["placement"]
assert p["devices"] == "sim:2x200KiB" and p["ctx"] == 24 and p["host_exec"] == mode, p
assert [t["name"] for t in p["tiers"]] == ["sim:0", "sim:1", "cpu"], p["tiers"]
for t in p["tiers"]:
    assert t["used"] <= t["peak"] <= t["planned"] <= t["budget"], t
    assert t["planned"] == t["weights"] + t["kv"] + t["staging"] + t["derived"] + t["reserve"], t
host = p["tiers"][-1]
assert host["weights"] > 0 and host["units"] > 0, host      # some layers live on the host
assert p["decode_passes"] == 4, p
assert p["async_copies"] is False and p["overlap"] == 0, p  # sim copies are synchronous
if mode == "stream":
    assert p["streamed_layers"] > 0 and p["stream_tier"] == "sim:1", p
    assert p["stream_bytes_per_token"] == p["planned_stream_bytes_per_token"] > 0, p
    # the sim device counts every byte copied into it: the streamed weights and more
    assert p["device_in_bytes_per_token"] > p["stream_bytes_per_token"], p
    assert p["copy_s_per_token"] > 0 and p["tiers"][1]["staging"] > 0, p
else:
    assert p["streamed_layers"] == 0 and p["stream_tier"] is None, p
    assert p["stream_bytes_per_token"] == p["planned_stream_bytes_per_token"] == 0, p
    assert host["kv"] > 0, host                             # host layers run there
PY
done

"$STRATA_EXE" bench run "${place[@]}" --host-exec stream --prefetch 0 >"$TMP/out" 2>"$TMP/err"
check "placed text exits 0" [ $? -eq 0 ]
check "placed text: placement line" grep -qE '^placement +sim:2x200KiB, strategy auto, ctx 24' "$TMP/out"
check "placed text: per-tier table" grep -qE '^  sim:1 .* = .* \+ .* \+ .* \+ .* \+ ' "$TMP/out"
check "placed text: streamed against the plan" \
    grep -qE '^streamed +[0-9]+ layers? to sim:1 .*: (.*) per decode step \(plan \1\)' "$TMP/out"
check "placed text: no overlap on sim" contains "$TMP/out" "synchronous copies: no overlap"
"$STRATA_EXE" bench run --model "$TMP/tiny" --prompt 4 --gen 2 --devices cpu --json \
    >"$TMP/out" 2>"$TMP/err"
check "--devices cpu: the CPU path" python3 -c \
    'import json, sys; assert "placement" not in json.load(open(sys.argv[1]))' "$TMP/out"
check "placed: no plain read of the weights (they live on the tiers)" python3 -c \
    'import json, sys; assert "own_read_gbps" not in json.load(open(sys.argv[1]))' "$TMP/place.json"

# bad placement values: refused, naming the flag
refused() {     # NAME EXIT FLAG ARGS...
    local name=$1 want=$2 flag=$3; shift 3
    "$STRATA_EXE" bench run --model "$TMP/tiny" --prompt 4 --gen 2 "$@" >/dev/null 2>"$TMP/err"
    local rc=$?
    check "$name: exit $want" [ $rc -eq "$want" ]
    check "$name: names $flag" contains "$TMP/err" "$flag"
}
refused "unknown strategy" 2 '--strategy "fastest"' --devices sim:2x1MiB --strategy fastest
refused "unknown host-exec" 2 '--host-exec "gpu"' --devices sim:2x1MiB --host-exec gpu
refused "prefetch out of range" 2 "--prefetch '99'" --devices sim:2x1MiB --prefetch 99
refused "placement flag without devices" 2 "give --devices" --max-memory cpu=1GiB
refused "map and strategy" 2 "--device-map and --strategy" --devices sim:2x1MiB \
    --strategy balanced --device-map "$TMP/map.json"
refused "bad device spec" 1 "--devices" --devices sim:2xlots
refused "ctx below prompt + gen" 2 "--ctx 5" --ctx 5
refused "fits nowhere" 1 "--max-memory" --devices sim:1x16KiB --max-memory cpu=64KiB
finish
