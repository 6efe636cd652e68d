// The graph kind of training config (docs/deep.md): DEEP networks on directed graphs
// trained by `eqprop train` (model.kind = "graph"). The schema and the builders that turn a
// resolved config into the network, its dynamics and its learning rule.
#pragma once
#include <cstdint>

#include "eqprop/learn/deep.hpp"
#include "eqprop/train/config.hpp"

namespace eqprop {

/// The schema of model.kind = graph (training_schema(model_kind::graph)).
const config_schema& graph_schema();

/// The graph of a graph config: n_input data inputs, n_output output neurons
/// (graph_outputs), network.hidden / topology / init_std.
graph_spec graph_spec_from_config(const config& cfg, int n_input, int n_output);
/// Output neurons for n_classes classes: n_classes with network.one_hot, else 1 (two
/// classes only; config_error otherwise).
int graph_outputs(const config& cfg, int n_classes);
/// The generator train() draws a graph run's initial weights from (run.seed = run_seed).
rng_t graph_init_rng(uint64_t run_seed);
/// The generator of the initial states of a graph run's evaluation: every evaluation of a
/// split restarts it, so a split is scored with the same draws each time.
rng_t graph_eval_rng(uint64_t run_seed);
/// dynamics.* and relax.* (dt, leak, decay, presyn, clip; T1, T2, tol, freeze).
deep_dynamics deep_dynamics_from_config(const config& cfg);
/// estimator.* (the rule and its betas), optimizer.lr, constraints.* and prune.*; config_error
/// for the combinations deep_check_settings refuses.
deep_learning deep_learning_from_config(const config& cfg);

}  // namespace eqprop
