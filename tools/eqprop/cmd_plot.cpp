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
  auto* cmd = app.add_subcommand("plot", "Plot learning curves (loss, error, relaxation failures) of runs as a PNG");
  cmd->add_option("runs", runs, "Run directories (several are overlaid)")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("-o,--out", out, "Output PNG (default: RUN/curves.png for one run, ./curves.png for several)");
  cmd->add_option("--title", title, "Figure title");
  cmd->callback([] {
    for (const auto& r : runs)
      if (!std::filesystem::exists(std::filesystem::path(r) / "metrics.csv"))
        throw config_error(fmt::format("plot: {} has no metrics.csv (is it an eqprop run directory?)", r));
    std::vector<std::string> args{"run"};
    args.insert(args.end(), runs.begin(), runs.end());
    if (!out.empty()) args.insert(args.end(), {"-o", out});
    if (!title.empty()) args.insert(args.end(), {"--title", title});
    plot_with_python(args);
  });
}

}  // namespace eqprop::cli
