// eqprop train --seeds / --grid: runs every combination in sequence, skipping finished runs
// and resuming unfinished ones, then writes the summary and its figure.
#include "cmd_train_sweep.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/run_dir.hpp"
#include "eqprop/train/sweep.hpp"
#include "study_util.hpp"

namespace eqprop::cli {
namespace fs = std::filesystem;

namespace {

// This process's command line, one word per entry (/proc/self/cmdline).
std::vector<std::string> command_words() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::string> words;
  for (std::size_t start = 0; start < raw.size();) {
    const std::size_t end = raw.find('\0', start);
    words.push_back(raw.substr(start, end == std::string::npos ? std::string::npos : end - start));
    start = end == std::string::npos ? raw.size() : end + 1;
  }
  return words;
}

// words without the flags named in `drop` (and their values), with --run-dir DIR added when
// it was not given.
std::vector<std::string> without_flags(const std::vector<std::string>& words, const std::vector<std::string>& drop,
                                       const fs::path& dir) {
  std::vector<std::string> out;
  bool has_run_dir = false;
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    bool dropped = false;
    for (const auto& d : drop) {
      if (w == d) {
        ++i;  // and its value
        dropped = true;
      } else if (w.starts_with(d + "=")) {
        dropped = true;
      }
    }
    if (dropped) continue;
    has_run_dir = has_run_dir || w == "--run-dir" || w.starts_with("--run-dir=");
    out.push_back(w);
  }
  if (!has_run_dir && !out.empty()) {
    out.push_back("--run-dir");
    out.push_back(dir.string());
  }
  return out;
}

// This process's command line, quoted for a shell, without the hidden testing flags and with
// --run-dir DIR added when it was not given: the command that continues the sweep.
std::string continue_command(const fs::path& dir) {
  const auto words =
      without_flags(command_words(), {"--kill-after-batches", "--interrupt-after-batches", "--sweep-run"}, dir);
  if (words.empty()) return fmt::format("the same eqprop train command with --run-dir {}", shell_quote(dir.string()));
  std::string cmd;
  for (const auto& w : words) cmd += (cmd.empty() ? "" : " ") + shell_quote(w);
  return cmd;
}

// Signals the parent of a parallel sweep counts: the first stops new runs, SIGTERM is passed
// on to the running ones (a terminal's Ctrl-C reaches them itself: they share its process
// group).
std::atomic<int> g_sweep_signals{0};
std::atomic<int> g_sweep_last_signal{0};
extern "C" void on_sweep_signal(int sig) {
  g_sweep_last_signal = sig;
  g_sweep_signals.fetch_add(1);
}

// This thread only waits for its runs (it computes nothing), so it takes the two signals
// itself while the guard lives: the kernel prefers the thread a signal was sent to, here the
// main one, and its waitpid then returns on them.
struct sweep_signal_guard {
  struct sigaction old_int {
  }, old_term{};
  sigset_t old_mask{};
  sweep_signal_guard() {
    g_sweep_signals = 0;
    struct sigaction sa {};
    sa.sa_handler = on_sweep_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: waitpid returns on a signal
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &stop, &old_mask);
  }
  ~sweep_signal_guard() {
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  }
};

// Starts `words` (this program) with stdout and stderr to log; returns its pid.
pid_t spawn_logged(const std::vector<std::string>& words, const fs::path& log) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) throw error(fmt::format("cannot start a sweep run: fork failed: {}", std::strerror(errno)));
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) ::_exit(71);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::close(fd);
    sigset_t none;  // the child sets up its own signals (confine_stop_signals)
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> argv;
    for (const auto& w : words) argv.push_back(const_cast<char*>(w.c_str()));
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  return pid;
}

}  // namespace

bool run_train_sweep(const train_sweep_args& args, const config& cfg, const train_options& opt,
                     std::vector<fs::path>* finished_runs) {
  if (args.seeds.empty() && args.grids.empty()) return false;
  if (!args.resume.empty())
    throw config_error(
        fmt::format("--resume {} with --seeds/--grid: a sweep resumes its unfinished runs itself; "
                    "rerun the sweep command with the same --run-dir",
                    args.resume));
  if (opt.overwrite)
    throw config_error(
        "--overwrite with --seeds/--grid: a sweep keeps its finished runs; remove a run's directory to "
        "run it again");
  if (args.print_config)
    throw config_error(
        "--print-config with --seeds/--grid: print one combination's config with --set KEY=VALUE "
        "--seed N --print-config");
  if (!args.seeds.empty() && cfg.source_of("run.seed") == "--seed")
    throw config_error("--seed with --seeds: give all the seeds with --seeds (e.g. --seeds 0-4)");

  std::vector<sweep_axis> axes;
  for (const auto& g : args.grids) axes.push_back(parse_grid_axis(g));
  const auto seeds = args.seeds.empty() ? std::vector<uint64_t>{} : parse_seed_list(args.seeds);
  fs::path dir = args.run_dir;
  if (dir.empty()) dir = cfg.get<std::string>("run.dir");
  if (dir.empty())
    dir =
        default_run_dir((args.config_file.empty() ? "default" : fs::path(args.config_file).stem().string()) + "-sweep");
  auto plan = make_sweep_plan(cfg, std::move(axes), seeds, dir);

  const long n_runs = long(plan.runs.size());
  // One run of the plan, in this process: what it prints, and how it ended.
  enum class outcome { done, skipped, diverged, interrupted };
  auto run_one = [&](long i) {
    const auto& r = plan.runs[std::size_t(i)];
    const std::string tag = fmt::format("[{}/{}] {}", i + 1, n_runs, r.dir.string());
    if (r.state == sweep_run_state::finished) {
      fmt::print("{}: finished ({} epochs), skipped\n", tag, r.checkpoint_epoch);
      return outcome::skipped;
    }
    train_options o = opt;
    o.run_dir = r.dir;
    o.resume = r.state == sweep_run_state::resume;
    o.overwrite = r.state == sweep_run_state::restart;
    fmt::print("{}: {}\n", tag,
               o.resume      ? fmt::format("resuming from the checkpoint of epoch {}", r.checkpoint_epoch)
               : o.overwrite ? std::string("no checkpoint (stopped before its first): starting it again")
                             : std::string("starting"));
    if (o.resume) {
      for (const auto& c : r.changes) fmt::print("resume: {}\n", c);
      if (!r.changes.empty()) write_file_atomic(r.dir / "config.toml", r.cfg.to_toml());
    }
    std::fflush(stdout);
    const auto res = train(r.cfg, o);
    std::fflush(stdout);  // the run's lines before any message on stderr
    if (res.interrupted) return outcome::interrupted;
    if (res.diverged) {
      report_error(fmt::format("{}: {}", r.dir.string(), res.message));
      return outcome::diverged;
    }
    fmt::print("{}: final test accuracy {:.2f}%, test loss {:.4f}, after {} epoch{}\n", tag, 100 * res.test_accuracy,
               res.test_loss, res.epochs_done, res.epochs_done == 1 ? "" : "s");
    return outcome::done;
  };
  if (args.only_run >= 0) {  // one run of a parallel sweep, started by the sweep's own process
    if (args.only_run >= n_runs)
      throw config_error(fmt::format("--sweep-run {}: the sweep has {} runs", args.only_run, n_runs));
    const auto how = run_one(args.only_run);
    if (how == outcome::interrupted) set_exit_code(130);
    if (how == outcome::diverged) set_exit_code(4);
    return true;
  }

  long n_finished = 0, n_resume = 0;
  for (const auto& r : plan.runs) {
    n_finished += r.state == sweep_run_state::finished;
    n_resume += r.state == sweep_run_state::resume;
  }
  fmt::print("sweep {}: {} grid point{} x {} seed{} = {} runs ({} finished, {} to resume, {} new){}\n", dir.string(),
             plan.points.size(), plan.points.size() == 1 ? "" : "s", plan.seeds.size(),
             plan.seeds.size() == 1 ? "" : "s", n_runs, n_finished, n_resume, n_runs - n_finished - n_resume,
             args.jobs > 1 ? fmt::format(", {} at a time", args.jobs) : std::string());
  create_run_directory(dir);

  long diverged = 0;
  bool interrupted = false;
  if (args.jobs <= 1) {
    for (long i = 0; i < n_runs && !interrupted; ++i) {
      const auto how = run_one(i);
      diverged += how == outcome::diverged;
      if (how == outcome::interrupted) {
        fmt::print(stderr,
                   "sweep interrupted in run {} of {} ({}, its checkpoint is written); continue the sweep (finished "
                   "runs are skipped, this one resumes) with: {}\n",
                   i + 1, n_runs, plan.runs[std::size_t(i)].dir.string(), continue_command(dir));
        interrupted = true;
      }
    }
  } else {
    // K runs at a time, each a process of this program running one entry of the same plan
    // (--sweep-run I), writing its lines to <run dir>.log.
    const auto child_words = [&](long i) {
      auto w = without_flags(command_words(), {"--jobs", "--sweep-run"}, dir);
      w.push_back("--sweep-run");
      w.push_back(std::to_string(i));
      return w;
    };
    sweep_signal_guard guard;
    std::map<pid_t, long> running;
    long next = 0, failed = 0;
    std::vector<long> stopped;
    auto tag = [&](long i) { return fmt::format("[{}/{}] {}", i + 1, n_runs, plan.runs[std::size_t(i)].dir.string()); };
    while (true) {
      while (g_sweep_signals == 0 && next < n_runs && long(running.size()) < args.jobs) {
        const long i = next++;
        const auto& r = plan.runs[std::size_t(i)];
        if (r.state == sweep_run_state::finished) {
          fmt::print("{}: finished ({} epochs), skipped\n", tag(i), r.checkpoint_epoch);
          continue;
        }
        create_run_directory(r.dir.parent_path());
        const fs::path log = r.dir.string() + ".log";
        running[spawn_logged(child_words(i), log)] = i;
        fmt::print("{}: {} (its lines: {})\n", tag(i), r.state == sweep_run_state::resume ? "resuming" : "starting",
                   log.string());
        std::fflush(stdout);
      }
      if (running.empty()) break;
      int st = 0;
      const pid_t pid = ::waitpid(-1, &st, 0);
      if (pid < 0) {
        if (errno != EINTR) throw error(fmt::format("sweep: waiting for its runs failed: {}", std::strerror(errno)));
        if (g_sweep_last_signal.exchange(0) == SIGTERM)
          for (const auto& [p, i] : running) ::kill(p, SIGTERM);
        continue;
      }
      const auto it = running.find(pid);
      if (it == running.end()) continue;
      const long i = it->second;
      running.erase(it);
      const int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      const auto& r = plan.runs[std::size_t(i)];
      if (code == 0) {
        const auto rows = read_metrics_rows(r.dir / "metrics.jsonl");
        const auto last =
            std::find_if(rows.rbegin(), rows.rend(), [](const auto& row) { return row.contains("test_acc"); });
        if (last != rows.rend())
          fmt::print("{}: final test accuracy {:.2f}%, test loss {:.4f}, after {} epoch{}\n", tag(i),
                     100 * (*last)["test_acc"].template get<double>(), (*last)["test_loss"].template get<double>(),
                     (*last)["epoch"].template get<long>(), (*last)["epoch"].template get<long>() == 1 ? "" : "s");
      } else if (code == 4) {
        report_error(fmt::format("{}: diverged (see {}.log)", r.dir.string(), r.dir.string()));
        ++diverged;
      } else if (code == 130) {
        stopped.push_back(i);
      } else {
        report_error(fmt::format("{}: failed with exit status {} (see {}.log)", r.dir.string(), code, r.dir.string()));
        ++failed;
      }
      std::fflush(stdout);
    }
    if (g_sweep_signals > 0 || !stopped.empty()) {
      fmt::print(
          stderr,
          "sweep interrupted ({} running run{} stopped with a checkpoint); continue the sweep (finished runs are "
          "skipped, stopped ones resume) with: {}\n",
          stopped.size(), stopped.size() == 1 ? "" : "s", continue_command(dir));
      interrupted = true;
    }
    if (failed > 0) set_exit_code(2);
  }
  if (interrupted) {
    set_exit_code(130);
    return true;
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
    report_error(
        fmt::format("{} of {} runs diverged (see above); the summary counts only finished runs", diverged, n_runs));
    set_exit_code(4);
  }
  return true;
}

}  // namespace eqprop::cli
