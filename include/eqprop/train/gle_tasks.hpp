// The GLE experiments of ../shared/spec/gle.md: the operator check (G0), the LagLine
// teacher-student chain (§5.1, G2), the LagNet comparison with the adjoint method (§5.2,
// G3) and end-to-end GLE on MNIST-1D (§5.3, G6; its training is model.kind = gle of the
// training loop, and this file gives its schema and network), as library calls the CLI and
// the Python module share. Traces are returned so callers can plot or save them.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/scalar.hpp"
#include "eqprop/model/gle_network.hpp"
#include "eqprop/train/config.hpp"
#include "eqprop/train/constraints.hpp"

namespace eqprop {

/// The box [spec().tau_min, spec().tau_max] on every learned tau_m block of net (no
/// constraint when tau_m is fixed): attach it to the network's optimizer, and apply it
/// where tau_m is set outside a step.
template <class R>
param_constraints gle_tau_constraints(const gle_network<R>& net);

// ---- G0: single-neuron operators ----------------------------------------------------
struct gle_operator_result {
  double tau_m, tau_r, omega, dt;
  // measured transfer (gain |c|, phase arg c) of each operator on a sine of frequency omega
  double forward_gain, forward_phase;  ///< u_breve / input:            theory H = (1+iw tr)/(1+iw tm)
  double gle_gain, gle_phase;          ///< GLE error e / output error: theory 1/H
  double adjoint_gain, adjoint_phase;  ///< AM lambda / output error:   theory conj(H)
  double theory_gain, theory_phase;    ///< |H|, arg H
};
/// Simulates one linear neuron (W = 1) for `periods` periods of sin(omega t) and projects
/// the responses on e^{i omega t} over the second half.
gle_operator_result gle_operator_response(double tau_m, double tau_r, double omega, double dt, int periods = 40);

// ---- G2: LagLine ---------------------------------------------------------------------
enum class gle_rule { gle, bp_instantaneous, bptt, adjoint };
gle_rule parse_gle_rule(std::string_view s);
std::string_view to_string(gle_rule r);

struct lagline_options {
  gle_rule rule = gle_rule::gle;
  double window = 1;  ///< bptt / adjoint window in time units
  double dt = 0.01;
  double t_init = 50, t_train = 4000;
  long batch = 100;
  double beta = 0.01;
  double lr = 1e-4;  ///< Adam, per step (windowed rules: times the window steps)
  double gamma = 1;  ///< GLE error-to-membrane coupling (0 for bptt / adjoint)
  uint64_t seed = 1;
  long record_every = 1000;  ///< steps between trace rows
};
struct lagline_trace_row {
  double t, loss, w1, w2, tau1, tau2;
};
struct lagline_result {
  std::vector<lagline_trace_row> trace;
  double final_loss = 0;                      ///< mean per-step loss over the last 10 time units
  double w_rel_error = 0, tau_rel_error = 0;  ///< max relative error against the teacher
  double seconds = 0;
  long steps = 0;
};
lagline_result run_lagline(const lagline_options& o);

// ---- G3: LagNet, GLE errors against the adjoint ---------------------------------------
struct lagnet_options {
  double dt = 0.01;
  double t_warmup = 80;   ///< time units before the comparison window
  double t_window = 200;  ///< comparison window
  double t_tail = 20;     ///< discarded end of the window (lambda is cut off there)
  double beta = 1;
  uint64_t seed = 1;
  bool train = true;  ///< then train hid_1 with GLE (sgd momentum 0.9) and report its weight
  double t_train = 1001;
  double lr = 2e-4;
  double gamma = 1e-3;  ///< during training only (the comparison runs gamma = 0)
};
struct lagnet_neuron_compare {
  std::string name;  ///< e.g. "hid2.r" (retrospective) or "hid1.i" (instantaneous)
  double tau_m, tau_r;
  std::vector<double> omega, gain, phase;  ///< e / lambda at each input frequency
  std::vector<double> theory_gain;         ///< 1/|H|^2 of the neuron alone
  double correlation = 0;                  ///< Pearson correlation of e and lambda over the window
};
struct lagnet_result {
  std::vector<lagnet_neuron_compare> neurons;
  // traces (every `stride` steps of the window): t, then e and lambda per neuron
  std::vector<double> t;
  std::vector<std::vector<double>> e, lambda;
  // training
  std::vector<double> train_t, train_w00, train_loss;
  double teacher_w00 = -0.5, final_w00 = 0;
};
lagnet_result run_lagnet(const lagnet_options& o);

// ---- G6: MNIST-1D stream training (`eqprop train` with model.kind = gle) ------------
/// The schema of model.kind = gle (training_schema(model_kind::gle); configs/gle_mnist1d_15k.toml).
const config_schema& gle_schema();

/// The network a gle config describes, for n_input inputs per step and n_classes outputs.
gle_spec gle_spec_from_config(const config& cfg, int n_input, int n_classes);

/// The network train() builds from a gle config before training: gle_spec_from_config(cfg,
/// 1, n_classes) (one input: a feature per time step), the fixed lag
/// bank's weights (all-ones fan-out, then identities, never trained: spec §5.4), threads
/// from dynamics.threads, and the state reset for run.batch samples.
template <class R>
gle_network<R> gle_network_from_config(const config& cfg, int n_classes);

/// How a gle run feeds a batch of sequences: the layers [0, bank_layers) are the fixed lag
/// bank (0: none), whose state restarts at every batch when bank_reset
/// (network.lag_bank_reset).
struct gle_sequence_setup {
  int bank_layers = 0;
  bool bank_reset = false;
};
gle_sequence_setup gle_sequence_setup_from_config(const config& cfg);

/// What gle_run_sequences does beyond running the network freely. Learning (grad non-empty):
/// every step teaches with *y and beta, writes its gradient into grad (size n_params), then
/// calls update() (the optimizer step on net.params()).
template <class R>
struct gle_sequence_options {
  const matrix<R>* y = nullptr;  ///< targets (n_output x B): the losses, and teaching when learning
  R beta = 0;
  std::span<R> grad;
  std::function<void()> update;
  bool record = false;  ///< keep the output after every step (gle_sequence_result::outputs)
};

/// One batch's results of gle_run_sequences.
template <class R>
struct gle_sequence_result {
  matrix<R> sum_out;               ///< n_output x B: each sample's outputs summed over its steps (class scores)
  std::vector<double> step_loss;   ///< with targets: each sample's loss C(r(t), y) averaged over its steps
  std::vector<double> readout;     ///< with targets: each sample's readout loss C(sum_out / T, y)
  std::vector<matrix<R>> outputs;  ///< with record: the output (n_output x B) after each step
};

/// Runs the sequences x (T x B: sample b is x.col(b), feature t goes in at step t; the
/// network has one input) through net from its state, one step per row, leaving net in
/// the state after the last step; first restarts the lag bank (setup) and resizes the
/// state to B columns (tiled or truncated, gle_network::resize_batch). Without learning
/// the network runs untaught. The one simulation of gle training and evaluation.
template <class R>
void gle_run_sequences(gle_network<R>& net, const gle_sequence_setup& setup, const matrix<R>& x,
                       const gle_sequence_options<R>& options, gle_sequence_result<R>& result);

/// The class scores the evaluation of a gle run gives the batch x (T x B), as `eqprop eval`
/// scores each batch of the test split: gle_run_sequences without teaching or learning on
/// the evaluation's network (a copy of the trained network with its training state, whose
/// state then runs on through the split's batches in order). result.sum_out (n_output x B),
/// the outputs summed over time, are the scores (argmax: the prediction); with targets y,
/// result gets the losses too.
template <class R>
void gle_class_scores(gle_network<R>& net, const gle_sequence_setup& setup, const matrix<R>& x,
                      gle_sequence_result<R>& result, const matrix<R>* y = nullptr);

}  // namespace eqprop
