# Sourced by tools/run and tools/test: install the Debian packages strata
# needs (only when one is missing), then configure and build into build/.
set -euo pipefail

STRATA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$STRATA_ROOT"

# nvcc lives outside PATH in the toolkit's default install.
if [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="$PATH:/usr/local/cuda/bin"
fi

STRATA_PACKAGES=(meson ninja-build pkg-config gcc libc6-dev python3
    libopenblas-openmp-dev libjansson-dev libpcre2-dev libzstd-dev libcmocka-dev
    zstd)

strata_install_packages() {
    local missing=()
    for p in "${STRATA_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "strata: installing Debian packages: ${missing[*]}" >&2
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# strata_build DIR [meson options...]: configure DIR once, then build it.
strata_build() {
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >&2
    fi
    ninja -C "$dir" >&2
}
