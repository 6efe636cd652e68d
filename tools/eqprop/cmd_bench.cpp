// eqprop bench: named training workloads timed on this machine, beside the reference
// implementations' throughput, plus the matrix-multiply peak measured with the
// backend we link. Table by default, JSON with --json.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

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
#include "eqprop/train/model_kind.hpp"
#include "eqprop/train/vf_experiment.hpp"
#include "flag_checks.hpp"
#include "study_util.hpp"

namespace eqprop::cli {

namespace {
using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

struct workload {
  std::string name, description, unit;        // unit: "samples/s" or "steps/s"
  double reference;                           // the reference implementation on this class of machine; 0: none measured
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
                                          "optimizer.lr=1e-4"};
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
       "784-512-10 sigmoid, symmetric EP beta 0.1, T1 30, T2 10, batch 50, Adam",
       "samples/s",
       2390,
       {"network.hidden=[512]", "network.output=\"layer\"", "estimator.kind=\"symmetric\"", "estimator.beta=0.1",
        "relax.free_steps=30", "relax.nudged_steps=10", "run.batch=50", "optimizer.kind=\"adam\"", "optimizer.lr=1e-4"},
       0},
      {"mlp512_classic",
       "784-512-10 sigmoid, one-sided EP beta 0.1, T1 30, T2 10, batch 50, Adam",
       "samples/s",
       2950,
       {"network.hidden=[512]", "network.output=\"layer\"", "estimator.kind=\"classic\"", "estimator.beta=0.1",
        "relax.free_steps=30", "relax.nudged_steps=10", "run.batch=50", "optimizer.kind=\"adam\"", "optimizer.lr=1e-4"},
       0},
      {"mlp512x2_symmetric", "784-512-512-10 sigmoid, symmetric EP beta 0.1, T1 100, T2 20, batch 50, Adam",
       "samples/s", 555, mlp512x2, 0},
      {"mlp512x2_early",
       "mlp512x2_symmetric, alternating order, over-relaxation omega 1.6, every sample frozen once below tol 1e-2 "
       "(T1/T2 as maxima)",
       "samples/s", 555,
       plus(mlp512x2, {"relax.order=\"alternating\"", "relax.omega=1.6", "relax.stop_early=true", "relax.tol=1e-2"}),
       0},
      {"hep_table1",
       "784-256-256 + readout, holomorphic EP N 10 |beta| 0.4, T1 200, T2 50, batch 20, SGD (hEP Table 1)", "samples/s",
       1350, hep_table1, 0},
      {"hep_table1_early", "hep_table1, alternating order, every sample frozen once below tol 1e-3 (T1/T2 as maxima)",
       "samples/s", 1350, plus(hep_table1, {"relax.stop_early=true", "relax.tol=1e-3", "relax.order=\"alternating\""}),
       0},
      {"conv_fmnist_hep",
       "ConvNet 28x28x1 conv16+pool conv32+pool holotanh, hEP N 2 |beta| 1, T1 30, T2 12, batch 32, SGD",
       "samples/s",
       0,
       {"network.conv=[16,32]", "network.hidden=[]", "network.activation=\"holotanh\"",
        "estimator.kind=\"holomorphic\"", "estimator.n_points=2", "estimator.beta=1.0", "relax.free_steps=30",
        "relax.nudged_steps=12", "run.batch=32", "optimizer.kind=\"sgd\"", "optimizer.lr=0.05"},
       0},
      {"conv32_64_classic",
       "ConvNet 28x28x1 conv32 5x5 VALID + max pool, conv64 5x5 VALID + max pool, output layer 10, hard sigmoid, "
       "one-sided EP beta 0.4, T1 200, T2 10, batch 100, SGD",
       "samples/s",
       46,
       {"network.conv=[32,64]", "network.conv_kernel=[5]", "network.conv_padding=[\"valid\"]",
        "network.conv_pool=[\"max\"]", "network.hidden=[]", "network.output=\"layer\"",
        "network.activation=\"half_clamp01\"", "estimator.kind=\"classic\"", "estimator.beta=0.4",
        "relax.free_steps=200", "relax.nudged_steps=10", "run.batch=100", "optimizer.kind=\"sgd\"",
        "optimizer.lr=0.05"},
       0},
      {"vgg4_symmetric",
       "ConvNet 32x32x3 VGG-4 conv128-256-512-512 3x3 (same, same, same, valid) + max pool, readout 10, hard sigmoid, "
       "symmetric EP beta 1, T1 250, T2 25, batch 128, SGD (random CIFAR-shaped batch)",
       "samples/s",
       1.2,
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
       0,
       {"network.hidden=[256,256]", "network.output_size=10", "network.angle=90.0", "estimator.kind=\"holomorphic\"",
        "estimator.n_points=2", "estimator.beta=0.2", "relax.free_steps=150", "relax.nudged_steps=20", "run.batch=50",
        "optimizer.kind=\"adamw\"", "optimizer.lr=1e-4", "optimizer.weight_decay=0.0"},
       4},
      {"gle_mnist1d_15k",
       "GLE 1-6x53-10 (spec time constants), batch 100, Adam every step, 1 thread",
       "steps/s",
       620,
       {},
       1},
      {"gle_mnist1d_15k_2t", "the same on 2 threads (layers in parallel)", "steps/s", 620, {}, 3},
      {"gle_lagline", "GLE teacher-student chain, 2 neurons, batch 100, Adam every step", "steps/s", 2400, {}, 2},
      {"deep_yinyang_leak",
       "DEEP complete graph 4+1-30-3 on Yin-Yang (5000 samples), leak 3, endpoint rule beta 0.5 lr 0.3, T1 100, "
       "T2 100, dt 0.1, batch 20 (configs/graph_yin_yang_leak.toml)",
       "samples/s",
       0,
       {},
       5},
      {"deep_yinyang_leak_f32", "the same in float32", "samples/s", 0, {"network.dtype=float32"}, 5},
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
}  // namespace

void register_bench(CLI::App& app) {
  static std::vector<std::string> names;
  static double seconds = 3, gemm_seconds = 2;
  static std::string json_file, data_dir;
  static std::vector<std::string> sets;
  static int threads = 1;
  static bool list = false, no_peak = false;
  auto* cmd = app.add_subcommand("bench", "Time training workloads and the matrix-multiply peak of this machine");
  cmd->add_option("--workload,-w", names, "Workloads to run (default: all; see --list)");
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
      return;
    }
    for (const auto& o : sets) {  // a key no workload knows is a typo, not a no-op
      const std::string key = o.substr(0, o.find('='));
      if (layered_schema().find(key) == nullptr && vector_field_schema().find(key) == nullptr)
        throw config_error(fmt::format("--set {}: no EP or generalized-EP config has the key '{}'", o, key));
    }
    std::vector<const workload*> todo;
    for (const auto& n : names) {
      const workload* found = nullptr;
      for (const auto& w : workloads())
        if (w.name == n) found = &w;
      if (!found) throw config_error(fmt::format("unknown workload '{}'; run `eqprop bench --list`", n));
      todo.push_back(found);
    }
    if (todo.empty())
      for (const auto& w : workloads()) todo.push_back(&w);
    nlohmann::ordered_json doc;
    doc["build"] = nlohmann::ordered_json::parse(build_info_json().dump());
    doc["machine"]["hardware_threads"] = std::thread::hardware_concurrency();
    {
      std::ifstream cpu("/proc/cpuinfo");
      std::string line;
      while (std::getline(cpu, line))
        if (line.rfind("model name", 0) == 0) {
          doc["machine"]["cpu"] = line.substr(line.find(':') + 2);
          break;
        }
      std::ifstream mem("/proc/meminfo");
      if (std::getline(mem, line)) doc["machine"]["memory"] = line;
    }
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
    fmt::print("{:<20} {:>12} {:>12} {:>9}  {}\n", "workload", "ours", "reference", "speedup", "unit / details");
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
      r["reference"] = w->reference > 0 ? nlohmann::ordered_json(w->reference) : nlohmann::ordered_json();
      r["speedup"] =
          w->reference > 0 ? nlohmann::ordered_json(r["rate"].get<double>() / w->reference) : nlohmann::ordered_json();
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
      if (w->reference > 0)
        fmt::print("{:<20} {:>12} {:>12} {:>8.2f}x  {} {}\n", w->name, fmt_rate(r["rate"].get<double>()),
                   fmt_rate(w->reference), r["speedup"].get<double>(), w->unit, details);
      else
        fmt::print("{:<20} {:>12} {:>12} {:>9}  {} {}\n", w->name, fmt_rate(r["rate"].get<double>()), "-", "-", w->unit,
                   details);
      doc["workloads"].push_back(r);
    }
    if (!json_file.empty()) write_text(json_file, doc.dump(2) + "\n");
  });
}

}  // namespace eqprop::cli
