#!/usr/bin/env bash
# The whole test suite: sets up (packages + Release build), runs every test, then runs
# the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

echo "== tests (Release) =="
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 600

# Python module tests: Debian's interpreter, the module and CLI from ./build.
echo "== Python tests =="
if ! ls build/python/eqprop/_core*.so > /dev/null 2>&1; then
  echo "test: build/python/eqprop/_core*.so is missing (is pybind11-dev installed? EQPROP_BUILD_PYTHON=ON?)" >&2
  exit 1
fi
py_rc=0
# EQPROP_TEST_WHEEL=1: also build the wheel and install it into a fresh venv
# (tests/python/test_wheel.py; its CMake build reuses ./build's objects through ccache).
PYTHONPATH="$PWD/build/python" EQPROP_CLI="$PWD/build/eqprop" EQPROP_TEST_WHEEL=1 \
  /usr/bin/python3 -m pytest -q tests/python || py_rc=$?
if [ "$py_rc" -eq 5 ]; then
  echo "test: pytest collected no tests from tests/python: the Python test wiring is broken" >&2
fi
[ "$py_rc" -eq 0 ] || exit "$py_rc"

echo "== unit tests under ASan + UBSan =="
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
[ -f build-sanitize/build.ninja ] || cmake --preset sanitize > /dev/null
cmake --build --preset sanitize -j"$(nproc)"
# Slow tests (names containing "Slow") are skipped under the sanitizers.
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  EQPROP_CLI="$PWD/build-sanitize/eqprop" ./build-sanitize/eqprop_tests --gtest_filter='-*Slow*' --gtest_brief=1

# libFuzzer harnesses of every file parser (clang, ASan + UBSan; build-fuzz), a few seconds
# each on the committed seed corpus: fails on any crash or sanitizer report.
echo "== parser fuzzing (${EQPROP_FUZZ_SECONDS:-5} s per harness) =="
./scripts/fuzz.sh "${EQPROP_FUZZ_SECONDS:-5}"
