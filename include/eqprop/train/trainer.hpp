// The training loop: any estimator, any dataset, from one resolved experiment config.
// A run lives in a directory: config.toml (resolved), build.json, data.json (the data
// directory and the SHA-256 of every data file read), metrics.jsonl/.csv and
// checkpoint.eqck (written atomically each run.checkpoint_every epochs, every
// run.checkpoint_every_batches batches when set, and when the run is stopped). Everything
// random is a function of (run.seed, epoch) plus, mid-epoch, the generator states the
// checkpoint saves, so --resume reproduces an uninterrupted run exactly.
#pragma once
#include <array>
#include <filesystem>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "eqprop/dynamics/relax_driver.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/model/graph_network.hpp"
#include "eqprop/model/layered_network.hpp"
#include "eqprop/model/vector_field_network.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/config.hpp"
#include "eqprop/train/model_kind.hpp"

namespace eqprop {

struct train_options {
  std::filesystem::path run_dir;      ///< empty: from run.dir or runs/NAME-TIME
  std::string name = "default";       ///< used in the default run directory name
  std::string data_dir;               ///< --data-dir (data.dir in the config wins when set)
  bool resume = false;                ///< continue the run in run_dir from its checkpoint
  std::ostream* out = nullptr;        ///< progress and messages (nullptr: std::cout)
  bool quiet = false;                 ///< no progress display (status or periodic lines); epoch lines still print
  long kill_after_batches = -1;       ///< testing aid: _Exit(137) after this many batches (a simulated kill)
  long interrupt_after_batches = -1;  ///< testing aid: SIGINT to this process after this many batches of it
  bool overwrite = false;             ///< a new run may replace the run in run_dir (prepare_new_run_directory)
  /// While training, SIGINT/SIGTERM stop the run cleanly (stop_signal_guard): the batch
  /// finishes, a checkpoint is written, train_result::interrupted; a second one exits at once.
  bool handle_signals = false;
  /// Called after every epoch with the metrics row (epoch, losses, accuracies, timing...).
  std::function<void(const nlohmann::ordered_json&)> on_epoch;
  /// Called after every training batch with the epoch (1-based), the batches done in it,
  /// the epoch's batches and the running training loss and accuracy of the epoch.
  std::function<void(long epoch, long batch, long n_batches, double loss, double accuracy)> on_batch;
  /// In-memory data used instead of data.name / data.dir (checked and normalised like
  /// loaded data). The run records the SHA-256 of its arrays: resuming it needs the same
  /// arrays again (data_error otherwise), and `eqprop eval` cannot find them.
  std::shared_ptr<const dataset_split> data;
  /// Polled before every batch; returning true stops the run (train_result::interrupted):
  /// a checkpoint of the batches done so far is written (mid-epoch), and message says how to
  /// resume. Used by the Python module for Ctrl-C.
  std::function<bool()> should_stop;
};

struct train_result {
  std::filesystem::path run_dir;
  long epochs_done = 0;
  double test_accuracy = 0, test_top5 = 0, test_loss = 0, train_accuracy = 0;
  /// Non-finite parameters, loss or gradient, too many failed samples, or an evaluation with
  /// non-finite outputs: the run stopped; its checkpoint (if any) is of the last epoch whose
  /// evaluation was finite, and message says which.
  bool diverged = false;
  bool interrupted = false;     ///< should_stop returned true
  bool reached_target = false;  ///< stopped at run.target_accuracy (epochs_done: the epoch that reached it)
  std::string message;          ///< why the run stopped early, if it did
};

train_result train(const config& cfg, const train_options& opt);

/// Whether a run's checkpoint is of a finished run: written at an epoch's end after `epochs`
/// epochs (run.epochs) or when the run reached run.target_accuracy.
bool run_finished(const checkpoint& ck, long epochs);

/// The saved config of a checkpoint written by train(), with its model.kind's schema
/// (config::load_saved_json). data_error for a checkpoint of another trainer (`gle train`,
/// `deep train`: its meta "kind") or one without a config; `file` names it in messages.
config saved_run_config(const checkpoint& ck, const std::filesystem::path& file);

/// Evaluation over a split. A sample whose output scores or cost are NaN/Inf is never
/// correct: it counts as wrong in accuracy and top5 and is counted in n_non_finite; loss is
/// the mean over the finite samples only (NaN when there are none).
struct eval_result {
  double accuracy = 0, top5 = 0, loss = 0;
  long n = 0, n_not_converged = 0, n_non_finite = 0;
  double mean_residual = 0;
};
/// Evaluates the checkpoint of a run directory (or a checkpoint file) on its test split
/// (data_error if the test split is empty or holds a NaN/Inf input). The data directory is
/// the config's data.dir, else data_dir, else the one the run recorded (saved_run_data_dir);
/// the files read must have the recorded checksums (check_data_record).
eval_result evaluate_checkpoint(const std::filesystem::path& run_or_checkpoint, const std::string& data_dir);

/// A run written by train() (either model kind) read back for use outside the trainer: its
/// checkpoint, its saved config (with its kind's schema), and what train() built the network
/// from: the input size, classes and sample shape the checkpoint records (checkpoints
/// written before they were recorded: those of the run's test split, read as
/// evaluate_checkpoint reads it: same data directory choice, same checksum checks). The
/// network is make_network_spec (layered) or make_vf_spec (vector_field) of cfg and these,
/// its trained parameters ck.array("params"), of type network.dtype (saved_network builds
/// it). data_error for a
/// path that is not a run directory or checkpoint, or a checkpoint of another trainer (a
/// meta "kind" other than "layered", as `eqprop gle train` writes).
struct saved_run {
  std::filesystem::path checkpoint_file;
  checkpoint ck;
  config cfg;
  model_kind kind = model_kind::layered;
  int n_input = 0, n_classes = 0;
  std::array<int, 3> input_shape{};  ///< channels, height, width of one sample (data.normalize_* are per channel)
  /// The free phase evaluate_checkpoint relaxes the test split with (beta = 0, from h = 0, in
  /// batches of run.eval_batch): the kind's evaluation settings of cfg. Unused for a graph
  /// run, which relaxes with deep_dynamics_from_config(cfg) from graph_eval_rng's draws.
  relax_options eval_relax;
};
saved_run load_saved_run(const std::filesystem::path& run_or_checkpoint, const std::string& data_dir);

template <class R>
class gle_network;  // eqprop/model/gle_network.hpp

/// The trained network of a run, built as train() builds it from run.cfg, n_input, n_classes
/// and input_shape, holding the checkpoint's parameters (converted to Net's scalar type when
/// the run's network.dtype is the other one) and the state the trainer keeps beside them: a
/// graph network's pruning mask; a gle network's neuron state as training left it (the
/// state its evaluations start from, a copy each: gle_class_scores; a gle Net must have the
/// run's network.dtype). Net is layered_network<R>, vector_field_network<R>,
/// graph_network<R> or gle_network<R> (R float or double) and must be the run's kind
/// (config_error otherwise); data_error for a parameter count or state shape that does not
/// match.
template <class Net>
Net saved_network(const saved_run& run);

}  // namespace eqprop
