// eqprop train --seeds / --grid: runs every combination in sequence, skipping finished runs
// and resuming unfinished ones, then writes the summary and its figure.
#include "cmd_train_sweep.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "study_util.hpp"
#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/run_dir.hpp"
#include "eqprop/train/sweep.hpp"

namespace eqprop::cli {
namespace fs = std::filesystem;

namespace {

// This process's command line, quoted for a shell, without the hidden testing flags and with
// --run-dir DIR added when it was not given: the command that continues the sweep.
std::string continue_command(const fs::path& dir) {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::string> words;
  for (std::size_t start = 0; start < raw.size();) {
    const std::size_t end = raw.find('\0', start);
    words.push_back(raw.substr(start, end == std::string::npos ? std::string::npos : end - start));
    start = end == std::string::npos ? raw.size() : end + 1;
  }
  if (words.empty()) return fmt::format("the same eqprop train command with --run-dir {}", shell_quote(dir.string()));
  std::string cmd;
  bool has_run_dir = false;
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "--kill-after-batches" || w == "--interrupt-after-batches") {
      ++i;  // and its value
      continue;
    }
    if (w.starts_with("--kill-after-batches=") || w.starts_with("--interrupt-after-batches=")) continue;
    has_run_dir = has_run_dir || w == "--run-dir" || w.starts_with("--run-dir=");
    cmd += (cmd.empty() ? "" : " ") + shell_quote(w);
  }
  if (!has_run_dir) cmd += " --run-dir " + shell_quote(dir.string());
  return cmd;
}

}  // namespace

bool run_train_sweep(const train_sweep_args& args, const config& cfg, const train_options& opt,
                     std::vector<fs::path>* finished_runs) {
  if (args.seeds.empty() && args.grids.empty()) return false;
  if (!args.resume.empty())
    throw config_error(fmt::format("--resume {} with --seeds/--grid: a sweep resumes its unfinished runs itself; "
                                   "rerun the sweep command with the same --run-dir",
                                   args.resume));
  if (opt.overwrite)
    throw config_error("--overwrite with --seeds/--grid: a sweep keeps its finished runs; remove a run's directory to "
                       "run it again");
  if (args.print_config)
    throw config_error("--print-config with --seeds/--grid: print one combination's config with --set KEY=VALUE "
                       "--seed N --print-config");
  if (!args.seeds.empty() && cfg.source_of("run.seed") == "--seed")
    throw config_error("--seed with --seeds: give all the seeds with --seeds (e.g. --seeds 0-4)");

  std::vector<sweep_axis> axes;
  for (const auto& g : args.grids) axes.push_back(parse_grid_axis(g));
  const auto seeds = args.seeds.empty() ? std::vector<uint64_t>{} : parse_seed_list(args.seeds);
  fs::path dir = args.run_dir;
  if (dir.empty()) dir = cfg.get<std::string>("run.dir");
  if (dir.empty())
    dir = default_run_dir((args.config_file.empty() ? "default" : fs::path(args.config_file).stem().string()) + "-sweep");
  auto plan = make_sweep_plan(cfg, std::move(axes), seeds, dir);

  long n_finished = 0, n_resume = 0;
  for (const auto& r : plan.runs) {
    n_finished += r.state == sweep_run_state::finished;
    n_resume += r.state == sweep_run_state::resume;
  }
  const long n_runs = long(plan.runs.size());
  fmt::print("sweep {}: {} grid point{} x {} seed{} = {} runs ({} finished, {} to resume, {} new)\n", dir.string(),
             plan.points.size(), plan.points.size() == 1 ? "" : "s", plan.seeds.size(),
             plan.seeds.size() == 1 ? "" : "s", n_runs, n_finished, n_resume, n_runs - n_finished - n_resume);
  create_run_directory(dir);

  long diverged = 0;
  for (long i = 0; i < n_runs; ++i) {
    const auto& r = plan.runs[std::size_t(i)];
    const std::string tag = fmt::format("[{}/{}] {}", i + 1, n_runs, r.dir.string());
    if (r.state == sweep_run_state::finished) {
      fmt::print("{}: finished ({} epochs), skipped\n", tag, r.checkpoint_epoch);
      continue;
    }
    train_options o = opt;
    o.run_dir = r.dir;
    o.resume = r.state == sweep_run_state::resume;
    o.overwrite = r.state == sweep_run_state::restart;
    fmt::print("{}: {}\n", tag,
               o.resume           ? fmt::format("resuming from the checkpoint of epoch {}", r.checkpoint_epoch)
               : o.overwrite ? std::string("no checkpoint (stopped before its first): starting it again")
                                  : std::string("starting"));
    if (o.resume) {
      for (const auto& c : r.changes) fmt::print("resume: {}\n", c);
      if (!r.changes.empty()) write_file_atomic(r.dir / "config.toml", r.cfg.to_toml());
    }
    std::fflush(stdout);
    const auto res = train(r.cfg, o);
    std::fflush(stdout);  // the run's lines before any message on stderr
    if (res.interrupted) {
      fmt::print(stderr,
                 "sweep interrupted in run {} of {} ({}, its checkpoint is written); continue the sweep (finished runs "
                 "are skipped, this one resumes) with: {}\n",
                 i + 1, n_runs, r.dir.string(), continue_command(dir));
      set_exit_code(130);
      return true;
    }
    if (res.diverged) {
      report_error(fmt::format("{}: {}", r.dir.string(), res.message));
      ++diverged;
      continue;
    }
    fmt::print("{}: final test accuracy {:.2f}%, test loss {:.4f}, after {} epochs\n", tag, 100 * res.test_accuracy,
               res.test_loss, res.epochs_done);
  }

  std::vector<std::vector<std::string>> finished(plan.points.size());
  for (const auto& r : plan.runs)
    if (sweep_run_finished(r.dir, r.cfg.get<long>("run.epochs"))) {
      finished[r.point].push_back(fs::relative(r.dir, dir).generic_string());
      if (finished_runs) finished_runs->push_back(r.dir);
    }
  std::vector<sweep_point_summary> rows;
  for (std::size_t p = 0; p < plan.points.size(); ++p)
    rows.push_back(summarize_sweep_point(dir, plan.points[p], finished[p]));
  write_sweep_summary(dir, plan.axes, plan.seeds, rows);
  fmt::print("summary: {} and {}\n", (dir / "summary.csv").string(), (dir / "summary.md").string());
  std::fflush(stdout);
  plot_with_python({"sweep", dir.string(), "-o", (dir / "summary.png").string()}, true);  // prints the PNG's path
  if (diverged > 0) {
    report_error(fmt::format("{} of {} runs diverged (see above); the summary counts only finished runs", diverged,
                             n_runs));
    set_exit_code(4);
  }
  return true;
}

}  // namespace eqprop::cli
