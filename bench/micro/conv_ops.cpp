// ConvNet kernels: one conv layer forward, its transpose and its weight gradient, for real
// and complex states with real weights, through each conv backend (conv_ops.hpp: im2col +
// GEMM, or oneDNN's convolution primitives), at the layer shapes of the bench workloads with
// their per-thread batches on 2 threads (the VGG-4 layers at a smaller batch):
//   (C_in, side, C_out, kernel, SAME = 1 / VALID = 0, batch)
//   = (128, 16, 128, 3, 1, 16)  VGG-6 layer
//   = (128, 16, 256, 3, 1, 16)  VGG-4 conv 2;  (256, 8, 512, 3, 1, 16) conv 3;  (512, 4, 512, 3, 0, 16) conv 4
//   = (32, 12, 64, 5, 0, 50)    conv32_64_classic, second conv
//   = (16, 14, 32, 3, 1, 16)    conv_fmnist_hep, second conv (complex states; real: batch 32)
// The last argument is the backend: 0 im2col, 1 onednn. The calls run inside one
// conv_weights_unchanged scope, as in a relaxation (the weights' reorder is not timed).
//   build/eqprop_microbench --benchmark_filter=Conv
#include <benchmark/benchmark.h>

#include <complex>

#include "conv_bench_layer.hpp"

namespace {
using namespace eqprop;

enum class op { forward, transpose, weight_grad };

template <class T>
void conv_layer(benchmark::State& st, op o) {
  const auto g =
      bench::conv_layer(int(st.range(0)), int(st.range(1)), int(st.range(2)), int(st.range(3)), st.range(4) != 0);
  const long B = st.range(5);
  const auto backend = st.range(6) ? conv_backend::onednn : conv_backend::im2col;
  const conv_backend before = conv_backend_in_use();
  set_conv_backend(backend);
  const auto ops = conv_onednn_serves(g, is_complex_v<T> ? 2 * B : B);
  const bool served = o == op::forward ? ops.forward : o == op::transpose ? ops.transpose : ops.weight_grad;
  if (conv_backend_in_use() != backend || (backend == conv_backend::onednn && !served)) {
    set_conv_backend(before);
    st.SkipWithError("takes the im2col path (oneDNN is slower there, or eqprop was built without it)");
    return;
  }
  using R = real_t<T>;
  const matrix<R> W = matrix<R>::Random(g.cout, g.patch());
  const const_matrix_map<R> Wm(W.data(), W.rows(), W.cols());
  matrix<R> gW = matrix<R>::Zero(g.cout, g.patch());
  matrix<T> l = matrix<T>::Random(g.in_size(), B), z = matrix<T>::Random(g.conv_size(), B), col, out;
  const conv_weights_unchanged scope;
  for (auto _ : st) {
    if (o == op::transpose) conv_transpose<T, R>(g, Wm, z, col, out, false);
    else if (o == op::forward) conv_forward<T, R>(g, Wm, l, col, out);
    else conv_weight_grad<T, R>(g, z, l, col, T(1), matrix_map<R>(gW.data(), gW.rows(), gW.cols()));
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(gW.data());
  }
  st.SetLabel(conv_backend_name());
  set_conv_backend(before);
  // Real multiply-adds: complex states with real weights cost 2 per MAC.
  const double macs = double(g.conv_size()) * g.patch() * B * (is_complex_v<T> ? 2 : 1);
  st.counters["GFLOP/s"] =
      benchmark::Counter(2 * macs, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void real_args(benchmark::internal::Benchmark* b) {
  for (int backend : {0, 1})
    b->Args({128, 16, 128, 3, 1, 16, backend})
        ->Args({128, 16, 256, 3, 1, 16, backend})
        ->Args({256, 8, 512, 3, 1, 16, backend})
        ->Args({512, 4, 512, 3, 0, 16, backend})
        ->Args({32, 12, 64, 5, 0, 50, backend})
        ->Args({16, 14, 32, 3, 1, 32, backend});
  b->Unit(benchmark::kMillisecond);
}
void complex_args(benchmark::internal::Benchmark* b) {
  for (int backend : {0, 1}) b->Args({16, 14, 32, 3, 1, 16, backend})->Args({128, 16, 128, 3, 1, 16, backend});
  b->Unit(benchmark::kMillisecond);
}

void ConvForwardFloat(benchmark::State& st) { conv_layer<float>(st, op::forward); }
void ConvTransposeFloat(benchmark::State& st) { conv_layer<float>(st, op::transpose); }
void ConvWeightGradFloat(benchmark::State& st) { conv_layer<float>(st, op::weight_grad); }
void ConvForwardComplexFloat(benchmark::State& st) { conv_layer<std::complex<float>>(st, op::forward); }
void ConvTransposeComplexFloat(benchmark::State& st) { conv_layer<std::complex<float>>(st, op::transpose); }
void ConvWeightGradComplexFloat(benchmark::State& st) { conv_layer<std::complex<float>>(st, op::weight_grad); }
BENCHMARK(ConvForwardFloat)->Apply(real_args);
BENCHMARK(ConvTransposeFloat)->Apply(real_args);
BENCHMARK(ConvWeightGradFloat)->Apply(real_args);
BENCHMARK(ConvForwardComplexFloat)->Apply(complex_args);
BENCHMARK(ConvTransposeComplexFloat)->Apply(complex_args);
BENCHMARK(ConvWeightGradComplexFloat)->Apply(complex_args);
}  // namespace
