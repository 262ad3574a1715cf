#!/usr/bin/env bash
# `meson install` gives a program that embeds strata what it needs: the
# library, the public header and a pkg-config file.  Installs this build into
# a scratch DESTDIR, builds examples/minimal.c against the installed files
# only (the header as <strata.h>, flags from pkg-config) and runs it.
source "$(dirname "$0")/lib.sh"
: "${STRATA_BUILD_DIR:?}" "${STRATA_SOURCE_DIR:?}" "${STRATA_CC:?}"
D=$STRATA_TEST_DATA
for tool in meson pkg-config; do
    command -v $tool >/dev/null || { echo "skipped: no $tool on PATH"; exit 77; }
done

DEST=$TMP/dest
check "meson install into a DESTDIR" \
    meson install -C "$STRATA_BUILD_DIR" --destdir "$DEST" --no-rebuild --quiet
pc=$(find "$DEST" -name strata.pc | head -1)
hdr=$(find "$DEST" -name strata.h | head -1)
check "strata.pc installed" [ -n "$pc" ]
check "strata.h installed" [ -n "$hdr" ]
check "libstrata.a installed" [ -n "$(find "$DEST" -name libstrata.a)" ]
check "the strata command installed" [ -n "$(find "$DEST" -name strata -type f -perm -u+x)" ]

# pkg-config prefixes the .pc's directories with the sysroot.
pc_flags() {
    PKG_CONFIG_SYSROOT_DIR=$DEST PKG_CONFIG_PATH=$(dirname "$pc") pkg-config "$@" strata
}
check "pkg-config knows strata" pc_flags --exists
check "pkg-config version" [ "$(pc_flags --modversion)" = "$("$STRATA_EXE" --version | cut -d' ' -f2)" ]

# The header alone, strict C11 (and C++, which its extern "C" is for).
check "strata.h compiles alone (C11, -Wall -Wextra -pedantic -Werror)" \
    $STRATA_CC -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -x c "$hdr"
if command -v c++ >/dev/null; then
    check "strata.h compiles as C++" c++ -Wall -Werror -fsyntax-only -x c++ "$hdr"
fi

# A sanitizer build's library needs the sanitizer at link time too.
san=()
if [ -n "${STRATA_SANITIZE:-}" ] && [ "$STRATA_SANITIZE" != none ]; then
    san=(-fsanitize="$STRATA_SANITIZE")
fi
sed 's|#include "runtime/strata.h"|#include <strata.h>|' "$STRATA_SOURCE_DIR/examples/minimal.c" \
    >"$TMP/minimal.c"
check "the example includes <strata.h>" contains "$TMP/minimal.c" "#include <strata.h>"
# shellcheck disable=SC2046  # pkg-config's flags are words
check "the example builds against the installed files" \
    $STRATA_CC -std=c11 "${san[@]}" -o "$TMP/minimal" "$TMP/minimal.c" $(pc_flags --cflags --libs)
"$TMP/minimal" "$D/model/switch-3a" Hello "$D/demo/tokenizer.json" >"$TMP/out" 2>"$TMP/err"
rc=$?
check "the example runs" [ $rc -eq 0 ]
check "the example generated" contains "$TMP/err" "16 generated"
[ $rc -eq 0 ] || cat "$TMP/err"
finish
