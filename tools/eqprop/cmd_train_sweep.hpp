// eqprop train --seeds / --grid: every combination of grid values and seeds as its own run
// (the plan and summary live in eqprop/train/sweep.hpp).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "eqprop/train/config.hpp"
#include "eqprop/train/trainer.hpp"

namespace eqprop::cli {

/// The train command's flags a sweep reads.
struct train_sweep_args {
  std::string seeds;               ///< --seeds
  std::vector<std::string> grids;  ///< --grid, one per axis
  std::string config_file;         ///< the config file's stem names the default sweep directory
  std::string run_dir;             ///< --run-dir: the sweep directory
  std::string resume;              ///< --resume (refused with a sweep)
  bool print_config = false;       ///< --print-config (refused with a sweep)
};

/// Without --seeds and --grid returns false and does nothing. Otherwise runs the sweep and
/// returns true: cfg is the command line's config (file, --set, shortcuts), opt its train
/// options (data directory, quiet, testing aids); each run gets its own directory and
/// resume/overwrite setting. Sets the exit code: 130 when interrupted (after printing how
/// to continue), 4 when a run diverged (the others still run). `finished`, when given,
/// receives the directories of the sweep's finished runs.
bool run_train_sweep(const train_sweep_args& args, const config& cfg, const train_options& opt,
                     std::vector<std::filesystem::path>* finished = nullptr);

}  // namespace eqprop::cli
