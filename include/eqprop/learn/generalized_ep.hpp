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
// Every method is an estimator of the family over vector_field_network (grad_estimator):
//   cauchy: N = 1: (r_beta - r_0)/beta; N >= 2: Re (1/N) sum_k r_{beta_k}/beta_k on the
//           circle |beta| (+-beta real, conjugate pairs once), every point T2 steps from u*_0:
//           the N-point estimator every network kind shares (cauchy_ep.hpp, ep_model).
//   exact:  "N = 0": forward-mode derivative in beta at 0 of the T2-step nudged relaxation
//           from u*_0 (tangent u' <- C D u' - e, from u' = 0), then dr/dbeta = D u'
//           (forward_mode_ep, vf_estimators.hpp).
//   online: no free phase; from u = 0, q = online_steps/T2 segments with
//           beta_i = |beta| e^{2 pi i i/N}; at each segment end u and r/beta_i are averaged;
//           the presynaptic factor and readout use sigma(mean u): the continuous-time
//           estimator every network kind shares (continuous_hep.hpp, q segments).
//   rbp:    lambda <- D (C^T lambda + e) for rbp_steps (iterative) or a dense solve per sample
//           (recurrent_backprop, vf_estimators.hpp).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/aligned.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/vf_state.hpp"
#include "eqprop/learn/cauchy_ep.hpp"
#include "eqprop/learn/continuous_hep.hpp"
#include "eqprop/learn/vf_estimators.hpp"
#include "eqprop/model/vector_field_network.hpp"

namespace eqprop {

enum class gep_method { cauchy, exact, online, rbp };
std::string_view to_string(gep_method m);
gep_method parse_gep_method(std::string_view s);  ///< "cauchy" | "exact" | "online" | "rbp"

struct gep_options {
  gep_method method = gep_method::cauchy;
  int n_points = 2;                              ///< N (cauchy, online)
  double beta = 0.5;                             ///< |beta|
  long free_steps = 150;                         ///< T1
  long nudged_steps = 20;                        ///< T2 (cauchy, exact; online: steps per segment)
  long online_steps = 1200;                      ///< online: total steps (q = online_steps / nudged_steps segments)
  long rbp_steps = 0;                            ///< rbp iterative adjoint steps (0: free_steps)
  bool rbp_dense = false;                        ///< rbp: exact dense solve per sample (small networks)
  double tol = 1e-4;                             ///< a free phase with residual above this counts as not converged
  bool stop_early = false;                       ///< end the free phase once every sample's residual is <= tol
  bool freeze_converged = true;                  ///< with stop_early: converged samples stop, the others are compacted
  double omega = 1;                              ///< free phase: over-relaxation u <- u + omega (F - u), in (0, 2)
  relax_order order = relax_order::synchronous;  ///< free phase: the update order of a step
  matmul_precision precision = matmul_precision::float32;  ///< operands of the float32 products
  /// Column slices of the batch relaxed and differentiated in parallel, one thread each;
  /// deterministic for a given count, and counts agree to rounding (except ConvNet
  /// homeostasis, whose probes are drawn per slice).
  int threads = 1;
  double fail_residual = 1;  ///< a sample above this in any phase (or non-finite) is dropped
  // Jacobian homeostasis (spec §4), added to the gradient with coefficient lambda.
  double homeo_lambda = 0;
  int homeo_probes = 5;  ///< Gaussian probes per sample
  uint64_t seed = 0;     ///< probe stream
  void validate() const;
  /// The free phase's relaxation: free_steps, or fewer with stop_early; omega, order, precision.
  relax_options free_relax() const;
  /// The N-point estimator's options (method cauchy): the free phase of free_relax(), every
  /// nudged point exactly nudged_steps steps at the same precision, failed samples dropped.
  ep_options cauchy_options() const;
  /// The continuous-time estimator's options (method online): N, |beta|, T2 = nudged_steps,
  /// online_steps / nudged_steps segments, at the same tol, precision, fail_residual, threads.
  continuous_options online_options() const;
  /// Recurrent backprop's options (method rbp): the free phase of free_relax(), rbp_steps, rbp_dense.
  rbp_options backprop_options() const;
};

/// The method's estimate (loss: mean CE at the free state over the kept samples; free: the
/// free phase, for the continuous method the whole run; n_dropped: samples non-finite or
/// above fail_residual) and the homeostatic loss.
struct gep_result : grad_result {
  double homeo_loss = 0;  ///< Monte-Carlo homeostatic loss (per neuron) when lambda > 0
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
  /// The free state of column slice t of the last estimate (threads > 1 splits the batch
  /// into n_slices() contiguous slices).
  const vf_state<R>& free_state(int t = 0) const;
  int n_slices() const;
  const gep_options& options() const { return opt_; }
  void reseed(uint64_t seed) { rng_.seed(seed); }
  /// The generator of the homeostasis probes (a mid-epoch checkpoint saves its state).
  rng_t& rng() { return rng_; }

 private:
  // The method's estimator and views of its column slices: free (or reference) states, error
  // vectors and per-sample weights.
  template <class E>
  void bind(std::unique_ptr<E> e);
  gep_options opt_;
  std::unique_ptr<grad_estimator<R, vector_field_network<R>>> est_;
  std::function<int()> slices_;
  std::function<const vf_state<R>&(int)> free_;
  std::function<const std::vector<matrix<R>>&(int)> terms_;
  std::function<const vector<R>&(int)> weights_;
  std::vector<matrix<R>> eps_;
  rng_t rng_;
};

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

extern template class generalized_ep<float>;
extern template class generalized_ep<double>;

}  // namespace eqprop
