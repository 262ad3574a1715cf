# Shared helpers for the shell tests: `check NAME CONDITION...` counts and
# reports; the script ends with `finish`.
set -u
: "${STRATA_EXE:?}" "${STRATA_TEST_DATA:?}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
check() {
    local name=$1; shift
    if "$@"; then echo "ok: $name"; else echo "FAIL: $name"; fails=$((fails + 1)); fi
}
contains() { grep -qF -- "$2" "$1"; }
finish() { [ $fails -eq 0 ] && { echo "all checks passed"; exit 0; }; echo "$fails check(s) failed"; exit 1; }
