#!/usr/bin/env bash
# strata run with text: chat format, --raw, adapters and where their control
# token goes, streaming == the JSON text, stops, --chat reusing the cache,
# the summary line, refusals; strata adapters; the demo.
source "$(dirname "$0")/lib.sh"
D=$STRATA_TEST_DATA
GEN='<|start_of_role|>assistant<|end_of_role|>'

# switch-3a (vocab = 256 bytes + 3 control tokens) with the demo tokenizer
# and a tokenizer_config.json naming the kinds: alpha LoRA, beta aLoRA with an
# invocation text, gamma aLoRA at the generation prompt.
M=$TMP/model
mkdir -p "$M"
ln -s "$D/model/switch-3a/config.json" "$D/model/switch-3a/model.safetensors" "$M/"
ln -s "$D/demo/tokenizer.json" "$M/tokenizer.json"
cat >"$M/tokenizer_config.json" <<'EOF'
{"eos_token": "<|end_of_text|>",
 "chat_template": "{%- set adapter_map = {\n    'alpha': {'token': '<|alpha|>', 'type': 'lora'},\n    'beta': {'token': '<|beta|>', 'type': 'alora', 'invocation_text': '<req>'},\n    'gamma': {'token': '<|gamma|>', 'type': 'alora'}\n} %}"}
EOF
run() { "$STRATA_EXE" run -m "$M" "$@"; }
ids() { "$STRATA_EXE" tokenize --tokenizer "$D/demo/tokenizer.json" --json "$1" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"])'; }

# chat format, greedy, JSON
run -p "Hello" -n 8 --ignore-eos --json >"$TMP/j" 2>"$TMP/err"; rc=$?
check "json run exits 0" [ $rc -eq 0 ]
check "json: no summary on stderr" [ ! -s "$TMP/err" ]
want=$(ids "<|start_of_role|>user<|end_of_role|>Hello<|end_of_text|>
$GEN")
check "chat format prompt ids" python3 - "$TMP/j" "$want" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert str(j["prompt"]) == sys.argv[2], (j["prompt"], sys.argv[2])
assert j["n_generated"] == 8 and len(j["generated"]) == 8
# (a generated control token switches the adapter from there on, spec 5.4)
n = len(j["prompt"])
assert j["generated_adapters"][0] == 0 and set(j["adapter_indices"][:n]) == {0}
assert j["stop"] == "length"
PY

# streaming prints what the JSON's text holds (same lossy UTF-8 repair)
run -p "Hello" -n 8 --ignore-eos >"$TMP/out" 2>"$TMP/err"; rc=$?
check "text run exits 0" [ $rc -eq 0 ]
check "streamed text == JSON text" python3 - "$TMP/j" "$TMP/out" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
out = open(sys.argv[2], "rb").read().decode("utf-8")
assert out == j["text"] + "\n", (out, j["text"])
PY
check "summary line on stderr" grep -qE '^strata: [0-9]+ prompt tokens at [0-9.]+ tok/s, 8 generated at [0-9.]+ tok/s \(length\); weights .*, KV .*, peak RSS ' "$TMP/err"
run -p "Hello" -n 8 --quiet >/dev/null 2>"$TMP/err"
check "--quiet: nothing on stderr" [ ! -s "$TMP/err" ]

# --system, --raw
run -p "Hi" --system "Be brief." -n 1 --json >"$TMP/j" 2>/dev/null
want=$(ids "<|start_of_role|>system<|end_of_role|>Be brief.<|end_of_text|>
<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>
$GEN")
check "--system turn first" python3 -c 'import json,sys; assert str(json.load(open(sys.argv[1]))["prompt"]) == sys.argv[2]' "$TMP/j" "$want"
run -p "Hi <|alpha|> x" --raw -n 1 --json >"$TMP/j" 2>/dev/null
check "--raw: the text as is" python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["prompt"] == [72,105,32,60,124,97,108,112,104,97,124,62,32,120]' "$TMP/j"
run -p "a<|adapter_2|>" --raw -n 1 --json >"$TMP/j" 2>/dev/null
check "special tokens in the text are matched" python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["prompt"] == [97, 257]' "$TMP/j"
run -p "a<|adapter_2|>" --raw --no-special -n 1 --json >"$TMP/j" 2>/dev/null
check "--no-special: plain text" python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))["prompt"]) == 14' "$TMP/j"
# options that do not apply are refused, not ignored
refused() { # message, then the arguments of strata run
    local want=$1; shift
    run "$@" >/dev/null 2>"$TMP/err"
    [ $? -eq 2 ] && contains "$TMP/err" "$want"
}
check "--no-special without --raw: refused" refused "--no-special needs --raw" \
    -p "a<|adapter_2|>" --no-special -n 1
check "--chat --json: refused" refused "--json does not apply" --chat --json -n 1 </dev/null
check "--chat --raw: refused" refused "--raw does not apply" --chat --raw -n 1 </dev/null
check "--chat -p -: refused" refused "not -p -" --chat -p - -n 1 </dev/null

# adapters: where the control token goes, and which adapter made each token
run -p "Hello" -n 4 --ignore-eos --adapter alpha --json >"$TMP/j" 2>/dev/null
check "LoRA: control token at position 0" python3 - "$TMP/j" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["prompt"][0] == 256 and 256 not in j["prompt"][1:]
n = len(j["prompt"])
assert set(j["adapter_indices"][:n]) == {1} and j["generated_adapters"][0] == 1
PY
gen_len=$(ids "$GEN" | python3 -c 'import sys; print(len(eval(sys.stdin.read())))')
run -p "Hello" -n 4 --ignore-eos --adapter gamma --json >"$TMP/j" 2>/dev/null
check "aLoRA: control token before the generation prompt, base before it" python3 - "$TMP/j" "$gen_len" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); g = int(sys.argv[2]); p = j["prompt"]
at = p.index(258)
assert at == len(p) - g - 1, (at, len(p), g)
a = j["adapter_indices"]
assert set(a[:at]) == {0} and set(a[at:len(p)]) == {3} and j["generated_adapters"][0] == 3
PY
run -p "check <req>this</req>" -n 2 --adapter beta --json >"$TMP/j" 2>/dev/null
want=$(ids "<|start_of_role|>user<|end_of_role|>check ")
check "aLoRA with an invocation: before it" python3 - "$TMP/j" "$want" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); pre = eval(sys.argv[2])
assert j["prompt"][:len(pre)] == pre and j["prompt"][len(pre)] == 257, j["prompt"]
PY
run -p "Hello" -n 4 --adapter gamma --adapter-kind lora --json >"$TMP/j" 2>/dev/null
check "--adapter-kind lora moves it to position 0" python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["prompt"][0] == 258' "$TMP/j"
run -p "Hello" -n 3 --ignore-eos --adapter gamma --show-adapter >/dev/null 2>"$TMP/err"
check "--show-adapter" contains "$TMP/err" "adapter per generated token: 3,3,3 (3=gamma)"
run --tokens 1,2,3 -n 2 --adapter alpha --json >"$TMP/j" 2>/dev/null
check "--tokens with a LoRA adapter" python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["prompt"] == [256,1,2,3]' "$TMP/j"

# stops
run -p "Hello" -n 24 --ignore-eos --json >"$TMP/j" 2>/dev/null
read -r tok stop_at < <(python3 - "$TMP/j" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["generated"]
print(g[5], g.index(g[5]) + 1)
PY
)
run -p "Hello" -n 24 --stop-token "$tok" --json >"$TMP/j2" 2>/dev/null
check "--stop-token" python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["stop"]=="stop_token" and j["n_generated"]==int(sys.argv[2]), j' "$TMP/j2" "$stop_at"
read -r text n_text < <(python3 - "$TMP/j" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["generated"]
k = next((i for i in range(2, 24) if 48 <= g[i] < 123 and chr(g[i]).isalnum()), None)
if k is None: print("- 0")
else:
    s = chr(g[k]); print(s, next(i for i in range(24) if bytes(t for t in g[:i + 1] if t < 256).find(s.encode()) >= 0) + 1)
PY
)
if [ "$text" != "-" ]; then
    run -p "Hello" -n 24 --ignore-eos --stop "$text" --json >"$TMP/j2" 2>/dev/null
    check "--stop STRING" python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["stop"]=="stop_text" and j["n_generated"]==int(sys.argv[2]), j' "$TMP/j2" "$n_text"
fi
run -p "Hello" -n 400 --ctx 110 --ignore-eos --json >"$TMP/j" 2>/dev/null
check "text generation stops at the context" python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["stop"]=="context" and len(j["prompt"])+j["n_generated"]==111, j["stop"]' "$TMP/j"
run -p "Hello" -n 4 --ctx 60 >/dev/null 2>"$TMP/err"; rc=$?
check "a prompt longer than --ctx is refused" [ $rc -eq 1 ] && contains "$TMP/err" "longer than the context of 60"

# --chat: the second turn reuses the cache
printf 'Hello\n\nHow are you?\n' | run --chat -n 4 --ignore-eos --adapter alpha >"$TMP/out" 2>"$TMP/err"; rc=$?
check "--chat exits 0" [ $rc -eq 0 ]
check "--chat: two replies" [ "$(wc -l <"$TMP/out")" -eq 2 ]
check "--chat: two summaries, the second reuses the cache" python3 - "$TMP/err" <<'PY'
import re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("strata: ")]
assert len(lines) == 2, lines
m = re.search(r"\(\+(\d+) cached\)", lines[1])
assert m and int(m.group(1)) > 40, lines[1]
PY

# refusals
run -p "Hello" --adapter delta >/dev/null 2>"$TMP/err"; rc=$?
check "unknown adapter refused" [ $rc -eq 1 ]
check "its message lists the adapters" contains "$TMP/err" "alpha, beta, gamma"
"$STRATA_EXE" run -m "$D/model/switch-3a" -p "Hello" >/dev/null 2>"$TMP/err"; rc=$?
check "text without tokenizer.json refused" [ $rc -eq 1 ]
check "its message says so" contains "$TMP/err" "no tokenizer.json"
"$STRATA_EXE" run -m "$TMP/nowhere" -p "Hello" >/dev/null 2>"$TMP/err"; rc=$?
check "missing model refused, named" [ $rc -eq 1 ] && contains "$TMP/err" "nowhere"
run -p "Hello" --tokens 1 -n 1 >/dev/null 2>&1; rc=$?
check "-p with --tokens is a usage error" [ $rc -eq 2 ]
run -p "Hello" --adapter-kind both >/dev/null 2>&1; rc=$?
check "bad --adapter-kind is a usage error" [ $rc -eq 2 ]

# strata adapters
"$STRATA_EXE" adapters -m "$M" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "adapters exits 0" [ $rc -eq 0 ]
check "alpha: LoRA, rank 2, token 256" grep -qE '1 +alpha +LoRA +2 +256 +<\|adapter_1\|> +position 0' "$TMP/out"
check "gamma: aLoRA, rank 8, token 258" grep -qE '3 +gamma +aLoRA +8 +258' "$TMP/out"
"$STRATA_EXE" adapters -m "$D/model/switch-3a" --json >"$TMP/j" 2>/dev/null
check "adapters --json without tokenizer: kinds unknown" python3 - "$TMP/j" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
a = j["adapters"]
assert [x["name"] for x in a] == ["alpha", "beta", "gamma"]
assert [x["kind"] for x in a] == ["unknown"] * 3 and [x["rank"] for x in a] == [2, 4, 8]
assert [x["token_id"] for x in a] == [256, 257, 258] and a[0]["token"] is None
PY

# the demo (tools/run with no arguments) finishes in seconds
demo=$D/../../tools/demo.sh
STRATA_DEMO_CACHE=$TMP/demo timeout 60 bash "$demo" "$STRATA_EXE" >"$TMP/out" 2>&1; rc=$?
check "demo exits 0" [ $rc -eq 0 ]
check "demo shows the adapter switch" contains "$TMP/out" "adapter per generated token: 2,2,2"
check "demo shows the plan" contains "$TMP/out" "model.layers.2"
[ $rc -eq 0 ] || tail -20 "$TMP/out"
finish
