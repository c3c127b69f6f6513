#!/usr/bin/env bash
# Installs the Debian packages hoodydb needs to mount (fuse3) and the stock SQLite clients the
# test suite drives (sqlite3 CLI, PHP, Perl, Ruby, Go's mattn/go-sqlite3, and Node.js with npm
# and a compiler for the npm drivers), plus Chromium with a font for the JavaScript client's and
# the web console's tests. Does nothing when they are all present.
set -euo pipefail
pkgs=(fuse3 libfuse3-3 sqlite3 curl php-cli php-sqlite3 libdbd-sqlite3-perl ruby-sqlite3 util-linux procps systemd)
pkgs+=(golang-go golang-github-mattn-go-sqlite3-dev g++ make)
pkgs+=(chromium fonts-dejavu-core)
# PyInstaller (make dist, tests/test_dist.py) needs objdump, and the shared libpython of the
# interpreter it runs on: Debian's own python3 is linked statically and ships that apart.
pkgs+=(binutils)
# Node.js from elsewhere (NodeSource's package carries npm) counts; Debian's splits npm out.
command -v npm >/dev/null || pkgs+=(nodejs npm)
py="${PYTHON:-python3}"
if [ "$("$py" -c 'import sys; print(sys.base_prefix)')" = /usr ]; then
  pkgs+=("libpython$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')")
fi
[ "${HOODYDB_WITH_BENCH_DEPS:-0}" = 1 ] && pkgs+=(libfuse3-dev pkg-config gcc)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
