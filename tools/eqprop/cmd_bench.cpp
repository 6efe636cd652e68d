// eqprop bench: named training workloads timed on this machine (rates, and the fraction of
// the matrix-multiply peak measured with the backend we link, in the same run), and the
// wall time named tasks take to reach a test accuracy (--to-accuracy). Table by default,
// JSON with --json. Ratios against reference implementations only mean something when both
// ran on the same machine in the same window: bench/reference/ runs them side by side.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cmd_train_sweep.hpp"
#include "commands.hpp"
#include "eqprop/build_info.hpp"
#include "eqprop/core/build_info.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/core/matmul.hpp"
#include "eqprop/dynamics/conv_ops.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/deep.hpp"
#include "eqprop/learn/generalized_ep.hpp"
#include "eqprop/model/gle_network.hpp"
#include "eqprop/train/deep_trainer.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "eqprop/train/graph_experiment.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/model_kind.hpp"
#include "eqprop/train/sweep.hpp"
#include "eqprop/train/trainer.hpp"
#include "eqprop/train/vf_experiment.hpp"
#include "flag_checks.hpp"
#include "study_util.hpp"

namespace eqprop::cli {

namespace {
using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

struct workload {
  std::string name, description, unit;        // unit: "samples/s" or "steps/s"
  std::vector<std::string> overrides;         // EP workloads: experiment config keys
  int kind;                                   // 0: EP MLP, 1/3: GLE MNIST-1D 15k on 1/2 threads, 2: GLE LagLine,
                                              // 4: generalized EP (overrides: gep config keys), 5: DEEP
  std::array<int, 3> input_shape{1, 28, 28};  // EP workloads: MNIST-shaped (real MNIST batches) or not (random batch)
  int warmup = 2, min_batches = 3;            // EP workloads: untimed batches, then at least min_batches timed
};

const std::vector<workload>& workloads() {
  // Overrides shared by a workload and its early-stopping variant.
  const auto plus = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const std::vector<std::string> mlp512x2{"network.hidden=[512,512]",
                                          "network.output=\"layer\"",
                                          "estimator.kind=\"symmetric\"",
                                          "estimator.beta=0.1",
                                          "relax.free_steps=100",
                                          "relax.nudged_steps=20",
                                          "run.batch=50",
                                          "optimizer.kind=\"adam\"",
                                          "optimizer.lr=5e-4"};
  const std::vector<std::string> hep_table1{"network.hidden=[256,256]",
                                            "estimator.kind=\"holomorphic\"",
                                            "estimator.n_points=10",
                                            "estimator.beta=0.4",
                                            "relax.free_steps=200",
                                            "relax.nudged_steps=50",
                                            "run.batch=20",
                                            "optimizer.kind=\"sgd\"",
                                            "optimizer.momentum=0.0",
                                            "optimizer.lr=0.05"};
  static const std::vector<workload> w{
      {"mlp512_symmetric",
       "784-512-10 sigmoid, symmetric EP beta 0.1, T1 30, T2 10, batch 50, Adam lr 5e-4",
       "samples/s",
       {"network.hidden=[512]", "network.output=\"layer\"", "estimator.kind=\"symmetric\"", "estimator.beta=0.1",
        "relax.free_steps=30", "relax.nudged_steps=10", "run.batch=50", "optimizer.kind=\"adam\"", "optimizer.lr=5e-4"},
       0},
      {"mlp512_classic",
       "784-512-10 sigmoid, one-sided EP beta 0.1, T1 30, T2 10, batch 50, Adam lr 5e-4",
       "samples/s",
       {"network.hidden=[512]", "network.output=\"layer\"", "estimator.kind=\"classic\"", "estimator.beta=0.1",
        "relax.free_steps=30", "relax.nudged_steps=10", "run.batch=50", "optimizer.kind=\"adam\"", "optimizer.lr=5e-4"},
       0},
      {"mlp512x2_symmetric", "784-512-512-10 sigmoid, symmetric EP beta 0.1, T1 100, T2 20, batch 50, Adam lr 5e-4",
       "samples/s", mlp512x2, 0},
      {"mlp512x2_early",
       "mlp512x2_symmetric, alternating order, over-relaxation omega 1.6, every sample frozen once below tol 1e-2 "
       "(T1/T2 as maxima)",
       "samples/s",
       plus(mlp512x2, {"relax.order=\"alternating\"", "relax.omega=1.6", "relax.stop_early=true", "relax.tol=1e-2"}),
       0},
      {"hep_table1",
       "784-256-256 + readout, holomorphic EP N 10 |beta| 0.4, T1 200, T2 50, batch 20, SGD (hEP Table 1)", "samples/s",
       hep_table1, 0},
      {"hep_table1_early", "hep_table1, alternating order, every sample frozen once below tol 1e-3 (T1/T2 as maxima)",
       "samples/s", plus(hep_table1, {"relax.stop_early=true", "relax.tol=1e-3", "relax.order=\"alternating\""}), 0},
      {"conv_fmnist_hep",
       "ConvNet 28x28x1 conv16+pool conv32+pool holotanh, hEP N 2 |beta| 1, T1 30, T2 12, batch 32, SGD",
       "samples/s",
       {"network.conv=[16,32]", "network.hidden=[]", "network.activation=\"holotanh\"",
        "estimator.kind=\"holomorphic\"", "estimator.n_points=2", "estimator.beta=1.0", "relax.free_steps=30",
        "relax.nudged_steps=12", "run.batch=32", "optimizer.kind=\"sgd\"", "optimizer.lr=0.05"},
       0},
      {"conv32_64_classic",
       "ConvNet 28x28x1 conv32 5x5 VALID + max pool, conv64 5x5 VALID + max pool, output layer 10, hard sigmoid "
       "clamp(x, 0, 1), "
       "one-sided EP beta 0.4, T1 200, T2 10, batch 100, Adam lr 5e-5 / 1e-5 / 8e-6",
       "samples/s",
       {"network.conv=[32,64]", "network.conv_kernel=[5]", "network.conv_padding=[\"valid\"]",
        "network.conv_pool=[\"max\"]", "network.hidden=[]", "network.output=\"layer\"",
        "network.activation=\"clamp01\"", "estimator.kind=\"classic\"", "estimator.beta=0.4", "relax.free_steps=200",
        "relax.nudged_steps=10", "run.batch=100", "optimizer.kind=\"adam\"", "optimizer.lr_per_layer=[5e-5,1e-5,8e-6]"},
       0},
      {"vgg4_symmetric",
       "ConvNet 32x32x3 VGG-4 conv128-256-512-512 3x3 (same, same, same, valid) + max pool, readout 10, hard sigmoid "
       "clamp(x/2, 0, 1), "
       "symmetric EP beta 1, T1 250, T2 25, batch 128, SGD (random CIFAR-shaped batch)",
       "samples/s",
       {"network.conv=[128,256,512,512]", "network.conv_kernel=[3]",
        "network.conv_padding=[\"same\",\"same\",\"same\",\"valid\"]", "network.conv_pool=[\"max\"]",
        "network.hidden=[]", "network.activation=\"half_clamp01\"", "estimator.kind=\"symmetric\"",
        "estimator.beta=1.0", "relax.free_steps=250", "relax.nudged_steps=25", "run.batch=128",
        "optimizer.kind=\"sgd\"", "optimizer.lr=0.05"},
       0,
       {3, 32, 32},
       0,
       1},
      {"gep_fmnist_a90",
       "vector field 784-256-256-10 + readout, sigmoid(4x-2), independent feedback (90 deg), generalized hEP N 2 "
       "|beta| 0.2, T1 150, T2 20, batch 50, AdamW (configs/gep_fmnist_a90.toml)",
       "samples/s",
       {"network.hidden=[256,256]", "network.output_size=10", "network.angle=90.0", "estimator.kind=\"holomorphic\"",
        "estimator.n_points=2", "estimator.beta=0.2", "relax.free_steps=150", "relax.nudged_steps=20", "run.batch=50",
        "optimizer.kind=\"adamw\"", "optimizer.lr=5e-4", "optimizer.weight_decay=0.0"},
       4},
      {"gle_mnist1d_15k",
       "GLE 1-6x53-10 (spec time constants), batch 100, Adam every step, 1 thread",
       "steps/s",
       {},
       1},
      {"gle_mnist1d_15k_2t", "the same on 2 threads (layers in parallel)", "steps/s", {}, 3},
      {"gle_lagline", "GLE teacher-student chain, 2 neurons, batch 100, Adam every step", "steps/s", {}, 2},
      {"deep_yinyang_leak",
       "DEEP complete graph 4+1-30-3 on Yin-Yang (5000 samples), leak 3, endpoint rule beta 0.5 lr 0.3, T1 100, "
       "T2 100, dt 0.1, batch 20 (configs/graph_yin_yang_leak.toml)",
       "samples/s",
       {},
       5},
      {"deep_yinyang_leak_f32", "the same in float32", "samples/s", {"network.dtype=float32"}, 5},
  };
  return w;
}

// The training images (pixels / 255) of an image data set if the data directory has them, else empty.
dataset bench_images(const std::string& data_dir, const std::string& name = "mnist") {
  try {
    return load_dataset(name, resolve_data_dir(data_dir)).train;
  } catch (const data_error&) {
    return {};
  }
}

// Training batches of B samples for a workload: consecutive batches of `images` (10 classes)
// when it has n_in features and at least B samples, else one fixed random batch.
struct batch_feed {
  matrix<float> x, y;
  bool real_data;
  batch_feed(const dataset& images, long n_in, long B)
      : x(n_in, B),
        y(matrix<float>::Zero(10, B)),
        real_data(images.size() >= B && images.dim() == n_in),
        images_(images) {
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<float> U(0, 1);
    for (long i = 0; i < x.size(); ++i) x.data()[i] = U(rng);
    for (long j = 0; j < B; ++j) y(j % 10, j) = 1;
  }
  void next() {  // the next consecutive batch (from the start again at the end)
    if (!real_data) return;
    const long B = x.cols();
    if (next_ + B > images_.size()) next_ = 0;
    x = images_.x.middleCols(next_, B);
    y.setZero();
    for (long j = 0; j < B; ++j) y(images_.y[next_ + j], j) = 1;
    next_ += B;
  }

 private:
  const dataset& images_;
  long next_ = 0;
};

// EP workload: `seconds` of estimate + optimizer steps after 2 warm-up batches, on
// consecutive MNIST training batches when `images` has them (else one random batch).
nlohmann::ordered_json run_ep(const workload& w, double seconds, int threads, const std::vector<std::string>& sets,
                              const dataset& images) {
  config cfg(layered_schema());
  for (const auto& o : w.overrides) cfg.set_override(o);
  cfg.set_override(fmt::format("estimator.threads={}", threads));
  for (const auto& o : sets) cfg.set_override(o);
  const auto [ch, ih, iw] = w.input_shape;
  const long n_in = long(ch) * ih * iw;
  layered_network<float> net(make_network_spec(cfg, int(n_in), 10, w.input_shape));
  auto est = make_estimator<float>(cfg);
  optimizer_options oo = make_optimizer_options(cfg);
  oo.threads = cfg.get<int>("estimator.threads");
  optimizer<float> opt(oo, net.layout(), int(param_group_names(net.spec()).size()));
  const long B = cfg.get<long>("run.batch");
  batch_feed feed(images, n_in, B);
  auto& x = feed.x;
  auto& y = feed.y;
  const bool real_data = feed.real_data;
  auto next_batch = [&] { feed.next(); };
  std::vector<float> grad(net.params().size());
  double t_est = 0, t_opt = 0, t_free = 0, t_grad = 0;
  std::vector<double> t_points;  // per entry of grad_result::points (a stacked group counts once)
  long batches = 0, relax_steps = 0, sample_steps = 0, complex_steps = 0;
  for (int k = 0; k < w.warmup; ++k) {
    next_batch();
    est->estimate(net, x, y, grad);
  }
  const auto t_start = clock_type::now();
  while (since(t_start) < seconds || batches < w.min_batches) {
    next_batch();
    const auto t0 = clock_type::now();
    const grad_result g = est->estimate(net, x, y, grad);
    relax_steps += g.relax_steps;
    sample_steps += g.relax_sample_steps;
    complex_steps += g.relax_complex_sample_steps;
    t_free += g.free.seconds;
    t_grad += g.grad_seconds;
    t_points.resize(std::max(t_points.size(), g.points.size()));
    for (size_t p = 0; p < g.points.size(); ++p) t_points[p] += g.points[p].seconds;
    const auto t1 = clock_type::now();
    opt.step(net.params(), grad, 1.0);
    t_est += std::chrono::duration<double>(t1 - t0).count();
    t_opt += since(t1);
    ++batches;
  }
  const double total = t_est + t_opt;
  nlohmann::ordered_json j;
  j["rate"] = double(batches * B) / total;
  j["batches"] = batches;
  j["ms_per_batch_estimate"] = 1e3 * t_est / double(batches);
  j["ms_per_batch_optimizer"] = 1e3 * t_opt / double(batches);
  // The estimate's phases (the relaxations: mean over the thread slices, set-up copies included):
  // free phase, each nudged relaxation in grad_result::points order (real points first; with
  // estimator.stack_points each group of points relaxed side by side counts once), and dF/dtheta.
  j["ms_per_batch_free"] = 1e3 * t_free / double(batches);
  nlohmann::ordered_json pts = nlohmann::ordered_json::array();
  for (double t : t_points) pts.push_back(1e3 * t / double(batches));
  j["ms_per_batch_nudged"] = pts;
  j["ms_per_batch_gradient"] = 1e3 * t_grad / double(batches);
  j["estimator"] = est->name();
  j["threads"] = threads;
  j["relax_steps_per_batch"] = double(relax_steps) / double(batches);
  // steps per sample (all phases): below relax_steps_per_batch when converged samples freeze
  j["relax_steps_per_sample"] = double(sample_steps) / double(batches * B);
  // Counted FLOPs of the relaxation products (layered_network::flops_per_step; complex steps
  // count twice), over the whole estimate time (which also holds the gradient and bookkeeping).
  const double flops = net.flops_per_step() * double(sample_steps + complex_steps);
  j["relax_gflop_per_sample"] = flops / double(batches * B) / 1e9;
  j["relax_gflops"] = flops / t_est / 1e9;
  j["data"] = real_data ? "mnist" : "random";
  j["overrides"] = sets;
  return j;
}

// Generalized EP workload: `seconds` of estimate + optimizer steps after 2 warm-up batches, on
// consecutive Fashion-MNIST training batches when `images` has them (else one random batch).
// Of `sets`, the keys the generalized-EP schema knows apply.
nlohmann::ordered_json run_gep(const workload& w, double seconds, int threads, const std::vector<std::string>& sets,
                               const dataset& images) {
  config cfg(vector_field_schema());
  for (const auto& o : w.overrides) cfg.set_override(o);
  cfg.set_override(fmt::format("estimator.threads={}", threads));
  for (const auto& o : sets)
    if (vector_field_schema().find(o.substr(0, o.find('='))) != nullptr) cfg.set_override(o);
  const long n_in = 784, B = cfg.get<long>("run.batch");
  vector_field_network<float> net(make_vf_spec(cfg, int(n_in), 10));
  generalized_ep<float> est(make_gep_options(cfg));
  optimizer<float> opt(make_optimizer_options(cfg), net.layout(), net.n_layers() + 1);
  batch_feed feed(images, n_in, B);
  auto& x = feed.x;
  auto& y = feed.y;
  const bool real_data = feed.real_data;
  auto next_batch = [&] { feed.next(); };
  aligned_vector<float> grad(net.n_params());
  double t_est = 0, t_opt = 0, t_free = 0;
  long batches = 0, relax_steps = 0, free_sample_steps = 0;
  for (int k = 0; k < w.warmup; ++k) {
    next_batch();
    est.estimate(net, x, y, grad);
  }
  const auto t_start = clock_type::now();
  while (since(t_start) < seconds || batches < w.min_batches) {
    next_batch();
    const auto t0 = clock_type::now();
    const gep_result g = est.estimate(net, x, y, grad);
    relax_steps += g.relax_steps;
    free_sample_steps += g.free.sample_steps;
    t_free += g.free.seconds;
    const auto t1 = clock_type::now();
    opt.step(net.params(), grad, 1.0);
    t_est += std::chrono::duration<double>(t1 - t0).count();
    t_opt += since(t1);
    ++batches;
  }
  nlohmann::ordered_json j;
  j["rate"] = double(batches * B) / (t_est + t_opt);
  j["batches"] = batches;
  j["ms_per_batch_estimate"] = 1e3 * t_est / double(batches);
  j["ms_per_batch_optimizer"] = 1e3 * t_opt / double(batches);
  j["ms_per_batch_free"] = 1e3 * t_free / double(batches);
  j["estimator"] = est.name();
  j["threads"] = threads;
  j["relax_steps_per_batch"] = double(relax_steps) / double(batches);
  j["free_steps_per_sample"] = double(free_sample_steps) / double(batches * B);
  j["data"] = real_data ? "fashion_mnist" : "random";
  j["overrides"] = sets;
  return j;
}

// A rate for the table: whole numbers from 100 up, 3 significant digits below (VGG-4: ~1/s).
std::string fmt_rate(double r) { return r >= 100 ? fmt::format("{:.0f}", r) : fmt::format("{:.3g}", r); }

nlohmann::ordered_json run_gle15k(double seconds, int threads) {
  config cfg(gle_schema());
  gle_network<float> net(gle_spec_from_config(cfg, 1, 10));
  net.set_threads(threads);
  const long B = 100;
  net.reset_state(B);
  optimizer_options oo;
  oo.kind = optimizer_kind::adam;
  oo.lr = 1e-3;
  optimizer<float> opt(oo, net.layout(), net.n_groups());
  opt.set_constraints(gle_tau_constraints(net));
  std::vector<float> grad(net.params().size());
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(1, B), target = Eigen::MatrixXf::Zero(10, B);
  for (long j = 0; j < B; ++j) target(j % 10, j) = 1;
  double t_step = 0, t_opt = 0;
  long steps = 0;
  const auto t_start = clock_type::now();
  while (since(t_start) < seconds || steps < 100) {
    const auto t0 = clock_type::now();
    net.step(x, &target, 1.0f, grad);
    const auto t1 = clock_type::now();
    opt.step(net.params(), grad, 1.0);
    t_step += std::chrono::duration<double>(t1 - t0).count();
    t_opt += since(t1);
    ++steps;
  }
  const double macs = net.macs_per_sample() * double(B);
  nlohmann::ordered_json j;
  j["rate"] = double(steps) / (t_step + t_opt);
  j["us_per_step_dynamics"] = 1e6 * t_step / double(steps);
  j["us_per_step_optimizer"] = 1e6 * t_opt / double(steps);
  j["gflops"] = 2 * macs * double(steps) / (t_step + t_opt) / 1e9;
  j["threads"] = threads;
  return j;
}

nlohmann::ordered_json run_lagline_bench() {
  lagline_options o;
  o.t_init = 0;
  o.t_train = 500;
  o.record_every = 1000000;
  const auto r = run_lagline(o);
  nlohmann::ordered_json j;
  j["rate"] = double(r.steps) / r.seconds;
  j["steps"] = r.steps;
  return j;
}
// DEEP workload: the learning steps of configs/graph_yin_yang_leak.toml (read from the working
// directory as `eqprop train` reads it, so the settings cannot drift from the file) on
// consecutive shuffled mini-batches of Yin-Yang for `seconds` (after one warm-up batch); no
// evaluation. Throws config_error naming the file when it is not there.
template <class R>
nlohmann::ordered_json run_deep_yinyang(const config& cfg, double seconds) {
  const dataset train = generate_yin_yang(cfg.get<long>("data.yin_yang_train"), 1);
  const matrix<R> x = train.x.cast<R>(), y = one_hot_targets(train.y, train.n_classes).cast<R>();
  const graph_spec g = graph_spec_from_config(cfg, int(x.rows()), graph_outputs(cfg, train.n_classes));
  const deep_dynamics dyn = deep_dynamics_from_config(cfg);
  const deep_learning learn = deep_learning_from_config(cfg);
  rng_t rng(1);
  graph_network<R> net(g, rng);
  const long B = std::min<long>(cfg.get<long>("run.batch"), long(x.cols()));
  std::vector<Eigen::Index> order(std::size_t(x.cols()));
  std::iota(order.begin(), order.end(), Eigen::Index(0));
  matrix<R> xb(x.rows(), B), yb(y.rows(), B);
  long next = long(x.cols()), batches = -1, steps = 0;  // batch -1 is the warm-up
  auto t_start = clock_type::now();
  while (batches < 0 || since(t_start) < seconds || batches < 3) {
    if (next + B > x.cols()) {
      for (std::size_t i = order.size() - 1; i > 0; --i)
        std::swap(order[i], order[std::size_t(random_index(rng, uint64_t(i + 1)))]);
      next = 0;
    }
    for (long k = 0; k < B; ++k) {
      xb.col(k) = x.col(order[std::size_t(next + k)]);
      yb.col(k) = y.col(order[std::size_t(next + k)]);
    }
    next += B;
    const auto r = deep_learning_step(net, dyn, learn, xb, yb, rng);
    if (!r.finite()) throw data_error("deep_yinyang_leak: non-finite DEEP states");
    if (++batches == 0) t_start = clock_type::now();
    else steps += r.free.steps + r.nudged.steps;
  }
  const double t = since(t_start);
  nlohmann::ordered_json j;
  j["rate"] = double(batches * B) / t;
  j["batches"] = batches;
  j["ms_per_batch"] = 1e3 * t / double(batches);
  j["relax_steps_per_batch"] = double(steps) / double(batches);
  j["edges"] = net.n_allowed();
  j["dtype"] = cfg.get<std::string>("network.dtype");
  return j;
}

// The DEEP workload w: configs/graph_yin_yang_leak.toml with w's overrides.
nlohmann::ordered_json run_deep_yinyang(const workload& w, double seconds) {
  const std::string file = "configs/graph_yin_yang_leak.toml";
  if (!std::filesystem::is_regular_file(file))
    throw config_error(fmt::format("{} not found: run the deep_yinyang_leak workload from the source directory", file));
  const config cfg = load_training_config({file}, w.overrides);
  if (cfg.get<std::string>("model.kind") != "graph" || cfg.get<std::string>("data.name") != "yin_yang")
    throw config_error(file +
                       ": the deep_yinyang_leak workload needs model.kind = \"graph\" and data.name = \"yin_yang\"");
  return cfg.get<std::string>("network.dtype") == "float32" ? run_deep_yinyang<float>(cfg, seconds)
                                                            : run_deep_yinyang<double>(cfg, seconds);
}

// The entries of `all` named in `names`, in that order (all of them when names is empty);
// config_error for a name that is not there.
template <class T>
std::vector<const T*> select_by_name(const std::vector<T>& all, const std::vector<std::string>& names,
                                     const char* what) {
  std::vector<const T*> out;
  for (const auto& n : names) {
    const auto it = std::find_if(all.begin(), all.end(), [&](const T& e) { return e.name == n; });
    if (it == all.end()) throw config_error(fmt::format("unknown {} '{}'; run `eqprop bench --list`", what, n));
    out.push_back(&*it);
  }
  if (names.empty())
    for (const auto& e : all) out.push_back(&e);
  return out;
}

// The processor, its hardware threads and memory, for the JSON record.
nlohmann::ordered_json machine_json() {
  nlohmann::ordered_json m;
  m["hardware_threads"] = std::thread::hardware_concurrency();
  std::ifstream cpu("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpu, line))
    if (line.rfind("model name", 0) == 0) {
      m["cpu"] = line.substr(line.find(':') + 2);
      break;
    }
  std::ifstream mem("/proc/meminfo");
  if (std::getline(mem, line)) m["memory"] = line;
  return m;
}

// A task of --to-accuracy: a shipped config with the speed options that win on this measure,
// trained until its test accuracy reaches `target` (or run.epochs of the config ends it).
struct accuracy_task {
  std::string name, description, config;  // config: a file under configs/ (the source directory)
  std::vector<std::string> overrides;     // on top of the config
  double target;
};

const std::vector<accuracy_task>& accuracy_tasks() {
  static const std::vector<accuracy_task> t{
      {"mnist_mlp512",
       "MNIST 784-512-10, symmetric EP, Adam lr 5e-4 (configs/mnist_mlp512.toml)",
       "configs/mnist_mlp512.toml",
       {},
       0.975},
      {"mnist_mlp512x2",
       "MNIST 784-512-512-10, symmetric EP, Adam lr 5e-4 (configs/mnist_mlp512x2.toml)",
       "configs/mnist_mlp512x2.toml",
       {},
       0.975},
      {"mnist_hep_table1",
       "MNIST 784-256-256 + readout, holomorphic EP N 10 (hEP Table 1: configs/mnist_table1_hep_n10.toml), "
       "alternating order, samples frozen below tol 1e-3",
       "configs/mnist_table1_hep_n10.toml",
       {"relax.stop_early=true", "relax.tol=1e-3", "relax.order=\"alternating\""},
       0.975},
      {"mnist_conv32_64",
       "MNIST ConvNet conv32-conv64 5x5 + max pool, one-sided EP (configs/mnist_conv32_64.toml)",
       "configs/mnist_conv32_64.toml",
       {},
       0.985},
      {"fmnist_conv",
       "Fashion-MNIST ConvNet conv16-conv32, holomorphic EP N 2 (configs/fmnist_conv_hep.toml)",
       "configs/fmnist_conv_hep.toml",
       {},
       0.90},
      {"mnist1d_gle",
       "MNIST-1D, GLE 1-6x53-10 (configs/gle_mnist1d_15k.toml)",
       "configs/gle_mnist1d_15k.toml",
       {},
       0.85},
  };
  return t;
}

// One run of a task: epochs until the target (or the end), training seconds (evaluation
// excluded) and wall seconds (included), from its metrics.jsonl.
nlohmann::ordered_json accuracy_run_summary(const std::filesystem::path& dir, uint64_t seed, double target) {
  long epochs = 0;
  double train_s = 0, wall_s = 0, acc = std::numeric_limits<double>::quiet_NaN();
  bool reached = false;
  for (const auto& row : read_metrics_rows(dir / "metrics.jsonl")) {
    if (!row.contains("epoch") || row["epoch"].get<long>() < 1 || !row.contains("time_s")) continue;
    epochs = row["epoch"].get<long>();
    wall_s += row["time_s"].get<double>();
    train_s += row.value("train_time_s", row["time_s"].get<double>());
    if (row.contains("test_acc")) {
      acc = row["test_acc"].get<double>();
      reached = reached || acc >= target;
    }
    if (reached) break;
  }
  nlohmann::ordered_json j;
  j["seed"] = seed;
  j["dir"] = dir.string();
  j["reached"] = reached;
  j["epochs"] = epochs;
  j["train_s"] = train_s;
  j["wall_s"] = wall_s;
  j["test_acc"] = acc;
  return j;
}

// --to-accuracy: each task as a sweep over `seeds` in out/<task> (finished runs are skipped,
// stopped ones resume), then the time each run took to reach the target.
nlohmann::ordered_json run_to_accuracy(const accuracy_task& t, const std::string& seeds, const std::string& out,
                                       const std::vector<std::string>& sets, const std::string& data_dir,
                                       long max_epochs) {
  if (!std::filesystem::is_regular_file(t.config))
    throw config_error(
        fmt::format("{} not found: run `eqprop bench --to-accuracy` from the source directory", t.config));
  std::vector<std::string> o = t.overrides;
  o.insert(o.end(), sets.begin(), sets.end());
  o.push_back(fmt::format("run.target_accuracy={}", t.target));
  if (max_epochs > 0) o.push_back(fmt::format("run.epochs={}", max_epochs));
  const config cfg = load_training_config({t.config}, o);
  const std::filesystem::path dir = std::filesystem::path(out) / t.name;
  train_options opt;
  opt.data_dir = data_dir;
  opt.quiet = true;
  opt.handle_signals = true;
  fmt::print("== {}: to {:.2f}% test accuracy, seeds {}, in {}\n", t.name, 100 * t.target, seeds, dir.string());
  std::fflush(stdout);
  run_train_sweep({seeds, {}, t.config, dir.string(), "", false, 1, -1}, cfg, opt);
  nlohmann::ordered_json j;
  j["name"] = t.name;
  j["description"] = t.description;
  j["config"] = t.config;
  j["overrides"] = o;
  j["target"] = t.target;
  std::vector<double> train_s, epochs;
  long reached = 0;
  for (uint64_t s : parse_seed_list(seeds)) {
    const auto r = accuracy_run_summary(dir / sweep_seed_dir_name(s), s, t.target);
    if (r["reached"].get<bool>()) {
      ++reached;
      train_s.push_back(r["train_s"].get<double>());
      epochs.push_back(double(r["epochs"].get<long>()));
    }
    j["runs"].push_back(r);
  }
  const mean_std ts = mean_and_std(train_s), ep = mean_and_std(epochs);
  j["reached"] = reached;
  j["train_s_mean"] = ts.mean;
  j["train_s_std"] = ts.std;
  j["epochs_mean"] = ep.mean;
  return j;
}
}  // namespace

void register_bench(CLI::App& app) {
  static std::vector<std::string> names;
  static double seconds = 3, gemm_seconds = 2;
  static std::string json_file, data_dir;
  static std::vector<std::string> sets;
  static int threads = 1;
  static bool list = false, no_peak = false, to_accuracy = false;
  static std::string seeds = "0,1,2", out_dir = "runs/bench-to-accuracy";
  static long max_epochs = 0;
  auto* cmd = app.add_subcommand("bench", "Time training workloads and the matrix-multiply peak of this machine");
  cmd->add_option("--workload,-w", names, "Workloads (or with --to-accuracy, tasks) to run (default: all; see --list)");
  cmd->add_flag("--to-accuracy", to_accuracy,
                "Time to accuracy: train each task (-w; default all) until its target test accuracy, once per seed, "
                "and report the epochs and training seconds it took (a rerun skips finished runs and resumes "
                "stopped ones)");
  cmd->add_option("--seeds", seeds, "--to-accuracy: the seeds (e.g. 0,1,2 or 0-4)")->capture_default_str();
  cmd->add_option("--out", out_dir, "--to-accuracy: the directory of the runs, one sweep per task")
      ->capture_default_str();
  add_checked(cmd, "--max-epochs", max_epochs,
              "--to-accuracy: stop a run after this many epochs (0: the config's run.epochs)",
              config_constraint::closed(0, config_limits::epochs));
  add_checked(cmd, "--seconds", seconds, "Timed seconds per workload (after warm-up)",
              config_constraint::greater_than(0).at_most(86400))
      ->capture_default_str();
  cmd->add_option("--json", json_file, "Also write the results as JSON to this file");
  add_checked(cmd, "--threads", threads, "EP workloads: estimator.threads, the batch slices relaxed in parallel",
              config_constraint::closed(1, config_limits::threads))
      ->capture_default_str();
  cmd->add_option("--set,-s", sets,
                  "EP and generalized-EP workloads: override a config key (KEY=VALUE, repeatable), e.g. "
                  "relax.stop_early=true; each workload takes the keys its config knows");
  cmd->add_option("--data-dir", data_dir,
                  "EP workloads train on consecutive MNIST batches from here (default: $EQPROP_DATA, then ./data); "
                  "without MNIST, on one random batch");
  cmd->add_flag("--list", list, "List the workloads and exit");
  cmd->add_flag("--no-peak", no_peak, "Skip the GEMM peak measurement");
  cmd->callback([] {
    if (list) {
      for (const auto& w : workloads()) fmt::print("{:<20} {}\n", w.name, w.description);
      fmt::print("\n--to-accuracy tasks:\n");
      for (const auto& t : accuracy_tasks()) fmt::print("{:<20} {:.1f}%  {}\n", t.name, 100 * t.target, t.description);
      return;
    }
    if (to_accuracy) {
      const auto todo = select_by_name(accuracy_tasks(), names, "--to-accuracy task");
      parse_seed_list(seeds);  // a bad list fails before anything runs
      nlohmann::ordered_json doc;
      doc["build"] = nlohmann::ordered_json::parse(build_info_json().dump());
      doc["machine"] = machine_json();
      for (const accuracy_task* t : todo)
        doc["to_accuracy"].push_back(run_to_accuracy(*t, seeds, out_dir, sets, data_dir, max_epochs));
      fmt::print("\n{:<18} {:>7} {:>8} {:>10} {:>16}  {}\n", "task", "target", "reached", "epochs", "train seconds",
                 "per seed: epochs / train s / test acc");
      for (const auto& j : doc["to_accuracy"]) {
        std::string per;
        for (const auto& r : j["runs"])
          per += fmt::format("{}{}{} / {:.0f} / {:.2f}%", per.empty() ? "" : ", ",
                             r["reached"].get<bool>() ? "" : "not reached ", r["epochs"].get<long>(),
                             r["train_s"].get<double>(), 100 * r["test_acc"].get<double>());
        fmt::print("{:<18} {:>6.1f}% {:>4}/{:<3} {:>10.1f} {:>9.0f} +- {:<4.0f}  {}\n", j["name"].get<std::string>(),
                   100 * j["target"].get<double>(), j["reached"].get<long>(), j["runs"].size(),
                   j["epochs_mean"].get<double>(), j["train_s_mean"].get<double>(), j["train_s_std"].get<double>(),
                   per);
      }
      if (!json_file.empty()) write_text(json_file, doc.dump(2) + "\n");
      return;
    }
    for (const auto& o : sets) {  // a key no workload knows is a typo, not a no-op
      const std::string key = o.substr(0, o.find('='));
      if (layered_schema().find(key) == nullptr && vector_field_schema().find(key) == nullptr)
        throw config_error(fmt::format("--set {}: no EP or generalized-EP config has the key '{}'", o, key));
    }
    const auto todo = select_by_name(workloads(), names, "workload");
    nlohmann::ordered_json doc;
    doc["build"] = nlohmann::ordered_json::parse(build_info_json().dump());
    doc["machine"] = machine_json();
    double peak2 = 0;  // the peak on the workloads' thread count
    if (!no_peak) {
      const double p1 = matmul_peak_gflops(1024, 1, gemm_seconds), p2 = matmul_peak_gflops(1024, 2, gemm_seconds);
      peak2 = threads == 1 ? p1 : p2;
      doc["peak"]["gemm_float32_1024_1thread_gflops"] = p1;
      doc["peak"]["gemm_float32_1024_2threads_gflops"] = p2;
      doc["peak"]["backend"] = matmul_backend();
      fmt::print("matrix-multiply peak (float32 1024^2, {}): {:.1f} GFLOP/s on 1 thread, {:.1f} on 2\n",
                 matmul_backend(), p1, p2);
    }
    fmt::print("float32 convolutions: {} (EQPROP_CONV=im2col for the im2col path)\n", conv_backend_name());
    dataset images;
    if (std::any_of(todo.begin(), todo.end(), [](const workload* w) { return w->kind == 0; })) {
      images = bench_images(data_dir);
      fmt::print("EP workloads train on {}\n",
                 images.size() > 0 ? fmt::format("consecutive MNIST training batches ({} images)", images.size())
                                   : std::string("one random batch (no MNIST found; see --data-dir)"));
    }
    dataset fashion;
    if (std::any_of(todo.begin(), todo.end(), [](const workload* w) { return w->kind == 4; })) {
      fashion = bench_images(data_dir, "fashion_mnist");
      fmt::print("generalized-EP workloads train on {}\n",
                 fashion.size() > 0
                     ? fmt::format("consecutive Fashion-MNIST training batches ({} images)", fashion.size())
                     : std::string("one random batch (no Fashion-MNIST found; see --data-dir)"));
    }
    fmt::print("{:<20} {:>12}  {}\n", "workload", "rate", "unit / details");
    for (const workload* w : todo) {
      nlohmann::ordered_json r = w->kind == 0   ? run_ep(*w, seconds, threads, sets, images)
                                 : w->kind == 4 ? run_gep(*w, seconds, threads, sets, fashion)
                                 : w->kind == 1 ? run_gle15k(seconds, 1)
                                 : w->kind == 3 ? run_gle15k(seconds, 2)
                                 : w->kind == 5 ? run_deep_yinyang(*w, seconds)
                                                : run_lagline_bench();
      r["name"] = w->name;
      r["description"] = w->description;
      r["unit"] = w->unit;
      std::string details;
      if (r.contains("free_steps_per_sample")) {
        details = fmt::format(
            "estimate {:.2f} ms (free {:.2f}) + optimizer {:.2f} ms per batch, {:.0f} free steps per "
            "sample, {:.0f} relaxation steps per batch, {} threads",
            r["ms_per_batch_estimate"].get<double>(), r["ms_per_batch_free"].get<double>(),
            r["ms_per_batch_optimizer"].get<double>(), r["free_steps_per_sample"].get<double>(),
            r["relax_steps_per_batch"].get<double>(), r["threads"].get<int>());
      } else if (r.contains("ms_per_batch_estimate")) {
        const double gf = r["relax_gflops"].get<double>();
        if (peak2 > 0) r["relax_fraction_of_peak"] = gf / peak2;
        std::string nudged;
        for (const auto& v : r["ms_per_batch_nudged"])
          nudged += fmt::format("{}{:.2f}", nudged.empty() ? "" : " + ", v.get<double>());
        details = fmt::format(
            "estimate {:.2f} ms (free {:.2f}, nudged {}, gradient {:.2f}) + optimizer {:.2f} ms per batch, "
            "{:.0f} relaxation steps ({:.0f} per sample), {:.1f} GFLOP/s in the estimate{}, {} threads",
            r["ms_per_batch_estimate"].get<double>(), r["ms_per_batch_free"].get<double>(),
            nudged.empty() ? std::string("-") : nudged, r["ms_per_batch_gradient"].get<double>(),
            r["ms_per_batch_optimizer"].get<double>(), r["relax_steps_per_batch"].get<double>(),
            r["relax_steps_per_sample"].get<double>(), gf,
            peak2 > 0 ? fmt::format(" ({:.0f} % of peak)", 100 * gf / peak2) : std::string(), r["threads"].get<int>());
      }
      if (r.contains("gflops"))
        details = fmt::format("{:.0f} us dynamics + {:.0f} us Adam per step, {:.1f} GFLOP/s, {} threads",
                              r["us_per_step_dynamics"].get<double>(), r["us_per_step_optimizer"].get<double>(),
                              r["gflops"].get<double>(), r["threads"].get<int>());
      fmt::print("{:<20} {:>12}  {} {}\n", w->name, fmt_rate(r["rate"].get<double>()), w->unit, details);
      std::fflush(stdout);
      doc["workloads"].push_back(r);
    }
    if (!json_file.empty()) write_text(json_file, doc.dump(2) + "\n");
  });
}

}  // namespace eqprop::cli
