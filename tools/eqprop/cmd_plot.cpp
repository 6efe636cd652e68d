// eqprop plot: learning curves of one or more runs as a PNG, drawn by matplotlib through
// scripts/plot_run.py and Debian's python3 (the C++ tool itself links no plotting code).
#include <spawn.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/core/error.hpp"

extern char** environ;

namespace eqprop::cli {
namespace fs = std::filesystem;

namespace {
// $EQPROP_PLOT_SCRIPT, else the source tree's scripts/plot_run.py, else ../scripts next to the binary.
fs::path plot_script() {
  if (const char* env = std::getenv("EQPROP_PLOT_SCRIPT"); env && *env) return env;
  const fs::path src = fs::path(EQPROP_SOURCE_DIR) / "scripts" / "plot_run.py";
  if (fs::exists(src)) return src;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const fs::path near = exe.parent_path().parent_path() / "scripts" / "plot_run.py";
  if (!ec && fs::exists(near)) return near;
  throw config_error(fmt::format("plot: cannot find plot_run.py (looked at {} and {}); set EQPROP_PLOT_SCRIPT",
                                 src.string(), near.string()));
}

// Runs argv without a shell; returns the exit status.
int run_process(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (int e = posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ); e != 0)
    throw config_error(fmt::format("plot: cannot start {}: {} (set EQPROP_PYTHON to a python3 with matplotlib)",
                                   args[0], std::strerror(e)));
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
}  // namespace

void register_plot(CLI::App& app) {
  static std::vector<std::string> runs;
  static std::string out, title;
  auto* cmd = app.add_subcommand("plot", "Plot learning curves (loss, error, relaxation failures) of runs as a PNG");
  cmd->add_option("runs", runs, "Run directories (several are overlaid)")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("-o,--out", out, "Output PNG (default: RUN/curves.png for one run, ./curves.png for several)");
  cmd->add_option("--title", title, "Figure title");
  cmd->callback([] {
    for (const auto& r : runs)
      if (!fs::exists(fs::path(r) / "metrics.csv"))
        throw config_error(fmt::format("plot: {} has no metrics.csv (is it an eqprop run directory?)", r));
    const char* py = std::getenv("EQPROP_PYTHON");
    std::vector<std::string> args{py && *py ? py : "/usr/bin/python3", plot_script().string()};
    args.insert(args.end(), runs.begin(), runs.end());
    if (!out.empty()) args.insert(args.end(), {"-o", out});
    if (!title.empty()) args.insert(args.end(), {"--title", title});
    if (int rc = run_process(args); rc != 0) {
      fmt::print(stderr, "eqprop: plot: {} exited with status {}\n", args[0], rc);
      set_exit_code(2);
    }
  });
}

}  // namespace eqprop::cli
