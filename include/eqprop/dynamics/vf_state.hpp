// Relaxation of a vector-field network (vector_field_network.hpp: untied feedback, any
// edge list, dense or convolutional edges) for one batch: the counterpart of relax_state
// for layered networks, on the same relaxation driver (relax_driver.hpp).
//
// Notation: u the states of layers 1..K, r = sigma(u) (r_0 = x), C(r) the coupling, b the
// biases, e = dl/dr_K of the readout. One step: u <- u + alpha (C r + b - beta e + noise - u).
#pragma once
#include <complex>
#include <cstdint>
#include <span>
#include <vector>

#include "eqprop/core/matmul.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/core/scalar.hpp"
#include "eqprop/dynamics/relax_driver.hpp"
#include "eqprop/model/vector_field_network.hpp"

namespace eqprop {

/// Workspace of one batch: states of scalar S (real or complex) for a network with real
/// parameters R. Buffers are sized by set_input(); step() does not allocate.
template <class S, class R = real_t<S>>
class vf_state {
 public:
  using scalar = S;
  using network = vector_field_network<R>;
  /// Sizes buffers, stores x (n_in x B) and one-hot y (n_classes x B), casts the
  /// parameters to S, computes the input drive and resets u to 0.
  void set_input(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y);
  void reset();
  /// Recomputes the input drive after the parameters changed (same input; relax_state's name).
  void refresh_drive(const network& net);
  void copy_states_from(const vf_state& o);
  template <class T>
  void set_states_from(const std::vector<matrix<T>>& u) {
    for (size_t i = 1; i < u_.size(); ++i) u_[i] = u[i].template cast<S>();
    update_activities();
  }
  /// One step u <- u + alpha (C r + b - beta e(r_K) + noise - u); returns the largest
  /// per-sample residual, the length of the update. alpha = 1: the papers' step.
  /// synchronous: every layer from the old activities; alternating: layers 1, 3, ... first,
  /// then 2, 4, ... from their new activities (Gauss-Seidel over the layer parity; the same
  /// fixed points, for any edge list).
  real_t<S> step(S beta, double noise_std = 0, rng_t* rng = nullptr, real_t<S> alpha = 1,
                 relax_order order = relax_order::synchronous);
  /// Operands of the float32 products from now on (set_input's drive included); relax()
  /// sets it from its options (and recomputes the drive at a new precision).
  void set_precision(matmul_precision p) { precision_ = p; }
  /// Relaxation by the driver (relax_driver.hpp): opt.max_steps steps, or fewer with
  /// opt.stop_early (per-sample freezing with opt.freeze_converged), opt.omega as alpha,
  /// opt.order, neuron noise on u. Residuals and failures per sample are reported against
  /// opt.tol.
  relax_report relax(S beta, const relax_options& opt);
  /// The same, with relax_state's signature; net must be the network given to set_input.
  relax_report relax(const network& net, S beta, const relax_options& opt);
  /// step() with relax_state's signature; net must be the network given to set_input.
  real_t<S> step(const network& net, S beta, double noise_std = 0, rng_t* rng = nullptr, real_t<S> alpha = 1,
                 relax_order order = relax_order::synchronous) {
    if (&net != net_) throw_not_own_network();
    return step(beta, noise_std, rng, alpha, order);
  }
  /// One step of (u, u') for the forward-mode derivative at beta = 0: u' <- C D u' - e(r_K).
  void tangent_step(std::vector<matrix<S>>& ud);

  /// r_i = sigma(u_i) for i >= 1 (r_0 = x), after any external change of u; with parity
  /// 0 or 1 only the layers i with i % 2 == parity.
  void update_activities(int parity = -1);
  /// Readout at the current activities: logits, probabilities and e = W_ro^T (p - y).
  void compute_readout();
  /// The coupling C(r) = sum over edges with src >= 1 of the edges' terms (without biases),
  /// linearised at the current activities, layers 1..K (v[0] is ignored):
  /// out = dC/dr v. Dense networks: out_i = sum_{e: dst = i} M_e v_src.
  void coupling_jvp(const std::vector<matrix<S>>& v, std::vector<matrix<S>>& out);
  /// out = (dC/dr)^T a (dense: out_src += M_e^T a_dst).
  void coupling_vjp(const std::vector<matrix<S>>& a, std::vector<matrix<S>>& out);
  /// grad += Re(coef * d/dtheta sum_i <a_i, field_i>) at the current activities, summed over
  /// the batch: the edges' weights and biases (not the readout); a: layers 1..K.
  void add_param_vjp(const std::vector<matrix<S>>& a, S coef, std::span<R> grad);
  /// Zeroes the input and activities of the flagged samples, so that sums over the batch
  /// cannot pick up their NaNs (they are no longer relaxed states).
  void zero_samples(const std::vector<char>& flagged);
  /// Sets the activities r_1..r_K directly (the activation-bypassed field of homeostasis);
  /// u is left as it is.
  void set_activities(const std::vector<matrix<S>>& r);
  /// sigma'(u_i) per layer.
  void activation_deriv(std::vector<matrix<S>>& out) const;

  std::vector<matrix<S>>& u() { return u_; }
  const std::vector<matrix<S>>& u() const { return u_; }
  const std::vector<matrix<S>>& r() const { return r_; }  ///< r[0] = x
  const matrix<S>& probs() const { return probs_; }
  const matrix<S>& dl_dr() const { return e_; }  ///< e on layer K
  const matrix<R>& y() const { return y_; }
  const vector<R>& residual() const { return residual_; }
  long batch() const { return y_.cols(); }
  /// Per-sample CE at the current activities (real part).
  void loss_per_sample(vector<R>& out);
  /// relax_state's names: the per-sample cost (CE of the readout) and the argmax of the
  /// readout per sample, -1 for a sample with a NaN/Inf output (it predicts no class); both
  /// compute the readout at the current activities.
  void cost_per_sample(const network&, vector<R>& out) { loss_per_sample(out); }
  std::vector<int32_t> predictions(const network&);
  /// relax_state's output_scores: the readout's probabilities per sample (n_classes x B, real part).
  void output_scores(const network&, matrix<R>& out) {
    compute_readout();
    out = probs_.real();
  }

  /// The column_state interface of the relaxation driver.
  template <class F>
  void for_each_column_buffer(F&& f) {
    f(y_), f(residual_), f(logits_), f(probs_), f(e_);
    for (auto& m : u_) f(m);
    for (auto& m : r_) f(m);
    for (auto& m : drive_) f(m);
    for (auto& m : z_) f(m);
  }
  void columns_restored() { lin_valid_ = false; }
  bool column_finite(long b) const;

 private:
  void add_coupling(std::vector<matrix<S>>& out,
                    int parity = -1);  // out += C(r) into layers of a parity (-1: all), caching z
  [[noreturn]] static void throw_not_own_network();
  void linearize();      // z at the current r (conv edges)
  void compute_drive();  // drive_ from x at precision_
  const vector_field_network<R>* net_ = nullptr;
  std::vector<matrix<S>> z_;  // conv edges: conv output before pooling (forward: of r_src, feedback: of r_dst)
  bool lin_valid_ = false;    // z_ matches the current r
  matrix<S> col_, t1_, t2_, dz_;
  vector<real_t<S>> act_buf_[4];  // scratch of the vectorized activations
  matmul_precision precision_ = matmul_precision::float32;
  matmul_precision drive_precision_ = matmul_precision::float32;  // that of the current drive_
  std::vector<matrix<S>> u_, r_, drive_, next_;                   // index 0 unused for u, drive, next
  matrix<S> logits_, probs_, e_;
  matrix<R> y_;
  vector<R> residual_;
  std::vector<matrix<S>> tmp_;
};

/// Gradient assembly: grad = mean_b w_b [eps_dst r_src^T; eps_dst] over the edges, plus the
/// readout gradient (p - y) r_K^T from st (the free state). grad is overwritten.
template <class R>
void gep_assemble_gradient(const vector_field_network<R>& net, vf_state<R>& st, const std::vector<matrix<R>>& eps,
                           const vector<R>& w, std::span<R> grad);

extern template class vf_state<float>;
extern template class vf_state<double>;
extern template class vf_state<std::complex<float>>;
extern template class vf_state<std::complex<double>>;

}  // namespace eqprop
