// eqprop deep train / deep stability: DEEP networks on directed graphs (docs/deep.md).
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include "commands.hpp"
#include "deep_config.hpp"
#include "flag_checks.hpp"
#include "trainer_flags.hpp"
#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/deep.hpp"
#include "eqprop/learn/stability.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/data_checks.hpp"
#include "eqprop/train/deep_trainer.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/progress.hpp"

namespace eqprop::cli {
namespace fs = std::filesystem;

namespace {

struct deep_args {
  std::string task = "xor", topology = "complete", decay = "row_sum", presyn = "identity", rule = "trajectory";
  std::string l1_mode = "subgradient", data_dir, run_dir, hidden = "2", dtype = "float64";
  bool one_hot = false, sign = false, prune = false, persistent = false, exclude_structural = false;
  bool baseline = false, stability = false, quiet = false, no_clip = false, reciprocal_nudge = false, freeze = false;
  double beta = 1, lr = 200, dt = 0.05, stop_tol = 0, leak = 0, beta0 = 0, beta1 = 1, l1 = 0;
  double prune_tol = 0.01, prune_temp = 5, init_std = 0.05;
  long T1 = 1000, T2 = 1000, epochs = 200, batch = 0, seeds = 1, train_size = 5000, test_size = 1000, eval_every = 1;
  uint64_t seed = 1;
};

std::vector<int> parse_int_list(const std::string& s) {
  std::vector<int> v;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const auto comma = s.find(',', pos);
    const auto item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    try { v.push_back(std::stoi(item)); } catch (...) { throw config_error("--hidden expects integers like 2 or 16,16, got `" + s + "`"); }
    if (const std::string why = config_constraint::closed(1, config_limits::layer_size).number_violation(v.back(), true);
        !why.empty())
      throw config_error(fmt::format("--hidden: {} is out of range: every size {}", v.back(), why));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return v;
}

struct task_data {
  Eigen::MatrixXd x_train, y_train, x_test, y_test;
  bool one_hot = true;
  int n_input = 0, n_output = 0;
};

task_data load_task(const deep_args& a) {
  task_data d;
  static const std::vector<std::string> logic{"and", "or", "xor", "not", "identity"};
  if (std::find(logic.begin(), logic.end(), a.task) != logic.end()) {
    const auto t = make_logic_task(a.task, a.one_hot);
    d.x_train = t.x;
    d.y_train = t.y;
    d.one_hot = t.one_hot;
  } else {
    dataset_options o;
    o.yin_yang_train = a.train_size;
    o.yin_yang_test = a.test_size;
    o.limit_train = a.train_size;
    o.limit_test = a.test_size;
    o.seed = a.seed;
    const auto split = load_dataset(a.task, resolve_data_dir(a.data_dir), o);
    check_splits(split, "--train-size", "--test-size");
    d.x_train = split.train.x.cast<double>();
    d.y_train = one_hot_targets(split.train.y, split.train.n_classes);
    d.x_test = split.test.x.cast<double>();
    d.y_test = one_hot_targets(split.test.y, split.test.n_classes);
  }
  d.n_input = int(d.x_train.rows());
  d.n_output = int(d.y_train.rows());
  return d;
}

// The settings of the options in a, but for graph.n_input and graph.n_output (0: the caller
// sets them from the data); throws config_error for those deep_check_settings refuses.
deep_run_settings make_settings(const deep_args& a) {
  deep_run_settings st;
  st.graph.hidden = parse_int_list(a.hidden);
  st.graph.topology = parse_graph_topology(a.topology);
  st.graph.init_std = a.init_std;
  st.dyn.dt = a.dt;
  st.dyn.free_steps = a.T1;
  st.dyn.nudged_steps = a.T2;
  st.dyn.stop_tol = a.stop_tol;
  st.dyn.freeze = a.freeze;
  deep_check_dtype(a.dtype);
  st.dtype = a.dtype;
  st.dyn.leak = a.leak;
  st.dyn.decay = parse_deep_decay(a.decay);
  st.dyn.presyn = parse_deep_presyn(a.presyn);
  st.dyn.clip = !a.no_clip;
  st.learn.rule = parse_deep_rule(a.rule);
  st.learn.beta = a.beta;
  st.learn.lr = a.lr;
  st.learn.beta0 = a.beta0;
  st.learn.beta1 = a.beta1;
  st.learn.sign = a.sign;
  st.learn.reciprocal_nudge = a.reciprocal_nudge;
  st.learn.l1 = a.l1;
  st.learn.l1_mode = parse_deep_l1(a.l1_mode);
  st.learn.prune = a.prune;
  st.learn.prune_tol = a.prune_tol;
  st.learn.prune_temp = a.prune_temp;
  st.learn.persistent = a.persistent;
  st.learn.exclude_structural = a.exclude_structural;
  if (a.baseline) {  // asymmetric vector-field EP (spec §4.3): unit leak, endpoint rule, learned bias
    st.dyn.decay = deep_decay::unit;
    st.learn.rule = deep_rule::endpoint;
    st.learn.learn_bias = true;
  }
  st.epochs = a.epochs;
  st.batch_size = a.batch;
  st.eval_every = a.eval_every;
  st.seed = a.seed;
  deep_check_settings(st.dyn, st.learn);
  return st;
}

checkpoint make_checkpoint(const graph_network<double>& net, const deep_run_settings& st, const deep_args& a,
                           const Eigen::MatrixXd& probe) {
  checkpoint ck;
  ck.meta["kind"] = "deep";
  ck.meta["settings"] = nlohmann::json::parse(to_json(st).dump());
  ck.meta["task"] = a.task;
  ck.meta["one_hot"] = a.one_hot;
  ck.arrays["weights"] = checkpoint_array::from_eigen(net.weights());
  ck.arrays["bias"] = checkpoint_array::from_eigen(net.bias());
  ck.arrays["pruned"] = checkpoint_array::from_eigen(net.pruned().cast<uint8_t>().eval());
  ck.arrays["probe_inputs"] = checkpoint_array::from_eigen(probe);
  return ck;
}

// Per-pattern lines (up to 8) unless `brief`, then the verdict.
void print_stability(const deep_stability_summary& s, bool brief) {
  if (!brief)
    for (std::size_t b = 0; b < s.per_pattern.size() && b < 8; ++b)
      fmt::print("  pattern {}: active {}/{}, active-set abscissa {:.4g}, full abscissa {:.4g}, certified {}\n", b,
                 s.per_pattern[b].n_active, s.per_pattern[b].n, s.per_pattern[b].active_spectral_abscissa,
                 s.per_pattern[b].spectral_abscissa, s.per_pattern[b].certified);
  fmt::print("stability (worst equilibrium): {}\n", s.worst.verdict);
}

void run_train(const deep_args& a) {
  deep_run_settings base = make_settings(a);  // refuses bad settings before the data loads
  const auto d = load_task(a);
  base.graph.n_input = d.n_input;
  base.graph.n_output = d.n_output;
  // The progress display (not with --quiet): one status line per seed, over its epochs.
  progress prog(std::cout, !a.quiet && progress::stdout_is_terminal(), 0.1,
                a.quiet ? std::numeric_limits<double>::infinity() : 10.0);
  prog.set_labels("seed", "epoch");
  int successes = 0, n_diverged = 0;
  std::vector<double> errors;
  std::vector<uint64_t> solved;
  for (long k = 0; k < a.seeds; ++k) {
    deep_run_settings st = base;
    st.seed = a.seed + uint64_t(k);
    // One seed's run with a network of either scalar type; checkpoints and stability
    // reports see its parameters in double.
    auto run_seed = [&](auto& net) {
      fs::path dir;
      if (!a.run_dir.empty()) dir = a.seeds > 1 ? fs::path(a.run_dir) / fmt::format("seed-{}", st.seed) : fs::path(a.run_dir);
      std::unique_ptr<metrics_log> log;
      if (!dir.empty()) {
        create_run_directory(dir);
        log = std::make_unique<metrics_log>(dir, false);
        write_file_atomic(dir / "settings.json", to_json(st).dump(2) + "\n");
      }
      // Epoch lines for a single seed only: a multi-seed run prints one line per seed.
      const bool verbose = a.seeds <= 1;
      prog.begin_epoch(k + 1, a.seeds, st.epochs);
      const auto r = deep_train(net, st, d.x_train, d.y_train, d.x_test, d.y_test, d.one_hot,
                                [&](const nlohmann::ordered_json& row) {
                                  if (log) log->append(row);
                                  const long epoch = row["epoch"].get<long>();
                                  prog.update(epoch, [&] {
                                    return progress::fields{
                                        {"err", fmt::format("{:.2f}%", 100 * row["train_error"].get<double>())},
                                        {"mse", fmt::format("{:.4f}", row["train_mse"].get<double>())}};
                                  });
                                  if (verbose && (epoch % 10 == 0 || epoch == st.epochs))
                                    prog.message(fmt::format("epoch {:4}  free error {:6.2f}%  nudged error {:6.2f}%  free MSE {:.4f}{}  sparsity {:.3f}",
                                               row["epoch"].get<long>(), 100 * row["train_error"].get<double>(),
                                               100 * row["nudged_error"].get<double>(), row["train_mse"].get<double>(),
                                               row.contains("test_error") ? fmt::format("  test accuracy {:.2f}%", 100 * row["test_accuracy"].get<double>()) : std::string(),
                                               row["sparsity"].get<double>()));
                                });
      prog.clear();  // the seed's result line follows
      if (r.diverged) {
        // No score and no checkpoint of a diverged network; the seed counts as a failure
        // (error 100 %) in a multi-seed summary, and the command exits with status 4.
        ++n_diverged;
        errors.push_back(1.0);
        fmt::print("seed {}: diverged after {} epochs: {}; no checkpoint written\n", st.seed, r.epochs_done, r.message);
        set_exit_code(4);
        return;
      }
      const double err = d.x_test.cols() > 0 ? r.test_error : r.train_error;
      errors.push_back(err);
      if (r.train_error == 0.0) {
        ++successes;
        solved.push_back(st.seed);
      }
      fmt::print("seed {}: free-phase train error {:.2f}%{}, nudged {:.2f}%, free MSE {:.4f}{}, sparsity {:.3f} ({} of {} allowed edges non-zero)\n",
                 st.seed, 100 * r.train_error,
                 r.solved_epoch > 0 ? fmt::format(" (0% from epoch {})", r.solved_epoch) : std::string(),
                 100 * r.nudged_error, r.train_mse,
                 d.x_test.cols() > 0 ? fmt::format(", test accuracy {:.2f}%", 100 * (1 - r.test_error)) : std::string(),
                 r.sparsity, net.n_nonzero(), net.n_allowed());
      const Eigen::MatrixXd probe = d.x_train.leftCols(std::min<Eigen::Index>(d.x_train.cols(), 64));
      if (!dir.empty()) save_checkpoint(dir / "checkpoint.eqck", make_checkpoint(net.template cast<double>(), st, a, probe));
      if (a.stability) {
        const auto s = deep_stability(net.template cast<double>(), st.dyn, probe, st.seed);
        print_stability(s, a.seeds > 1);
        if (!dir.empty()) {
          nlohmann::ordered_json j = s.worst.to_json();
          write_file_atomic(dir / "stability.json", j.dump(2) + "\n");
        }
      }
    };
    rng_t rng(st.seed);
    if (st.dtype == "float32") {
      graph_network<float> net(st.graph, rng);
      run_seed(net);
    } else {
      graph_network<double> net(st.graph, rng);
      run_seed(net);
    }
  }
  if (a.seeds > 1) {
    double mean = 0;
    for (double e : errors) mean += e;
    fmt::print("{} of {} seeds reach 0% free-phase training error; mean final {} error {:.2f}%{}\n", successes, a.seeds,
               d.x_test.cols() > 0 ? "test" : "train", 100 * mean / double(errors.size()),
               n_diverged ? fmt::format(" ({} diverged seeds counted as 100% error)", n_diverged) : std::string());
    if (!solved.empty()) fmt::print("seeds at 0%: {}\n", fmt::join(solved, " "));
  }
}

// Reads `key = value` lines of a TOML file into the options a command line did not set.
void apply_config_file(const std::string& file, CLI::App& cmd) {
  toml::table tbl;
  try {
    tbl = toml::parse_file(file);
  } catch (const toml::parse_error& e) {
    throw config_error(fmt::format("{}:{}:{}: TOML parse error: {}", file, e.source().begin.line, e.source().begin.column,
                                   e.description()));
  }
  for (const auto& [k, node] : tbl) {
    const std::string key(k.str());
    CLI::Option* opt = nullptr;
    try { opt = cmd.get_option("--" + key); } catch (const CLI::OptionNotFound&) {}
    if (!opt) throw config_error(fmt::format("{}: unknown deep train option `{}`", file, key));
    if (opt->count() > 0) continue;  // the command line wins
    std::string text;
    if (node.is_boolean()) text = *node.value<bool>() ? "true" : "false";
    else if (node.is_integer()) text = std::to_string(*node.value<int64_t>());
    else if (node.is_floating_point()) text = fmt::format("{}", *node.value<double>());
    else if (node.is_string()) text = *node.value<std::string>();
    else throw config_error(fmt::format("{}: `{}` must be a string, number or boolean", file, key));
    if (opt->get_expected_min() == 0) {  // a flag
      if (text == "true") opt->add_result("true");
      else if (text != "false") throw config_error(fmt::format("{}: `{}` is a flag: true or false", file, key));
    } else {
      opt->add_result(text);
    }
    opt->run_callback();
  }
}

// The options of `deep train` that a config file may set, bound to a.
void add_train_options(CLI::App* t, deep_args& a) {
  using cc = config_constraint;
  namespace lim = config_limits;
  const cc steps = cc::closed(1, lim::steps);
  t->add_option("--task", a.task, "and | or | xor | not | identity, or a dataset name (yin_yang, mnist, ...)");
  t->add_flag("--one-hot", a.one_hot, "Logic gates: two one-hot outputs + argmax (default: one output thresholded at 0.5)");
  t->add_option("--hidden", a.hidden, "Hidden sizes, comma-separated (layered: one per layer)");
  t->add_option("--topology", a.topology, "complete | layered");
  add_checked(t, "--beta", a.beta, "Nudging strength β", cc::greater_than(0));
  add_checked(t, "--lr", a.lr, "Learning rate η", cc::greater_than(0));
  add_checked(t, "--dt", a.dt, "Euler step", cc::greater_than(0).at_most(1));
  add_checked(t, "--T1", a.T1, "Free-phase step budget", steps);
  add_checked(t, "--T2", a.T2, "Nudged-phase steps", steps);
  add_checked(t, "--stop-tol", a.stop_tol, "Stop a phase when max ‖Δs‖² <= this (0: run the whole budget)", cc::at_least(0));
  t->add_flag("--freeze", a.freeze,
              "With --stop-tol: a sample whose step moved ‖Δs‖² <= stop-tol stops stepping while the others run "
              "(not in the trajectory rule's nudged phase)");
  t->add_option("--dtype", a.dtype, "Parameters and states in float64 (default) | float32");
  add_checked(t, "--leak", a.leak, "Leak γ >= 0 (−γ s_j; 0 = published)", cc::at_least(0));
  t->add_option("--decay", a.decay, "row_sum (published) | abs_row_sum | unit");
  t->add_flag("--no-clip", a.no_clip, "Do not clip the free states to [0, 1] (needs a leak and a bounded --presyn to stay bounded)");
  t->add_option("--presyn", a.presyn, "Presynaptic activation ρ: identity (published) | hep_sigmoid (logistic(4s − 2)) | tanh");
  t->add_option("--rule", a.rule, "trajectory (published) | endpoint | vector_field");
  add_checked(t, "--beta0", a.beta0, "Trajectory rule: coefficient of s_j(t)", cc::any());
  add_checked(t, "--beta1", a.beta1, "Trajectory rule: coefficient of s_j(t) − s_j(t−1)", cc::any());
  t->add_flag("--reciprocal-nudge", a.reciprocal_nudge,
              "Nudged phase with the Jacobian transposed at the free state (exact-gradient EP; needs --rule vector_field "
              "and --no-clip). Non-local: the learning phase needs the reverse edges' weights at every neuron");
  t->add_flag("--sign", a.sign, "Manhattan updates: η sign(ΔW)");
  add_checked(t, "--l1", a.l1, "L1 shrinkage λ per update (published: 1.5e-4)", cc::at_least(0));
  t->add_option("--l1-mode", a.l1_mode, "subgradient (published) | soft_threshold");
  t->add_flag("--prune", a.prune, "Boltzmann pruning after every update");
  add_checked(t, "--prune-tol", a.prune_tol, "Weights with |W| above this are never pruned", cc::at_least(0));
  add_checked(t, "--prune-temp", a.prune_temp, "Pruning softmax temperature", cc::greater_than(0));
  t->add_flag("--persistent", a.persistent, "Pruned connections stay pruned");
  t->add_flag("--exclude-structural", a.exclude_structural, "Leave structural zeros out of the pruning softmax");
  t->add_flag("--baseline", a.baseline, "Asymmetric vector-field EP baseline: unit leak, endpoint rule, learned bias");
  add_checked(t, "--init-std", a.init_std, "Weight init standard deviation", cc::at_least(0));
  add_checked(t, "--epochs", a.epochs, "Epochs", cc::closed(1, lim::epochs));
  add_checked(t, "--batch", a.batch, "Mini-batch size (0: full batch, as published)", cc::closed(0, lim::batch));
  add_checked(t, "--seed", a.seed, "First seed", cc::at_least(0));
  add_checked(t, "--seeds", a.seeds, "Train this many seeds (seed, seed+1, ...) and report how many succeed", cc::closed(1, 10000));
  add_checked(t, "--train-size", a.train_size, "Datasets: training samples", cc::closed(1, lim::samples));
  add_checked(t, "--test-size", a.test_size, "Datasets: test samples", cc::closed(1, lim::samples));
  add_checked(t, "--eval-every", a.eval_every, "Evaluate (and log) every this many epochs", cc::closed(1, lim::epochs));
  t->add_option("--data-dir", a.data_dir, trainer_help::data_dir);
  t->add_option("--run-dir", a.run_dir, "Write settings.json, metrics.jsonl/.csv, checkpoint.eqck (and stability.json) here");
  t->add_flag("--stability", a.stability, "Print the stability report of the trained network");
  t->add_flag("--quiet,-q", a.quiet, trainer_help::quiet);
}

}  // namespace

deep_config read_deep_config(const std::string& file) {
  if (!fs::is_regular_file(file))
    throw config_error(fmt::format("DEEP config file `{}` not found (a relative path is read from the working directory {})",
                                   file, fs::current_path().string()));
  deep_args a;
  CLI::App app;
  add_train_options(&app, a);
  apply_config_file(file, app);
  deep_config c;
  c.task = a.task;
  c.train_size = a.train_size;
  c.settings = make_settings(a);
  return c;
}

void register_deep(CLI::App& app) {
  static deep_args a;
  auto* deep = app.add_subcommand("deep", "DEEP: equilibrium propagation on complete directed networks (docs/deep.md)");
  deep->require_subcommand(1);
  auto* t = deep->add_subcommand("train", "Train a DEEP network (defaults: XOR, published one-hot settings)");
  add_train_options(t, a);
  using cc = config_constraint;
  static std::string config_file;
  t->add_option("--config", config_file, "TOML file of these options (long names as keys, e.g. configs/deep_xor_onehot.toml); "
                "options given on the command line win")->check(CLI::ExistingFile);
  t->callback([t] {
    if (!config_file.empty()) apply_config_file(config_file, *t);
    run_train(a);
  });

  static std::string target;
  static bool as_json = false;
  static double leak_override = 0;
  auto* s = deep->add_subcommand("stability", "Stability certificates of a trained DEEP network (run dir or checkpoint)");
  s->add_option("run", target, "Run directory or checkpoint.eqck")->required()->check(CLI::ExistingPath);
  s->add_flag("--json", as_json, "Print the worst equilibrium's report as JSON");
  static CLI::Option* leak_opt =
      add_checked(s, "--leak", leak_override, "Analyse with this leak instead of the trained one", cc::at_least(0));
  s->callback([] {
    const fs::path file = fs::is_directory(target) ? fs::path(target) / "checkpoint.eqck" : fs::path(target);
    const auto ck = load_checkpoint(file);
    if (!ck.meta.contains("kind") || ck.meta["kind"] != "deep")
      throw data_error("`" + file.string() + "` is not a DEEP checkpoint (written by `eqprop deep train --run-dir`)");
    const auto& js = ck.meta["settings"];
    graph_spec g;
    g.n_input = js["graph"]["n_input"];
    g.n_output = js["graph"]["n_output"];
    g.hidden = js["graph"]["hidden"].get<std::vector<int>>();
    g.topology = parse_graph_topology(js["graph"]["topology"]);
    rng_t rng(1);
    graph_network<double> net(g, rng);
    const Eigen::MatrixXd w = ck.array("weights").to_matrix<double>();
    const Eigen::VectorXd bias = ck.array("bias").to_eigen_vector<double>();
    if (w.rows() != net.size() || w.cols() != net.size() || bias.size() != net.n_free())
      throw data_error("`" + file.string() + "`: weight shapes do not match the saved graph");
    net.weights() = w;
    net.bias() = bias;
    deep_dynamics dyn;
    dyn.dt = js["dynamics"]["dt"];
    dyn.free_steps = js["dynamics"]["free_steps"];
    dyn.stop_tol = js["dynamics"]["stop_tol"];
    dyn.leak = leak_opt->count() > 0 ? leak_override : js["dynamics"]["leak"].get<double>();
    dyn.decay = parse_deep_decay(js["dynamics"]["decay"]);
    dyn.presyn = parse_saved_deep_presyn(js["dynamics"]["presyn"]);
    dyn.clip = js["dynamics"].value("clip", true);  // checkpoints written before the option clipped
    const Eigen::MatrixXd probe = ck.array("probe_inputs").to_matrix<double>();
    const auto rep = deep_stability(net, dyn, probe, 1);
    if (as_json) fmt::print("{}\n", rep.worst.to_json().dump(2));
    else print_stability(rep, false);
  });
}

}  // namespace eqprop::cli
