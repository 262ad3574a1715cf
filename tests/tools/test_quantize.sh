#!/usr/bin/env bash
# strata quantize / dequantize against the bnb golden vectors: bytes of the
# quantized tensors and quant_state JSON, exact dequantization of the tiny bnb
# checkpoints, the safetensors layout of the output, and error exits.
source "$(dirname "$0")/lib.sh"
B=$STRATA_TEST_DATA/bnb

# Helper: python that reads the golden manifest and safetensors files.
cat >"$TMP/g.py" <<'PY'
import json, struct, sys, os
B = os.environ["STRATA_TEST_DATA"] + "/bnb"
M = json.load(open(B + "/manifest.json"))
DATA = open(B + "/data.bin", "rb").read()
def arr(name):
    a = M["arrays"][name]
    return DATA[a["offset"]:a["offset"] + a["nbytes"]]
def case(cid):
    return next(c for c in M["cases"] if c["id"] == cid)
def st_read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    return n, hdr, {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
                    for k, v in hdr.items() if k != "__metadata__"}, raw
def st_write(path, tensors):   # name -> (dtype, shape, bytes)
    hdr, off, body = {"__metadata__": {"format": "pt"}}, 0, b""
    for k, (dt, shape, b) in tensors.items():
        hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b); body += b
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + body)
def bf16(f32bytes):            # f32 -> bf16, round to nearest even
    out = []
    for (u,) in struct.iter_unpack("<I", f32bytes):
        out.append(((u + 0x7fff + ((u >> 16) & 1)) >> 16) & 0xffff)
    return struct.pack("<%dH" % len(out), *out)
PY
export PYTHONPATH="$TMP"

# --- dequantize the tiny bnb checkpoints -----------------------------------
for spec in "tiny_nf4_dq_bf16 model.layers.0.mlp.up_proj.weight nf4" \
            "tiny_nf4_dq_bf16 model.layers.0.mlp.down_proj.weight nf4" \
            "tiny_fp4_nodq_fp16 model.layers.0.mlp.up_proj.weight fp4" \
            "tiny_int8_fp16 model.layers.0.mlp.down_proj.weight int8"; do
    set -- $spec
    "$STRATA_EXE" dequantize "$B/$1" "$2" --out "$TMP/deq.f32" >"$TMP/out" 2>"$TMP/err"; rc=$?
    check "dequantize $1 $2 exits 0" [ $rc -eq 0 ]
    check "dequantize $1 prints the format" contains "$TMP/out" "$2: $3 ["
    check "dequantize $1 $2 is exact" python3 - "$1" "$2" "$TMP/deq.f32" <<'PY'
import sys, struct, g
d, name, path = sys.argv[1:]
got = open(path, "rb").read()
want = g.arr("model/%s/%s" % (d, name))
dt = g.M["arrays"]["model/%s/%s" % (d, name)]["dtype"]
if dt == "bfloat16":
    got = g.bf16(got)
elif dt == "float16":
    got = struct.pack("<%de" % (len(got) // 4), *struct.unpack("<%df" % (len(got) // 4), got))
assert len(got) == len(want), (len(got), len(want))
step = 4 if dt == "float32" else 2
sign = 1 << (8 * step - 1)
for i in range(0, len(got), step):
    a, b = (int.from_bytes(x[i:i + step], "little") for x in (got, want))
    if a != b and (a | sign) != (b | sign) or a != b and (a & ~sign) != 0:   # zeros equal without sign
        raise SystemExit("element %d differs: %x vs %x" % (i // step, a, b))
PY
done

# --- quantize a file built from the golden inputs --------------------------
python3 - "$TMP/in.safetensors" <<'PY'
import sys, struct, g
g.st_write(sys.argv[1], {
    "a.weight": ("F32", [32, 96], g.arr("inputs/randn_32x96")),
    "b.weight": ("BF16", [32, 96], g.arr("inputs/bf16_32x96")),
    "c.weight": ("F32", [16, 64], g.arr("inputs/int8_w_16x64")),
    "norm.weight": ("F32", [3], struct.pack("<3f", 1, 2, 3)),
    "odd": ("F32", [7, 37], g.arr("inputs/odd_7x37")),
})
PY

"$STRATA_EXE" quantize "$TMP/in.safetensors" "$TMP/nf4.safetensors" --type nf4 --rules cpu >"$TMP/out" 2>"$TMP/err"; rc=$?
check "quantize nf4 exits 0" [ $rc -eq 0 ]
check "quantize nf4 reports 4 of 5" contains "$TMP/out" "quantized 4 of 5 tensors to nf4"
check "nf4 --rules cpu tensors and JSON equal bnb's" python3 - "$TMP/nf4.safetensors" <<'PY'
import sys, json, struct, g
n, hdr, t, raw = g.st_read(sys.argv[1])
assert (8 + n) % 8 == 0, "header not padded to 8"
assert list(hdr)[0] == "__metadata__" and hdr["__metadata__"] == {"format": "pt"}
offs = sorted(v["data_offsets"] for k, v in hdr.items() if k != "__metadata__")
pos = 0
for a, b in offs:
    assert a == pos, "hole in the data section"
    pos = b
assert 8 + n + pos == len(raw), "trailing bytes"
for W, cid in (("a.weight", "q4/randn_32x96/nf4/bs64/nodq"), ("b.weight", "q4/bf16_32x96/nf4/bs64/nodq"),
               ("odd", "q4/odd_7x37/nf4/bs64/nodq")):
    c = g.case(cid)
    for key in ("weight", "weight.absmax", "weight.quant_map"):
        name = W + key[len("weight"):]
        dt, shape, data = t[name]
        assert data == g.arr(c["outputs"][key]), name
        assert shape == g.M["arrays"][c["outputs"][key]]["shape"], (name, shape)
    dt, shape, data = t[W + c["quant_state_key"][len("weight"):]]
    assert dt == "U8" and data.decode() == c["quant_state_json"], data
assert t["norm.weight"][2] == struct.pack("<3f", 1, 2, 3)
PY

"$STRATA_EXE" quantize "$TMP/in.safetensors" "$TMP/fp4.safetensors" --type fp4 --blocksize 128 >"$TMP/out" 2>"$TMP/err"; rc=$?
check "quantize fp4 --blocksize 128 (cuda rules) exits 0" [ $rc -eq 0 ]
check "fp4 cuda rules equal bnb's CUDA decision functions" python3 - "$TMP/fp4.safetensors" <<'PY'
import sys, g
n, hdr, t, raw = g.st_read(sys.argv[1])
c = g.case("q4/randn_32x96/fp4/bs128/nodq")
assert t["a.weight"][2] == g.arr(c["outputs"]["weight_cuda_rule_emulated"])
assert t["a.weight.absmax"][2] == g.arr(c["outputs"]["weight.absmax"])
PY
"$STRATA_EXE" dequantize "$TMP/fp4.safetensors" a.weight --out "$TMP/a.f32" >"$TMP/out"; rc=$?
check "dequantize own fp4 output exits 0" [ $rc -eq 0 ]
check "dequantize own fp4 output prints shape" contains "$TMP/out" "a.weight: fp4 [32, 96]"

"$STRATA_EXE" quantize "$TMP/in.safetensors" "$TMP/int8.safetensors" --type int8 >"$TMP/out" 2>"$TMP/err"; rc=$?
check "quantize int8 exits 0" [ $rc -eq 0 ]
check "int8 skips tensors not named *.weight" contains "$TMP/err" "odd: not a *.weight tensor"
check "int8 tensors equal bnb's" python3 - "$TMP/int8.safetensors" <<'PY'
import sys, g
n, hdr, t, raw = g.st_read(sys.argv[1])
assert t["c.weight"][0] == "I8" and t["c.weight"][2] == g.arr("int8/w_16x64/weight")
assert t["c.SCB"][0] == "F32" and t["c.SCB"][2] == g.arr("int8/w_16x64/SCB")
assert t["c.weight_format"][:2] == ("U8", []) and t["c.weight_format"][2] == b"\0"
assert t["odd"][0] == "F32"
PY
# options of the 4-bit formats are refused with int8, not ignored
for o in "--double-quant" "--blocksize 4096" "--storage float64" "--rules cpu"; do
    # shellcheck disable=SC2086  # the option and its value are split on purpose
    "$STRATA_EXE" quantize "$TMP/in.safetensors" "$TMP/never.safetensors" --type int8 $o \
        >/dev/null 2>"$TMP/err"; rc=$?
    check "quantize int8 $o: refused" [ $rc -eq 2 ] && contains "$TMP/err" "${o%% *} applies to nf4/fp4 only"
done
check "quantize int8 refusals: no output" [ ! -e "$TMP/never.safetensors" ]
"$STRATA_EXE" dequantize "$TMP/int8.safetensors" c.weight --out "$TMP/c.f32" >/dev/null; rc=$?
check "int8 dequantize exact" python3 - "$TMP/c.f32" <<'PY'
import sys, g
assert open(sys.argv[1], "rb").read() == g.arr("int8/w_16x64/dequant_f32")
PY

"$STRATA_EXE" quantize "$TMP/in.safetensors" "$TMP/dq.safetensors" --type nf4 --double-quant >/dev/null 2>&1; rc=$?
check "quantize --double-quant exits 0" [ $rc -eq 0 ]
check "double quant JSON has the nested fields" python3 - "$TMP/dq.safetensors" <<'PY'
import sys, json, g
n, hdr, t, raw = g.st_read(sys.argv[1])
j = t["a.weight.quant_state.bitsandbytes__nf4"][2].decode()
assert j.startswith('{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [32, 96], '
                    '"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": '), j
assert t["a.weight.absmax"][0] == "U8" and t["a.weight.nested_quant_map"][2] == g.arr("tables/dynamic_map")
PY

# --- errors -----------------------------------------------------------------
"$STRATA_EXE" quantize "$TMP/in.safetensors" "$TMP/x.safetensors" >/dev/null 2>&1; rc=$?
check "missing --type is a usage error" [ $rc -eq 2 ]
"$STRATA_EXE" quantize "$TMP/in.safetensors" "$TMP/x.safetensors" --type nf3 >/dev/null 2>&1; rc=$?
check "unknown --type is a usage error" [ $rc -eq 2 ]
"$STRATA_EXE" quantize "$TMP/in.safetensors" "$TMP/x.safetensors" --type nf4 --blocksize 100 >/dev/null 2>&1; rc=$?
check "bad --blocksize is a usage error" [ $rc -eq 2 ]
"$STRATA_EXE" quantize "$TMP/in.safetensors" "$TMP/x.safetensors" --type int8 --double-quant >/dev/null 2>&1; rc=$?
check "int8 --double-quant is a usage error" [ $rc -eq 2 ]
"$STRATA_EXE" quantize "$TMP/missing.safetensors" "$TMP/x.safetensors" --type nf4 >/dev/null 2>&1; rc=$?
check "missing input fails" [ $rc -eq 1 ]
python3 - "$TMP/nan.safetensors" <<'PY'
import sys, struct, g
g.st_write(sys.argv[1], {"w.weight": ("F32", [2, 64], struct.pack("<128f", *([0.5] * 70 + [float("nan")] + [0.1] * 57)))})
PY
"$STRATA_EXE" quantize "$TMP/nan.safetensors" "$TMP/x.safetensors" --type fp4 >/dev/null 2>"$TMP/err"; rc=$?
check "NaN input fails" [ $rc -eq 1 ]
check "NaN error names tensor and element" contains "$TMP/err" "tensor w.weight: element 70 is NaN"
check "failed quantize leaves no output" [ ! -e "$TMP/x.safetensors" ]
check "failed quantize leaves no temporary file" [ -z "$(ls "$TMP" | grep tmp-)" ]
"$STRATA_EXE" dequantize "$B/tiny_nf4_dq_bf16" no.such.weight --out "$TMP/x" >/dev/null 2>"$TMP/err"; rc=$?
check "dequantize of a missing tensor fails" [ $rc -eq 1 ]
check "dequantize error names the tensor" contains "$TMP/err" "tensor no.such.weight: not found"
"$STRATA_EXE" dequantize "$B/tiny_nf4_dq_bf16" model.layers.0.mlp.up_proj.weight >/dev/null 2>&1; rc=$?
check "dequantize without --out is a usage error" [ $rc -eq 2 ]

# --out appears whole or not at all: a failed write leaves an earlier file as
# it was, and a path that is not a regular file is written in place, never
# replaced or removed (a failed write once removed it: /dev/full included).
W=model.layers.0.mlp.up_proj.weight
"$STRATA_EXE" dequantize "$B/tiny_nf4_dq_bf16" $W --out "$TMP/keep.f32" >/dev/null 2>&1
cp "$TMP/keep.f32" "$TMP/keep.bak"
mkdir "$TMP/keep.f32.tmp"                    # the temporary file cannot be made
"$STRATA_EXE" dequantize "$B/tiny_nf4_dq_bf16" $W --out "$TMP/keep.f32" >/dev/null 2>&1; rc=$?
check "dequantize: a failed write exits 1" [ $rc -eq 1 ]
check "dequantize: a failed write keeps the earlier file" cmp -s "$TMP/keep.f32" "$TMP/keep.bak"
n=$("$STRATA_EXE" dequantize "$B/tiny_nf4_dq_bf16" $W --out /dev/stderr 2>&1 >/dev/null | wc -c)
check "dequantize --out /dev/stderr: written in place" [ "$n" -eq "$(stat -c %s "$TMP/keep.bak")" ]
if [ -c /dev/full ]; then
    "$STRATA_EXE" dequantize "$B/tiny_nf4_dq_bf16" $W --out /dev/full >/dev/null 2>&1; rc=$?
    check "dequantize --out /dev/full: the write fails" [ $rc -eq 1 ]
    check "dequantize --out /dev/full: the device is still there" [ -c /dev/full ]
    [ -e /dev/full ] || [ "$(id -u)" != 0 ] || mknod -m 666 /dev/full c 1 7   # a regression's damage
fi
finish
