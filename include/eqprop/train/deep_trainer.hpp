// DEEP training (docs/deep.md): the built-in Boolean tasks, one-hot targets, and the loop
// that trains a graph_network<double> with deep_learning_step over (mini-)batches, evaluating the
// free phase on train and test sets. The dynamics and the learning step are in
// eqprop/learn/deep.hpp.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eqprop/learn/deep.hpp"
#include "eqprop/train/constraints.hpp"

namespace eqprop {

/// A built-in Boolean task: "and" | "or" | "xor" (2 inputs), "not" | "identity" (1 input).
/// Targets are one column per pattern: one output (0/1) or one-hot over 2 outputs.
struct deep_task {
  std::string name;
  Eigen::MatrixXd x, y;
  bool one_hot = false;
};
deep_task make_logic_task(const std::string& name, bool one_hot);

/// One-hot targets (n_classes x n) from labels.
Eigen::MatrixXd one_hot_targets(const std::vector<int32_t>& labels, int n_classes);

struct deep_run_settings {
  graph_spec graph;
  /// "float64" (default) | "float32": the scalar type of the network's parameters and states
  /// (the CLI's --dtype, as network.dtype elsewhere).
  std::string dtype = "float64";
  deep_dynamics dyn;
  deep_learning learn;
  long epochs = 200;
  long batch_size = 0;   ///< 0: full batch (one update per epoch, as published)
  uint64_t seed = 1;
  long eval_every = 1;   ///< evaluate every this many epochs (and at the last)
};

struct deep_run_result {
  double train_error = 1, train_mse = 0, test_error = 1;   ///< free phase, final
  double nudged_error = 1;  ///< nudged phase of the last evaluation (train), the phase learning uses (reciprocal or not)
  double sparsity = 0;
  long epochs_done = 0;
  long solved_epoch = -1;  ///< first evaluated epoch from which the free-phase training error stays 0 (−1: not 0 at the end)
  bool diverged = false;  ///< non-finite states or weights in training, or a non-finite evaluation; the
                          ///< scores above are then those of the last finite evaluation (initial values if none)
  std::string message;
};

/// The constraints on the weights after every update (spec §5) as parameter constraints on
/// the "W" block: L1 shrinkage with threshold learn.l1 (subgradient or proximal, when > 0),
/// then the mask (structural and pruned edges zero).
template <class R>
param_constraints deep_constraints(const graph_network<R>& net, const deep_learning& learn);

/// One learning step on a batch: deep_gradient, then the update by the optimizer's plain SGD
/// with learn.lr (θ −= η g: W + η ΔW) under deep_constraints, then Boltzmann pruning
/// (learn.prune). Nothing changes when a phase gave non-finite states (the result says so).
template <class R>
deep_step_result<R> deep_learning_step(graph_network<R>& net, const deep_dynamics& dyn, const deep_learning& learn,
                                       const matrix<R>& x, const matrix<R>& y, rng_t& rng);

/// "float32" | "float64"; config_error naming the accepted values otherwise.
void deep_check_dtype(const std::string& dtype);

/// Trains a graph network on (x_train, y_train) with DEEP; evaluates the free phase on
/// train and test (test may be empty). on_epoch receives one metrics row per evaluation.
/// Throws config_error for the settings deep_check_settings refuses.
template <class R>
deep_run_result deep_train(graph_network<R>& net, const deep_run_settings& st, const Eigen::MatrixXd& x_train,
                           const Eigen::MatrixXd& y_train, const Eigen::MatrixXd& x_test, const Eigen::MatrixXd& y_test,
                           bool one_hot, const std::function<void(const nlohmann::ordered_json&)>& on_epoch = {});

/// The settings as JSON (for run directories and reports).
nlohmann::ordered_json to_json(const deep_run_settings& st);

}  // namespace eqprop
