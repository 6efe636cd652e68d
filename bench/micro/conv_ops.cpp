// ConvNet kernels: one conv layer forward (im2col + GEMM) and its transpose
// (GEMM + col2im), for real and complex states with real weights, at a VGG-6 layer shape
// (16x16x128 -> 16x16x128, 3x3 SAME, batch 16) and at the CPU Fashion-MNIST layer
// (14x14x16 -> 14x14x32, batch 32).
//   build/eqprop_microbench --benchmark_filter=Conv
#include <benchmark/benchmark.h>

#include <complex>

#include "conv_bench_layer.hpp"

namespace {
using namespace eqprop;

template <class T>
void conv_layer(benchmark::State& st, bool transpose) {
  const int c_in = int(st.range(0)), side = int(st.range(1)), c_out = int(st.range(2));
  const long B = st.range(3);
  const auto g = bench::conv_layer_3x3(c_in, side, c_out);
  using R = real_t<T>;
  const matrix<R> W = matrix<R>::Random(g.cout, g.patch());
  const const_matrix_map<R> Wm(W.data(), W.rows(), W.cols());
  matrix<T> l = matrix<T>::Random(g.in_size(), B), z = matrix<T>::Random(g.conv_size(), B), col, out;
  for (auto _ : st) {
    if (transpose) conv_transpose<T, R>(g, Wm, z, col, out, false);
    else conv_forward<T, R>(g, Wm, l, col, out);
    benchmark::DoNotOptimize(out.data());
  }
  // Real multiply-adds of the GEMM: complex states with real weights cost 2 per MAC.
  const double macs = double(g.conv_size()) * g.patch() * B * (is_complex_v<T> ? 2 : 1);
  st.counters["GFLOP/s"] =
      benchmark::Counter(2 * macs, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void args(benchmark::internal::Benchmark* b) {
  b->Args({128, 16, 128, 16})->Args({16, 14, 32, 32})->Unit(benchmark::kMillisecond);
}

void ConvForwardFloat(benchmark::State& st) { conv_layer<float>(st, false); }
void ConvTransposeFloat(benchmark::State& st) { conv_layer<float>(st, true); }
void ConvForwardComplexFloat(benchmark::State& st) { conv_layer<std::complex<float>>(st, false); }
void ConvTransposeComplexFloat(benchmark::State& st) { conv_layer<std::complex<float>>(st, true); }
BENCHMARK(ConvForwardFloat)->Apply(args);
BENCHMARK(ConvTransposeFloat)->Apply(args);
BENCHMARK(ConvForwardComplexFloat)->Apply(args);
BENCHMARK(ConvTransposeComplexFloat)->Apply(args);
}  // namespace
