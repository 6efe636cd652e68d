// The flags of `eqprop train` and the command behind them, shared with the kind aliases
// (`gep train`, `deep train`, ...), which add their overrides in front of the user's.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace eqprop::cli {

struct train_args {
  std::string config_file, data_dir, run_dir, resume, estimator, dtype, seeds;
  std::vector<std::string> sets, grids;
  long epochs = 0, kill_after = -1, interrupt_after = -1;
  int64_t seed = 0;
  bool quiet = false, print_config = false, overwrite = false;
  CLI::Option* epochs_opt = nullptr;
  CLI::Option* seed_opt = nullptr;
};

/// The flags of `eqprop train` on cmd, bound to a.
void add_train_flags(CLI::App* cmd, train_args& a);

/// `eqprop train` with a's flags; `alias_sets` ("KEY=VALUE", e.g. an alias's model.kind)
/// come first among the overrides, so the user's --set wins. Returns the directories of
/// the runs that finished (every finished run of a sweep; none when the run was interrupted,
/// diverged or only printed its config); sets the exit code as `eqprop train` does.
std::vector<std::filesystem::path> run_train(const train_args& a, const std::vector<std::string>& alias_sets = {});

/// The `eqprop train` line equivalent to an alias's flags and overrides (for its notice).
std::string equivalent_train_line(const train_args& a, const std::vector<std::string>& alias_sets);

}  // namespace eqprop::cli
