// The relaxation's float32 products, one thread: Eigen's kernel against eqprop::matmul (oneDNN
// where the library was built with it) in float32 and bfloat16, W or W^T, at the shapes of the
// MLP and VGG workloads (docs/dev/linear-algebra.md, "2026-12-06: oneDNN"); and real weights
// times complex states (holomorphic EP): Eigen's mixed product against eqprop::matmul.
//   build/eqprop_microbench --benchmark_filter=MatMul
#include <benchmark/benchmark.h>

#include <algorithm>
#include <complex>
#include <ctime>

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

// The float32 rate of matmul on 1024^2 matrices, one thread, by thread CPU time (as the
// counters here are): the best product over about 2 s of CPU time, so that a loaded machine
// lowers it as little as possible.
double cpu_time_peak_gflops() {
  const long n = 1024;
  const matrix<float> A = matrix<float>::Random(n, n), B = matrix<float>::Random(n, n);
  matrix<float> C(n, n);
  const const_matrix_map<float> Am(A.data(), n, n);
  auto cpu_s = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  };
  matmul<float, float>(Am, false, B.data(), n, C.data(), false);  // creates the primitive
  double best = 0;
  for (const double end = cpu_s() + 2.0; cpu_s() < end;) {
    const double t0 = cpu_s();
    matmul<float, float>(Am, false, B.data(), n, C.data(), false);
    best = std::max(best, 2.0 * double(n * n) * double(n) / (cpu_s() - t0) / 1e9);
  }
  return best;
}

// Real W times complex X, accumulating for W^T as the relaxation does (Y = W x, Y += W^T x).
// backend 0: Eigen's mixed product, 1: eqprop::matmul. A complex x real product counts 4mkn
// FLOPs (two real products); "of_peak" is the fraction of the float32 peak of
// cpu_time_peak_gflops (measured once per run).
void complex_matmul_bench(benchmark::State& st) {
  using C = std::complex<float>;
  const long m = st.range(0), k = st.range(1), n = st.range(2);
  const bool transpose = st.range(3) != 0;
  const int backend = int(st.range(4));
  const matrix<float> W = transpose ? matrix<float>::Random(k, m) : matrix<float>::Random(m, k);
  const matrix<C> X = matrix<C>::Random(k, n);
  matrix<C> Y = matrix<C>::Zero(m, n);
  const const_matrix_map<float> Wm(W.data(), W.rows(), W.cols());
  for (auto _ : st) {
    if (backend == 0) {
      if (transpose) Y.noalias() += Wm.transpose() * X;
      else Y.noalias() = Wm * X;
    } else {
      matmul<C, float>(Wm, transpose, X.data(), n, Y.data(), transpose);
    }
    benchmark::DoNotOptimize(Y.data());
  }
  static const double peak = cpu_time_peak_gflops();
  const double flops = 4.0 * double(m) * double(k) * double(n);
  st.counters["GFLOP/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  st.counters["of_peak"] = benchmark::Counter(flops / (peak * 1e9), benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(backend == 0 ? "eigen mixed" : "matmul");
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

// hEP Table 1 (784-256-256, N 10, batch 20): the 4 complex points stacked, 10 samples per thread
// at --threads 2 (n 40) and 20 at --threads 1 (n 80); n 10: one point, or a frozen-down batch.
// Around the size where matmul switches from Eigen's mixed product to the stacked real product:
// 256 x 256 x 1 and 64 x 256 x 4 are the smallest stacked ones; a 10-wide W never is.
BENCHMARK(complex_matmul_bench)
    ->Name("MatMulComplex64")
    ->ArgsProduct({{256}, {256}, {10, 40, 80}, {0, 1}, {0, 1}})
    ->ArgsProduct({{256}, {256}, {1}, {0, 1}, {0, 1}})
    ->ArgsProduct({{64}, {256}, {4, 10}, {0, 1}, {0, 1}})
    ->ArgsProduct({{10}, {256}, {40}, {0, 1}, {0, 1}});
