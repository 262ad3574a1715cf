#!/usr/bin/env bash
# CLI conventions across the commands.  Every command that reads a model
# takes it as -m DIR and as --model DIR (the README's tables use -m), with
# the same output either way (bench run: its output has timings, so only the
# exit code).  An unknown option is called unknown, also as the last
# argument, and a known one without its value is named.
source "$(dirname "$0")/lib.sh"
D=$STRATA_TEST_DATA

M=$TMP/model
mkdir -p "$M"
ln -s "$D/model/switch-3a/config.json" "$D/model/switch-3a/model.safetensors" "$M/"
ln -s "$D/demo/tokenizer.json" "$M/tokenizer.json"

# The command's stdout with -m, then with --model; both runs must exit 0 and
# print the same.  "@OUT@" in the arguments becomes a file per run, whose
# bytes are compared too.
same() {
    local name=$1; shift
    local a=() b=() arg
    for arg in "$@"; do a+=("${arg//@OUT@/$TMP/out-m}"); b+=("${arg//@OUT@/$TMP/out-model}"); done
    rm -f "$TMP/out-m" "$TMP/out-model"
    "$STRATA_EXE" "${a[0]}" -m "$M" "${a[@]:1}" >"$TMP/so-m" 2>"$TMP/err-m"; local ra=$?
    "$STRATA_EXE" "${b[0]}" --model "$M" "${b[@]:1}" >"$TMP/so-model" 2>"$TMP/err-model"; local rb=$?
    check "$name: -m exits 0" [ $ra -eq 0 ]
    check "$name: --model exits 0" [ $rb -eq 0 ]
    check "$name: same output" cmp -s "$TMP/so-m" "$TMP/so-model"
    if [ -e "$TMP/out-m" ] || [ -e "$TMP/out-model" ]; then
        check "$name: same file" cmp -s "$TMP/out-m" "$TMP/out-model"
    fi
    if [ $ra -ne 0 ]; then cat "$TMP/err-m"; fi
    if [ $rb -ne 0 ]; then cat "$TMP/err-model"; fi
}

same "inspect" inspect --json
same "adapters" adapters
same "plan" plan --max-memory cpu=1GiB --json
same "run" run --tokens 1,2,3 -n 3
same "logits" logits --tokens 1,2,256,3 --prefill 2 --out @OUT@
same "tokenize" tokenize --json "Hello <|alpha|>"
same "detokenize" detokenize --ids 72,105
# bench run prints timings: the exit code only
bench() { "$STRATA_EXE" bench run "$1" "$M" --prompt 4 --gen 2 --json >/dev/null 2>&1; }
check "bench run: -m exits 0" bench -m
check "bench run: --model exits 0" bench --model

# exit 2 and the line that names the problem
refuses() {
    local want=$1; shift
    "$STRATA_EXE" "$@" >/dev/null 2>"$TMP/err"
    local rc=$?
    [ $rc -eq 2 ] && contains "$TMP/err" "$want" || { echo "rc $rc:"; head -2 "$TMP/err"; false; }
}
for cmd in run "bench run"; do
    check "$cmd: unknown last option" refuses "unknown option '--bogus'" $cmd -m "$M" --bogus
    check "$cmd: unknown option" refuses "unknown option '--bogus'" $cmd -m "$M" --bogus 1
    check "$cmd: --ctx without its value" refuses "--ctx needs a value" $cmd -m "$M" --ctx
    check "$cmd: --devices without its value" refuses "--devices needs a value" $cmd -m "$M" \
        --devices
    # Every option its --help shows with a value ("--top-k K", "-n, --max-new N") is
    # known as such in the last position too (the parser's list is a second copy of
    # the names: this keeps the two from drifting apart).
    # shellcheck disable=SC2086  # $cmd is "run" or "bench run"
    opts=$("$STRATA_EXE" $cmd --help | python3 -c '
import re, sys
seen = []
for m in re.finditer(r"(?:^|[\s\[])(-{1,2}[a-z][a-z-]*)(?:, (--[a-z][a-z-]*))? [A-Z][A-Z_]*\b",
                     sys.stdin.read(), re.M):
    for o in m.groups():
        if o and o not in seen:
            seen.append(o)
print(" ".join(seen))')
    check "$cmd: its --help shows value options" [ "$(wc -w <<<"$opts")" -ge 6 ]
    for o in $opts; do
        check "$cmd: $o without its value" refuses "$o needs a value" $cmd -m "$M" "$o"
    done
done

# -n -1 (llama.cpp's "no limit"): generation ends at the stop token or when the
# context is full; 2 prompt tokens in 10 positions leave room for 9 new ones.
out=$("$STRATA_EXE" run -m "$M" --tokens 1,2 -n -1 --ignore-eos --ctx 10 --json 2>"$TMP/err")
check "run -n -1: exits 0" [ $? -eq 0 ]
check "run -n -1: stops at the full context" grep -q '"stop": "context"' <<<"$out"
check "run -n -1: 9 tokens in 10 positions" grep -q '"n_generated": 9,' <<<"$out"
check "run -n -2: refused naming -n" refuses "-n -2: expected N >= 0, or -1" run -m "$M" \
    --tokens 1,2 -n -2
check "run --tokens without -n: refused" refuses "--tokens needs -n N" run -m "$M" --tokens 1,2
# numbers past their type are refused, and a huge -n does not wrap the context check
check "run -n past int64: refused" refuses "-n: '99999999999999999999' is out of range" \
    run -m "$M" --tokens 1,2 -n 99999999999999999999
check "run --seed past uint64: refused" refuses "out of range" run -m "$M" --tokens 1,2 -n 1 \
    --seed 99999999999999999999
"$STRATA_EXE" run -m "$M" --tokens 5,6,7 -n 9223372036854775807 --ignore-eos >/dev/null \
    2>"$TMP/err"
check "run -n INT64_MAX with --tokens: refused" [ $? -eq 1 ]
check "run -n INT64_MAX: names the context" contains "$TMP/err" "exceeds the context of 512"

# --json stays JSON whatever bytes a path holds (a path need not be UTF-8)
O="$TMP/$(printf 'odd\001\377"\\')"
mkdir -p "$O"
ln -s "$D/model/switch-3a/config.json" "$D/model/switch-3a/model.safetensors" "$O/"
ln -s "$D/demo/tokenizer.json" "$O/tokenizer.json"
for c in "inspect $O" "plan -m $O" "adapters -m $O" "bench run -m $O --prompt 4 --gen 2"; do
    # shellcheck disable=SC2086  # word splitting is wanted; $O holds no space
    "$STRATA_EXE" $c --json 2>/dev/null | python3 -c 'import json, sys; json.loads(sys.stdin.buffer.read())'
    check "${c%% *} --json with a non-UTF-8 path: valid JSON" [ "${PIPESTATUS[1]}" -eq 0 ]
done

# a list of ids with an empty item is refused, a trailing comma included
for ids in '1,,2' '1,2,' ','; do
    "$STRATA_EXE" run -m "$M" --tokens "$ids" -n 1 >/dev/null 2>&1
    check "run --tokens '$ids': refused" [ $? -eq 2 ]
done

# logits: --ctx must be positive, numbers past their type are refused
for a in "--ctx 0" "--ctx 99999999999999999999" "--prefill 99999999999999999999999"; do
    # shellcheck disable=SC2086  # the option and its value are split on purpose
    "$STRATA_EXE" logits -m "$M" --tokens 1,2,3 --out "$TMP/never.bin" $a >/dev/null 2>&1
    check "logits $a: refused" [ $? -ne 0 ] && [ ! -e "$TMP/never.bin" ]
done
check "logits: --out and --indices the same file: refused" refuses "name the same file" \
    logits -m "$M" --tokens 1,2 --out "$TMP/same.bin" --indices "$TMP/same.bin"
"$STRATA_EXE" plan -m "$M" --ctx 999999 >/dev/null 2>"$TMP/err"
check "plan --ctx past max_position_embeddings: warned" contains "$TMP/err" \
    "exceeds max_position_embeddings 512"
for sz in 5abc 0.0000001; do
    "$STRATA_EXE" bench tokenize --size $sz >/dev/null 2>&1
    check "bench tokenize --size $sz: refused" [ $? -eq 2 ]
done

# sizes that are not numbers
for sz in nan inf -1MB; do
    check "convert --shard-size $sz: refused" refuses "bad --shard-size" convert "$M" \
        "$TMP/never" --shard-size "$sz"
done
check "convert --shard-size: no output" [ ! -e "$TMP/never" ]

# llama.cpp's short forms -f FILE, -c N, -t N, -s S: the same run as -p TEXT,
# --ctx, --threads, --seed (sampled, so the seed matters)
printf 'Is the sky blue?' >"$TMP/prompt.txt"
long=$("$STRATA_EXE" run -m "$M" -p 'Is the sky blue?' -n 6 --ctx 300 --threads 1 --seed 5 \
    --temp 1.5 --quiet 2>/dev/null)
short=$("$STRATA_EXE" run -m "$M" -f "$TMP/prompt.txt" -n 6 -c 300 -t 1 -s 5 --temp 1.5 \
    --quiet 2>/dev/null)
check "run -f/-c/-t/-s: same text as -p/--ctx/--threads/--seed" [ -n "$long" -a "$long" = "$short" ]
other=$("$STRATA_EXE" run -m "$M" -f "$TMP/prompt.txt" -n 6 -c 300 -t 1 -s 6 --temp 1.5 \
    --quiet 2>/dev/null)
check "run -s: the seed is used" [ "$other" != "$short" ]
"$STRATA_EXE" run -m "$M" -f "$TMP/nonexistent" -n 1 >/dev/null 2>"$TMP/err"
check "run -f: a missing file fails" [ $? -eq 1 ]
check "run -f: a missing file is named" contains "$TMP/err" "nonexistent: No such file"
check "run -f with -p: refused" refuses "exactly one of -p TEXT, -f FILE" run -m "$M" \
    -f "$TMP/prompt.txt" -p x
finish
