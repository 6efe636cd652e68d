// Relaxation of a layered network to its fixed point, for one batch.
//
// relax_state<S, P> is the workspace of one batch: neuron states of scalar S (real or
// complex) for a network with parameters of type P (real_t<S>, or S for complex-step
// tests). All buffers are sized by set_input(); step() and relax() never allocate.
//
// One synchronous step computes, for every layer j at once,
//   pre_j = W_j l_{j-1} + b_j + W_{j+1}^T h_{j+1} - beta * dC/dh_j      (l_{-1} = x)
//   h_j  <- sigma(pre_j)
// where the input drive W_0 x + b_0 is computed once per batch, and dC/dh is
// W_out^T (softmax(z) - y) for the readout or (h_{K-1} - y) for an output layer.
// The residual of a sample is |h_new - h_old| (L2 over all layers, complex modulus).
// With per-column nudge multipliers m (set_column_nudge), beta becomes beta * m(b) in column b.
#pragma once
#include <complex>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/matmul.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/core/scalar.hpp"
#include "eqprop/dynamics/relax_driver.hpp"
#include "eqprop/model/layered_network.hpp"

namespace eqprop {

/// Converts labels to one-hot columns (n_classes x batch); throws shape_error on a bad label.
template <class R>
matrix<R> one_hot(std::span<const int32_t> labels, int n_classes);

/// probs = softmax of every column of logits (same shape). Holomorphic for complex logits:
/// each column's largest real part is subtracted first, an exact shift that prevents overflow.
template <class S>
void softmax_columns(const matrix<S>& logits, matrix<S>& probs);

template <class S, class P = real_t<S>>
class relax_state {
 public:
  using scalar = S;
  using real = real_t<S>;
  using network = layered_network<P>;

  relax_state() = default;

  /// Sizes the buffers for this batch, stores x (n_in x B) and the target y (n_out x B,
  /// one-hot for the readout), computes the input drive, and resets states to zero.
  void set_input(const network& net, const matrix<real>& x, const matrix<real>& y);
  /// As set_input, but with the input drive of another state of the same network and batch
  /// (its drive()), so that the nudged points of an estimate do not recompute W_0 x.
  void set_input_shared(const network& net, const matrix<real>& x, const matrix<real>& y, const matrix<real>& drive);
  /// The input drive P(conv_0 x) + b_0 (n_1 x B).
  const matrix<S>& drive() const { return drive_; }
  /// Recomputes the input drive after the parameters changed (same x).
  void refresh_drive(const network& net);

  void reset();                                                   ///< all states to zero
  void copy_states_from(const relax_state& other);                ///< same network and batch
  void set_states_from_real(const std::vector<matrix<real>>& h);  ///< e.g. a real free state into complex states
  /// Per-column multipliers of the nudge: column b is nudged with beta * m(b) in step() and
  /// differentiated with it in add_dF_dtheta (size batch(); set_input clears them). Lets the
  /// nudged points of an estimate relax side by side as one wider batch (cauchy_ep).
  void set_column_nudge(const vector<S>& m);
  /// States, pre-activations and residuals of columns [first, first + batch()) of other, a
  /// wider state of the same network (e.g. one point of a stacked relaxation).
  void copy_columns_from(const relax_state& other, long first);

  /// One step with nudge beta, h <- h + alpha (sigma(pre) - h), layers in the given order;
  /// returns the largest per-sample residual, the length of the update |alpha (sigma(pre) - h)|.
  /// alpha = 1 is the plain fixed-point step; alpha < 1 an Euler step of tau dh/dt = -h +
  /// sigma(pre) with alpha = dt/tau; 1 < alpha < 2 over-relaxation (relax_options::omega).
  real step(const network& net, S beta, double noise_std = 0, rng_t* rng = nullptr, real alpha = 1,
            relax_order order = relax_order::synchronous);
  relax_report relax(const network& net, S beta, const relax_options& opt);
  /// Operands of the float32 products of step() from now on (relax() sets it from its options).
  void set_precision(matmul_precision p) { precision_ = p; }

  /// Cost C per sample at the current state (readout CE or squared error), as S.
  void cost_per_sample(const network& net, vector<S>& out);
  /// Mean cost over the batch (real part).
  double mean_cost(const network& net);
  /// Argmax of the output (readout logits or output layer, real parts) per sample; -1 for a
  /// sample with a NaN/Inf output (it predicts no class).
  std::vector<int32_t> predictions(const network& net);
  /// Real parts of the output scores (readout logits or output layer), n_out x B.
  void output_scores(const network& net, matrix<real>& out);

  /// grad += Re( coef * dF/dtheta(h, beta) ), with samples weighted by w (size B; the
  /// batch mean uses w = 1/B). dF/dW_j = -h_j diag(w) l_{j-1}^T, dF/db_j = -h_j w,
  /// dF/dW_out = beta (p - y) diag(w) h_{K-1}^T, dF/db_out = beta (p - y) w.
  void add_dF_dtheta(const network& net, S beta, S coef, const vector<real>& w, std::span<real> grad);
  /// The same, except that the first connection's weight term, linear in the states given
  /// the real input, is not added: acc0 += Re(coef * u_0) instead, where dF/dW_0 is minus the
  /// conv weight gradient of u_0 against x. add_input_weight_grad turns the sum over all the
  /// points of an estimate into dF/dW_0 with one real product (acc0: conv_size(0) x B, zeroed
  /// by the caller).
  void add_dF_dtheta(const network& net, S beta, S coef, const vector<real>& w, std::span<real> grad,
                     matrix<real>& acc0);
  /// grad(W_0) -= conv weight gradient of acc0 against this state's input x, whose columns
  /// with w(b) == 0 are taken as zero (a dropped sample's input may be non-finite).
  void add_input_weight_grad(const network& net, const matrix<real>& acc0, const vector<real>& w, std::span<real> grad);

  /// dC/dh at the current state, per layer (zero except the last), into out.
  void dC_dh(const network& net, std::vector<matrix<S>>& out);
  /// out = (d pre / d h)(h_at) v, the coupling Jacobian (the Hessian of Phi in the states,
  /// symmetric). Dense: out_j = W_j v_{j-1} + W_{j+1}^T v_{j+1}; with pooling it depends on
  /// the states h_at through the pooling's slopes and curvature.
  void apply_coupling(const network& net, const std::vector<matrix<S>>& h_at, const std::vector<matrix<S>>& v,
                      std::vector<matrix<S>>& out);
  /// grad += Re( d/dtheta [ u . pre(x, h_at) ] ): the parameter gradient through one step
  /// whose dL/dpre is u (readout excluded). Dense: dW_j += u_j l_{j-1}^T + h_j u_{j-1}^T,
  /// db_j += sum u_j. Used by the exact references (BPTT, implicit differentiation).
  void add_coupling_param_grad(const network& net, const matrix<real>& x, const std::vector<matrix<S>>& h_at,
                               const std::vector<matrix<S>>& u, std::span<real> grad);

  std::vector<matrix<S>>& h() {  // writable: z_ may no longer match the states
    z_current_ = false;
    return h_;
  }
  const std::vector<matrix<S>>& h() const { return h_; }
  /// Pre-activations of the last step (those sigma was applied to).
  const std::vector<matrix<S>>& pre() const { return pre_; }
  const matrix<real>& x() const { return x_; }
  const matrix<real>& y() const { return y_; }
  const vector<real>& residual() const { return residual_; }  ///< per sample, last step
  long batch() const { return x_.cols(); }

  /// The column_state interface of the relaxation driver (relax_driver.hpp).
  template <class F>
  void for_each_column_buffer(F&& f) {
    f(x_), f(y_), f(drive_), f(residual_), f(col_nudge_);
    for (auto& m : h_) f(m);
    for (auto& m : pre_) f(m);
    for (auto& m : z_) f(m);
  }
  void columns_restored() { z_current_ = false; }
  bool column_finite(long b) const;

  /// sigma'(pre) elementwise for every layer, into out (sized like pre).
  void activation_deriv(activation_kind kind, std::vector<matrix<S>>& out) const;

 private:
  void compute_readout(const network& net);  // logits_, probs_ from h_.back()
  void size_buffers(const network& net, const matrix<real>& x, const matrix<real>& y);  // checks, stores x, y
  void dF_dtheta_impl(const network& net, S beta, S coef, const vector<real>& w, std::span<real> grad,
                      matrix<real>* acc0);
  // pre_j = P(conv_j l_{j-1}) + b_j for layer j, into pre (z_[j] keeps conv_j l_{j-1} when pooled).
  void bottom_up(const network& net, int j, const matrix<S>& l, matrix<S>& pre);
  real feedforward_sweep(const network& net, double noise_std, rng_t* rng);  // step() of a feed-forward net
  real finish_residuals();  // residual_ (sums of squares per sample) -> norms; returns the max (inf on NaN)
  std::vector<matrix<S>> h_, pre_;
  std::vector<matrix<S>> z_;           // per connection: conv output before pooling (pooled layers only)
  bool z_current_ = false;             // alternating order: z_ of the odd pooled layers is conv of the current h_
  matrix<S> col_, dz_, a_, c_;         // conv/pool scratch
  matrix<S> drive_;                    // W_0 x + b_0
  matrix<S> logits_, probs_, grad_h_;  // readout buffers; grad_h_ = dC/dh_{K-1}
  matrix<S> tmp_, tmp2_;               // scratch for gradients
  std::vector<matrix<S>> next_;        // sigma(pre) of the step being taken, swapped into h_
  vector<real> act_buf_[4];            // scratch of the vectorized activations
  matrix<real> x_, y_;
  vector<real> residual_;
  vector<S> col_nudge_;  // per-column nudge multipliers (empty: all 1)
  matmul_precision precision_ = matmul_precision::float32;
};

extern template class relax_state<float>;
extern template class relax_state<double>;
extern template class relax_state<std::complex<float>>;
extern template class relax_state<std::complex<double>>;
extern template class relax_state<std::complex<double>, std::complex<double>>;

}  // namespace eqprop
