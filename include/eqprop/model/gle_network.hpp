// Generalized Latent Equilibrium (GLE, Ellenberger et al. 2024) and Latent Equilibrium
// (LE, Haider et al. 2021): layered networks of leaky neurons with prospective outputs and
// a mirrored population of error neurons, simulated in discrete time exactly as in
// ../shared/spec/gle.md §3 and learning online at every step. Implemented from the
// equations only; see docs/gle.md for the papers and the authors' patent notice.
//
// One step (all layers synchronously, from the previous step's neighbour values):
//   g_l   = W_{l+1}^T e_{l+1}            (top: beta (y* - r_N) for mse, beta (y* - softmax r_N) for ce)
//   eps   = g_l * phi'(u_breve_l)        (instantaneous error)
//   v'    = (eps - v)/tau_r;   e = v + tau_m v'  (old v);   v += dt v'        (error neuron)
//   u'    = (W_l r_{l-1} + b_l + gamma e - u)/tau_m;  u_breve = u + tau_r u' (old u);  u += dt u'
//   r_l   = phi(u_breve);   grad W_l = -mean_b e r_{l-1}^T,  grad b_l = -mean_b e,  grad tau_m = mean_b e u'
// With tau_r = tau_m (LE) u_breve = W r + b exactly and e = eps: online backprop with one
// step of pipeline delay per layer. prospective_errors = false uses e = eps (the "BP with
// instantaneous errors" ablation).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eqprop/core/eigen.hpp"

#include "eqprop/core/params.hpp"
#include "eqprop/model/activation.hpp"

namespace eqprop {

enum class gle_loss { mse, ce };
gle_loss parse_gle_loss(std::string_view name);
std::string_view to_string(gle_loss l);  ///< "mse" | "ce", as loss.kind spells it

/// One layer: `size` neurons with per-neuron time constants (tau_r = tau_m: instantaneous;
/// tau_r < tau_m: retrospective; tau_r = dt: a leaky integrator).
struct gle_layer_spec {
  int size = 0;
  activation_kind phi = activation_kind::tanh;  ///< any activation of the table
  std::vector<double> tau_m, tau_r;             ///< each of length size
  bool bias = true;
};

/// A layer spec in one expression (tau_m, tau_r: one value per neuron).
inline gle_layer_spec gle_layer(int n, activation_kind phi, std::vector<double> tau_m, std::vector<double> tau_r,
                                bool bias = true) {
  return {n, phi, std::move(tau_m), std::move(tau_r), bias};
}

/// tau values for a layer from groups "count:tau_m:tau_r", e.g. {{18,0.6,0.2},{18,1.2,0.2},{17,1.2,1.2}}.
struct gle_tau_group {
  int count;
  double tau_m, tau_r;
};
/// Fills spec.tau_m/tau_r from groups whose counts sum to spec.size (throws config_error otherwise).
void set_tau_groups(gle_layer_spec& spec, const std::vector<gle_tau_group>& groups);
/// Parses "18:0.6:0.2, 18:1.2:0.2, 17:1.2:1.2".
std::vector<gle_tau_group> parse_tau_groups(std::string_view text);

enum class gle_init { kaiming_uniform, normal, uniform01 };

/// The state reset_state (and reset_layers) starts from. zero: every state variable is 0,
/// r and phi' included, as the discrete scheme of ../shared/spec/gle.md §3 starts. rest:
/// u = v = e = 0 but r = phi(0) and phi' = phi'(0), the output of a neuron at rest, so the
/// first step already sees the rest value phi(0) of the layer below (it matters only for
/// activations with phi(0) != 0, e.g. softplus or logistic, and only until the old state
/// has been forgotten: both starts relax to the same trajectory).
enum class gle_initial_state { zero, rest };
gle_initial_state parse_gle_initial_state(std::string_view name);  ///< "zero" | "rest"
std::string_view to_string(gle_initial_state s);

struct gle_spec {
  int n_input = 1;
  std::vector<gle_layer_spec> layers;  ///< hidden layers, then the output layer
  double dt = 0.2;
  double gamma = 0;                ///< error-to-membrane coupling
  bool prospective_errors = true;  ///< false: e = eps (instantaneous-error BP)
  gle_loss loss = gle_loss::ce;
  bool learn_tau_m = false;
  double tau_min = 0;  ///< bounds for learned tau_m, kept by the optimizer (0: dt)
  double tau_max = 100;
  gle_init init = gle_init::kaiming_uniform;  ///< U(+-1/sqrt(fan_in)) for W and b (PyTorch Linear)
  double init_std = 0.05;                     ///< for gle_init::normal
  uint64_t seed = 1;
  /// [n_input, n_1, ..., n_output]: the widths of the input and of every layer.
  std::vector<int> sizes() const;
  gle_initial_state initial_state = gle_initial_state::zero;
};

/// Per-layer neuron state, columns = batch. Everything a plot or a reference may read.
template <class R>
struct gle_layer_state {
  using mat = Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>;
  mat u, v;     ///< membrane of representation and error neurons
  mat r, dphi;  ///< phi(u_breve), phi'(u_breve) of the last step
  mat u_breve;  ///< prospective potential of the last step
  mat udot;     ///< u' of the last step
  mat e;        ///< error e actually used in the last step (after the error neuron)
  mat e_down;   ///< W^T e of the last step, sent to the layer below
};

template <class R>
class gle_network {
 public:
  using mat = Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>;
  using vec = Eigen::Matrix<R, Eigen::Dynamic, 1>;
  using cmap = Eigen::Map<const mat>;
  using map = Eigen::Map<mat>;

  gle_network() = default;
  /// Checks the spec (sizes, tau >= dt, tau_r <= ... no constraint) and initialises the
  /// parameters from spec.seed. Throws config_error for a bad spec.
  explicit gle_network(gle_spec spec);

  const gle_spec& spec() const { return spec_; }
  int n_layers() const { return int(spec_.layers.size()); }
  int n_output() const { return spec_.layers.back().size; }
  long batch() const { return batch_; }

  /// Flat parameters: W0, b0, [tau_m0], W1, ... (column-major W of size n_l x n_{l-1}).
  /// Learned tau_m stay in [spec().tau_min, spec().tau_max] only through a box constraint
  /// on their blocks (train: gle_tau_constraints), applied after every optimizer step.
  std::span<R> params() { return params_.values(); }
  std::span<const R> params() const { return params_.values(); }
  long n_params() const { return long(params_.values().size()); }
  const std::vector<param_block>& layout() const { return params_.layout(); }
  int n_groups() const { return n_layers(); }  ///< one optimizer group per layer
  map W(int l);
  cmap W(int l) const;
  R* b(int l);  ///< nullptr when the layer has no bias
  const R* b(int l) const;
  /// tau_m of layer l (a view into params when learned, else into the fixed copy).
  Eigen::Map<vec> tau_m(int l);
  Eigen::Map<const vec> tau_m(int l) const;
  const vec& tau_r(int l) const { return tau_r_[l]; }

  /// Sets every state to spec().initial_state for batch size B.
  void reset_state(long B);
  /// Sets the state of layers [from, to) to spec().initial_state (batch size unchanged).
  void reset_layers(int from, int to);
  /// Tiles (B larger) or truncates (B smaller) the state columns, as the reference does
  /// when the batch size changes between training and testing.
  void resize_batch(long B);
  const gle_layer_state<R>& state(int l) const { return state_[l]; }
  gle_layer_state<R>& state(int l) { return state_[l]; }
  const mat& output() const { return state_.back().r; }

  /// One Euler step with input x (n_input x B). target (n_output x B) and beta give the
  /// output error; target == nullptr (or beta == 0) runs without teaching. When grad is
  /// non-empty (size params().size()) it receives the batch-mean local gradient of this step.
  /// Counts non-finite states in nonfinite_steps() (the state is left as computed).
  void step(const Eigen::Ref<const mat>& x, const mat* target, R beta, std::span<R> grad = {});

  /// The name of layer l's tau_m block in layout() (there when spec().learn_tau_m).
  static std::string tau_m_block(int l);
  long nonfinite_steps() const { return nonfinite_steps_; }
  /// Threads for the layers of one step (1: serial, the default; 0: all cores, from OpenMP).
  /// Results do not depend on it. Fine-grained: a step lasts ~0.1 ms, so it pays only when
  /// the cores are otherwise idle (with another busy process every step waits for a
  /// descheduled thread).
  void set_threads(int n) { threads_ = n; }
  /// Multiply-adds of the matrix products of one learning step, per sample: W r for every
  /// layer, e r^T for every layer, W^T e for every layer above the first.
  double macs_per_sample() const { return macs_per_sample_; }
  static int max_threads();
  /// The output error g = -beta dC/dr_N that the top layer receives for output r and target.
  static void output_error(gle_loss loss, const mat& r, const mat& target, R beta, mat& g);

 private:
  gle_spec spec_;
  param_buffer<R> params_;
  std::vector<long> w_off_, b_off_, tau_off_;  // tau_off_ < 0: tau fixed (tau_fixed_)
  std::vector<vec> tau_fixed_, tau_r_;
  std::vector<vec> inv_tau_m_, inv_tau_r_;  // 1/tau, kept so a step allocates nothing
  std::vector<gle_layer_state<R>> state_;
  std::vector<mat> r_next_, e_down_next_, g_;  // double buffers for the synchronous update
  void step_layer(int l, const Eigen::Ref<const mat>& x, bool errors, std::span<R> grad);
  void initial_state(int l);  // r, dphi of layer l (u_breve = 0) per spec_.initial_state
  long batch_ = 0;
  long nonfinite_steps_ = 0;
  int threads_ = 1;
  double macs_per_sample_ = 0;
};

extern template class gle_network<float>;
extern template class gle_network<double>;

}  // namespace eqprop
