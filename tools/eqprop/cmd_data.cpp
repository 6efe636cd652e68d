// eqprop data {list, fetch, generate, verify}: download data sets from their canonical
// addresses into the data directory (converting those that need it), generate the ones
// that have no download, and check them against their published or reference checksums.
#include <unistd.h>

#include <cstdlib>

#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/io/download.hpp"

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

std::string plural(size_t n, const char* what) { return fmt::format("{} {}{}", n, what, n == 1 ? "" : "s"); }

// Prints every file's state (downloaded, then derived); returns the number that are
// missing or wrong.
int report(const remote_dataset& d, const std::filesystem::path& dir) {
  int bad = 0;
  std::string what = plural(d.files.size(), "file");
  if (d.derive == derive_kind::convert) what += fmt::format(", converted to {}", plural(d.derived.size(), "file"));
  if (d.derive == derive_kind::generate)
    what += fmt::format(", {} generated from it: eqprop data generate {}", plural(d.derived.size(), "file"), d.name);
  fmt::print("{} ({})\n", d.name, what);
  const auto line = [&](const remote_file& f, const char* tag) {
    const file_check c = check_file(dir, f);
    bad += c.state == file_state::missing || c.state == file_state::mismatch;
    fmt::print("  {:<44} {:>18}  {}{}\n", f.path, size_text(f.size), state_text(f, c), tag);
  };
  for (const remote_file& f : d.files) line(f, "");
  for (const remote_file& f : d.derived) line(f, d.derive == derive_kind::generate ? " [generated]" : " [converted]");
  return bad;
}

}  // namespace

void register_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Download, generate and verify data sets (list, fetch, generate, verify)");
  data->require_subcommand(1);
  static data_args a;
  const auto add_dir = [](CLI::App* c) {
    c->add_option("--data-dir", a.data_dir, "Data directory (default: $EQPROP_DATA, else ./data)");
  };
  // The download flags of fetch and generate (generate downloads the file it starts from).
  const auto add_download_flags = [&](CLI::App* c, const char* force_help) {
    add_dir(c);
    c->add_option("--base-url", a.base_url,
                  "Download every file from URL/<file name> instead (a mirror; default: $EQPROP_FETCH_BASE_URL)");
    c->add_flag("--force", a.force, force_help);
    auto* timeout = c->add_option("--timeout", a.timeout_s,
                                  "Seconds allowed for each file from one address (default: 600 + 1 per 50 kB of "
                                  "its size; 3600 when the size is unknown)");
    c->add_option("--idle-timeout", a.idle_timeout_s,
                  "Give up on an address when less than 1 kB/s arrives over this many seconds")
        ->capture_default_str();
    c->add_option("--connect-timeout", a.connect_timeout_s, "Seconds allowed to connect to an address")
        ->capture_default_str();
    return timeout;
  };
  const auto options = [](CLI::Option* timeout) {
    fetch_options o;
    o.base_url = a.base_url;
    if (const char* env = std::getenv("EQPROP_FETCH_BASE_URL"); o.base_url.empty() && env) o.base_url = env;
    o.force = a.force;
    o.progress_bar = ::isatty(STDERR_FILENO) != 0;
    if (timeout->count() > 0) o.timeout_s = a.timeout_s;
    o.idle_timeout_s = a.idle_timeout_s;
    o.connect_timeout_s = a.connect_timeout_s;
    o.validate();  // config_error naming the flag, before anything is printed or downloaded
    return o;
  };

  auto* list = data->add_subcommand("list", "List the data sets to download or generate, and their state");
  add_dir(list);
  list->callback([] {
    const auto dir = resolve_data_dir(a.data_dir);
    fmt::print("data directory: {}\n", dir.string());
    for (const auto& d : remote_datasets()) report(d, dir);
  });

  // fetch and generate run the same steps (fetch_dataset), each for its kind of data set.
  const auto run = [options](CLI::Option* timeout, bool generate) {
    const remote_dataset& d = find_remote_dataset(a.name);
    if (generate != (d.derive == derive_kind::generate))
      throw config_error(
          generate ? fmt::format("{} is downloaded, not generated: run `eqprop data fetch {}`", d.name, d.name)
                   : fmt::format("{} is generated locally, not downloaded: run `eqprop data generate {}` (it "
                                 "downloads what it needs)",
                                 d.name, d.name));
    const auto dir = resolve_data_dir(a.data_dir);
    const fetch_options o = options(timeout);
    fmt::print(stderr, "{} {} {} {}\n", generate ? "generating" : "fetching", d.name, generate ? "in" : "into",
               dir.string());
    fetch_dataset(d, dir, o);
    if (!d.note.empty()) fmt::print(stderr, "{}: {}\n", d.name, d.note);
  };

  auto* fetch = data->add_subcommand(
      "fetch",
      "Download a data set and verify its checksums (mnist1d: the upstream pickle, then converted to .npy; a pickle "
      "already in the data directory is converted without downloading)");
  fetch->add_option("name", a.name, "Data set name (see `eqprop data list`)")->required();
  auto* fetch_timeout = add_download_flags(fetch, "Download (and convert) again even when verified copies are present");
  fetch->callback([run, fetch_timeout] { run(fetch_timeout, false); });

  auto* generate = data->add_subcommand(
      "generate",
      "Generate a data set that has no download (mnist1d_gle: MNIST-1D at 360 steps, seed 42, from the templates in "
      "the MNIST-1D pickle, which is downloaded first when missing)");
  generate->add_option("name", a.name, "Data set name (mnist1d_gle)")->required();
  auto* generate_timeout = add_download_flags(generate, "Generate again even when verified files are present");
  generate->callback([run, generate_timeout] { run(generate_timeout, true); });

  auto* verify = data->add_subcommand(
      "verify", "Check the local files of a data set (downloaded, converted or generated) against their checksums");
  verify->add_option("name", a.name, "Data set name")->required();
  add_dir(verify);
  verify->callback([] {
    const remote_dataset& d = find_remote_dataset(a.name);
    if (report(d, resolve_data_dir(a.data_dir)) > 0) {
      fmt::print(stderr, "eqprop: {}: files missing or corrupt (run `eqprop data {} {}`)\n", d.name,
                 d.derive == derive_kind::generate ? "generate" : "fetch", d.name);
      set_exit_code(1);
    }
  });
}

}  // namespace eqprop::cli
