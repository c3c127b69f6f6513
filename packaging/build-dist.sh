#!/usr/bin/env bash
# Builds the two one-file artifacts and their checksums into OUT (default dist/):
#   hoodydb.pyz  zipapp (shiv): every Python dependency inside; needs python3 3.11 on the target
#   hoodydb      PyInstaller one-file binary: Python inside too; needs only fuse3 on the target
#   SHA256SUMS
# Used by `make dist` and by tests/test_dist.py, so the tests run exactly what is shipped.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
bin="${HOODYDB_VENV_BIN:-$root/.venv/bin}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -f "$out/hoodydb.pyz" "$out/hoodydb" "$out/SHA256SUMS"
"$bin/shiv" -q -c hoodydb -o "$out/hoodydb.pyz" -p '/usr/bin/env python3' --reproducible "$root"
"$bin/pyinstaller" --noconfirm --log-level WARN --distpath "$out" --workpath "$work" "$root/packaging/hoodydb.spec"
(cd "$out" && sha256sum hoodydb.pyz hoodydb > SHA256SUMS)
ls -l "$out"
