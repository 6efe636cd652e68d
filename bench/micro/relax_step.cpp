// One synchronous relaxation step of the EP MLP workloads (eqprop bench): the hEP Table 1
// network 784-256-256 + readout 10 at batch 20 (real free step, complex nudged step) and
// 784-512-10 / 784-512-512-10 with an output layer at batch 50.
//   build/eqprop_microbench --benchmark_filter=RelaxStep
#include <benchmark/benchmark.h>

#include <complex>

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
}  // namespace

BENCHMARK(BM_RelaxStep_hep_free)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RelaxStep_hep_complex)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RelaxStep_mlp512_nudged)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RelaxStep_mlp512x2_nudged)->Unit(benchmark::kMicrosecond);
