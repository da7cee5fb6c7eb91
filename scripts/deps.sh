#!/bin/sh
# Checks the Debian packages lmpress builds against. As root, installs what is missing
# (apt-get update first); otherwise prints the exact command and fails.
set -u
PKGS="gcc make pkg-config zlib1g-dev libcjson-dev libhdf5-dev libpcre2-dev libutf8proc-dev libopenblas-openmp-dev liblapacke-dev libcairo2-dev libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "lmpress: installing missing packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq $missing >&2 || { echo "lmpress: apt-get install failed" >&2; exit 1; }
    exit 0
fi
echo "lmpress: missing Debian packages:$missing" >&2
echo "lmpress: install them with:  sudo apt-get install -y$missing" >&2
exit 1
