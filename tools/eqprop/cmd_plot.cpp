// eqprop plot: learning curves of one or more runs as a PNG (matplotlib, through
// scripts/eqprop_plot.py; the C++ tool links no plotting code).
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/core/error.hpp"
#include "study_util.hpp"

namespace eqprop::cli {

void register_plot(CLI::App& app) {
  static std::vector<std::string> runs;
  static std::string out, title;
  auto* cmd = app.add_subcommand("plot", "Plot learning curves of runs, or GLE traces, as a PNG");
  cmd->add_option("runs", runs,
                  "Run directories (several are overlaid; runs named seed-<S> in one directory are drawn as one "
                  "mean +- std band), a sweep directory of `eqprop train --seeds/--grid` (holding summary.csv), or "
                  "GLE trace files written by `eqprop gle lagline --out` "
                  "(lagline_*.csv) or `eqprop gle lagnet --out` (lagnet_traces.csv)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("-o,--out", out,
                  "Output PNG (default: RUN/curves.png for one run, SWEEP/summary.png for a sweep, ./curves.png for "
                  "several)");
  cmd->add_option("--title", title, "Figure title");
  cmd->callback([] {
    // Draws with the script's `kind` and its arguments, adding -o and --title when given.
    auto draw = [](std::vector<std::string> args) {
      if (!out.empty()) args.insert(args.end(), {"-o", out});
      if (!title.empty()) args.insert(args.end(), {"--title", title});
      plot_with_python(args);
    };
    const auto name = std::filesystem::path(runs.front()).filename().string();
    if (std::filesystem::is_regular_file(runs.front()) && (name.starts_with("lagline") || name.starts_with("lagnet"))) {
      std::vector<std::string> args{name.starts_with("lagline") ? "gle-lagline" : "gle-lagnet"};
      args.insert(args.end(), runs.begin(), name.starts_with("lagline") ? runs.end() : runs.begin() + 1);
      draw(args);
      return;
    }
    if (runs.size() == 1 && std::filesystem::exists(std::filesystem::path(runs.front()) / "summary.csv")) {
      draw({"sweep", runs.front()});  // a sweep of `eqprop train --seeds/--grid`: bands per grid point
      return;
    }
    for (const auto& r : runs)
      if (!std::filesystem::exists(std::filesystem::path(r) / "metrics.csv"))
        throw config_error(fmt::format("plot: {} has no metrics.csv (is it an eqprop run directory?)", r));
    std::vector<std::string> args{"run"};
    args.insert(args.end(), runs.begin(), runs.end());
    draw(args);
  });
}

}  // namespace eqprop::cli
