#!/usr/bin/env bash
# strata convert: byte-exact reproduction of the bnb golden checkpoints,
# round trips on the golden Granite Switch models, refusals, crash safety.
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
B=$STRATA_TEST_DATA/bnb
M=$STRATA_TEST_DATA/model
export PYTHONPATH=$HERE

# 1. Rebuild the unquantized source of each tiny bnb checkpoint from the golden
#    manifest (source weights) + the checkpoint's unquantized tensors, convert
#    it, and compare every tensor and the quantization_config byte for byte.
golden_case() { # dir quant-args...
    local d=$1; shift
    python3 - "$B" "$d" "$TMP/src-$d" <<'PY' || return 1
import json, os, sys, st
root, d, out = sys.argv[1:]
man = json.load(open(f"{root}/manifest.json"))
blob = open(f"{root}/data.bin", "rb").read()
case = next(c for c in man["cases"] if c["kind"] == "tiny_model" and c["dir"] == d)
hdr, data = st.read(f"{root}/{d}/model.safetensors")
cfg = json.load(open(f"{root}/{d}/config.json"))
cfg.pop("quantization_config")
dt = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
tensors = {}
for k, v in hdr.items():
    if v["dtype"] in ("BF16", "F16", "F32") and ".weight." not in k and not k.endswith(".SCB"):
        tensors[k] = (v["dtype"], v["shape"], data[k])
for k, a in case["outputs"].items():
    if k.endswith(".source_weight"):
        arr = man["arrays"][a]
        tensors[k.replace(".source_weight", ".weight")] = (
            dt[arr["dtype"]], arr["shape"], blob[arr["offset"]: arr["offset"] + arr["nbytes"]])
os.makedirs(out)
st.write(f"{out}/model.safetensors", tensors)
json.dump(cfg, open(f"{out}/config.json", "w"), indent=2)
PY
    "$STRATA_EXE" convert "$TMP/src-$d" "$TMP/out-$d" --quiet "$@" 2>"$TMP/err-$d" || { cat "$TMP/err-$d"; return 1; }
    python3 - "$B/$d" "$TMP/out-$d" <<'PY'
import json, sys, st
g, o = sys.argv[1:]
import struct
gh, gd = st.read(f"{g}/model.safetensors")
oh, od = st.read(f"{o}/model.safetensors")
sh, sd = st.read(f"{o}/../src-{g.rsplit('/', 1)[1]}/model.safetensors")
assert sorted(gh) == sorted(oh), (sorted(set(gh) ^ set(oh)))
for k in gh:
    assert gh[k]["dtype"] == oh[k]["dtype"] and gh[k]["shape"] == oh[k]["shape"], (k, gh[k], oh[k])
    # every byte, LLM.int8 codes included: the two elements of tiny_int8_fp16
    # with w = SCB/2 hold 63 because bnb's scale is fl(fl(1/SCB) * 127) (torch
    # evaluates 127.0 / row_stats as a reciprocal times 127), so w * scale is
    # just under 63.5 (tests/data/README.md)
    assert gd[k] == od[k], f"tensor {k} differs"
gq = json.load(open(f"{g}/config.json"))["quantization_config"]
oq = json.load(open(f"{o}/config.json"))["quantization_config"]
assert gq == oq, (gq, oq)
PY
}
# The double-quant offset is bnb's torch mean, not reproducible exactly
# (bnb-format §9): that case feeds the stored offsets with --match-offsets.
check "nf4+dq bf16 golden reproduced byte for byte (stored offsets fed)" \
    golden_case tiny_nf4_dq_bf16 --quant nf4 --double-quant --rules cpu --compute-dtype bf16 \
    --match-offsets "$B/tiny_nf4_dq_bf16"
check "fp4 f16 golden reproduced byte for byte" \
    golden_case tiny_fp4_nodq_fp16 --quant fp4 --rules cpu --compute-dtype f16
check "int8 f16 golden reproduced byte for byte" \
    golden_case tiny_int8_fp16 --quant int8

# 2. Round trips on the golden Granite Switch models.
S=$M/switch-3a-with-buffers
"$STRATA_EXE" convert "$S" "$TMP/q" --quant nf4 --double-quant --quiet 2>"$TMP/err"; rc=$?
check "switch nf4 converts" [ $rc -eq 0 ]
check "no warning on the old buffers" [ ! -s "$TMP/err" ]
check "derived keys absent, LoRA byte-identical, projections quantized" python3 - "$S" "$TMP/q" <<'PY'
import sys, st
ih, idata = st.read(f"{sys.argv[1]}/model.safetensors")
oh, odata = st.read(f"{sys.argv[2]}/model.safetensors")
for k in ("model.adapter_token_ids", "model.token_to_group_mask", "model.adapter_hiding_matrix"):
    assert k in ih and k not in oh, k
lora = [k for k in ih if ".lora_" in k]
assert len(lora) == 42
for k in lora:
    assert idata[k] == odata[k] and ih[k]["dtype"] == oh[k]["dtype"], k
q = [k for k in oh if k.endswith("quant_state.bitsandbytes__nf4")]
assert len(q) == 12, len(q)
assert "lm_head.weight" not in oh
PY
# logits of the quantized model == logits of its exact dequantization in f32
"$STRATA_EXE" convert "$TMP/q" "$TMP/dq" --quant none --quiet 2>&1
TOK=153,234,256,59,101,256,104,50,100,257,19,65,132
"$STRATA_EXE" logits --model "$TMP/q" --tokens $TOK --out "$TMP/lq.bin" 2>/dev/null
"$STRATA_EXE" logits --model "$TMP/dq" --tokens $TOK --out "$TMP/ldq.bin" 2>/dev/null
"$STRATA_EXE" logits --model "$S" --tokens $TOK --out "$TMP/lf.bin" 2>/dev/null
check "quantized logits = dequantized-f32 logits (kernels add no error)" python3 - "$TMP" <<'PY'
import struct, sys
t = sys.argv[1]
rd = lambda n: struct.unpack(f"<{len(open(n,'rb').read())//4}f", open(n, "rb").read())
a, b, f = rd(f"{t}/lq.bin"), rd(f"{t}/ldq.bin"), rd(f"{t}/lf.bin")
assert len(a) == len(b) == len(f) == 13 * 259
d = max(abs(x - y) for x, y in zip(a, b))
e = max(abs(x - y) for x, y in zip(a, f))
print(f"max |quantized - dequantized f32| = {d:.3g}; format error vs original f32 = {e:.3g}")
assert d <= 1e-4, d
assert e > d
PY
for q in fp4 int8; do
    "$STRATA_EXE" convert "$M/switch-3a" "$TMP/q-$q" --quant $q --quiet 2>/dev/null
    check "switch $q converts and runs" "$STRATA_EXE" logits --model "$TMP/q-$q" --tokens 1,2,256,3 --out "$TMP/l-$q.bin"
done

# 3. Refusals
"$STRATA_EXE" convert "$M/switch-3a" "$TMP/q" --quant nf4 2>"$TMP/err"; rc=$?
check "existing OUT_DIR refused" [ $rc -ne 0 ] && contains "$TMP/err" "already exists"
"$STRATA_EXE" convert "$TMP/q" "$TMP/qq" --quant nf4 2>"$TMP/err"; rc=$?
check "re-quantizing refused" [ $rc -ne 0 ] && contains "$TMP/err" "already quantized"
check "nothing left behind by refusals" [ ! -e "$TMP/qq" ] && [ -z "$(ls -d "$TMP"/qq.partial-* 2>/dev/null)" ]
"$STRATA_EXE" convert "$M/switch-3a" "$TMP/q" --quant nf4 --force --quiet; rc=$?
check "--force replaces" [ $rc -eq 0 ]

# 4. Sharding + zstd: the loader reads .zst shards directly
"$STRATA_EXE" convert "$M/switch-3a" "$TMP/z" --quant nf4 --shard-size 100KB --zstd-only --quiet; rc=$?
check "sharded zstd-only converts" [ $rc -eq 0 ] && [ -f "$TMP/z/model.safetensors.index.json" ]
check "only .zst shards written" [ -z "$(ls "$TMP/z"/*.safetensors 2>/dev/null)" ]
"$STRATA_EXE" logits --model "$TMP/z" --tokens $TOK --out "$TMP/lz.bin" 2>/dev/null
"$STRATA_EXE" logits --model "$TMP/q" --tokens $TOK --out "$TMP/lq2.bin" 2>/dev/null
check "zstd shards give identical logits" cmp -s "$TMP/lz.bin" "$TMP/lq2.bin"

# 5. Truncated / corrupt input shards: refused, naming the shard and the tensor
mkdir -p "$TMP/trunc"
cp "$M/switch-3a/config.json" "$TMP/trunc/"
head -c -100 "$M/switch-3a/model.safetensors" >"$TMP/trunc/model.safetensors"
"$STRATA_EXE" convert "$TMP/trunc" "$TMP/trunc-out" --quant nf4 2>"$TMP/err"; rc=$?
check "truncated shard refused" [ $rc -ne 0 ] && [ ! -e "$TMP/trunc-out" ]
check "error names the shard and a tensor" grep -q "model.safetensors: tensor '" "$TMP/err"
cp "$M/switch-3a/model.safetensors" "$TMP/trunc/model.safetensors"
printf 'XXXX' | dd of="$TMP/trunc/model.safetensors" bs=1 seek=20 conv=notrunc 2>/dev/null
"$STRATA_EXE" convert "$TMP/trunc" "$TMP/trunc-out" --quant nf4 2>"$TMP/err"; rc=$?
check "corrupt header refused, naming the shard" [ $rc -ne 0 ] && contains "$TMP/err" "model.safetensors: header"

# 5b. --skip names whole path components; config.json lists the module paths it
# matched (not the patterns, which transformers 4.x and 5.x read differently).
"$STRATA_EXE" synth --like tiny --layers 12 "$TMP/d12" >/dev/null 2>&1
"$STRATA_EXE" convert "$TMP/d12" "$TMP/d12-skip" --quant nf4 --quiet \
    --skip model.layers.1,mlp.down_proj,proj 2>"$TMP/err"
check "--skip: converts" [ $? -eq 0 ]
check "--skip: an entry that matches nothing is named" contains "$TMP/err" "--skip proj: no Linear"
python3 - "$TMP/d12-skip" <<'PY'
import json, sys
import st
d = sys.argv[1]
skip = json.load(open(f"{d}/config.json"))["quantization_config"]["llm_int8_skip_modules"]
want = ["lm_head"] + sorted(
    [f"model.layers.1.{m}" for m in ("mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj",
                                     "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj")] +
    [f"model.layers.{i}.mlp.down_proj" for i in range(12)])
assert skip == want, skip
hdr, _ = st.read(f"{d}/model.safetensors")
for i in range(12):
    for m in ("mlp.gate_proj", "self_attn.q_proj", "mlp.down_proj"):
        name = f"model.layers.{i}.{m}.weight"
        left = i == 1 or m == "mlp.down_proj"
        assert (hdr[name]["dtype"] == "BF16") == left, (name, hdr[name]["dtype"])
PY
check "--skip: layer 1 (not 10, 11) and every down_proj left out, and listed" [ $? -eq 0 ]

# 5c. Names the converter cannot carry through are refused, not cut short; an
# empty Linear is refused (bnb 4-bit as LLM.int8 already did).
mkdir -p "$TMP/odd" "$TMP/empty"
echo '{"architectures": ["X"], "hidden_size": 64}' >"$TMP/odd/config.json"
cp "$TMP/odd/config.json" "$TMP/empty/config.json"
python3 - "$TMP" <<'PY'
import struct, sys
import st
t = sys.argv[1]
w = struct.pack("<1024f", *([0.5] * 1024))
st.write(f"{t}/odd/model.safetensors", {"y" * 2000 + ".weight": ("F32", [16, 64], w)})
st.write(f"{t}/empty/model.safetensors", {"a.weight": ("F32", [0, 64], b""),
                                          "b.weight": ("F32", [16, 64], w)})
PY
"$STRATA_EXE" convert "$TMP/odd" "$TMP/odd-out" --quant nf4 2>"$TMP/err"
check "a 2000-byte tensor name: refused" [ $? -ne 0 ] && contains "$TMP/err" "a name of 2007 bytes"
check "a 2000-byte tensor name: no output" [ ! -e "$TMP/odd-out" ]
for q in nf4 int8; do
    "$STRATA_EXE" convert "$TMP/empty" "$TMP/empty-$q" --quant $q 2>"$TMP/err"
    check "an empty Linear ($q): refused, naming it" [ $? -ne 0 ] && contains "$TMP/err" "a.weight"
done

# 5d. Alignment: a bf16 bias of odd length over 16 MiB is held back like the
# small odd-sized tensors, so every tensor after it stays aligned to its
# element size (it once went out in place, 2 bytes off for what followed).
mkdir -p "$TMP/bigodd"
cp "$TMP/odd/config.json" "$TMP/bigodd/config.json"
python3 - "$TMP" <<'PY'
import struct, sys
import st
t = sys.argv[1]
w = struct.pack("<1024f", *([0.5] * 1024))
st.write(f"{t}/bigodd/model.safetensors", {"a.bias": ("BF16", [8388609], b"\x80\x3f" * 8388609),
                                           "b.weight": ("F32", [16, 64], w),
                                           "c.bias": ("F32", [16], w[:64])})
PY
"$STRATA_EXE" convert "$TMP/bigodd" "$TMP/bigodd-nf4" --quant nf4 --quiet 2>/dev/null
python3 - "$TMP/bigodd-nf4/model.safetensors" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read(1 << 20)
(n,) = struct.unpack("<Q", data[:8])
hdr = json.loads(data[8:8 + n]); hdr.pop("__metadata__", None)
size = {"BF16": 2, "F16": 2, "F32": 4, "U8": 1, "I8": 1, "F64": 8}
bad = [k for k, v in hdr.items() if (8 + n + v["data_offsets"][0]) % size[v["dtype"]]]
assert not bad and len(hdr) > 3, bad
PY
check "every tensor aligned to its element size after a 16 MiB odd-sized one" [ $? -eq 0 ]

# 6. SIGKILL at random points: OUT_DIR never appears half-written; input untouched.
"$STRATA_EXE" synth --like small --seed 7 "$TMP/small" 2>/dev/null
sum_before=$(cat "$TMP/small"/* | md5sum)
ok=1
for i in 1 2 3 4 5 6; do
    "$STRATA_EXE" convert "$TMP/small" "$TMP/k" --quant nf4 --quiet --threads 1 &
    pid=$!
    sleep "0.0$((RANDOM % 9 + 1))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ -e "$TMP/k" ]; then
        # finished before the kill: it must then be complete
        "$STRATA_EXE" inspect "$TMP/k" >/dev/null 2>&1 || ok=0
        rm -rf "$TMP/k"
    fi
done
check "killed conversions leave no OUT_DIR" [ $ok -eq 1 ]
check "input untouched" [ "$(cat "$TMP/small"/* | md5sum)" = "$sum_before" ]
"$STRATA_EXE" convert "$TMP/small" "$TMP/k" --quant nf4 --quiet 2>/dev/null
check "a later run completes and removes stale partial dirs" [ -d "$TMP/k" ] && \
    [ -z "$(ls -d "$TMP"/k.partial-* 2>/dev/null)" ]
finish
