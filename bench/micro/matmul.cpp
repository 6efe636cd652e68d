// The relaxation's float32 products, one thread: Eigen's kernel against eqprop::matmul (oneDNN
// where the library was built with it) in float32 and bfloat16, W or W^T, at the shapes of the
// MLP and VGG workloads (docs/dev/linear-algebra.md, "2026-12-06: oneDNN").
//   build/eqprop_microbench --benchmark_filter=MatMul
#include <benchmark/benchmark.h>

#include "eqprop/core/matmul.hpp"

namespace {
using namespace eqprop;

// backend 0: Eigen (noalias product), 1: matmul float32, 2: matmul bfloat16.
void matmul_bench(benchmark::State& st) {
  const long m = st.range(0), k = st.range(1), n = st.range(2);
  const bool transpose = st.range(3) != 0;
  const int backend = int(st.range(4));
  if (backend == 2 && !bfloat16_available()) return st.SkipWithError("no bfloat16 products here");
  const matrix<float> W = transpose ? matrix<float>::Random(k, m) : matrix<float>::Random(m, k);
  const matrix<float> X = matrix<float>::Random(k, n);
  matrix<float> Y(m, n);
  const const_matrix_map<float> Wm(W.data(), W.rows(), W.cols());
  for (auto _ : st) {
    if (backend == 0) {
      if (transpose) Y.noalias() = Wm.transpose() * X;
      else Y.noalias() = Wm * X;
    } else {
      matmul<float, float>(Wm, transpose, X.data(), n, Y.data(), false,
                           backend == 2 ? matmul_precision::bfloat16 : matmul_precision::float32);
    }
    benchmark::DoNotOptimize(Y.data());
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * k * n, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  st.SetLabel(backend == 0 ? "eigen" : backend == 1 ? matmul_backend() : "bfloat16");
}
}  // namespace

// (m, k, n, transpose, backend): mlp512x2 per thread (25 and 50 columns; stacked points 50/100),
// the hEP Table 1 layer at batch 10 per thread, a VGG-4 conv chunk (256 x 1152 patches).
BENCHMARK(matmul_bench)
    ->Name("MatMul")
    ->ArgsProduct({{512}, {512}, {25, 50, 100}, {0, 1}, {0, 1, 2}})
    ->Args({256, 256, 10, 0, 0})
    ->Args({256, 256, 10, 0, 1})
    ->Args({256, 256, 10, 0, 2})
    ->Args({256, 1152, 1024, 0, 0})
    ->Args({256, 1152, 1024, 0, 1})
    ->Args({256, 1152, 1024, 0, 2});
