// eqprop train / eval: run an experiment config (or the built-in Yin-Yang default).
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cmd_train_sweep.hpp"
#include "commands.hpp"
#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/model_kind.hpp"
#include "eqprop/train/run_dir.hpp"
#include "eqprop/train/trainer.hpp"
#include "flag_checks.hpp"
#include "train_command.hpp"
#include "trainer_flags.hpp"

namespace eqprop::cli {
namespace fs = std::filesystem;

void add_train_flags(CLI::App* cmd, train_args& a) {
  cmd->add_option("config", a.config_file, "Training config (TOML); see configs/")->check(CLI::ExistingFile);
  cmd->add_option("--set,-s", a.sets, "Override a config key, e.g. --set optimizer.lr=0.05 (repeatable)");
  cmd->add_option("--estimator", a.estimator, "Shortcut for estimator.kind (its values depend on model.kind)");
  a.epochs_opt = add_checked(cmd, "--epochs", a.epochs, trainer_help::epochs("run.epochs"),
                             config_constraint::closed(1, config_limits::epochs));
  a.seed_opt = add_checked(cmd, "--seed", a.seed, trainer_help::seed("run.seed"), config_constraint::at_least(0));
  cmd->add_option("--seeds", a.seeds,
                  "Sweep: one run per seed, e.g. 0-4, 3 or 0,2,5 (each in DIR/[POINT/]seed-S; see docs/runs.md)");
  cmd->add_option("--grid", a.grids,
                  "Sweep: KEY=V1,V2,... runs every value (repeatable: every combination), each seed of --seeds");
  a.jobs_opt = add_checked(cmd, "--jobs,-j", a.jobs,
                           "Sweep: run this many runs at a time, each in its own process writing <run dir>.log "
                           "(each keeps its config's threads: keep jobs x threads <= cores)",
                           config_constraint::closed(1, 256));
  add_checked(cmd, "--sweep-run", a.sweep_run, "Internal: run one entry of the sweep's plan",
              config_constraint::at_least(0))
      ->group("");
  cmd->add_option("--dtype", a.dtype, "Shortcut for network.dtype (float32 | float64)");
  cmd->add_option("--data-dir", a.data_dir, trainer_help::data_dir);
  cmd->add_option("--run-dir", a.run_dir, "Run directory (default: runs/<config>-<time>)");
  cmd->add_option("--resume", a.resume,
                  "Continue the run in this directory from its last checkpoint; a config file, --set and the shortcuts "
                  "change its config (changing model.kind, the data, network.*, optimizer.kind or run.seed is refused)")
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--overwrite", a.overwrite,
                "Replace the run in --run-dir if it exists (only a directory holding nothing but a run's files)");
  cmd->add_flag("--quiet,-q", a.quiet, trainer_help::quiet);
  cmd->add_flag("--print-config", a.print_config, trainer_help::print_config);
  add_checked(cmd, "--kill-after-batches", a.kill_after,
              "Testing aid: exit abruptly (status 137) after this many batches", config_constraint::at_least(1))
      ->group("");
  add_checked(cmd, "--interrupt-after-batches", a.interrupt_after,
              "Testing aid: raise SIGINT in the process after this many batches", config_constraint::at_least(1))
      ->group("");
}

std::vector<fs::path> run_train(const train_args& a, const std::vector<std::string>& alias_sets) {
  // The command line's settings: a config file, then --set, then the shortcuts.
  std::vector<std::string> sets = alias_sets;
  sets.insert(sets.end(), a.sets.begin(), a.sets.end());
  std::vector<fs::path> files;
  if (!a.config_file.empty()) files.push_back(a.config_file);
  train_options opt;
  opt.data_dir = a.data_dir;
  opt.quiet = a.quiet;
  opt.kill_after_batches = a.kill_after;
  opt.interrupt_after_batches = a.interrupt_after;
  opt.overwrite = a.overwrite;
  opt.handle_signals = true;
  auto apply_shortcuts = [&](config& cfg) {
    if (!a.estimator.empty()) cfg.set("estimator.kind", a.estimator, "--estimator");
    if (a.epochs_opt->count() > 0) cfg.set("run.epochs", int64_t(a.epochs), "--epochs");
    if (a.seed_opt->count() > 0) cfg.set("run.seed", a.seed, "--seed");
    if (!a.dtype.empty()) cfg.set("network.dtype", a.dtype, "--dtype");
  };
  std::optional<config> chosen;
  if (!a.seeds.empty() || !a.grids.empty()) {
    config cfg = load_training_config(files, sets);
    apply_shortcuts(cfg);
    std::vector<fs::path> finished;
    run_train_sweep({a.seeds, a.grids, a.config_file, a.run_dir, a.resume, a.print_config, a.jobs, a.sweep_run}, cfg,
                    opt, &finished);  // refuses --resume
    return finished;
  }
  if (a.jobs_opt->count() > 0)
    throw config_error(
        fmt::format("--jobs {} without --seeds or --grid: --jobs runs the runs of a sweep at a time", a.jobs));
  if (!a.resume.empty()) {
    if (!a.run_dir.empty())
      throw config_error(
          fmt::format("--run-dir {} with --resume {}: a resumed run stays in its own directory", a.run_dir, a.resume));
    if (a.overwrite)
      throw config_error(fmt::format("--overwrite with --resume {}: a resumed run keeps its work", a.resume));
    // The run's saved config, with the command line's changes on top (keys that would not
    // fit the checkpoint are refused); the changes go to the log and to config.toml.
    const fs::path ck_file = fs::path(a.resume) / "checkpoint.eqck";
    config run_cfg = saved_run_config(load_checkpoint(ck_file), ck_file);
    // The command line's changes, read with the run's schema (model.kind cannot change).
    config requested(run_cfg.schema());
    for (const auto& f : files) requested.load_toml_file(f);
    for (const auto& s : sets) requested.set_override(s);
    apply_shortcuts(requested);
    const auto changes = run_cfg.apply_resume_changes(requested);
    chosen = run_cfg;
    opt.run_dir = a.resume;
    opt.resume = true;
    if (!a.print_config) {
      for (const auto& c : changes) fmt::print("resume: {}\n", c);
      if (!changes.empty()) write_file_atomic(opt.run_dir / "config.toml", chosen->to_toml());
    }
  } else {
    chosen = load_training_config(files, sets);
    apply_shortcuts(*chosen);
    if (!a.config_file.empty()) opt.name = fs::path(a.config_file).stem().string();
    opt.run_dir = a.run_dir;
  }
  const config& cfg = *chosen;
  if (a.print_config) {
    fmt::print("{}", cfg.to_toml());
    return {};
  }
  const auto r = train(cfg, opt);
  if (r.interrupted) {
    fmt::print(stderr, "{}\n", r.message);
    set_exit_code(130);
    return {};
  }
  if (r.diverged) {
    report_error(r.message);
    set_exit_code(4);
    return {};
  }
  fmt::print("final test accuracy: {:.2f}% (top-5 {:.2f}%), test loss {:.4f}, after {} epoch{}; run saved in {}\n",
             100 * r.test_accuracy, 100 * r.test_top5, r.test_loss, r.epochs_done, r.epochs_done == 1 ? "" : "s",
             r.run_dir.string());
  return {r.run_dir};
}

std::string equivalent_train_line(const train_args& a, const std::vector<std::string>& alias_sets) {
  std::string line = "eqprop train";
  auto add = [&](const std::string& flag, const std::string& v) { line += " " + flag + " " + shell_quote(v); };
  if (!a.config_file.empty()) line += " " + shell_quote(a.config_file);
  for (const auto& s : alias_sets) add("--set", s);
  for (const auto& s : a.sets) add("--set", s);
  if (!a.estimator.empty()) add("--estimator", a.estimator);
  if (a.epochs_opt->count() > 0) add("--epochs", std::to_string(a.epochs));
  if (a.seed_opt->count() > 0) add("--seed", std::to_string(a.seed));
  if (!a.dtype.empty()) add("--dtype", a.dtype);
  if (!a.data_dir.empty()) add("--data-dir", a.data_dir);
  if (!a.run_dir.empty()) add("--run-dir", a.run_dir);
  if (!a.seeds.empty()) add("--seeds", a.seeds);
  if (a.jobs_opt->count() > 0) add("--jobs", std::to_string(a.jobs));
  for (const auto& g : a.grids) add("--grid", g);
  if (!a.resume.empty()) add("--resume", a.resume);
  if (a.overwrite) line += " --overwrite";
  if (a.quiet) line += " -q";
  if (a.print_config) line += " --print-config";
  return line;
}

void add_train_alias(CLI::App* parent, const std::string& description, model_kind kind) {
  auto a = std::make_shared<train_args>();
  auto* cmd = parent->add_subcommand("train", description);
  add_train_flags(cmd, *a);
  cmd->callback([a, kind] {
    // A resumed run keeps its saved model.kind.
    std::vector<std::string> kind_set;
    if (a->resume.empty()) kind_set.push_back(fmt::format("model.kind={}", to_string(kind)));
    fmt::print(stderr, "note: this is `{}`\n", equivalent_train_line(*a, kind_set));
    run_train(*a, kind_set);
  });
}

void register_train(CLI::App& app) {
  static train_args a;
  auto* cmd = app.add_subcommand(
      "train", "Train a network from a config file, any model.kind (default: holomorphic EP on built-in Yin-Yang)");
  add_train_flags(cmd, a);
  cmd->callback([] { run_train(a); });

  static std::string eval_target, eval_data_dir;
  auto* ev = app.add_subcommand("eval", "Evaluate a saved run or checkpoint on its test split");
  ev->add_option("run", eval_target, "Run directory or checkpoint file")->required()->check(CLI::ExistingPath);
  ev->add_option("--data-dir", eval_data_dir, "Data directory (default: $EQPROP_DATA, then ./data)");
  ev->callback([] {
    const auto r = evaluate_checkpoint(eval_target, eval_data_dir);
    // Samples with non-finite outputs count as wrong; the loss is over the finite ones.
    fmt::print(
        "test accuracy {:.2f}% (top-5 {:.2f}%), loss {}, {} samples, {} non-finite (counted wrong), mean free "
        "residual {:.2e}, {} not converged\n",
        100 * r.accuracy, 100 * r.top5, std::isfinite(r.loss) ? fmt::format("{:.4f}", r.loss) : std::string("n/a"), r.n,
        r.n_non_finite, r.mean_residual, r.n_not_converged);
    if (r.n_non_finite > 0) {
      report_error(fmt::format("{} of {} test samples gave non-finite outputs: the checkpoint is not usable",
                               r.n_non_finite, r.n));
      set_exit_code(4);
    }
  });
}

}  // namespace eqprop::cli
