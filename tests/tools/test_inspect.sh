#!/usr/bin/env bash
# strata inspect on the golden models: adapters, groups, derived keys, JSON, errors.
source "$(dirname "$0")/lib.sh"
D=$STRATA_TEST_DATA/model

"$STRATA_EXE" inspect "$D/switch-3a" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "switch-3a exits 0" [ $rc -eq 0 ]
check "generation A" contains "$TMP/out" "A (KV hiding)"
check "adapter gamma rank 8 token 258" grep -qE '3 +gamma +8 +258' "$TMP/out"
check "group grp_ab" grep -qE 'grp_ab +members: alpha beta' "$TMP/out"
check "policy base hides grp_c" grep -qE 'base +hides: grp_c' "$TMP/out"
check "no stored derived keys" contains "$TMP/out" "derived keys  none stored"
check "3 decoder layers" contains "$TMP/out" "3 decoder layers (+1 switch cache slots)"
check "stderr empty" [ ! -s "$TMP/err" ]

"$STRATA_EXE" inspect "$D/switch-3a-with-buffers" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "with-buffers exits 0" [ $rc -eq 0 ]
check "with-buffers: no warning" [ ! -s "$TMP/err" ]
check "with-buffers: derived keys listed" contains "$TMP/out" "model.adapter_hiding_matrix"

"$STRATA_EXE" inspect --json "$D/switch-3a" >"$TMP/json" 2>"$TMP/err"; rc=$?
check "json exits 0" [ $rc -eq 0 ]
check "json parses, right adapters and table" python3 - "$TMP/json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["generation"].startswith("A"), j["generation"]
assert [a["name"] for a in j["adapters"]] == ["alpha", "beta", "gamma"]
assert [a["rank"] for a in j["adapters"]] == [2, 4, 8]
assert [a["control_token_id"] for a in j["adapters"]] == [256, 257, 258]
assert [g["name"] for g in j["hiding_groups"]] == ["grp_ab", "grp_c"]
assert j["dims"]["decoder_layers"] == 3 and j["dims"]["head_dim"] == 16
assert len(j["unit_bytes"]["layers"]) == 3
PY

"$STRATA_EXE" inspect "$D/granite-dense" >"$TMP/out" 2>&1
check "dense: no adapters, lm_head stored" grep -q 'lm_head' "$TMP/out"

"$STRATA_EXE" inspect "$TMP/does-not-exist" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "missing dir fails" [ $rc -ne 0 ]
check "error names the path" contains "$TMP/err" "does-not-exist"

"$STRATA_EXE" inspect --devices >"$TMP/out" 2>&1; rc=$?
check "--devices exits 0" [ $rc -eq 0 ]
finish
