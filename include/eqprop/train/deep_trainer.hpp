// DEEP training pieces (docs/deep.md): the built-in Boolean tasks as target matrices, the
// weight constraints of every update, and one learning step on a batch. Graph networks train
// in the one training loop (eqprop/train/trainer.hpp, model.kind = graph); the dynamics and
// the gradient are in eqprop/learn/deep.hpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace eqprop
