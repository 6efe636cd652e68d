// Exact reference gradients that every estimator is tested against (spec hep.md §4.5,
// §5.2.9, §8), plus the comparison helpers the estimator tests share.
//
// The loss is L = mean_b C(h_b) (docs/concepts.md), with C the softmax cross-entropy of the
// readout or 1/2 |h_{K-1} - y|^2 for an output layer. Two "exact" targets exist:
//
//  - the T-step loss: C at the state reached after exactly T synchronous free steps from
//    h = 0 (what BPTT differentiates; the authors' gradient check, §5.2.9), and
//  - the fixed-point loss: C at the free fixed point h* = sigma(pre(h*)) (what implicit
//    differentiation and the EP/hEP theorems target, §3 and §8).
//
// They coincide as T -> infinity on a contracting network. Everything here can be cross-
// checked: bptt_gradient vs finite_difference_gradient_steps / complex_step_gradient_steps
// (T-step loss), implicit_gradient vs finite_difference_gradient / complex_step_gradient
// (fixed-point loss).
//
// Gradient layout and sign: dL/dtheta in the layout of layered_network::params(); the
// optimiser descends theta <- theta - lr * grad.
#pragma once
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/error.hpp"
#include "eqprop/core/scalar.hpp"
#include "eqprop/dynamics/relax.hpp"
#include "eqprop/learn/estimator.hpp"
#include "eqprop/model/layered_network.hpp"

namespace eqprop {

// ---------------------------------------------------------------------------------------
// Backpropagation through time
// ---------------------------------------------------------------------------------------

/// Exact gradient of the T-step loss: T synchronous free steps (beta = 0) from h = 0, the
/// cost at the final state, reverse mode written by hand (spec §4.5). With truncate > 0
/// only the last `truncate` steps are differentiated (earlier states are constants), as
/// sweep_beta.py does for T1 > 300. Buffers are allocated once per batch shape.
/// Samples with non-finite states make estimate() throw convergence_error (a NaN gradient
/// is never returned). It does not require the free phase to converge: grad_result::free
/// reports the residual of the last step.
template <class R>
class bptt_gradient : public grad_estimator<R> {
 public:
  /// steps = T >= 1; truncate in [0, T], 0 = backprop through all T steps.
  explicit bptt_gradient(long steps, long truncate = 0);

  std::string name() const override;  ///< "BPTT T=30" or "BPTT T=400 truncate=50"
  grad_result estimate(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                       std::span<R> grad) override;

  long steps() const { return steps_; }
  long truncate() const { return truncate_; }

 private:
  long steps_, truncate_;
  relax_state<R> state_;
  // hist_h_[s][j]: h_j before backprop step s; hist_d_[s][j]: sigma'(pre_j) of that step.
  std::vector<std::vector<matrix<R>>> hist_h_, hist_d_;
  std::vector<matrix<R>> delta_, u_;
  matrix<R> probs_;
  long shape_B_ = -1;
  std::vector<int> shape_sizes_;
};

// ---------------------------------------------------------------------------------------
// Feed-forward backprop (the papers' BP baselines)
// ---------------------------------------------------------------------------------------

/// Ordinary backprop through a feed-forward network (network_spec::feedforward: one sweep
/// h_j = sigma(P(conv_j h_{j-1}) + b_j), softmax readout): the "BP twin" of an EP network
/// with the same layers (hEP spec §6.2, ReLU and softmax pooling). Exact for its own loss.
template <class R>
class feedforward_backprop : public grad_estimator<R> {
 public:
  std::string name() const override { return "feed-forward backprop"; }
  grad_result estimate(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                       std::span<R> grad) override;

 private:
  relax_state<R> state_;
  std::vector<matrix<R>> delta_, deriv_;
  matrix<R> u_, z_, col_, probs_;
};

// ---------------------------------------------------------------------------------------
// Implicit differentiation at the fixed point (recurrent backprop)
// ---------------------------------------------------------------------------------------

enum class adjoint_solver {
  automatic,  ///< dense when the number of hidden units n <= 1000, else iterative
  iterative,  ///< lambda <- g + J D lambda until the update is below adjoint_tol
  dense,      ///< per sample, build I - J D (n x n) and solve with PartialPivLU
};
std::string_view to_string(adjoint_solver s);

struct implicit_options {
  relax_options free{};  ///< free phase (max_steps, tol, stop_early)
  adjoint_solver solver = adjoint_solver::automatic;
  double adjoint_tol = 0;         ///< iterative: per sample |d lambda| <= tol |g|; 0: 50 eps of R
  long adjoint_max_iter = 10000;  ///< iterative: convergence_error beyond this
  /// Samples whose free phase did not converge to free.tol: error (default) throws
  /// convergence_error; drop excludes them (counted in n_dropped); keep uses them anyway
  /// (non-finite samples are always dropped).
  nonconvergence_policy policy = nonconvergence_policy::error;
};

/// Exact gradient of the fixed-point loss by implicit differentiation. With
/// h* = sigma(pre(h*)), pre = J h + drive, D = diag(sigma'(pre*)), g = dC/dh*, it solves the
/// adjoint system (I - J D) lambda = g (J, D symmetric), sets u = D lambda (= dL/dpre), and
/// returns dL/dW_j = u_j l_{j-1}^T + h*_j u_{j-1}^T (the W_j^T h_j term of pre_{j-1}),
/// dL/db_j = sum u_j, plus the readout terms, all averaged over the batch.
template <class R>
class implicit_gradient : public grad_estimator<R> {
 public:
  explicit implicit_gradient(relax_options free, adjoint_solver solver = adjoint_solver::automatic);
  explicit implicit_gradient(implicit_options opt);

  std::string name() const override;  ///< e.g. "implicit (dense) T<=200"
  grad_result estimate(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                       std::span<R> grad) override;

  const implicit_options& options() const { return opt_; }
  /// The solver used by the last estimate() (automatic resolved) and, for the iterative
  /// one, the number of adjoint iterations it ran (0 for dense).
  adjoint_solver last_solver() const { return last_solver_; }
  long last_adjoint_iterations() const { return last_iters_; }
  /// Largest per-sample relative residual |(I - J D) lambda - g| / |g| of the last solve.
  double last_adjoint_residual() const { return last_adj_residual_; }

 private:
  implicit_options opt_;
  relax_state<R> state_;
  std::vector<matrix<R>> g_full_, d_full_, g_, d_, h_, lam_, v_, tmp_;
  matrix<R> x_kept_, y_kept_, probs_;
  matrix<R> J_, M_;  // dense solver: the coupling and I - J D
  vector<R> dv_, gv_, lv_;
  Eigen::PartialPivLU<matrix<R>> lu_;
  adjoint_solver last_solver_ = adjoint_solver::automatic;
  long last_iters_ = 0;
  double last_adj_residual_ = 0;
};

// ---------------------------------------------------------------------------------------
// Losses, finite differences and complex-step differentiation
// ---------------------------------------------------------------------------------------

/// Mean cost at the free fixed point, relaxed from h = 0 with opt. Throws
/// convergence_error if any sample is not converged to opt.tol (or is non-finite).
template <class R>
double loss_at_fixed_point(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                           const relax_options& opt);
/// Mean cost after exactly `steps` free synchronous steps from h = 0 (the loss BPTT
/// differentiates). No convergence required; throws convergence_error on non-finite states.
template <class R>
double loss_after_steps(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y, long steps);

enum class fd_stencil {
  central2,  ///< (L(+h) - L(-h)) / 2h, error O(h^2); h ~ 1e-6 in float64
  central4,  ///< (-L(+2h) + 8L(+h) - 8L(-h) + L(-2h)) / 12h, error O(h^4); h ~ 1e-3 in float64
};

/// Finite-difference gradient of the mean cost at the free fixed point (loss_at_fixed_point
/// for a layered network) over every parameter (or only the parameters listed in `indices`,
/// in that order), re-solving the fixed point from zero for each evaluation. Net: any
/// network kind with an ep_model (layered_network<double>, vector_field_network<double>).
/// For reference-quality values use opt.tol = 1e-15 with stop_early and enough max_steps.
/// h is absolute.
template <class Net>
std::vector<double> finite_difference_gradient(const Net& net, const matrix<double>& x, const matrix<double>& y,
                                               const relax_options& opt, double h = 1e-6,
                                               fd_stencil stencil = fd_stencil::central2,
                                               std::span<const long> indices = {});
/// Same for the T-step loss (loss_after_steps): the target of bptt_gradient(steps).
std::vector<double> finite_difference_gradient_steps(const layered_network<double>& net, const matrix<double>& x,
                                                     const matrix<double>& y, long steps, double h = 1e-6,
                                                     fd_stencil stencil = fd_stencil::central2,
                                                     std::span<const long> indices = {});

/// Complex-step gradient of the fixed-point loss: the network is cast to complex<double>,
/// parameter i is perturbed by i*h, the complex state relaxed to the fixed point, and
/// dL/dtheta_i = Im(mean C) / h, exact to rounding (no subtractive cancellation, no step
/// tuning). Convergence is required both of the state (residual <= opt.tol) and of its
/// imaginary part (the tangent dh/dtheta_i: relative change per step <= max(opt.tol, 1e-14));
/// otherwise convergence_error. Needs a holomorphic activation (config_error otherwise).
std::vector<double> complex_step_gradient(const layered_network<double>& net, const matrix<double>& x,
                                          const matrix<double>& y, const relax_options& opt, double h = 1e-30,
                                          std::span<const long> indices = {});
/// Same for the T-step loss: the target of bptt_gradient(steps), to rounding.
std::vector<double> complex_step_gradient_steps(const layered_network<double>& net, const matrix<double>& x,
                                                const matrix<double>& y, long steps, double h = 1e-30,
                                                std::span<const long> indices = {});

// ---------------------------------------------------------------------------------------
// Comparison helpers (any contiguous ranges of float/double: std::vector, std::span)
// ---------------------------------------------------------------------------------------

namespace detail {
template <class A, class B>
void check_same_size(const A& a, const B& b, const char* what) {
  if (std::size(a) != std::size(b))
    throw shape_error(std::string(what) + ": vectors of different sizes (" + std::to_string(std::size(a)) + " vs " +
                      std::to_string(std::size(b)) + ")");
}
// Sums over [begin, end): |a-b|^2, |b|^2, a.b, |a|^2 in double.
struct sums {
  double diff2 = 0, b2 = 0, ab = 0, a2 = 0;
};
template <class A, class B>
sums range_sums(const A& a, const B& b, size_t begin, size_t end) {
  sums s;
  for (size_t i = begin; i < end; ++i) {
    const double ai = double(a[i]), bi = double(b[i]);
    s.diff2 += (ai - bi) * (ai - bi);
    s.b2 += bi * bi;
    s.a2 += ai * ai;
    s.ab += ai * bi;
  }
  return s;
}
inline double rel_from(const sums& s) {
  if (s.b2 == 0) return s.diff2 == 0 ? 0.0 : HUGE_VAL;
  return std::sqrt(s.diff2 / s.b2);
}
inline double cos_from(const sums& s) {
  if (s.a2 == 0 || s.b2 == 0) return (s.a2 == 0 && s.b2 == 0) ? 1.0 : 0.0;
  return s.ab / (std::sqrt(s.a2) * std::sqrt(s.b2));
}
template <class A, class B, class F>
std::vector<double> per_group(const std::vector<param_block>& layout, const A& a, const B& b, F f) {
  check_same_size(a, b, "per_group");
  int n_groups = 0;
  for (const auto& blk : layout) n_groups = std::max(n_groups, blk.group + 1);
  std::vector<sums> acc(n_groups);
  std::vector<long> count(n_groups, 0);
  for (const auto& blk : layout) {
    if (static_cast<size_t>(blk.offset + blk.size()) > std::size(a))
      throw shape_error("per_group: the vectors are shorter than the parameter layout");
    const sums s = range_sums(a, b, static_cast<size_t>(blk.offset), static_cast<size_t>(blk.offset + blk.size()));
    auto& t = acc[blk.group];
    t.diff2 += s.diff2, t.b2 += s.b2, t.ab += s.ab, t.a2 += s.a2;
    count[blk.group] += blk.size();
  }
  std::vector<double> out;
  for (int g = 0; g < n_groups; ++g)
    if (count[g] > 0) out.push_back(f(acc[g]));
  return out;
}
}  // namespace detail

/// |a - b| / |b| (L2). 0 when both are zero, +inf when only b is.
template <class A, class B>
double relative_error(const A& a, const B& b) {
  detail::check_same_size(a, b, "relative_error");
  return detail::rel_from(detail::range_sums(a, b, 0, std::size(a)));
}
/// a.b / (|a| |b|). 1 when both are zero, 0 when only one is.
template <class A, class B>
double cosine(const A& a, const B& b) {
  detail::check_same_size(a, b, "cosine");
  return detail::cos_from(detail::range_sums(a, b, 0, std::size(a)));
}
/// relative_error per parameter group (W_j with b_j; the readout), in the order of
/// param_group_names(spec): empty groups (the readout of an output-layer network) are skipped.
template <class A, class B>
std::vector<double> per_group_rel_error(const std::vector<param_block>& layout, const A& a, const B& b) {
  return detail::per_group(layout, a, b, detail::rel_from);
}
/// cosine per parameter group, same order as per_group_rel_error.
template <class A, class B>
std::vector<double> per_group_cosine(const std::vector<param_block>& layout, const A& a, const B& b) {
  return detail::per_group(layout, a, b, detail::cos_from);
}

extern template class bptt_gradient<float>;
extern template class bptt_gradient<double>;
extern template class implicit_gradient<float>;
extern template class implicit_gradient<double>;

}  // namespace eqprop
