#include "eqprop/train/graph_experiment.hpp"

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/train/experiment.hpp"

namespace eqprop {

const config_schema& graph_schema() {
  static const config_schema schema = [] {
    using iv = std::vector<int64_t>;
    using cc = config_constraint;
    namespace lim = config_limits;
    const cc steps = cc::closed(1, lim::steps);
    config_schema s;
    add_model_kind_key(s, model_kind::graph);
    add_data_keys(s, "xor");
    s.add("network.hidden", iv{2}, cc::closed(1, lim::layer_size).sizes(0, lim::layers),
          "hidden neurons (complete: their sum; layered: one layer each)");
    s.add("network.topology", std::string("complete"), cc::one_of({"complete", "layered"}),
          "complete (every edge between distinct neurons, none into the inputs) | layered (input -> hidden layers -> "
          "output)");
    s.add("network.init_std", 0.05, cc::greater_than(0), "weights ~ N(0, init_std^2)");
    s.add("network.one_hot", false,
          "one output neuron per class with one-hot targets (else one output with 0/1 targets, two-class data only)");
    s.add("network.dtype", std::string("float64"), cc::one_of({"float32", "float64"}),
          "scalar type of parameters and states");
    s.add("dynamics.dt", 0.05, cc::greater_than(0).at_most(1), "Euler step of ds/dt");
    s.add("dynamics.leak", 0.0, cc::at_least(0), "leak gamma (0: none)");
    s.add("dynamics.decay", std::string("row_sum"), cc::one_of({"row_sum", "abs_row_sum", "unit"}),
          "the decay term of the dynamics");
    s.add("dynamics.presyn", std::string("identity"), cc::one_of({"identity", "hep_sigmoid", "tanh"}),
          "presynaptic activation rho");
    s.add("dynamics.clip", true, "project the free states onto [0, 1] after every step (published)");
    s.add("relax.free_steps", int64_t(1000), steps, "T1");
    s.add("relax.nudged_steps", int64_t(1000), steps, "T2");
    s.add("relax.tol", 0.0, cc::at_least(0), "stop a phase once max_b |ds_b|^2 <= tol (0: never)");
    s.add("relax.freeze_converged", false, "with tol > 0: samples below tol stop stepping (free phase)");
    s.add("estimator.kind", std::string("trajectory"), cc::one_of({"trajectory", "endpoint", "vector_field"}),
          "the learning rule: trajectory (published) | endpoint | vector_field");
    s.add("estimator.beta", 1.0, cc::greater_than(0), "nudging strength beta");
    s.add("estimator.beta0", 0.0, cc::any(), "trajectory rule: beta0");
    s.add("estimator.beta1", 1.0, cc::any(), "trajectory rule: beta1");
    s.add("estimator.sign", false, "Manhattan update: lr sign(dW)");
    s.add("estimator.learn_bias", false, "the vector_field rule also learns the biases");
    s.add("estimator.reciprocal_nudge", false, "vector_field rule without clipping: nudge with J^T - J");
    s.add("constraints.l1", 0.0, cc::at_least(0), "L1 shrinkage of the weights after every update (0: off)");
    s.add("constraints.l1_mode", std::string("subgradient"), cc::one_of({"subgradient", "soft_threshold"}),
          "subgradient | soft_threshold (proximal)");
    s.add("prune.enabled", false, "Boltzmann pruning after every update");
    s.add("prune.tol", 0.01, cc::at_least(0), "weights with |W| above this are never pruned");
    s.add("prune.temperature", 5.0, cc::greater_than(0), "softmax temperature");
    s.add("prune.persistent", false, "pruned edges stay pruned");
    s.add("prune.exclude_structural", false, "structural zeros stay out of the softmax denominator");
    add_optimizer_keys(s, {.lr = 200.0, .momentum = 0.0});
    add_run_keys(s, 200, 4, 1000);
    s.fixed_on_resume(common_fixed_on_resume());
    return s;
  }();
  return schema;
}

int graph_outputs(const config& cfg, int n_classes) {
  if (cfg.get<bool>("network.one_hot")) return n_classes;
  if (n_classes != 2)
    throw config_error(
        fmt::format("the data has {} classes: a graph network needs network.one_hot = true for more than "
                    "two (one output neuron per class)",
                    n_classes));
  return 1;
}

graph_spec graph_spec_from_config(const config& cfg, int n_input, int n_output) {
  graph_spec g;
  g.n_input = n_input;
  g.n_output = n_output;
  g.hidden = cfg.get<std::vector<int>>("network.hidden");
  g.topology = parse_graph_topology(cfg.get<std::string>("network.topology"));
  g.init_std = cfg.get<double>("network.init_std");
  return g;
}

rng_t graph_init_rng(uint64_t run_seed) { return rng_t(run_seed * 0x9E3779B97F4A7C15ULL + 17); }

rng_t graph_eval_rng(uint64_t run_seed) { return rng_t(run_seed * 0x2545F4914F6CDD1DULL + 7919); }

deep_dynamics deep_dynamics_from_config(const config& cfg) {
  deep_dynamics d;
  d.dt = cfg.get<double>("dynamics.dt");
  d.leak = cfg.get<double>("dynamics.leak");
  d.decay = parse_deep_decay(cfg.get<std::string>("dynamics.decay"));
  d.presyn = parse_deep_presyn(cfg.get<std::string>("dynamics.presyn"));
  d.clip = cfg.get<bool>("dynamics.clip");
  d.free_steps = cfg.get<long>("relax.free_steps");
  d.nudged_steps = cfg.get<long>("relax.nudged_steps");
  d.stop_tol = cfg.get<double>("relax.tol");
  d.freeze = cfg.get<bool>("relax.freeze_converged");
  return d;
}

deep_learning deep_learning_from_config(const config& cfg) {
  deep_learning l;
  l.rule = parse_deep_rule(cfg.get<std::string>("estimator.kind"));
  l.beta = cfg.get<double>("estimator.beta");
  l.beta0 = cfg.get<double>("estimator.beta0");
  l.beta1 = cfg.get<double>("estimator.beta1");
  l.sign = cfg.get<bool>("estimator.sign");
  l.learn_bias = cfg.get<bool>("estimator.learn_bias");
  l.reciprocal_nudge = cfg.get<bool>("estimator.reciprocal_nudge");
  l.lr = cfg.get<double>("optimizer.lr");
  l.l1 = cfg.get<double>("constraints.l1");
  l.l1_mode = parse_deep_l1(cfg.get<std::string>("constraints.l1_mode"));
  l.prune = cfg.get<bool>("prune.enabled");
  l.prune_tol = cfg.get<double>("prune.tol");
  l.prune_temp = cfg.get<double>("prune.temperature");
  l.persistent = cfg.get<bool>("prune.persistent");
  l.exclude_structural = cfg.get<bool>("prune.exclude_structural");
  deep_check_settings(deep_dynamics_from_config(cfg), l);
  return l;
}

}  // namespace eqprop
