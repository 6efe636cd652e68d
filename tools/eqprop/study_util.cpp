#include "study_util.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/error.hpp"

extern char** environ;

namespace eqprop::cli {
namespace fs = std::filesystem;

namespace {
fs::path plot_script() {
  if (const char* env = std::getenv("EQPROP_PLOT_SCRIPT"); env && *env) return env;
  const fs::path src = fs::path(EQPROP_SOURCE_DIR) / "scripts" / "eqprop_plot.py";
  if (fs::exists(src)) return src;
  std::error_code ec;
  const fs::path near =
      fs::read_symlink("/proc/self/exe", ec).parent_path().parent_path() / "scripts" / "eqprop_plot.py";
  if (!ec && fs::exists(near)) return near;
  throw config_error(fmt::format("cannot find eqprop_plot.py (looked at {} and {}); set EQPROP_PLOT_SCRIPT",
                                 src.string(), near.string()));
}
}  // namespace

void write_text(const fs::path& path, const std::string& text) { write_file_atomic(path, text); }

bool plot_with_python(const std::vector<std::string>& args, bool optional_figure) {
  // A missing figure is a warning and exit status 2, or (optional_figure) a note only.
  auto failed = [&](const std::string& why) {
    fmt::print(stderr, "eqprop: {}{}; the data files are written\n",
               optional_figure ? "figure skipped: " : "warning: ", why);
    if (!optional_figure) set_exit_code(2);
    return false;
  };
  const char* py = std::getenv("EQPROP_PYTHON");
  std::vector<std::string> all{py && *py ? py : "/usr/bin/python3"};
  try {
    all.push_back(plot_script().string());
  } catch (const config_error& e) {
    if (!optional_figure) throw;
    return failed(e.what());
  }
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  int status = 0;
  posix_spawnattr_t attr;  // the child starts with no signal blocked (see confine_stop_signals)
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  const int e = posix_spawn(&pid, argv[0], nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (e != 0)
    return failed(fmt::format("cannot start {} for the figure: {} (set EQPROP_PYTHON to a python3 with matplotlib)",
                              all[0], std::strerror(e)));
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return failed(fmt::format("the figure was not drawn ({} failed; it needs matplotlib)", all[0]));
  return true;
}

}  // namespace eqprop::cli
