// What the training loop (trainer.cpp) needs from each model kind, one class per kind with
// the same members:
//   real_type, network_type      the scalar and the network
//   check_config(cfg)            (static) config errors found before any data is loaded
//   model(cfg, n_input, n_classes, input_shape)   the config's network (the data gives the sizes)
//   net                          the network being trained
//   estimator()                  the config's gradient estimator (the model may keep a view of it);
//                                a model with train_batch gives an in_batch_learning instead
//   adjust_optimizer(options)    the model's changes to the optimizer.* settings
//   train_batch(x, y, opt, lr_factor)   (optional) learns from a batch itself, stepping opt as
//                                often as it needs, and reports like an estimator (a non-finite
//                                loss: diverged); without it the loop runs estimate, then opt.step
//   n_groups()                   parameter groups of the optimizer (per-layer rates)
//   targets(labels)              the targets of a batch (one-hot for most kinds)
//   begin_evaluation()           called before every evaluation of a split
//   free_outputs(x, y, scores, cost)   the free phase of a batch: output scores per class
//                                (argmax = prediction) and the cost per sample
//   attach(opt), after_step(opt) constraints of every update, and what follows an update
//   save(ck), restore(ck)        state beyond the parameters a checkpoint must keep
//   describe()                   "network 2-120-3 (1234 parameters)"
//   log_initial                  log an epoch-0 row (before training) with diagnostics
//   set_diagnostic_batch(train)  the training samples diagnostics() uses
//   diagnostics(row)             extra per-epoch metrics (nothing for most kinds)
//   epoch_note(row)              extra text for the epoch line ("" for most kinds)
// model_defaults gives the hooks most kinds do not need. The loop calls diagnostics(row)
// before the plateau schedule reads the row, so a kind's own metric may be watched.
#pragma once
#include <array>
#include <cmath>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "eqprop/dynamics/relax.hpp"
#include "eqprop/dynamics/vf_state.hpp"
#include "eqprop/learn/deep.hpp"
#include "eqprop/learn/generalized_ep.hpp"
#include "eqprop/learn/gle_reference.hpp"
#include "eqprop/model/gle_network.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/deep_trainer.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "eqprop/train/graph_experiment.hpp"
#include "eqprop/train/optimizer.hpp"
#include "eqprop/train/vf_experiment.hpp"

namespace eqprop::detail {

// The free phase of a batch for the kinds whose state has relax_state's interface.
template <class State, class Net, class R>
relax_report relaxed_outputs(State& st, const Net& net, const relax_options& ro, const matrix<R>& x, const matrix<R>& y,
                             matrix<R>& scores, vector<R>& cost) {
  st.set_input(net, x, y);
  const auto rep = st.relax(net, R(0), ro);
  st.cost_per_sample(net, cost);
  st.output_scores(net, scores);
  return rep;
}

// The hooks most kinds do not need.
template <class R>
struct model_defaults {
  static constexpr bool log_initial = false;
  static void check_config(const config&) {}
  void adjust_optimizer(optimizer_options&) const {}
  void begin_evaluation() {}
  void attach(optimizer<R>&) {}
  void after_step(optimizer<R>&) {}
  void save(checkpoint&) const {}
  void restore(const checkpoint&) {}
  void set_diagnostic_batch(const dataset&) {}
  void diagnostics(nlohmann::ordered_json&) {}
  std::string epoch_note(const nlohmann::ordered_json&) const { return {}; }
};

template <class R>
struct layered_model : model_defaults<R> {
  using real_type = R;
  using network_type = layered_network<R>;

  const config& cfg;
  network_spec spec;
  network_type net;
  relax_options eval_relax;
  relax_state<R> state;

  layered_model(const config& c, int n_input, int n_classes, std::array<int, 3> shape)
      : cfg(c),
        spec(make_network_spec(c, n_input, n_classes, shape)),
        net(spec),
        eval_relax(relax_from_config(c, false)) {}
  std::unique_ptr<grad_estimator<R, network_type>> estimator() const { return make_estimator<R>(cfg); }
  int n_groups() const { return static_cast<int>(param_group_names(spec).size()); }
  matrix<R> targets(const std::vector<int32_t>& labels) const { return one_hot<R>(labels, spec.n_output()); }
  relax_report free_outputs(const matrix<R>& x, const matrix<R>& y, matrix<R>& scores, vector<R>& cost) {
    return relaxed_outputs(state, net, eval_relax, x, y, scores, cost);
  }
  std::string describe() const {
    return fmt::format("network {} ({} parameters)", fmt::join(spec.sizes, "-"), net.n_params());
  }
};

// generalized_ep (with its homeostasis) behind the estimator interface of the loop.
template <class R>
class gep_estimator final : public grad_estimator<R, vector_field_network<R>> {
 public:
  explicit gep_estimator(const gep_options& o) : est_(o) {}
  std::string name() const override { return est_.name(); }
  grad_result estimate(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                       std::span<R> grad) override {
    return est_.estimate(net, x, y, grad);  // the homeostatic loss is not a loop metric
  }
  void reseed_noise(uint64_t seed) override { est_.reseed(seed); }
  rng_t* noise_rng() override { return &est_.rng(); }

 private:
  generalized_ep<R> est_;
};

template <class R>
struct vector_field_model : model_defaults<R> {
  using real_type = R;
  using network_type = vector_field_network<R>;
  static constexpr bool log_initial = true;

  const config& cfg;
  gep_options go;
  network_type net;
  relax_options eval_relax;
  matrix<R> xd, yd;  // the diagnostic batch (set_diagnostic_batch)
  bool diag_dense = false;
  vf_state<R> state;

  vector_field_model(const config& c, int n_input, int n_classes, std::array<int, 3> shape)
      : cfg(c),
        go(make_gep_options(c)),
        net(make_vf_spec(c, n_input, n_classes, shape)),
        eval_relax(go.free_relax()),
        diag_dense(c.get<bool>("diagnostics.rbp_dense")) {}
  std::unique_ptr<grad_estimator<R, network_type>> estimator() const { return std::make_unique<gep_estimator<R>>(go); }
  int n_groups() const { return net.n_layers() + 1; }
  matrix<R> targets(const std::vector<int32_t>& labels) const { return one_hot<R>(labels, net.spec().n_classes); }
  relax_report free_outputs(const matrix<R>& x, const matrix<R>& y, matrix<R>& scores, vector<R>& cost) {
    return relaxed_outputs(state, net, eval_relax, x, y, scores, cost);
  }
  std::string describe() const {
    return fmt::format("network {} layers, topology {}, angle {} deg ({} parameters)", net.spec().sizes.size() - 1,
                       to_string(net.spec().topology), net.spec().angle_deg, net.n_params());
  }
  /// The first diagnostics.samples training samples (a ConvNet needs at least one).
  void set_diagnostic_batch(const dataset& train) {
    const long n = std::min<long>(cfg.get<long>("diagnostics.samples"), train.size());
    if (net.spec().is_convnet() && n < 1)
      throw config_error("a ConvNet's symmetry diagnostics need samples: set diagnostics.samples >= 1");
    if (n < 1) return;
    xd = train.x.leftCols(n).template cast<R>();
    yd = one_hot<R>(std::span<const int32_t>(train.y.data(), n), net.spec().n_classes);
  }
  /// The symmetry of the Jacobian and the alignment of the estimate with recurrent backprop
  /// on the diagnostic batch. A ConvNet's Jacobian depends on the state: its symmetry index
  /// and homeostatic loss are probe estimates at the diagnostic batch's free states.
  void diagnostics(nlohmann::ordered_json& row) {
    const bool conv = net.spec().is_convnet();
    const double ang = feedback_angle_deg(net);
    row["angle_deg"] = std::isfinite(ang) ? nlohmann::ordered_json(ang) : nlohmann::ordered_json(nullptr);
    if (!conv) {
      row["symmetry_index"] = jacobian_symmetry_index(net);
      row["homeo_exact"] = homeostatic_loss_exact(net);
    }
    if (xd.cols() > 0) {
      const auto d = gep_diagnose(net, xd, yd, go, diag_dense);
      if (conv) {
        row["symmetry_index"] = d.symmetry_index;
        row["homeo_probe_estimate"] = d.homeo_exact;
      }
      for (size_t i = 0; i < d.layer_cosine.size(); ++i) row[fmt::format("cos_layer{}", i + 1)] = d.layer_cosine[i];
      row["grad_cos_rbp"] = d.grad_cosine;
      row["grad_rel_err_rbp"] = d.grad_rel_error;
      row["diag_not_converged"] = d.n_free_not_converged;
    }
  }
  std::string epoch_note(const nlohmann::ordered_json& row) const {
    const auto& a = row["angle_deg"];
    return fmt::format(" | symmetry index {:.4f}, angle {}", row["symmetry_index"].get<double>(),
                       a.is_number() ? fmt::format("{:.1f} deg", a.get<double>()) : std::string("n/a"));
  }
};

template <class R>
struct graph_model : model_defaults<R> {
  using real_type = R;
  using network_type = graph_network<R>;

  const config& cfg;
  deep_dynamics dyn;
  deep_learning learn;
  network_type net;
  deep_estimator<R>* est = nullptr;  // the estimator() the loop runs: its generator prunes
  rng_t eval_rng;
  Eigen::MatrixXd probe;  // inputs whose equilibria the stability study certifies (set_diagnostic_batch)
  matrix<R> probe_y;      // their targets

  graph_model(const config& c, int n_input, int n_classes, std::array<int, 3>)
      : cfg(c),
        dyn(deep_dynamics_from_config(c)),
        learn(deep_learning_from_config(c)),
        net(make_net(c, n_input, graph_outputs(c, n_classes))) {}
  static network_type make_net(const config& c, int n_input, int n_output) {
    rng_t rng = graph_init_rng(c.get<uint64_t>("run.seed"));
    return network_type(graph_spec_from_config(c, n_input, n_output), rng);
  }
  std::unique_ptr<grad_estimator<R, network_type>> estimator() {
    auto e = std::make_unique<deep_estimator<R>>(dyn, learn, cfg.get<uint64_t>("run.seed"));
    est = e.get();
    return e;
  }
  int n_groups() const { return 1; }
  /// One-hot targets, or the label as the target of a single output neuron.
  matrix<R> targets(const std::vector<int32_t>& labels) const {
    if (net.n_output() > 1) return one_hot<R>(labels, net.n_output());
    matrix<R> y(1, static_cast<long>(labels.size()));
    for (std::size_t b = 0; b < labels.size(); ++b) y(0, long(b)) = R(labels[b]);
    return y;
  }
  /// Every evaluation draws the same initial states.
  void begin_evaluation() { eval_rng = graph_eval_rng(cfg.get<uint64_t>("run.seed")); }
  /// The class scores at the free state (deep_class_scores: one output neuron scores the
  /// classes (1 - s, s), so the prediction is s > 0.5). Cost: 1/2 |y - s_out|^2.
  relax_report free_outputs(const matrix<R>& x, const matrix<R>& y, matrix<R>& scores, vector<R>& cost) {
    matrix<R> out;
    const auto rep = deep_class_scores(net, dyn, x, eval_rng, scores, &out);
    cost = 0.5 * (out - y).colwise().squaredNorm().transpose();
    return rep;
  }
  void attach(optimizer<R>& opt) { opt.set_constraints(deep_constraints(net, learn)); }
  /// Boltzmann pruning from the estimator's generator; persistent pruning moves the mask.
  void after_step(optimizer<R>& opt) {
    if (!learn.prune) return;
    deep_boltzmann_prune(net, learn, *est->noise_rng());
    if (learn.persistent) attach(opt);
  }
  /// The first (up to) 64 training inputs: saved with every checkpoint as "probe_inputs",
  /// the patterns `eqprop deep stability` analyses.
  void set_diagnostic_batch(const dataset& train) {
    const long n = std::min<long>(64, train.size());
    probe = train.x.leftCols(n).template cast<double>();
    probe_y = targets(std::vector<int32_t>(train.y.begin(), train.y.begin() + n));
  }
  void save(checkpoint& ck) const {
    if (probe.size() > 0) ck.arrays["probe_inputs"] = checkpoint_array::from_eigen(probe);
    std::vector<uint8_t> p(std::size_t(net.pruned().size()));
    for (Eigen::Index k = 0; k < net.pruned().size(); ++k) p[std::size_t(k)] = net.pruned().data()[k];
    ck.arrays["pruned"] = checkpoint_array::from_vector(p);
  }
  void restore(const checkpoint& ck) {
    const auto p = ck.array("pruned").to_vector<uint8_t>();
    if (long(p.size()) != long(net.pruned().size()))
      throw data_error("checkpoint: the pruning mask does not match the graph");
    for (Eigen::Index k = 0; k < net.pruned().size(); ++k) net.pruned().data()[k] = p[std::size_t(k)] != 0;
  }
  std::string describe() const {
    return fmt::format("network {} + 1 bias, {} hidden, {} outputs, {} ({} edges)", net.n_data_input(), net.n_hidden(),
                       net.n_output(), to_string(net.spec().topology), net.n_allowed());
  }
  /// Sparsity, and the nudged phase learning uses (from the free state; with the reciprocal
  /// term when estimator.reciprocal_nudge) at the probe samples, from initial states drawn
  /// from run.seed and the epoch: its accuracy and its mean squared output error.
  void diagnostics(nlohmann::ordered_json& row) {
    row["sparsity"] = net.sparsity();
    row["nnz"] = net.n_nonzero();
    if (probe.cols() == 0) return;
    rng_t rng(cfg.get<uint64_t>("run.seed") * 0x9E3779B97F4A7C15ULL + row["epoch"].get<uint64_t>() + 104729);
    const matrix<R> x = probe.cast<R>();
    matrix<R> s = deep_initial_state(net, x, rng);
    deep_relax(net, dyn, s, nullptr, 0.0);
    deep_linear_term reciprocal;
    if (learn.reciprocal_nudge) reciprocal = deep_reciprocal_term(net, dyn, s);
    deep_relax(net, dyn, s, &probe_y, learn.beta, learn.reciprocal_nudge ? &reciprocal : nullptr);
    const auto sc = deep_score(net, s, probe_y, net.n_output() > 1);
    row["nudged_acc"] = 1 - sc.error;
    row["nudged_mse"] = sc.mse;
  }
};

// What the loop asks of the estimator of a model that learns in train_batch: a name for the
// run's header line, and no noise stream.
struct in_batch_learning {
  std::string label;
  std::string name() const { return label; }
  void reseed_noise(uint64_t) {}
  rng_t* noise_rng() { return nullptr; }
};

// GLE on sequences: sample b of a batch is the sequence x.col(b), one feature per time step,
// fed to a network with one input. The neuron state is one continuous stream across batches
// and epochs (a fixed lag bank may restart at every batch, network.lag_bank_reset). Training
// steps the network with teaching and the optimizer after every time step; evaluation runs
// a copy of the network with the training state, without teaching or learning, so it leaves
// the training stream as it was. A sample's class scores are its outputs summed over time;
// its cost is the per-step loss C(r(t), y) averaged over its steps (test_loss, train_loss),
// and its readout loss C(sum_t r(t) / T, y) of the time-averaged output goes to
// test_readout_loss / train_readout_loss.
template <class R>
struct gle_model : model_defaults<R> {
  using real_type = R;
  using network_type = gle_network<R>;
  using mat = typename network_type::mat;

  const config& cfg;
  long steps;              ///< time steps per sample (the data's features)
  gle_sequence_setup seq;  ///< the fixed lag bank
  R beta;
  network_type net;       ///< the trained network, whose state is the training stream
  network_type eval_net;  ///< the network evaluation runs (begin_evaluation: a copy of net)
  aligned_vector<R> grad;
  // Sums of the readout loss and its sample count: of this epoch's training batches (kept in
  // checkpoints; diagnostics() reports and clears them), and of the evaluation running now.
  double train_readout = 0, test_readout = 0;
  long train_readout_n = 0, test_readout_n = 0;
  gle_sequence_result<R> batch_result;  ///< of the last batch run

  static void check_config(const config& c) { network_type(gle_spec_from_config(c, 1, 2)); }
  gle_model(const config& c, int n_input, int n_classes, std::array<int, 3>)
      : cfg(c),
        steps(n_input),
        seq(gle_sequence_setup_from_config(c)),
        beta(R(c.get<double>("loss.beta"))),
        net(gle_network_from_config<R>(c, n_classes)),
        grad(std::size_t(net.n_params())) {}
  std::unique_ptr<in_batch_learning> estimator() const {
    return std::make_unique<in_batch_learning>(in_batch_learning{
        cfg.get<bool>("dynamics.prospective_errors") ? "GLE (prospective errors), an update every time step"
                                                     : "LE (instantaneous errors), an update every time step"});
  }
  int n_groups() const { return net.n_groups(); }
  /// optimizer.lr_reference_steps rescales the rates to the data's steps; the lag bank's
  /// groups have rate 0.
  void adjust_optimizer(optimizer_options& o) const {
    if (const long ref = cfg.get<long>("optimizer.lr_reference_steps"); ref > 0) {
      o.lr *= double(ref) / double(steps);
      for (double& g : o.lr_per_group) g *= double(ref) / double(steps);
    }
    if (seq.bank_layers == 0) return;
    if (o.lr_per_group.empty()) o.lr_per_group.assign(std::size_t(net.n_groups()), o.lr);
    for (int l = 0; l < seq.bank_layers && l < int(o.lr_per_group.size()); ++l) o.lr_per_group[std::size_t(l)] = 0;
  }
  void attach(optimizer<R>& opt) { opt.set_constraints(gle_tau_constraints(net)); }
  matrix<R> targets(const std::vector<int32_t>& labels) const { return one_hot<R>(labels, net.n_output()); }

  /// A training batch; its loss is NaN when a state, an output or a loss was not finite.
  grad_result train_batch(const matrix<R>& x, const matrix<R>& y, optimizer<R>& opt, double lr_factor) {
    const long bad_before = net.nonfinite_steps();
    gle_sequence_options<R> learning;
    learning.y = &y;
    learning.beta = beta;
    learning.grad = grad;
    learning.update = [&] { opt.step(net.params(), grad, lr_factor); };
    gle_run_sequences(net, seq, x, learning, batch_result);
    const auto& sum_out = batch_result.sum_out;
    const auto& step_loss = batch_result.step_loss;
    const auto& readout = batch_result.readout;
    grad_result g;
    g.relax_steps = x.rows();
    g.predictions.resize(std::size_t(x.cols()));
    bool finite = net.nonfinite_steps() == bad_before;
    double loss = 0;
    for (long b = 0; b < x.cols(); ++b) {
      Eigen::Index m = -1;
      if (sum_out.col(b).allFinite()) sum_out.col(b).maxCoeff(&m);
      g.predictions[std::size_t(b)] = int32_t(m);
      finite = finite && m >= 0 && std::isfinite(step_loss[std::size_t(b)]) && std::isfinite(readout[std::size_t(b)]);
      loss += step_loss[std::size_t(b)];
      train_readout += readout[std::size_t(b)];
    }
    train_readout_n += x.cols();
    g.loss = finite ? loss / double(x.cols()) : NAN;
    return g;
  }
  void begin_evaluation() {
    eval_net = net;
    test_readout = 0;
    test_readout_n = 0;
  }
  /// gle_class_scores on the evaluation's network.
  relax_report free_outputs(const matrix<R>& x, const matrix<R>& y, matrix<R>& scores, vector<R>& cost) {
    gle_class_scores(eval_net, seq, x, batch_result, &y);
    scores = batch_result.sum_out;
    cost.resize(x.cols());
    for (long b = 0; b < x.cols(); ++b) {
      cost(b) = R(batch_result.step_loss[std::size_t(b)]);
      test_readout += batch_result.readout[std::size_t(b)];
    }
    test_readout_n += x.cols();
    relax_report rep;
    rep.steps = x.rows();
    return rep;
  }
  /// The epoch's train_readout_loss, and test_readout_loss when the epoch was evaluated.
  void diagnostics(nlohmann::ordered_json& row) {
    row["train_readout_loss"] = train_readout / double(std::max<long>(1, train_readout_n));
    if (test_readout_n > 0) row["test_readout_loss"] = test_readout / double(test_readout_n);
    train_readout = test_readout = 0;
    train_readout_n = test_readout_n = 0;
  }
  std::string epoch_note(const nlohmann::ordered_json& row) const {
    const auto test = row.find("test_readout_loss");
    return fmt::format("{} | lr {:.2e}",
                       test != row.end() ? fmt::format(" | readout loss {:.4f}", test->get<double>()) : std::string(),
                       row.at("lr").get<double>());
  }

  static constexpr std::array<const char*, 8> state_names{"u", "v", "r", "dphi", "u_breve", "udot", "e", "e_down"};
  template <class State>
  static auto state_mats(State& s) {
    return std::array{&s.u, &s.v, &s.r, &s.dphi, &s.u_breve, &s.udot, &s.e, &s.e_down};
  }
  /// The neuron state of every layer and the epoch's readout sums.
  void save(checkpoint& ck) const {
    for (int l = 0; l < net.n_layers(); ++l) {
      const auto mats = state_mats(net.state(l));
      for (std::size_t k = 0; k < mats.size(); ++k)
        ck.arrays[fmt::format("state{}_{}", l, state_names[k])] = checkpoint_array::from_eigen(*mats[k]);
    }
    ck.arrays["train_readout"] =
        checkpoint_array::from_vector(std::vector<double>{train_readout, double(train_readout_n)});
  }
  void restore(const checkpoint& ck) {
    net.reset_state(ck.array("state0_u").to_matrix<R>().cols());
    for (int l = 0; l < net.n_layers(); ++l) {
      const auto mats = state_mats(net.state(l));
      for (std::size_t k = 0; k < mats.size(); ++k) {
        const auto name = fmt::format("state{}_{}", l, state_names[k]);
        matrix<R> m = ck.array(name).to_matrix<R>();
        if (m.rows() != mats[k]->rows() || m.cols() != mats[k]->cols())
          throw data_error(fmt::format("checkpoint: {} is {}x{}, the network's {}x{}", name, m.rows(), m.cols(),
                                       mats[k]->rows(), mats[k]->cols()));
        *mats[k] = std::move(m);
      }
    }
    const auto r = ck.array("train_readout").to_vector<double>();
    if (r.size() != 2) throw data_error("checkpoint: train_readout must hold 2 values");
    train_readout = r[0];
    train_readout_n = long(r[1]);
  }
  std::string describe() const {
    return fmt::format("network {} ({} parameters), {} steps per sample", fmt::join(net.spec().sizes(), "-"),
                       net.n_params(), steps);
  }
};

}  // namespace eqprop::detail
