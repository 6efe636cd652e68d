#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (clang, ASan + UBSan) in build-fuzz and runs each
# for a bounded time on its seed corpus (fuzz/corpus/<harness>, only read). Fails on any
# crash, sanitizer report, leak, per-input timeout or memory over the limits; the input
# that caused it is left in build-fuzz/artifacts/. See docs/fuzzing.md.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_HARNESS (default 10)] [HARNESS...]
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-10}
[ $# -gt 0 ] && shift
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(idx npy npz imagenet32 cifar pickle toml checkpoint)
BUILD=${EQPROP_FUZZ_BUILD_DIR:-build-fuzz}
CLANG=${EQPROP_FUZZ_CLANG:-clang++-14}

command -v "$CLANG" > /dev/null || { echo "fuzz: $CLANG not found (Debian: clang-14 libclang-rt-14-dev)" >&2; exit 1; }
if [ ! -f "$BUILD/build.ninja" ]; then
  launcher=()
  command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S . -B "$BUILD" -G Ninja -DEQPROP_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_CXX_COMPILER="$CLANG" "${launcher[@]}" > /dev/null
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eqprop-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$BUILD/artifacts"
rc=0
for h in "${harnesses[@]}"; do
  mkdir -p "$tmp/$h"  # new inputs go here; the committed corpus is only read
  log="$BUILD/fuzz_$h.log"
  # -malloc_limit_mb: no single allocation may exceed 256 MiB (sizes come from checked
  # headers, never from unchecked fields); -rss_limit_mb bounds the whole process.
  if EQPROP_FUZZ_TMP="$tmp" ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$BUILD/fuzz_$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
      -max_len=16384 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$h-" \
      "$tmp/$h" "fuzz/corpus/$h" > "$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz_$h: ok, $runs inputs in ${secs} s"
  else
    echo "fuzz_$h: FAILED (log: $log)" >&2
    tail -n 40 "$log" >&2
    rc=1
  fi
done
exit "$rc"
