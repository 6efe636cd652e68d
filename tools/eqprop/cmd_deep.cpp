// eqprop deep train / deep stability: DEEP networks on directed graphs (docs/deep.md).
// `deep train` is `eqprop train` with model.kind = graph: its flags are translated to config
// keys (one table, kDeepFlags) and it prints the equivalent `eqprop train` line.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include "commands.hpp"
#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/learn/deep.hpp"
#include "eqprop/learn/stability.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/graph_experiment.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/trainer.hpp"
#include "flag_checks.hpp"
#include "train_command.hpp"

namespace eqprop::cli {
namespace fs = std::filesystem;

namespace {

// A `deep train` flag and the graph config key it sets. A switch (`value` empty) sets the
// key to `value_if_set`; an option passes its value on.
struct deep_flag {
  const char* flag;
  const char* key;
  const char* help;
  const char* value_if_set = nullptr;  ///< switches only
};

const std::vector<deep_flag>& deep_flags() {
  static const std::vector<deep_flag> flags = {
      {"--task", "data.name", "and | or | xor | not | identity, or a dataset name (yin_yang, mnist, ...)"},
      {"--one-hot", "network.one_hot", "Logic gates: one output per class + argmax (datasets always)", "true"},
      {"--hidden", "network.hidden", "Hidden sizes, comma-separated (layered: one per layer)"},
      {"--topology", "network.topology", "complete | layered"},
      {"--init-std", "network.init_std", "Weight init standard deviation"},
      {"--beta", "estimator.beta", "Nudging strength beta"},
      {"--lr", "optimizer.lr", "Learning rate (plain SGD)"},
      {"--dt", "dynamics.dt", "Euler step"},
      {"--leak", "dynamics.leak", "Leak gamma >= 0 (0 = published)"},
      {"--decay", "dynamics.decay", "row_sum (published) | abs_row_sum | unit"},
      {"--presyn", "dynamics.presyn", "Presynaptic activation: identity (published) | hep_sigmoid | tanh"},
      {"--no-clip", "dynamics.clip", "Do not clip the free states to [0, 1]", "false"},
      {"--T1", "relax.free_steps", "Free-phase step budget"},
      {"--T2", "relax.nudged_steps", "Nudged-phase steps"},
      {"--stop-tol", "relax.tol", "Stop a phase when max |ds|^2 <= this (0: run the whole budget)"},
      {"--freeze", "relax.freeze_converged", "With --stop-tol: converged samples stop stepping (free phase)", "true"},
      {"--rule", "estimator.kind", "trajectory (published) | endpoint | vector_field"},
      {"--beta0", "estimator.beta0", "Trajectory rule: coefficient of s_j(t)"},
      {"--beta1", "estimator.beta1", "Trajectory rule: coefficient of s_j(t) - s_j(t-1)"},
      {"--reciprocal-nudge", "estimator.reciprocal_nudge",
       "Nudge with the Jacobian transposed at the free state (needs --rule vector_field and --no-clip)", "true"},
      {"--sign", "estimator.sign", "Manhattan updates: lr sign(dW)", "true"},
      {"--l1", "constraints.l1", "L1 shrinkage per update (published: 1.5e-4)"},
      {"--l1-mode", "constraints.l1_mode", "subgradient (published) | soft_threshold"},
      {"--prune", "prune.enabled", "Boltzmann pruning after every update", "true"},
      {"--prune-tol", "prune.tol", "Weights with |W| above this are never pruned"},
      {"--prune-temp", "prune.temperature", "Pruning softmax temperature"},
      {"--persistent", "prune.persistent", "Pruned connections stay pruned", "true"},
      {"--exclude-structural", "prune.exclude_structural", "Leave structural zeros out of the pruning softmax", "true"},
      {"--eval-every", "run.eval_every", "Evaluate every this many epochs (and after the last)"},
  };
  return flags;
}

bool is_logic_gate(const std::string& name) {
  for (const char* g : {"and", "or", "xor", "not", "identity"})
    if (name == g) return true;
  return false;
}

// The flags of `deep train` beyond `eqprop train`'s: values as given (strings), checked by
// the graph schema when they become keys.
struct deep_alias_args {
  train_args train;
  std::vector<std::string> values;  ///< per deep_flags() entry ("" when not given)
  std::vector<CLI::Option*> options;
  std::string batch, train_size, test_size, legacy_config;
  bool baseline = false, stability = false;
};

// "3" -> the seeds first .. first + 3 - 1 (deep train's --seeds K); lists and ranges as given.
std::string seed_list(const std::string& seeds, uint64_t first) {
  if (seeds.empty() || !std::all_of(seeds.begin(), seeds.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return seeds;
  long k = 0;
  try {
    k = std::stol(seeds);
  } catch (const std::exception&) {
    throw config_error(
        fmt::format("--seeds {}: expected a count of seeds (1 to 10000), a range like 1-10 or a list", seeds));
  }
  if (k < 1 || k > 10000)
    throw config_error(fmt::format("--seeds = {}: a count of seeds must be in [1, 10000]", seeds));
  return k == 1 ? std::to_string(first) : fmt::format("{}-{}", first, first + uint64_t(k) - 1);
}

// Reads a `deep train` TOML file keyed by long flag names (`one-hot = true`) into the flags the
// command line did not give. A file with tables ([model], [network], ...) is an `eqprop train`
// config: it becomes the config file instead.
void apply_legacy_config(const std::string& file, CLI::App& cmd, deep_alias_args& a) {
  toml::table tbl;
  try {
    tbl = toml::parse_file(file);
  } catch (const toml::parse_error& e) {
    throw config_error(fmt::format("{}:{}:{}: TOML parse error: {}", file, e.source().begin.line,
                                   e.source().begin.column, e.description()));
  }
  const bool has_tables = std::any_of(tbl.begin(), tbl.end(), [](const auto& kv) { return kv.second.is_table(); });
  if (has_tables) {
    if (!a.train.config_file.empty())
      throw config_error(fmt::format("--config {} and the config {}: give one config file", file, a.train.config_file));
    a.train.config_file = file;
    return;
  }
  for (const auto& [k, node] : tbl) {
    const std::string key(k.str());
    CLI::Option* opt = nullptr;
    try {
      opt = cmd.get_option("--" + key);
    } catch (const CLI::OptionNotFound&) {
    }
    if (!opt || key == "config") throw config_error(fmt::format("{}: unknown deep train option `{}`", file, key));
    if (opt->count() > 0) continue;  // the command line wins
    std::string text;
    if (node.is_boolean()) text = *node.value<bool>() ? "true" : "false";
    else if (node.is_integer()) text = std::to_string(*node.value<int64_t>());
    else if (node.is_floating_point()) text = fmt::format("{}", *node.value<double>());
    else if (node.is_string()) text = *node.value<std::string>();
    else throw config_error(fmt::format("{}: `{}` must be a string, number or boolean", file, key));
    if (opt->get_expected_min() == 0) {  // a switch
      if (text == "true") opt->add_result("true");
      else if (text != "false") throw config_error(fmt::format("{}: `{}` is a switch: true or false", file, key));
    } else {
      opt->add_result(text);
    }
    opt->run_callback();
  }
}

// The overrides that `deep train`'s own flags stand for, after model.kind = graph.
std::vector<std::string> alias_sets(const deep_alias_args& a) {
  std::vector<std::string> sets;
  if (a.train.resume.empty()) sets.push_back("model.kind=graph");
  const auto& flags = deep_flags();
  std::string task = "xor";
  for (std::size_t i = 0; i < flags.size(); ++i) {
    if (a.options[i]->count() == 0) continue;
    const std::string v = flags[i].value_if_set ? flags[i].value_if_set : a.values[i];
    if (std::string(flags[i].key) == "data.name") task = v;
    sets.push_back(fmt::format("{}={}", flags[i].key, v));
  }
  // Data sets have one output neuron per class (as every `deep train` run on one had).
  const bool one_hot_given =
      std::any_of(sets.begin(), sets.end(), [](const std::string& s) { return s.starts_with("network.one_hot="); });
  if (!is_logic_gate(task) && a.train.resume.empty() && !one_hot_given) sets.push_back("network.one_hot=true");
  if (a.baseline) {  // asymmetric vector-field EP (spec §4.3): unit decay, endpoint rule, learned bias
    sets.push_back("dynamics.decay=unit");
    sets.push_back("estimator.kind=endpoint");
    sets.push_back("estimator.learn_bias=true");
  }
  if (!a.batch.empty())  // 0: the full batch
    sets.push_back(
        fmt::format("run.batch={}", a.batch == "0" ? fmt::format("{}", long(config_limits::batch)) : a.batch));
  for (const auto& [size, split] : {std::pair{&a.train_size, "train"}, std::pair{&a.test_size, "test"}}) {
    if (size->empty()) continue;
    sets.push_back(fmt::format("data.limit_{}={}", split, *size));
    sets.push_back(fmt::format("data.yin_yang_{}={}", split, *size));
  }
  return sets;
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

// The stability report of a trained graph network at its probe inputs: a run of `eqprop
// train` (model.kind = graph) or a checkpoint of the former `deep train` (meta kind "deep").
deep_stability_summary run_stability(const fs::path& target, std::optional<double> leak) {
  const fs::path file = fs::is_directory(target) ? target / "checkpoint.eqck" : target;
  if (!fs::exists(file)) throw data_error(fmt::format("{}: no checkpoint (is it a run directory?)", file.string()));
  const auto ck = load_checkpoint(file);
  if (ck.meta.value("kind", "") == "deep") {  // written by the former `deep train`
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
    dyn.leak = leak.value_or(js["dynamics"]["leak"].get<double>());
    dyn.decay = parse_deep_decay(js["dynamics"]["decay"]);
    dyn.presyn = parse_saved_deep_presyn(js["dynamics"]["presyn"]);
    dyn.clip = js["dynamics"].value("clip", true);  // checkpoints written before the option clipped
    return deep_stability(net, dyn, ck.array("probe_inputs").to_matrix<double>(), 1);
  }
  const saved_run run = load_saved_run(file, "");
  if (run.kind != model_kind::graph)
    throw data_error(fmt::format("{}: a run of model.kind = {}; stability certificates are for graph networks",
                                 file.string(), to_string(run.kind)));
  if (!run.ck.arrays.contains("probe_inputs"))
    throw data_error(
        fmt::format("{}: the checkpoint holds no probe inputs (written before they were saved); "
                    "retrain the run to analyse it",
                    file.string()));
  deep_dynamics dyn = deep_dynamics_from_config(run.cfg);
  if (leak) dyn.leak = *leak;
  return deep_stability(saved_network<graph_network<double>>(run), dyn,
                        run.ck.array("probe_inputs").to_matrix<double>(), run.cfg.get<uint64_t>("run.seed"));
}

// For runs on a logic gate (whose test split is its patterns): how many reach 0% error (test
// accuracy 1 at the end), with the first epoch from which each stays there.
void print_solved_summary(const std::vector<fs::path>& runs) {
  if (runs.empty() ||
      !is_logic_gate(
          saved_run_config(load_checkpoint(runs[0] / "checkpoint.eqck"), runs[0]).get<std::string>("data.name")))
    return;
  long solved = 0;
  std::vector<std::string> where;
  for (const auto& dir : runs) {
    long from = -1;
    for (const auto& row : read_metrics_rows(dir / "metrics.jsonl")) {
      if (!row.contains("test_acc") || !row["test_acc"].is_number()) continue;
      if (row["test_acc"].get<double>() == 1.0) {
        if (from < 0) from = row["epoch"].get<long>();
      } else {
        from = -1;
      }
    }
    if (from < 0) continue;
    ++solved;
    where.push_back(fmt::format("{} (from epoch {})", dir.filename().string(), from));
  }
  fmt::print("{} of {} runs reach 0% error{}{}\n", solved, runs.size(), where.empty() ? "" : ": ",
             fmt::join(where, ", "));
}

}  // namespace

void register_deep(CLI::App& app) {
  auto* deep = app.add_subcommand("deep", "DEEP: equilibrium propagation on complete directed networks (docs/deep.md)");
  deep->require_subcommand(1);

  static deep_alias_args a;
  auto* t = deep->add_subcommand(
      "train", "Train a DEEP network: `eqprop train --set model.kind=graph` with flags for its keys (docs/deep.md)");
  add_train_flags(t, a.train);
  t->get_option("--seeds")->description(
      "Seeds: K runs K seeds counting from --seed (default 1); a range (1-10) or a list (1,4,7) as given "
      "(each in DIR/seed-S)");
  const auto& flags = deep_flags();
  a.values.resize(flags.size());
  for (std::size_t i = 0; i < flags.size(); ++i) {
    const std::string name = flags[i].flag;
    if (flags[i].value_if_set)
      a.options.push_back(t->add_flag(name)->description(
          fmt::format("{} ({} = {})", flags[i].help, flags[i].key, flags[i].value_if_set)));
    else a.options.push_back(t->add_option(name, a.values[i], fmt::format("{} ({})", flags[i].help, flags[i].key)));
  }
  t->add_option("--batch", a.batch, "Mini-batch size, 0: the full batch (run.batch)");
  t->add_option("--train-size", a.train_size, "Data sets: training samples (data.limit_train, data.yin_yang_train)");
  t->add_option("--test-size", a.test_size, "Data sets: test samples (data.limit_test, data.yin_yang_test)");
  t->add_flag("--baseline", a.baseline,
              "Asymmetric vector-field EP baseline: dynamics.decay = unit, estimator.kind = endpoint, "
              "estimator.learn_bias = true");
  t->add_flag("--stability", a.stability,
              "Print (and save as stability.json) the stability report of each trained run");
  t->add_option("--config", a.legacy_config,
                "A TOML file of these flags (long names as keys), or an `eqprop train` config; the command line wins")
      ->check(CLI::ExistingFile);
  t->callback([t] {
    if (!a.legacy_config.empty()) apply_legacy_config(a.legacy_config, *t, a);
    // deep train's seeds: --seeds K counts from --seed (default 1); a single run uses --seed.
    if (const std::string given = a.train.seeds; !given.empty()) {
      a.train.seeds = seed_list(given, a.train.seed_opt->count() > 0 ? uint64_t(a.train.seed) : 1);
      if (a.train.seeds != given) a.train.seed_opt->clear();  // the first of the counted seeds
    }
    std::vector<std::string> sets = alias_sets(a);
    if (a.train.seeds.empty() && a.train.seed_opt->count() == 0 && a.train.resume.empty()) sets.push_back("run.seed=1");
    fmt::print(stderr, "note: this is `{}`\n", equivalent_train_line(a.train, sets));
    const auto runs = run_train(a.train, sets);
    if (runs.size() > 1) print_solved_summary(runs);
    if (a.stability)
      for (const auto& dir : runs) {
        const auto s = run_stability(dir, std::nullopt);
        if (runs.size() > 1) fmt::print("{}: ", dir.filename().string());
        print_stability(s, runs.size() > 1);
        write_file_atomic(dir / "stability.json", s.worst.to_json().dump(2) + "\n");
      }
  });

  static std::string target;
  static bool as_json = false;
  static double leak_override = 0;
  auto* s =
      deep->add_subcommand("stability", "Stability certificates of a trained graph network (run dir or checkpoint)");
  s->add_option("run", target, "Run directory or checkpoint.eqck")->required()->check(CLI::ExistingPath);
  s->add_flag("--json", as_json, "Print the worst equilibrium's report as JSON");
  static CLI::Option* leak_opt = add_checked(
      s, "--leak", leak_override, "Analyse with this leak instead of the trained one", config_constraint::at_least(0));
  s->callback([] {
    const auto rep = run_stability(target, leak_opt->count() > 0 ? std::optional<double>(leak_override) : std::nullopt);
    if (as_json) fmt::print("{}\n", rep.worst.to_json().dump(2));
    else print_stability(rep, false);
  });
}

}  // namespace eqprop::cli
