// The GLE experiments of ../shared/spec/gle.md: the operator check (G0), the LagLine
// teacher-student chain (§5.1, G2), the LagNet comparison with the adjoint method (§5.2,
// G3) and end-to-end GLE on MNIST-1D (§5.3, G6; its training is model.kind = gle of the
// training loop, and this file gives its schema and network), as library calls the CLI and
// the Python module share. Traces are returned so callers can plot or save them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

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
  double forward_gain, forward_phase;   ///< u_breve / input:            theory H = (1+iw tr)/(1+iw tm)
  double gle_gain, gle_phase;           ///< GLE error e / output error: theory 1/H
  double adjoint_gain, adjoint_phase;   ///< AM lambda / output error:   theory conj(H)
  double theory_gain, theory_phase;     ///< |H|, arg H
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
  double window = 1;          ///< bptt / adjoint window in time units
  double dt = 0.01;
  double t_init = 50, t_train = 4000;
  long batch = 100;
  double beta = 0.01;
  double lr = 1e-4;           ///< Adam, per step (windowed rules: times the window steps)
  double gamma = 1;           ///< GLE error-to-membrane coupling (0 for bptt / adjoint)
  uint64_t seed = 1;
  long record_every = 1000;   ///< steps between trace rows
};
struct lagline_trace_row {
  double t, loss, w1, w2, tau1, tau2;
};
struct lagline_result {
  std::vector<lagline_trace_row> trace;
  double final_loss = 0;      ///< mean per-step loss over the last 10 time units
  double w_rel_error = 0, tau_rel_error = 0;  ///< max relative error against the teacher
  double seconds = 0;
  long steps = 0;
};
lagline_result run_lagline(const lagline_options& o);

// ---- G3: LagNet, GLE errors against the adjoint ---------------------------------------
struct lagnet_options {
  double dt = 0.01;
  double t_warmup = 80;     ///< time units before the comparison window
  double t_window = 200;    ///< comparison window
  double t_tail = 20;       ///< discarded end of the window (lambda is cut off there)
  double beta = 1;
  uint64_t seed = 1;
  bool train = true;        ///< then train hid_1 with GLE (sgd momentum 0.9) and report its weight
  double t_train = 1001;
  double lr = 2e-4;
  double gamma = 1e-3;      ///< during training only (the comparison runs gamma = 0)
};
struct lagnet_neuron_compare {
  std::string name;         ///< e.g. "hid2.r" (retrospective) or "hid1.i" (instantaneous)
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

}  // namespace eqprop
