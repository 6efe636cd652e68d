// Generalized holomorphic EP for vector-field networks without weight symmetry, recurrent
// backprop as the exact reference, Jacobian homeostasis and the symmetry diagnostics
// (spec generalized-ep.md §2-§6, docs/generalized-ep.md).
//
// Notation (vector_field_network.hpp): r = sigma(u), C the coupling matrix over the
// dynamical layers, D = diag(sigma'(u*)), e = dl/dr at the free fixed point u*.
// Every estimator produces an error vector eps on the activities of layers 1..K and the
// gradient
//   dl/dM_e = mean_b eps_dst r_src^T,  dl/db_e = mean_b eps_dst,  plus the readout's
//   direct gradient (p - y) r_K^T, (p - y) at the free state,
// with the presynaptic factor r at the free state (spec §2.2). The error vectors:
//   EP (cauchy, exact, online): eps = -d r*/d beta = (I - D C)^{-1} D e   (u-form of (D^-1 - C)^-1 e)
//   RBP (the exact gradient):   eps = lambda = (I - D C^T)^{-1} D e
// They agree when C is symmetric (B = W^T); otherwise EP carries the asymmetry bias.
//   cauchy: N = 1: (r_beta - r_0)/beta; N >= 2: Re (1/N) sum_k r_{beta_k}/beta_k on the
//           circle |beta| (+-beta real, conjugate pairs once), every point T2 steps from u*_0.
//   exact:  "N = 0": forward-mode derivative in beta at 0 of the T2-step nudged relaxation
//           from u*_0 (tangent u' <- C D u' - e, from u' = 0), then dr/dbeta = D u'.
//   online: no free phase; from u = 0, q = online_steps/T2 segments with
//           beta_i = |beta| e^{2 pi i i/N}; at each segment end u and r/beta_i are averaged;
//           the presynaptic factor and readout use sigma(mean u).
//   rbp:    lambda <- D (C^T lambda + e) for rbp_steps (iterative) or a dense solve per sample.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/aligned.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/relax_driver.hpp"
#include "eqprop/model/vector_field_network.hpp"

namespace eqprop {

/// Workspace of one batch: states of scalar S (real or complex) for a network with real
/// parameters R. Buffers are sized by set_input(); step() does not allocate.
template <class S, class R = real_t<S>>
class vf_state {
 public:
  using scalar = S;
  /// Sizes buffers, stores x (n_in x B) and one-hot y (n_classes x B), casts the
  /// parameters to S, computes the input drive and resets u to 0.
  void set_input(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y);
  void reset();
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
  /// sets it from its options.
  void set_precision(matmul_precision p) { precision_ = p; }
  /// Relaxation by the driver (relax_driver.hpp): opt.max_steps steps, or fewer with
  /// opt.stop_early (per-sample freezing with opt.freeze_converged), opt.omega as alpha,
  /// opt.order, neuron noise on u. Residuals and failures per sample are reported against
  /// opt.tol.
  relax_report relax(S beta, const relax_options& opt);
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
  const matrix<S>& dl_dr() const { return e_; }            ///< e on layer K
  const matrix<R>& y() const { return y_; }
  const vector<R>& residual() const { return residual_; }
  long batch() const { return y_.cols(); }
  /// Per-sample CE at the current activities (real part).
  void loss_per_sample(vector<R>& out);

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
  void add_coupling(std::vector<matrix<S>>& out, int parity = -1);  // out += C(r) into layers of a parity (-1: all), caching z
  void linearize();                                 // z at the current r (conv edges)
  const vector_field_network<R>* net_ = nullptr;
  std::vector<matrix<S>> z_;                  // conv edges: conv output before pooling (forward: of r_src, feedback: of r_dst)
  bool lin_valid_ = false;                    // z_ matches the current r
  matrix<S> col_, t1_, t2_, dz_;
  vector<real_t<S>> act_buf_[4];              // scratch of the vectorized activations
  matmul_precision precision_ = matmul_precision::float32;
  std::vector<matrix<S>> u_, r_, drive_, next_;  // index 0 unused for u, drive, next
  matrix<S> logits_, probs_, e_;
  matrix<R> y_;
  vector<R> residual_;
  std::vector<matrix<S>> tmp_;
};

enum class gep_method { cauchy, exact, online, rbp };
std::string_view to_string(gep_method m);
gep_method parse_gep_method(std::string_view s);  ///< "cauchy" | "exact" | "online" | "rbp"

struct gep_options {
  gep_method method = gep_method::cauchy;
  int n_points = 2;          ///< N (cauchy, online)
  double beta = 0.5;         ///< |beta|
  long free_steps = 150;     ///< T1
  long nudged_steps = 20;    ///< T2 (cauchy, exact; online: steps per segment)
  long online_steps = 1200;  ///< online: total steps (q = online_steps / nudged_steps segments)
  long rbp_steps = 0;        ///< rbp iterative adjoint steps (0: free_steps)
  bool rbp_dense = false;    ///< rbp: exact dense solve per sample (small networks)
  double tol = 1e-4;         ///< a free phase with residual above this counts as not converged
  bool stop_early = false;   ///< end the free phase once every sample's residual is <= tol
  bool freeze_converged = true;  ///< with stop_early: converged samples stop, the others are compacted
  double omega = 1;          ///< free phase: over-relaxation u <- u + omega (F - u), in (0, 2)
  relax_order order = relax_order::synchronous;  ///< free phase: the update order of a step
  matmul_precision precision = matmul_precision::float32;  ///< operands of the float32 products
  /// Column slices of the batch relaxed and differentiated in parallel, one thread each;
  /// deterministic for a given count, and counts agree to rounding (except ConvNet
  /// homeostasis, whose probes are drawn per slice).
  int threads = 1;
  double fail_residual = 1;  ///< a sample above this in any phase (or non-finite) is dropped
  // Jacobian homeostasis (spec §4), added to the gradient with coefficient lambda.
  double homeo_lambda = 0;
  int homeo_probes = 5;      ///< Gaussian probes per sample
  uint64_t seed = 0;         ///< probe stream
  void validate() const;
  /// The free phase's relaxation: free_steps, or fewer with stop_early; omega, order, precision.
  relax_options free_relax() const;
};

struct gep_result {
  double loss = 0;                   ///< mean CE at the free state (kept samples)
  std::vector<int32_t> predictions;  ///< argmax of the readout at the free state
  relax_report free;                 ///< free phase (online: the whole run)
  long n_dropped = 0;                ///< samples excluded (non-finite or residual > fail_residual)
  long relax_steps = 0;
  double homeo_loss = 0;             ///< Monte-Carlo homeostatic loss (per neuron) when lambda > 0
};

template <class R>
class generalized_ep {
 public:
  explicit generalized_ep(gep_options opt);
  std::string name() const;
  /// Writes the estimate of dl/dtheta (plus lambda * homeostatic gradient) into grad (overwritten).
  gep_result estimate(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y, std::span<R> grad);
  /// eps per layer (index 1..K) of the last estimate (dropped samples zeroed).
  const std::vector<matrix<R>>& error_vectors() const { return eps_; }
  /// The free state of the last estimate (with threads > 1, of the first column slice).
  const vf_state<R>& free_state() const {
    if (slices_.empty()) throw internal_error("generalized_ep::free_state: no estimate yet");
    return slices_[0].free;
  }
  const gep_options& options() const { return opt_; }
  void reseed(uint64_t seed) { rng_.seed(seed); }

 private:
  // The workspaces of one column slice of the batch (the whole batch with threads = 1).
  struct slice {
    matrix<R> x, y;
    vf_state<R> free, real_pt;
    vf_state<std::complex<R>> cplx_pt;
    std::vector<matrix<R>> eps, ud, d, lam, tmp;
    std::vector<matrix<std::complex<R>>> acc_u, acc_r;
    std::vector<char> failed;  // per sample: dropped from the gradient
    relax_report free_report;
    long relax_steps = 0;
    vector<R> w;               // per-sample weights of the gradient
    aligned_vector<R> grad;    // this slice's gradient (threads > 1)
  };
  // Free phase and the method's phases on one slice: its eps, failures and reports.
  void run_phases(slice& s, const vector_field_network<R>& net);
  gep_options opt_;
  std::vector<slice> slices_;
  std::vector<matrix<R>> eps_;
  rng_t rng_;
};

/// Gradient assembly: grad = mean_b w_b [eps_dst r_src^T; eps_dst] over the edges, plus the
/// readout gradient (p - y) r_K^T from st (the free state). grad is overwritten.
template <class R>
void gep_assemble_gradient(const vector_field_network<R>& net, vf_state<R>& st,
                           const std::vector<matrix<R>>& eps, const vector<R>& w, std::span<R> grad);

/// Dense coupling matrix C over the dynamical layers (n x n, n = n_states()), layer blocks in
/// order (dense networks; config_error for a ConvNet).
template <class R>
matrix<double> coupling_matrix(const vector_field_network<R>& net);

/// Monte-Carlo homeostatic loss (spec §4.2) of the activation-bypassed field r -> C r + b - r,
/// J = C - I: mean over n_probes Gaussian eps of (|J eps|^2 - eps^T J^2 eps) / n, using
/// J eps, J(J eps) (two JVPs) and J^T eps. If grad is non-empty, grad += coef * d/dtheta
/// (weights only; the Jacobian of a dense network does not depend on the state).
template <class R>
double homeostatic_loss_mc(const vector_field_network<R>& net, long n_probes, rng_t& rng, std::span<R> grad = {},
                           double coef = 1);
/// Exact value 2 |A|_F^2 / n with A = (C - C^T)/2; grad += coef * 4 A / n on the edge blocks (dense networks).
template <class R>
double homeostatic_loss_exact(const vector_field_network<R>& net, std::span<R> grad = {}, double coef = 1);

/// The homeostatic loss of homeostatic_loss_mc at the activities of the state `at` (ConvNets:
/// the Jacobian J = dC/dr - I depends on the state through the pooling): probes_per_sample
/// Gaussian probes for every sample of at's batch, mean over all probes, per neuron. If grad
/// is non-empty, grad += coef * d/dtheta with the activities held fixed (weights only); the
/// mixed derivatives d<a, J b>/dtheta come from a complex step along b of the parameter VJP.
template <class R>
double homeostatic_loss_at(const vector_field_network<R>& net, const vf_state<R>& at, long probes_per_sample,
                           rng_t& rng, std::span<R> grad = {}, double coef = 1);

struct jacobian_stats {
  double symmetry_index = 0;  ///< |S| / (|S| + |A|), Frobenius norms averaged over the samples' Jacobians
  double homeo = 0;           ///< 2 |A|_F^2 / n, mean over the samples
};
/// Probe (Hutchinson) estimates of the Jacobian's symmetric and antisymmetric parts at the
/// activities of `at` (any network; for dense ones jacobian_symmetry_index is exact).
template <class R>
jacobian_stats jacobian_stats_at(const vector_field_network<R>& net, const vf_state<R>& at, long probes_per_sample,
                                 rng_t& rng);

/// |S| / (|S| + |A|) (Frobenius) of J = C - I (dense networks).
template <class R>
double jacobian_symmetry_index(const vector_field_network<R>& net);
/// Angle in degrees between the forward weights and the transposed feedback weights,
/// summed over reciprocal pairs; NaN when there is no reciprocal pair (loop).
template <class R>
double feedback_angle_deg(const vector_field_network<R>& net);

struct gep_diagnostics {
  double symmetry_index = 0, angle_deg = 0, homeo_exact = 0;
  std::vector<double> layer_cosine;  ///< per layer 1..K: cos(eps_EP, eps_RBP) over the batch
  double grad_cosine = 0;            ///< cosine between the EP and the RBP gradient
  double grad_rel_error = 0;         ///< |g_EP - g_RBP| / |g_RBP|
  long n_dropped_ep = 0, n_dropped_rbp = 0, n_free_not_converged = 0;
};
/// Diagnostics on one batch: the estimator ep (any EP method) against RBP (same free phase settings).
template <class R>
gep_diagnostics gep_diagnose(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                             const gep_options& ep, bool rbp_dense);

extern template class vf_state<float>;
extern template class vf_state<double>;
extern template class vf_state<std::complex<float>>;
extern template class vf_state<std::complex<double>>;
extern template class generalized_ep<float>;
extern template class generalized_ep<double>;

}  // namespace eqprop
