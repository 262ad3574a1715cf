#!/usr/bin/env bash
# strata bench run on the small golden models: text and JSON output, the
# numbers are present and sane (not their size: that is BENCHMARKS.md's job),
# bad options are refused.
source "$(dirname "$0")/lib.sh"
D=$STRATA_TEST_DATA/model

"$STRATA_EXE" bench run --model "$D/granite-dense" --prompt 12 --gen 5 --runs 2 --threads 1 \
    >"$TMP/out" 2>"$TMP/err"; rc=$?
check "text exits 0" [ $rc -eq 0 ]
check "prefill line" grep -qE '^prefill +12 tokens: [0-9.]+ tok/s \(f32\)' "$TMP/out"
check "decode line" grep -qE '^decode +5 steps: [0-9.]+ tok/s' "$TMP/out"
check "ceiling line" grep -qE '^ceiling +[0-9.]+ tok/s; decode at [0-9.]+%' "$TMP/out"
check "stderr empty" [ ! -s "$TMP/err" ]

"$STRATA_EXE" bench run --model "$D/switch-3a" --prompt 20 --gen 4 --json >"$TMP/json" 2>"$TMP/err"
rc=$?
check "json exits 0" [ $rc -eq 0 ]
check "json fields sane" python3 - "$TMP/json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for k in ["prefill_tok_s", "decode_tok_s", "ttft_s", "bandwidth_gbps", "ceiling_tok_s",
          "ratio", "best_step_ratio", "peak_rss_bytes", "prefill_cpu_s", "decode_cpu_s"]:
    assert j[k] > 0, (k, j[k])
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
finish
