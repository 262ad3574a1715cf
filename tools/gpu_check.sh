#!/usr/bin/env bash
# The one script a session with a GPU runs on the device machine: builds
# strata with CUDA, runs the CUDA tests (each CUDA kernel against its CPU
# reference, the CUDA device backend), optionally under compute-sanitizer
# memcheck, then the CUDA benchmarks (tests/cuda/bench_cuda.c: decode GEMV vs
# the HBM roofline, prefill vs cuBLAS, streamed layers vs host->device
# bandwidth and the HF-style layer-by-layer offload anchor).
#
# The device machine cannot reach any package registry and has no Debian
# development packages, so the build dependencies travel as .deb files:
#
#   1. here (a machine with apt), once:
#        tools/gpu_check.sh --fetch-debs     # apt-get download into .gpu-debs/ (~15 MB),
#                                            # which it adds to .git/info/exclude
#   2. with the device tool:
#        run(command="tools/gpu_check.sh", carry=[".gpu-debs"], timeout_s=600)
#      options: --memcheck (compute-sanitizer on every CUDA test; slower),
#               --all (the whole test suite, not only the cuda suite),
#               --no-bench, --no-e2e (skip the end-to-end placements of a
#               3B-shaped NF4 model: synth + convert + `strata bench run`, and
#               bench/hf_offload_anchor.py where torch with CUDA is installed),
#               --arch sm_90 (meson gpu_arch).
#
# The .debs are unpacked into /tmp/strata-sysroot (never over /), found
# through PKG_CONFIG_LIBDIR + PKG_CONFIG_SYSROOT_DIR and LD_LIBRARY_PATH.
# Environment: STRATA_GPU_BUILD (build dir, default build-gpu), STRATA_GPU_DEBS
# (the .deb folder), STRATA_GPU_FORCE_SYSROOT=1 (use the .debs even where the
# system has the packages: to test this script on a machine with apt).
# Results go to $OUT (or /tmp/strata-gpu-check): env.txt, build.log, tests.log,
# memcheck.log, bench.txt, bench.json, e2e.txt, summary.txt (at most 8 files, as the
# device tool brings back).  Exit status: 0 if everything that ran passed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEBS_DIR=${STRATA_GPU_DEBS:-$ROOT/.gpu-debs}
DEB_PACKAGES=(libopenblas-openmp-dev libopenblas0-openmp libgfortran5 libjansson-dev libjansson4
    libpcre2-dev libpcre2-8-0 libzstd-dev libzstd1 libcmocka-dev libcmocka0 zstd
    pkgconf pkgconf-bin libpkgconf3)

memcheck=0 all=0 bench=1 e2e=1 arch=sm_90
while [ $# -gt 0 ]; do
    case "$1" in
        --fetch-debs)
            # keep the .debs out of commits (local exclude file, no git command)
            if [ -d "$ROOT/.git/info" ] && ! grep -qx '/.gpu-debs/' "$ROOT/.git/info/exclude" 2>/dev/null; then
                echo '/.gpu-debs/' >> "$ROOT/.git/info/exclude"
            fi
            mkdir -p "$DEBS_DIR" && cd "$DEBS_DIR" || exit 1
            apt-get download "${DEB_PACKAGES[@]}" || exit 1
            ls -l "$DEBS_DIR"
            exit 0 ;;
        --memcheck) memcheck=1 ;;
        --all) all=1 ;;
        --no-bench) bench=0 ;;
        --no-e2e) e2e=0 ;;
        --arch) arch=$2; shift ;;
        *) echo "usage: tools/gpu_check.sh [--fetch-debs | --memcheck --all --no-bench --no-e2e --arch sm_XX]" >&2
           exit 2 ;;
    esac
    shift
done

OUT=${OUT:-${TMPDIR:-/tmp}/strata-gpu-check}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: > "$summary"
status=0
note() { echo "$*" | tee -a "$summary"; }

export PATH="$PATH:/usr/local/cuda/bin"

# ---- environment --------------------------------------------------------------
{
    date -u
    nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    nvcc --version 2>&1 || echo "nvcc: not found"
    gcc --version 2>&1 | head -1
    command -v meson && meson --version
    python3 -c 'import mesonbuild, sys; print("mesonbuild", mesonbuild.__file__)' 2>&1
    nproc
} > "$OUT/env.txt" 2>&1

if command -v meson >/dev/null; then MESON=(meson)
else MESON=(python3 -m mesonbuild.mesonmain); fi

# ---- build dependencies from carried .debs -----------------------------------
need_sysroot=${STRATA_GPU_FORCE_SYSROOT:-0}
for pc in jansson libpcre2-8 libzstd cmocka openblas; do
    pkg-config --exists "$pc" 2>/dev/null || need_sysroot=1
done
if [ $need_sysroot -eq 1 ]; then
    if ! ls "$DEBS_DIR"/*.deb >/dev/null 2>&1; then
        note "FAIL: build dependencies missing and no .gpu-debs/ carried (run --fetch-debs here first)"
        exit 1
    fi
    SYS=/tmp/strata-sysroot
    mkdir -p "$SYS"
    for f in "$DEBS_DIR"/*.deb; do
        if command -v dpkg >/dev/null; then dpkg -x "$f" "$SYS"
        else (cd "$SYS" && ar p "$f" "$(ar t "$f" | grep '^data\.tar')" | tar -x -f - --auto-compress 2>/dev/null ||
              ar p "$f" "$(ar t "$f" | grep '^data\.tar')" | tar -x -J -f -); fi
    done
    MA=usr/lib/x86_64-linux-gnu
    export PKG_CONFIG_SYSROOT_DIR="$SYS"
    export PKG_CONFIG_LIBDIR="$SYS/$MA/pkgconfig:$SYS/$MA/openblas-openmp/pkgconfig:$SYS/usr/share/pkgconfig"
    export LD_LIBRARY_PATH="$SYS/$MA:$SYS/$MA/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LIBRARY_PATH="$SYS/$MA:$SYS/$MA/openblas-openmp${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export CPATH="$SYS/usr/include:$SYS/usr/include/x86_64-linux-gnu/openblas-openmp${CPATH:+:$CPATH}"
    export PATH="$PATH:$SYS/usr/bin"
    command -v pkg-config >/dev/null || export PKG_CONFIG="$SYS/usr/bin/pkgconf"
    echo "build dependencies from $DEBS_DIR unpacked into $SYS" >> "$OUT/env.txt"
fi

# ---- build -----------------------------------------------------------------------
BUILD="$ROOT/${STRATA_GPU_BUILD:-build-gpu}"
if ! { [ -f "$BUILD/build.ninja" ] || "${MESON[@]}" setup "$BUILD" -Dcuda=enabled -Dgpu_arch="$arch" \
            -Dwerror=true -Dbuildtype=release; } > "$OUT/build.log" 2>&1 ||
   ! ninja -C "$BUILD" -j "$(nproc)" >> "$OUT/build.log" 2>&1; then
    note "FAIL: build (see build.log)"
    tail -40 "$OUT/build.log"
    exit 1
fi
note "ok: build with CUDA ($arch)"

# ---- tests -------------------------------------------------------------------------
suite=(--suite cuda)
[ $all -eq 1 ] && suite=()
if "${MESON[@]}" test -C "$BUILD" --print-errorlogs --num-processes 1 "${suite[@]}" > "$OUT/tests.log" 2>&1; then
    note "ok: tests ($([ $all -eq 1 ] && echo all || echo cuda suite))"
else
    note "FAIL: tests (see tests.log)"
    status=1
fi
if grep -q 'skipped: no CUDA device' "$BUILD/meson-logs/testlog.txt" 2>/dev/null; then
    note "FAIL: the CUDA tests skipped: no usable GPU on this machine"
    status=1
fi
grep -E '^ *[0-9]+/[0-9]+ ' "$OUT/tests.log" | tee -a "$summary"

if [ $memcheck -eq 1 ]; then
    : > "$OUT/memcheck.log"
    for t in "$BUILD"/tests/cuda/test_cuda_*; do
        [ -x "$t" ] || continue
        echo "== $(basename "$t")" >> "$OUT/memcheck.log"
        if STRATA_TEST_DATA="$ROOT/tests/data" STRATA_EXE="$BUILD/tools/strata" \
                compute-sanitizer --tool memcheck --error-exitcode 9 \
                "$t" >> "$OUT/memcheck.log" 2>&1; then
            note "ok: memcheck $(basename "$t")"
        else
            note "FAIL: memcheck $(basename "$t") (see memcheck.log)"
            status=1
        fi
    done
fi

# ---- benchmarks -----------------------------------------------------------------
if [ $bench -eq 1 ]; then
    if "$BUILD/tests/cuda/bench_cuda" --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1; then
        note "ok: benchmarks (bench.txt, bench.json)"
    else
        note "FAIL: benchmarks (see bench.txt)"
        status=1
    fi
    cat "$OUT/bench.txt"
fi

# ---- end to end: placements of a 3B-shaped NF4 model through `strata bench run` ---
# All on the GPU (decode against the HBM roofline), then a GPU budget that
# leaves about half the layers in pinned host memory, streamed (copy rate vs
# host->device bandwidth) or run on the CPU.  Results: e2e.txt.
if [ $bench -eq 1 ] && [ $e2e -eq 1 ]; then
    S="$BUILD/tools/strata" M=/tmp/strata-e2e
    : > "$OUT/e2e.txt"
    e2e_run() { echo "== strata bench run $*" >> "$OUT/e2e.txt"
                "$S" bench run -m "$M/nf4" --prompt 512 --gen 64 "$@" >> "$OUT/e2e.txt" 2>&1; }
    if { [ -f "$M/nf4/config.json" ] ||
         { "$S" synth --like granite-4.1-3b "$M/bf16" &&
           "$S" convert "$M/bf16" "$M/nf4" --quant nf4 --double-quant --quiet &&
           rm -rf "$M/bf16"; }; } >> "$OUT/e2e.txt" 2>&1 &&
       e2e_run --devices cuda &&
       e2e_run --devices cuda --max-memory 0=1400MiB --host-exec stream &&
       e2e_run --devices cuda --max-memory 0=1400MiB --host-exec cpu &&
       e2e_run --devices cuda --logical-gpus 2 --strategy balanced; then
        note "ok: end-to-end placements (e2e.txt)"
    else
        note "FAIL: end-to-end placements (see e2e.txt)"
        status=1
    fi
    # the PyTorch anchor on the same shapes, where torch with CUDA is installed
    if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "== bench/hf_offload_anchor.py (PyTorch, accelerate-style layer-by-layer offload)" \
            >> "$OUT/e2e.txt"
        if python3 "$ROOT/bench/hf_offload_anchor.py" >> "$OUT/e2e.txt" 2>&1; then
            note "ok: PyTorch offload anchor (e2e.txt)"
        else
            note "FAIL: PyTorch offload anchor (see e2e.txt)"
            status=1
        fi
    else
        note "skipped: PyTorch offload anchor (no torch with CUDA on this machine)"
    fi
    cat "$OUT/e2e.txt"
fi

note "gpu_check: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
