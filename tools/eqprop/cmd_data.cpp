// eqprop data {list, fetch, verify}: download data sets from their canonical addresses
// into the data directory and check them against their published checksums.
#include <unistd.h>

#include <cstdlib>

#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/io/fetch.hpp"

namespace eqprop::cli {

namespace {

struct data_args {
  std::string name, data_dir, base_url;
  bool force = false;
  double timeout_s = 0, idle_timeout_s = 60, connect_timeout_s = 20;
};

std::string state_text(const remote_file& f, const file_check& c) {
  switch (c.state) {
    case file_state::missing:
      return "missing";
    case file_state::verified:
      return fmt::format("ok ({} verified)", checksum_name(f.kind));
    case file_state::unverified:
      return "present, NOT verified (no published checksum)";
    case file_state::mismatch:
      return fmt::format("MISMATCH ({} {}, expected {})", checksum_name(f.kind), c.actual, f.checksum);
  }
  return "";
}

std::string size_text(int64_t n) { return n < 0 ? "size unknown" : fmt::format("{} bytes", n); }

// Prints every file's state; returns the number that are missing or wrong.
int report(const remote_dataset& d, const std::filesystem::path& dir) {
  int bad = 0;
  fmt::print("{} ({} file{})\n", d.name, d.files.size(), d.files.size() == 1 ? "" : "s");
  for (const remote_file& f : d.files) {
    const file_check c = check_file(dir, f);
    bad += c.state == file_state::missing || c.state == file_state::mismatch;
    fmt::print("  {:<44} {:>18}  {}\n", f.path, size_text(f.size), state_text(f, c));
  }
  return bad;
}

}  // namespace

void register_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Download and verify data sets (list, fetch, verify)");
  data->require_subcommand(1);
  static data_args a;
  const auto add_dir = [](CLI::App* c) {
    c->add_option("--data-dir", a.data_dir, "Data directory (default: $EQPROP_DATA, else ./data)");
  };

  auto* list = data->add_subcommand("list", "List downloadable data sets and their state in the data directory");
  add_dir(list);
  list->callback([] {
    const auto dir = resolve_data_dir(a.data_dir);
    fmt::print("data directory: {}\n", dir.string());
    for (const auto& d : remote_datasets()) report(d, dir);
  });

  auto* fetch = data->add_subcommand("fetch", "Download a data set and verify its checksums");
  fetch->add_option("name", a.name, "Data set name (see `eqprop data list`)")->required();
  add_dir(fetch);
  fetch->add_option("--base-url", a.base_url,
                    "Download every file from URL/<file name> instead (a mirror; default: $EQPROP_FETCH_BASE_URL)");
  fetch->add_flag("--force", a.force, "Download again even when a verified copy is present");
  auto* timeout = fetch->add_option("--timeout", a.timeout_s,
                                    "Seconds allowed for each file from one address (default: 600 + 1 per 50 kB of "
                                    "its size; 3600 when the size is unknown)");
  fetch
      ->add_option("--idle-timeout", a.idle_timeout_s,
                   "Give up on an address when less than 1 kB/s arrives over this many seconds")
      ->capture_default_str();
  fetch->add_option("--connect-timeout", a.connect_timeout_s, "Seconds allowed to connect to an address")
      ->capture_default_str();
  fetch->callback([timeout] {
    const remote_dataset& d = find_remote_dataset(a.name);
    const auto dir = resolve_data_dir(a.data_dir);
    fetch_options o;
    o.base_url = a.base_url;
    if (const char* env = std::getenv("EQPROP_FETCH_BASE_URL"); o.base_url.empty() && env) o.base_url = env;
    o.force = a.force;
    o.progress_bar = ::isatty(STDERR_FILENO) != 0;
    if (timeout->count() > 0) o.timeout_s = a.timeout_s;
    o.idle_timeout_s = a.idle_timeout_s;
    o.connect_timeout_s = a.connect_timeout_s;
    o.validate();  // config_error naming the flag, before anything is printed or downloaded
    fmt::print(stderr, "fetching {} into {}\n", d.name, dir.string());
    fetch_files(d.files, dir, o);
    if (!d.note.empty()) fmt::print(stderr, "{}: {}\n", d.name, d.note);
  });

  auto* verify = data->add_subcommand("verify", "Check the local files of a data set against their checksums");
  verify->add_option("name", a.name, "Data set name")->required();
  add_dir(verify);
  verify->callback([] {
    const remote_dataset& d = find_remote_dataset(a.name);
    if (report(d, resolve_data_dir(a.data_dir)) > 0) {
      fmt::print(stderr, "eqprop: {}: files missing or corrupt (run `eqprop data fetch {}`)\n", d.name, d.name);
      set_exit_code(1);
    }
  });
}

}  // namespace eqprop::cli
