// One synchronous relaxation step of the EP workloads (eqprop bench): the hEP Table 1
// network 784-256-256 + readout 10 at batch 20 (real free step, complex nudged step),
// 784-512-10 / 784-512-512-10 with an output layer at batch 50, and the ConvNets (below).
//   build/eqprop_microbench --benchmark_filter=RelaxStep
#include <benchmark/benchmark.h>

#include <complex>

#include "eqprop/dynamics/conv_ops.hpp"
#include "eqprop/dynamics/relax.hpp"

namespace {
using namespace eqprop;

template <class S>
void relax_step(benchmark::State& st, std::vector<int> hidden, bool readout, long B, S beta) {
  network_spec s;
  s.sizes = {784};
  for (int h : hidden) s.sizes.push_back(h);
  if (readout) {
    s.n_readout = 10;
  } else {
    s.sizes.push_back(10);
    s.output = output_kind::layer;
  }
  s.activation = activation_kind::hep_sigmoid;
  s.seed = 1;
  layered_network<float> net(s);
  matrix<float> x = matrix<float>::Random(784, B).cwiseAbs(), y = matrix<float>::Zero(10, B);
  for (long b = 0; b < B; ++b) y(b % 10, b) = 1;
  relax_state<S, float> r;
  r.set_input(net, x, y);
  r.relax(net, S(0), relax_options{20});
  double macs = 0;  // the products of one step: bottom-up and top-down per connection, readout
  for (size_t j = 2; j < s.sizes.size(); ++j) macs += 2.0 * s.sizes[j] * s.sizes[j - 1] * B;
  if (readout && beta != S(0)) macs += 2.0 * 10 * s.sizes.back() * B;
  if constexpr (is_complex_v<S>) macs *= 2;
  for (auto _ : st) benchmark::DoNotOptimize(r.step(net, beta));
  st.counters["GFLOP/s"] =
      benchmark::Counter(2 * macs, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_RelaxStep_hep_free(benchmark::State& st) { relax_step<float>(st, {256, 256}, true, 20, 0.0f); }
void BM_RelaxStep_hep_complex(benchmark::State& st) {
  relax_step<std::complex<float>>(st, {256, 256}, true, 20, std::polar(0.4f, 0.6f));
}
void BM_RelaxStep_mlp512_nudged(benchmark::State& st) { relax_step<float>(st, {512}, false, 50, 0.1f); }
void BM_RelaxStep_mlp512x2_nudged(benchmark::State& st) { relax_step<float>(st, {512, 512}, false, 50, 0.1f); }

// One relaxation step of the ConvNet workloads (eqprop bench), single-threaded, at the
// per-thread batch of a 2-thread run (VGG-4 at 16 instead of 64), through each conv backend
// (last argument: 0 im2col, 1 onednn), inside a conv_weights_unchanged scope as in relax():
//  - conv32_64_classic: 28x28x1, conv 32 and 64 (5x5 VALID) + max pool, output layer 10, batch 50;
//  - vgg4_symmetric: 32x32x3, conv 128-256-512-512 (3x3; SAME x3, VALID) + max pool, readout;
//  - conv_fmnist_hep: 28x28x1, conv 16 and 32 (3x3 SAME) + softmax pool, readout, complex
//    states (a nudged point of holomorphic EP), batch 16.
// GFLOP/s counts the conv products of the step (layered_network::flops_per_step).
template <class S>
void conv_relax_step(benchmark::State& st, network_spec s, long B, S beta, activation_kind act) {
  const auto backend = st.range(0) ? conv_backend::onednn : conv_backend::im2col;
  const conv_backend before = conv_backend_in_use();
  set_conv_backend(backend);
  s.activation = act;
  s.seed = 1;
  s.sizes = s.conv_sizes();
  if (s.output == output_kind::layer) s.sizes.push_back(10);
  else s.n_readout = 10;
  layered_network<float> net(s);
  matrix<float> x = matrix<float>::Random(s.sizes[0], B).cwiseAbs(), y = matrix<float>::Zero(10, B);
  for (long b = 0; b < B; ++b) y(b % 10, b) = 1;
  relax_state<S, float> r;
  r.set_input(net, x, y);
  const conv_weights_unchanged scope;
  r.relax(net, S(0), relax_options{3});
  for (auto _ : st) benchmark::DoNotOptimize(r.step(net, beta));
  st.SetLabel(conv_backend_name());
  set_conv_backend(before);
  st.counters["GFLOP/s"] =
      benchmark::Counter(net.flops_per_step() * double(B) * (is_complex_v<S> ? 2 : 1),
                         benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

network_spec conv_net(std::array<int, 3> input, std::vector<conv_layer_spec> conv, output_kind out) {
  network_spec s;
  s.input_shape = input;
  s.conv = std::move(conv);
  s.output = out;
  return s;
}

void BM_RelaxStep_conv32_64(benchmark::State& st) {
  const conv_layer_spec c32{32, 5, false, pool_kind::max}, c64{64, 5, false, pool_kind::max};
  conv_relax_step<float>(st, conv_net({1, 28, 28}, {c32, c64}, output_kind::layer), 50, 0.4f,
                         activation_kind::half_clamp01);
}
void BM_RelaxStep_vgg4(benchmark::State& st) {
  auto c = [](int ch, bool same) { return conv_layer_spec{ch, 3, same, pool_kind::max}; };
  conv_relax_step<float>(
      st, conv_net({3, 32, 32}, {c(128, true), c(256, true), c(512, true), c(512, false)}, output_kind::readout), 16,
      1.0f, activation_kind::half_clamp01);
}
void BM_RelaxStep_fmnist_complex(benchmark::State& st) {
  const conv_layer_spec c16{16, 3, true, pool_kind::softmax}, c32{32, 3, true, pool_kind::softmax};
  conv_relax_step<std::complex<float>>(st, conv_net({1, 28, 28}, {c16, c32}, output_kind::readout), 16,
                                       std::complex<float>(0, 1), activation_kind::holotanh);
}
}  // namespace

BENCHMARK(BM_RelaxStep_hep_free)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RelaxStep_hep_complex)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RelaxStep_mlp512_nudged)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RelaxStep_mlp512x2_nudged)->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_RelaxStep_conv32_64)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RelaxStep_vgg4)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RelaxStep_fmnist_complex)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
