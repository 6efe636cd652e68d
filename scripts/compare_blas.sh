#!/usr/bin/env bash
# compare_blas.sh -- build bench/blas/compare_backends.cpp against Eigen, OpenBLAS,
# BLIS and the reference BLAS (plain g++, no CMake) and measure them.
#
# Usage: scripts/compare_blas.sh [--quick] [--no-ref] [--runs N] [--wait-idle S]
#   --quick   EP shapes only for B=10,128, no conv shapes (about 1 minute)
#   --no-ref  skip the reference-BLAS trap measurement
#   --runs N  run the whole matrix N times (default 1); each number printed is
#             already the median of 3-9 timed samples, N>1 shows run-to-run spread
#   --wait-idle S  before each config wait up to S seconds for the other processes
#             to drop below 25% of the machine (the box is shared; default 0 = don't wait)
# Env: OUT_DIR (default build-blas/results), BUILD_DIR (default build-blas), CXX.
#
# At most 2 threads are ever used (the reference machine has 2 cores).
# Output: $OUT_DIR/raw.csv (all measurements), $OUT_DIR/peak.txt, $OUT_DIR/meta.txt,
#         $OUT_DIR/summary.md (GFLOP/s pivot tables of the median wall time),
#         summary_best.md (fastest sample), summary_cpu.md (1-thread, by CPU time:
#         the numbers to trust when `contention:` lines show other load).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/bench/blas/compare_backends.cpp"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-blas}"
OUT_DIR="${OUT_DIR:-$BUILD_DIR/results}"
CXX="${CXX:-g++}"
QUICK=0
REF=1
RUNS=1
WAIT_IDLE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-ref) REF=0 ;;
    --runs) RUNS="$2"; shift ;;
    --wait-idle) WAIT_IDLE="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

LIBDIR=/usr/lib/x86_64-linux-gnu
OPENBLAS_LIB="$LIBDIR/openblas-pthread/libopenblas.so"   # real path, not the alternative
OPENBLAS_INC=/usr/include/x86_64-linux-gnu/openblas-pthread
BLIS_LIB="$LIBDIR/blis-openmp/libblis.so.4"
BLIS_INC=/usr/include/x86_64-linux-gnu/blis-openmp
REFBLAS_LIB="$LIBDIR/blas/libblas.so.3"                  # netlib reference (has cblas_*)
EIGEN_INC=/usr/include/eigen3
CXXFLAGS=(-O3 -march=native -std=c++20 -DNDEBUG -I"$EIGEN_INC" -Wall -Wno-ignored-attributes
          -Wno-maybe-uninitialized -Wno-unused-variable)  # last two: Eigen 3.4 AVX-512 header noise

mkdir -p "$BUILD_DIR" "$OUT_DIR"
T_START=$(date +%s)

# ---------------------------------------------------------------- environment
{
  echo "date: $(date -Is)"
  echo "host: $(uname -r); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  echo "cpu: $(nproc) cpus; flags(simd): $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|avx2|fma|avx512f|avx512bw|avx512vl)$' | tr '\n' ' ')"
  echo "gcc -march=native: $($CXX -march=native -Q --help=target 2>/dev/null | awk '$1=="-march="{print $2}')"
  echo "inherited OPENBLAS_CORETYPE='${OPENBLAS_CORETYPE-<unset>}' OPENBLAS_NUM_THREADS='${OPENBLAS_NUM_THREADS-<unset>}' OMP_NUM_THREADS='${OMP_NUM_THREADS-<unset>}' BLIS_NUM_THREADS='${BLIS_NUM_THREADS-<unset>}'"
  echo "libblas.so.3 alternative: $(readlink -f $LIBDIR/libblas.so.3 2>/dev/null || echo '?')"
  if command -v update-alternatives >/dev/null; then
    update-alternatives --display libblas.so.3-x86_64-linux-gnu 2>/dev/null | sed 's/^/  /' || true
  fi
} | tee "$OUT_DIR/meta.txt"

# ---------------------------------------------------------------- build
build() {  # build <output> <flags...>   (skipped when newer than the source)
  local out="$BUILD_DIR/$1"; shift
  if [[ -x "$out" && "$out" -nt "$SRC" && "$out" -nt "$0" ]]; then return 0; fi
  echo "building $(basename "$out")" >&2
  "$CXX" "${CXXFLAGS[@]}" "$@" -o "$out.tmp" && mv "$out.tmp" "$out"
}
# two compile jobs at a time at most
build bench_eigen -DEQ_BENCH_EIGEN "$SRC" -pthread &
build bench_eigen_omp -DEQ_BENCH_EIGEN -fopenmp "$SRC" -pthread &
wait
# Linking a full path only records the SONAME (libopenblas.so.0, libblis.so.4,
# libblas.so.3); at run time the loader would resolve that through the Debian
# alternatives symlinks in $LIBDIR.  -rpath pins the directory we meant.
rp() { echo "-Wl,-rpath,$(dirname "$1")"; }
build bench_openblas -DEQ_BENCH_CBLAS -DEQ_BENCH_OPENBLAS -I"$OPENBLAS_INC" "$SRC" "$OPENBLAS_LIB" "$(rp "$OPENBLAS_LIB")" -pthread &
build bench_blis -DEQ_BENCH_BLIS -I"$BLIS_INC" "$SRC" "$BLIS_LIB" "$(rp "$BLIS_LIB")" -fopenmp -lm -pthread &
wait
if [[ $REF == 1 ]]; then
  build bench_refblas -DEQ_BENCH_CBLAS -I"$OPENBLAS_INC" "$SRC" "$REFBLAS_LIB" "$(rp "$REFBLAS_LIB")" -pthread
fi
for b in bench_openblas bench_blis bench_refblas; do
  [[ -x "$BUILD_DIR/$b" ]] && echo "ldd $b: $(ldd "$BUILD_DIR/$b" | awk '/blas|blis|gomp/{printf "%s=>%s ", $1, $3}')"
done | tee -a "$OUT_DIR/meta.txt"
echo "build done after $(( $(date +%s) - T_START )) s" >&2

# ---------------------------------------------------------------- helpers
busy_pct() {  # % of all cpus busy (incl. steal) over a 1 s window
  local a b
  read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
  sleep 1
  read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
  a=$(( (u2+n2+s2+q2+sq2+st2) - (u1+n1+s1+q1+sq1+st1) ))
  b=$(( a + (i2+w2) - (i1+w1) ))
  echo $(( b > 0 ? 100 * a / b : 0 ))
}
loadline() {  # load average + how busy all cpus were during the last second
  echo "load $(cut -d' ' -f1-3 /proc/loadavg); cpus busy (1 s sample, incl. steal) $(busy_pct)%"
}
wait_idle() {
  [[ $WAIT_IDLE -gt 0 ]] || return 0
  local t0=$SECONDS p
  while :; do
    p=$(busy_pct)
    if [[ $p -lt 25 ]]; then return 0; fi
    if (( SECONDS - t0 >= WAIT_IDLE )); then
      echo "   (machine still ${p}% busy after ${WAIT_IDLE}s; measuring anyway)" >&2; return 0
    fi
  done
}
ARGS=()
if [[ $QUICK == 1 ]]; then ARGS=(--groups square,ep --batches 10,128); fi

RAW="$OUT_DIR/raw.csv"
echo "run,label,op,shape,M,N,K,median_us,gflops,min_us,samples,cpu_us,cpu_gflops" > "$RAW"
: > "$OUT_DIR/backend_meta.txt"

runcfg() {  # runcfg <run> <label> <threads> <binary> [env assignments...] -- [extra args]
  local run="$1" label="$2" thr="$3" bin="$4"; shift 4
  local envs=() extra=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do envs+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  extra=("$@")
  wait_idle
  echo "[run $run] $label: $(loadline)" | tee -a "$OUT_DIR/backend_meta.txt" >&2
  # always start from a clean threading environment, then apply the config's env
  env -u OPENBLAS_CORETYPE -u OPENBLAS_NUM_THREADS -u OMP_NUM_THREADS -u BLIS_NUM_THREADS \
      -u GOTO_NUM_THREADS -u OPENBLAS_VERBOSE "${envs[@]}" \
      "$BUILD_DIR/$bin" --label "$label" --threads "$thr" "${ARGS[@]}" "${extra[@]}" \
    | while IFS= read -r line; do
        case "$line" in
          \#*) echo "$label: $line" >> "$OUT_DIR/backend_meta.txt" ;;
          label,*) ;;
          *) echo "$run,$line" >> "$RAW" ;;
        esac
      done
}

# ---------------------------------------------------------------- peak
echo "== CPU peak ($(loadline))" >&2
"$BUILD_DIR/bench_eigen" --peak | tee "$OUT_DIR/peak.txt"

# ---------------------------------------------------------------- matrix
for run in $(seq 1 "$RUNS"); do
  runcfg "$run" eigen-1t 1 bench_eigen
  runcfg "$run" eigen-omp-2t 2 bench_eigen_omp OMP_NUM_THREADS=2
  runcfg "$run" openblas-1t 1 bench_openblas OPENBLAS_NUM_THREADS=1
  runcfg "$run" openblas-2t 2 bench_openblas OPENBLAS_NUM_THREADS=2
  runcfg "$run" openblas-hsw-1t 1 bench_openblas OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell
  runcfg "$run" openblas-hsw-2t 2 bench_openblas OPENBLAS_NUM_THREADS=2 OPENBLAS_CORETYPE=Haswell
  runcfg "$run" blis-1t 1 bench_blis BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
  runcfg "$run" blis-2t 2 bench_blis BLIS_NUM_THREADS=2 OMP_NUM_THREADS=2
  if [[ $REF == 1 && $run == 1 ]]; then
    # the "wrong libblas" trap: netlib reference BLAS, a few shapes only (it is slow)
    runcfg "$run" refblas-1t 1 bench_refblas -- --groups square,ep --batches 10,128 --ops sgemm,dgemm
  fi
done
echo "== load after: $(loadline)" >&2

# ---------------------------------------------------------------- summary
# One table per op: rows = shape, columns = config, cells = median over runs of
# the per-run median GFLOP/s.
pivot() {  # pivot <column: 9=median wall GFLOP/s, 0=best sample, 13=CPU-time GFLOP/s> <title> [config regex]
awk -F, -v runs="$RUNS" -v col="$1" -v title="$2" -v cfgre="${3:-.}" '
  NR == 1 { next }
  $2 !~ cfgre { next }
  {
    op = $3; sh = $4; cfg = $2; key = op SUBSEP sh SUBSEP cfg
    if (!(op in seenop)) { seenop[op] = 1; ops[++nops] = op }
    if (!((op SUBSEP sh) in seensh)) { seensh[op SUBSEP sh] = 1; shp[op, ++nsh[op]] = sh }
    if (!(cfg in seencfg)) { seencfg[cfg] = 1; cfgs[++ncfg] = cfg }
    n[key]++; v[key, n[key]] = (col == 0) ? 1e-3 * $5 * $6 * $7 * fl(op) / $10 : $col
  }
  function fl(op) { return op == "cgemm" ? 8 : (op ~ /^rxc/ ? 4 : 2) }
  function med(key,   k, i, j, t, a) {
    k = n[key]; if (k == 0) return ""
    for (i = 1; i <= k; i++) a[i] = v[key, i] + 0
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  END {
    printf "# BLAS backend comparison: %s (%d run(s))\n\n", title, runs
    print "Flops: gemm 2MNK, cgemm 8MNK, real x complex 4MNK. Shapes: name = op(A) (MxK) . X (KxN)."
    for (o = 1; o <= nops; o++) {
      op = ops[o]
      printf "\n## %s\n\n| shape |", op
      for (c = 1; c <= ncfg; c++) printf " %s |", cfgs[c]
      printf "\n|---|"; for (c = 1; c <= ncfg; c++) printf "---:|"; printf "\n"
      for (s = 1; s <= nsh[op]; s++) {
        sh = shp[op, s]; printf "| %s |", sh
        for (c = 1; c <= ncfg; c++) {
          m = med(op SUBSEP sh SUBSEP cfgs[c]); if (m == "") printf " - |"; else printf " %.1f |", m
        }
        printf "\n"
      }
    }
  }' "$RAW"
}
pivot 9 "GFLOP/s, median sample per run, median over runs" > "$OUT_DIR/summary.md"
pivot 0 "GFLOP/s of the best (fastest) sample: closest to an unloaded machine" > "$OUT_DIR/summary_best.md"
pivot 13 "GFLOP/s by process CPU time, 1-thread configs only (robust to other load)" '1t$' > "$OUT_DIR/summary_cpu.md"

{
  echo
  echo "## CPU peak"
  echo
  grep -E '^#|^peak' "$OUT_DIR/peak.txt" | sed 's/^/    /'
  echo
  echo "## Backend metadata and load at the start of each config"
  echo
  sed 's/^/    /' "$OUT_DIR/backend_meta.txt"
} >> "$OUT_DIR/summary.md"

cat "$OUT_DIR/summary.md"
echo >&2
echo "total $(( $(date +%s) - T_START )) s; results in $OUT_DIR (raw.csv, summary*.md, peak.txt, meta.txt)" >&2
