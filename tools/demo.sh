#!/usr/bin/env bash
# The built-in demo (tools/run with no arguments).
set -euo pipefail
strata=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
echo "== strata inspect tests/data/model/switch-3a (a tiny Granite Switch model) ==" >&2
exec "$strata" inspect "$root/tests/data/model/switch-3a"
