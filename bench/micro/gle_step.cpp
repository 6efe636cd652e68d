// GLE time step of the 15k-parameter MNIST-1D network (spec gle.md §5.3, §7 timing basis:
// a naive single-threaded step with Adam takes 1.32 ms on this class of machine).
//   build/eqprop_microbench --benchmark_filter=Gle
#include <benchmark/benchmark.h>

#include <vector>

#include "eqprop/model/gle_network.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "eqprop/train/optimizer.hpp"

namespace {
using namespace eqprop;

template <class R>
void gle_step(benchmark::State& st, bool learn) {
  config cfg(gle_schema());
  gle_network<R> net(gle_spec_from_config(cfg, 1, 10));
  const long B = st.range(0);
  net.set_threads(int(st.range(1)));
  net.reset_state(B);
  optimizer_options oo;
  oo.kind = optimizer_kind::adam;
  oo.lr = 1e-3;
  optimizer<R> opt(oo, net.layout(), net.n_groups());
  std::vector<R> grad(net.params().size());
  using mat = Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>;
  mat x = mat::Random(1, B), target = mat::Zero(10, B);
  for (long j = 0; j < B; ++j) target(j % 10, j) = 1;
  for (auto _ : st) {
    if (learn) {
      net.step(x, &target, R(1), grad);
      opt.step(net.params(), grad, 1.0);
    } else {
      net.step(x, nullptr, R(0));
    }
    benchmark::DoNotOptimize(net.output().data());
  }
  // forward only: W r per layer, i.e. (learning-step products + layer 0's W r) / 3
  const double w0 = double(net.spec().layers[0].size) * net.spec().n_input;
  const double macs = (learn ? net.macs_per_sample() : (net.macs_per_sample() + w0) / 3) * double(B);
  st.counters["GFLOP/s"] =
      benchmark::Counter(2 * macs, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_GleStep15k_float_learn(benchmark::State& st) { gle_step<float>(st, true); }
void BM_GleStep15k_double_learn(benchmark::State& st) { gle_step<double>(st, true); }
void BM_GleStep15k_float_forward(benchmark::State& st) { gle_step<float>(st, false); }
}  // namespace

// Args: batch, threads
BENCHMARK(BM_GleStep15k_float_learn)->Args({100, 1})->Args({100, 2})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GleStep15k_double_learn)->Args({100, 1})->Args({100, 2})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GleStep15k_float_forward)->Args({100, 1})->Args({1000, 1})->Args({1000, 2})->Unit(benchmark::kMicrosecond);
