#!/usr/bin/env bash
# Installs the Debian packages eqprop needs (idempotent; root or sudo on Debian 12) and
# builds it in ./build (Release, -march=native). Re-running only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libeigen3-dev libfmt-dev nlohmann-json3-dev libtomlplusplus-dev libcli11-dev zlib1g-dev
  libcurl4-openssl-dev nettle-dev libdnnl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-dev python3-numpy python3-matplotlib python3-pytest pybind11-dev
  python3-setuptools python3-wheel python3-build python3-venv python3-pip  # pip install . / python3 -m build
  clang-14 libclang-rt-14-dev ccache clang-format
  doxygen  # the C++ reference: cmake --build build --target docs (about 3 s)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ccache keeps compiled objects between builds and between checkouts in other folders
# (paths are made relative to the checkout), so a rebuild recompiles only what changed.
# The configuration is the CMake preset "release" (CMakePresets.json).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
BUILD_DIR=${EQPROP_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake --preset release -B "$BUILD_DIR" "$@"
fi
cmake --build "$BUILD_DIR" -j"$(nproc)"
