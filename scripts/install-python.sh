#!/usr/bin/env bash
# Installs the built Python package (build/python/eqprop: the pybind11 module and its .py
# files) into a Python's site-packages, so that `import eqprop` works without PYTHONPATH.
#
#   ./scripts/install-python.sh                       # Debian's /usr/bin/python3 (needs root)
#   ./scripts/install-python.sh /path/to/venv/bin/python   # a venv made with --system-site-packages
#   ./scripts/install-python.sh --target DIR          # any directory (then PYTHONPATH=DIR)
#
# Build first (./scripts/setup.sh). The version installed is the C++ library's (VERSION).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
TARGET=""
while [ $# -gt 0 ]; do
  case "$1" in
    --target) TARGET="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) PY="$1"; shift ;;
  esac
done
SRC=${EQPROP_BUILD_DIR:-build}/python/eqprop
if ! ls "$SRC"/_core*.so > /dev/null 2>&1; then
  echo "install-python: $SRC/_core*.so not found: run ./scripts/setup.sh first" >&2
  exit 1
fi
if [ -z "$TARGET" ]; then
  TARGET=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
fi
mkdir -p "$TARGET"
rm -rf "$TARGET/eqprop"
cp -r "$SRC" "$TARGET/eqprop"
find "$TARGET/eqprop" -name '__pycache__' -prune -exec rm -rf {} +
echo "installed eqprop $(cat VERSION) into $TARGET/eqprop"
