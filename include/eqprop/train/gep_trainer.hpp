// Training loop for vector-field networks with generalized EP (docs/generalized-ep.md).
// A run directory holds config.toml (resolved), metrics.jsonl/.csv (one row per epoch,
// epoch 0 = before training, with the symmetry diagnostics) and checkpoint.eqck (the
// parameters after each epoch). No resume.
#pragma once
#include <filesystem>
#include <functional>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/generalized_ep.hpp"
#include "eqprop/train/config.hpp"
#include "eqprop/train/optimizer.hpp"

namespace eqprop {

/// Every key `eqprop gep train` accepts (unknown keys are errors with a suggestion).
const config_schema& gep_schema();

/// The network of a gep config; input_shape (channels, height, width) is needed with network.conv.
vf_spec make_vf_spec(const config& cfg, int n_input, int n_classes, std::array<int, 3> input_shape = {});
/// The config's data set, normalised per channel if data.normalize_* are set (limits >= 0
/// override data.limit_train / data.limit_test).
dataset_split gep_load_data(const config& cfg, const std::string& flag_dir, long limit_train = -1, long limit_test = -1);
gep_options make_gep_options(const config& cfg);

struct gep_train_options {
  std::filesystem::path run_dir;  ///< empty: no files written
  std::string data_dir;           ///< data.dir in the config wins when set
  std::ostream* out = nullptr;    ///< header and epoch lines (nullptr: std::cout)
  bool quiet = false;             ///< no header, epoch or batch lines (the result only)
  std::function<void(const nlohmann::ordered_json&)> on_epoch;
  /// Called after every training batch with the epoch (1-based), the batches done, the
  /// batches per epoch and the running train loss and accuracy; when set it replaces the
  /// run.log_every batch lines (the CLI's progress display).
  std::function<void(long epoch, long batch, long n_batches, double loss, double accuracy)> on_batch;
};

struct gep_train_result {
  long epochs_done = 0;
  double test_accuracy = 0, test_loss = 0, train_accuracy = 0;
  double symmetry_index = 0, angle_deg = 0;
  long n_dropped = 0;               ///< training samples dropped over the run (non-converged phases)
  long n_free_not_converged = 0;    ///< training free phases above estimator.tol over the run
  bool diverged = false;
  std::string message;
};

gep_train_result gep_train(const config& cfg, const gep_train_options& opt);

/// Builds the network of a config (and, from a run directory's checkpoint, its trained parameters).
vector_field_network<double> gep_load_network(const std::filesystem::path& run_dir, config& cfg_out);

}  // namespace eqprop
