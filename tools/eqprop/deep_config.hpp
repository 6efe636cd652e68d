// DEEP TOML configs (configs/deep_*.toml) read outside `eqprop deep train` (cmd_deep.cpp).
#pragma once
#include <string>

#include "eqprop/train/deep_trainer.hpp"

namespace eqprop::cli {

/// What a DEEP config file sets, read exactly as `eqprop deep train --config file` reads it
/// (keys are the long option names; options the file leaves out keep their defaults).
struct deep_config {
  std::string task;             ///< the task option: a logic gate or a dataset name
  long train_size = 0;          ///< the train-size option (datasets)
  deep_run_settings settings;   ///< graph.n_input and graph.n_output are 0: set them from the data
};
/// Throws config_error naming the file when it does not exist (a relative path is read from
/// the working directory), when a key is not a `deep train` option or a value is refused, and
/// for the settings deep_check_settings refuses.
deep_config read_deep_config(const std::string& file);

}  // namespace eqprop::cli
