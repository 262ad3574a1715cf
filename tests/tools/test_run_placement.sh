#!/usr/bin/env bash
# strata run with placement on simulated accelerators: the same tokens and
# bit-identical logits as the CPU run for every golden model (switch without
# and with the old adapter buffers, bf16, dense) and for checkpoints
# converted to nf4 (double quant), fp4 and int8, whatever the placement
# (balanced, balanced_low_0, host layers streamed or run on the CPU); the
# bytes streamed per generated token equal the plan's prediction; no tier
# holds more than its plan counted; the summary; refusals.
source "$(dirname "$0")/lib.sh"
D=$STRATA_TEST_DATA
S=$STRATA_EXE
N=6
# the CPU runs with the row-major kernels a placement runs (a CPU run's bf16
# tiles sum in another order; tests/quant/test_bf16_tiles.c checks them)
export STRATA_BF16_TILES=0

# converted checkpoints (the buffers of switch-3a-with-buffers are never
# written into a converted one)
conv() { "$S" convert "$D/model/$1" "$TMP/$2" --quant $3 --quiet --force; }
conv switch-3a s3a-nf4 "nf4 --double-quant"
conv switch-3a-with-buffers s3ab-fp4 fp4
conv switch-3a-bf16 s3a16-int8 int8
conv granite-dense dense-nf4 nf4

# prompt ids: the first golden case of the model that has a control token
# in the middle (or the first case)
prompt_of() {
    python3 - "$D/model/$1/cases/manifest.json" <<'PY'
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
pick = next((c for c in cases if "mid" in c.get("name", "")), cases[0])
print(",".join(str(t) for t in pick["input_ids"][0][:12]))
PY
}

# every layer but the first on the host: streamed (or run on the CPU)
cat >"$TMP/map.json" <<'EOF'
{"model": "cpu", "model.embed_tokens": 0, "model.layers.0": 1, "model.norm": 0, "lm_head": 0}
EOF

# placement JSON checks: tokens, stream bytes == plan, used <= planned <= budget
check_json() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
j, ref, want_stream = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
assert j["generated"] == ref["generated"], (j["generated"], ref["generated"])
assert j["adapter_indices"] == ref["adapter_indices"]
p = j["placement"]
assert p["decode_passes"] == len(j["generated"]) - 1, p
assert p["stream_bytes_per_token"] == p["planned_stream_bytes_per_token"], p
if want_stream == "stream":
    assert p["streamed_layers"] > 0 and p["stream_bytes_per_token"] > 0, p
    assert not p["async_copies"] and p["overlap"] == 0, p
else:
    assert p["streamed_layers"] == 0 and p["stream_bytes_per_token"] == 0, p
for t in p["tiers"]:
    assert t["used"] <= t["planned"] <= t["budget"], t
    assert t["planned"] == t["weights"] + t["kv"] + t["staging"] + t["derived"] + t["reserve"], t
PY
}

placements=(
    "balanced|--devices sim:2x8MiB|resident"
    "balanced_low_0|--devices sim:3x8MiB --strategy balanced_low_0|resident"
    "map, host layers streamed|--devices sim:2x8MiB --device-map $TMP/map.json --host-exec stream|stream"
    "map, host layers on the CPU|--devices sim:2x8MiB --device-map $TMP/map.json --host-exec cpu|resident"
)
for m in "switch-3a:$D/model/switch-3a" "switch-3a-with-buffers:$D/model/switch-3a-with-buffers" \
         "switch-3a-bf16:$D/model/switch-3a-bf16" "granite-dense:$D/model/granite-dense" \
         "switch-3a:$TMP/s3a-nf4" "switch-3a-with-buffers:$TMP/s3ab-fp4" \
         "switch-3a-bf16:$TMP/s3a16-int8" "granite-dense:$TMP/dense-nf4"; do
    golden=${m%%:*} dir=${m#*:} name=$(basename "$dir")
    ids=$(prompt_of "$golden")
    "$S" run -m "$dir" --tokens "$ids" -n $N --ignore-eos --ctx 64 --json \
        --logits "$TMP/ref.bin" >"$TMP/ref.json" 2>"$TMP/err"
    check "$name: CPU run" [ $? -eq 0 ]
    for p in "${placements[@]}"; do
        label=${p%%|*} rest=${p#*|} args=${rest%|*} kind=${rest##*|}
        # shellcheck disable=SC2086
        "$S" run -m "$dir" --tokens "$ids" -n $N --ignore-eos --ctx 64 --json $args \
            --logits "$TMP/got.bin" >"$TMP/got.json" 2>"$TMP/err"
        rc=$?
        check "$name / $label: runs" [ $rc -eq 0 ]
        [ $rc -eq 0 ] || cat "$TMP/err"
        check "$name / $label: logits bit-identical to the CPU run" cmp -s "$TMP/ref.bin" "$TMP/got.bin"
        check "$name / $label: tokens, stream bytes == plan, tiers within plan" \
            check_json "$TMP/got.json" "$TMP/ref.json" "$kind"
    done
done

# the summary on stderr names the tiers, the bytes per token and the overlap
"$S" run -m "$D/model/switch-3a" --tokens 1,256,5,7 -n 5 --stats --ctx 32 --devices sim:2x8MiB \
    --device-map "$TMP/map.json" --host-exec stream >"$TMP/out" 2>"$TMP/err"
check "summary run exits 0" [ $? -eq 0 ]
check "summary: per-tier table" grep -qE '^strata:   sim:1 .* = .* \+ .* \+ .* \+ .* \+ ' "$TMP/err"
check "summary: bytes per token against the plan" \
    grep -qE '^strata: per generated token \(4 decode steps\): streamed (.*) \(plan: \1\)' "$TMP/err"
check "summary: sim copies are synchronous" contains "$TMP/err" "copies on sim are synchronous: no overlap"

# refusals
"$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --max-memory cpu=1GiB >/dev/null 2>"$TMP/err"
check "--max-memory without --devices: usage error" [ $? -eq 2 ]
check "  names --devices" contains "$TMP/err" "give --devices"
"$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --devices sim:1x4MiB --strategy sequential \
    --device-map "$TMP/map.json" >/dev/null 2>"$TMP/err"
check "--device-map with --strategy: usage error" [ $? -eq 2 ]
"$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --devices sim:1x64KiB \
    --max-memory cpu=256KiB >/dev/null 2>"$TMP/err"
check "a model that fits nowhere: error" [ $? -eq 1 ]
check "  says what to raise" contains "$TMP/err" "--max-memory"
"$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --devices sim:1x4MiB --strategy fastest \
    >/dev/null 2>"$TMP/err"
check "unknown strategy: error naming it" contains "$TMP/err" 'strategy "fastest"'
"$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --devices sim:1x4MiB \
    --device-map "$TMP/none.json" >/dev/null 2>"$TMP/err"
check "missing device map: error naming the file" contains "$TMP/err" "none.json"
"$S" run -m "$D/model/switch-3a" --tokens 1,2,3,4,5,6,7,8 -n 4 --devices sim:1x4MiB --ctx 8 \
    >/dev/null 2>"$TMP/err"
check "prompt + n beyond the planned --ctx: error" [ $? -eq 1 ]
check "  names the context" contains "$TMP/err" "context of 8 positions"
"$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --logical-gpus 2 >/dev/null 2>"$TMP/err"
check "--logical-gpus without --devices cuda: usage error" [ $? -eq 2 ]
check "  names the flag" contains "$TMP/err" "--logical-gpus applies to --devices cuda"
"$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --devices sim:2x8MiB --logical-gpus 2 \
    >/dev/null 2>"$TMP/err"
check "--logical-gpus with sim devices: usage error" [ $? -eq 2 ]
"$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --devices cuda --logical-gpus 0 \
    >/dev/null 2>"$TMP/err"
check "--logical-gpus 0: usage error" [ $? -eq 2 ]
check "  names the flag" contains "$TMP/err" "--logical-gpus '0'"
if ! "$S" inspect --devices 2>/dev/null | grep -q "cuda:0"; then
    "$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --devices cuda >/dev/null 2>"$TMP/err"
    check "--devices cuda without a GPU: error" [ $? -eq 1 ]
    check "  says why" contains "$TMP/err" "cuda"
    "$S" run -m "$D/model/switch-3a" --tokens 1,2 -n 2 --devices cuda --logical-gpus 2 \
        >/dev/null 2>"$TMP/err"
    check "--devices cuda --logical-gpus 2 without a GPU: the no-CUDA error" [ $? -eq 1 ]
    check "  says why" contains "$TMP/err" "--devices: cuda:"
fi

# The longest prefetch distance (64) over more layers than that: 65 staging
# slots, the same logits as the CPU (the executor once refused the plan).
"$S" synth --like tiny --adapters 0 --layers 70 "$TMP/deep" >/dev/null 2>&1
deep=(--tokens 1,2,3 -n 3 --ctx 16)
"$S" run -m "$TMP/deep" "${deep[@]}" --logits "$TMP/deep-cpu.bin" >/dev/null 2>&1
pf=(--devices sim:1x16MiB --max-memory 0=4500KiB --host-exec stream --prefetch 64)
"$S" plan -m "$TMP/deep" --ctx 16 "${pf[@]}" >"$TMP/deep-plan" 2>&1
check "prefetch 64: the plan streams through 65 slots" contains "$TMP/deep-plan" "65 staging slots"
"$S" run -m "$TMP/deep" "${deep[@]}" "${pf[@]}" --logits "$TMP/deep-pf.bin" >/dev/null 2>"$TMP/err"
check "prefetch 64: runs" [ $? -eq 0 ]
check "prefetch 64: logits identical to the CPU run" cmp -s "$TMP/deep-cpu.bin" "$TMP/deep-pf.bin"
finish
