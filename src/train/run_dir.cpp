// Run directories: safe creation, the data record, clean stops on SIGINT/SIGTERM.
#include "eqprop/train/run_dir.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <ctime>
#include <mutex>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/io/fetch.hpp"
#include "eqprop/train/metrics_log.hpp"

namespace eqprop {
namespace fs = std::filesystem;

const std::vector<std::string>& run_file_names() {
  static const std::vector<std::string> names{"config.toml",   "build.json",  "data.json",
                                              "metrics.jsonl", "metrics.csv", "checkpoint.eqck"};
  return names;
}

bool is_run_file(const std::string& name) {
  for (const auto& f : run_file_names()) {
    if (name == f) return true;
    const std::string tmp = f + ".tmp.";
    if (name.size() > tmp.size() && name.compare(0, tmp.size(), tmp) == 0 &&
        std::all_of(name.begin() + long(tmp.size()), name.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return true;
  }
  return false;
}

fs::path default_run_dir(const std::string& name) {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&t));
  fs::path p = fs::path("runs") / fmt::format("{}-{}", name, buf);
  for (int k = 2; fs::exists(p); ++k) p = fs::path("runs") / fmt::format("{}-{}-{}", name, buf, k);
  return p;
}

std::string shell_quote(const std::string& s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_./=+-", c);
  });
  if (plain) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

void prepare_new_run_directory(const fs::path& dir, bool overwrite) {
  std::error_code ec;
  if (fs::exists(dir, ec) && fs::is_directory(dir, ec) && !fs::is_empty(dir, ec)) {
    if (!overwrite)
      throw config_error(fmt::format(
          "run directory `{}` already exists and is not empty: continue it with --resume {}, replace it with "
          "--overwrite, or choose another --run-dir",
          dir.string(), dir.string()));
    // A run killed while writing its first file leaves only the temporary of that write.
    const bool only_temporaries = std::all_of(fs::directory_iterator(dir), fs::directory_iterator(), [](const auto& e) {
      const std::string name = e.path().filename().string();
      return e.is_regular_file() && is_run_file(name) && name.find(".tmp.") != std::string::npos;
    });
    if (!fs::is_regular_file(dir / "config.toml") && !only_temporaries)
      throw config_error(
          fmt::format("--overwrite: `{}` does not look like an eqprop run directory (no config.toml); "
                      "refusing to clear it",
                      dir.string()));
    std::vector<fs::path> to_remove;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (!is_run_file(name) || !e.is_regular_file())
        throw config_error(
            fmt::format("--overwrite: `{}` holds `{}`, which is not a file an eqprop run writes; "
                        "refusing to clear the directory",
                        dir.string(), name));
      to_remove.push_back(e.path());
    }
    for (const auto& p : to_remove)
      if (!fs::remove(p, ec) && ec)
        throw error(fmt::format("--overwrite: cannot remove `{}`: {}", p.string(), ec.message()));
  }
  create_run_directory(dir);
}

nlohmann::json data_record::to_json() const {
  nlohmann::json files_j = nlohmann::json::array();
  for (const auto& [path, sha] : files) files_j.push_back({{"path", path}, {"sha256", sha}});
  return {{"dir", dir}, {"files", files_j}};
}

data_record data_record::from_json(const nlohmann::json& j, const std::string& source) {
  try {
    data_record r;
    r.dir = j.at("dir").get<std::string>();
    for (const auto& f : j.at("files"))
      r.files.emplace_back(f.at("path").get<std::string>(), f.at("sha256").get<std::string>());
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw data_error(fmt::format("{}: malformed data record: {}", source, e.what()));
  }
}

data_record record_data(const fs::path& data_dir, const std::vector<fs::path>& files) {
  data_record r;
  const fs::path abs = fs::weakly_canonical(fs::absolute(data_dir));
  r.dir = abs.string();
  for (const auto& f : files) {
    const fs::path fa = fs::weakly_canonical(fs::absolute(f));
    const fs::path rel = fa.lexically_relative(abs);
    r.files.emplace_back(rel.empty() || *rel.begin() == ".." ? fa.string() : rel.string(),
                         file_digest(f, checksum_kind::sha256));
  }
  return r;
}

std::pair<fs::path, data_dir_source> saved_run_data_dir(const std::string& config_dir, const std::string& flag_dir,
                                                        const data_record* recorded) {
  if (!config_dir.empty()) return {fs::path(config_dir), data_dir_source::config};
  if (!flag_dir.empty()) return {fs::path(flag_dir), data_dir_source::flag};
  if (recorded && !recorded->files.empty()) {
    if (!fs::is_directory(recorded->dir))
      throw data_error(fmt::format(
          "the run's data directory `{}` (recorded when it started) no longer exists; pass --data-dir DIR with the "
          "data the run was trained on",
          recorded->dir));
    return {fs::path(recorded->dir), data_dir_source::recorded};
  }
  return {resolve_data_dir(""), data_dir_source::default_dir};
}

void check_data_record(const data_record& recorded, const data_record& now, data_dir_source how) {
  const char* chosen = how == data_dir_source::config     ? "from the config's data.dir"
                       : how == data_dir_source::flag     ? "from --data-dir"
                       : how == data_dir_source::recorded ? "recorded when the run started"
                                                          : "the default ($EQPROP_DATA, then ./data)";
  const std::string fix =
      how == data_dir_source::recorded
          ? "its files changed since; pass --data-dir DIR with the data the run was trained on"
          : "pass --data-dir DIR with the data the run was trained on (recorded: " + recorded.dir + ")";
  if (recorded.files.size() != now.files.size())
    throw data_error(fmt::format("data directory `{}` ({}): the run read {} data files, now {} were read; {}", now.dir,
                                 chosen, recorded.files.size(), now.files.size(), fix));
  for (size_t i = 0; i < now.files.size(); ++i)
    if (recorded.files[i].second != now.files[i].second)
      throw data_error(fmt::format(
          "data directory `{}` ({}): `{}` has SHA-256 {}, but the run was trained on `{}` with SHA-256 {}; {}", now.dir,
          chosen, now.files[i].first, now.files[i].second, recorded.files[i].first, recorded.files[i].second, fix));
}

// ---------------------------------------------------------------------------------------
namespace {
std::atomic<int> g_signals{0};
struct sigaction g_old_int, g_old_term;

extern "C" void on_stop_signal(int) {
  if (g_signals.fetch_add(1) >= 1) {
    static const char msg[] = "\nsecond interrupt: stopping at once, no checkpoint written\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    ::_exit(130);
  }
  static const char msg[] =
      "\ninterrupt: finishing the current batch, then writing a checkpoint "
      "(interrupt again to stop at once)\n";
  [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
}
}  // namespace

void confine_stop_signals() {
  static std::once_flag once;
  std::call_once(once, [] {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    std::thread([stop] {
      pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
      while (true) ::pause();  // handlers run here; the process ends with the other threads
    }).detach();
  });
}

stop_signal_guard::stop_signal_guard() {
  g_signals = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

stop_signal_guard::~stop_signal_guard() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

bool stop_signal_guard::requested() { return g_signals.load() > 0; }

}  // namespace eqprop
