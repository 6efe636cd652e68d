// Estimators of vector-field networks (generalized-ep.md §2) that read one error vector eps
// per sample off the free fixed point u*, without nudged points on a circle:
//   forward_mode_ep:    the N = 0 limit of cauchy_ep, eps = -d r*/d beta at beta = 0 by
//                       forward mode along the T2-step nudged relaxation from u*
//                       (tangent u' <- C D u' - e from u' = 0, then eps = -D u');
//   recurrent_backprop: the exact gradient (implicit differentiation), eps = lambda =
//                       (I - D C^T)^{-1} D e, by lambda <- D (C^T lambda + e) or a dense solve
//                       per sample.
// Both share vf_eps_estimator: column slices on threads, the free phase, failed samples
// (residual above fail_residual in any phase, or non-finite) dropped from the batch mean, the
// loss and predictions at the free state and the gradient mean_b w_b eps_dst r_src^T plus the
// readout's (gep_assemble_gradient).
#pragma once
#include <string>
#include <vector>

#include "eqprop/core/aligned.hpp"
#include "eqprop/dynamics/vf_state.hpp"
#include "eqprop/learn/cauchy_ep.hpp"

namespace eqprop {

template <class R>
class vf_eps_estimator : public grad_estimator<R, vector_field_network<R>> {
 public:
  grad_result estimate(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                       std::span<R> grad) final;
  /// The free state of column slice t of the last estimate (threads > 1 splits the batch into
  /// n_slices() contiguous slices).
  const vf_state<R>& free_state(int t = 0) const { return slices_.at(size_t(t)).free; }
  int n_slices() const { return int(slices_.size()); }
  /// Slice t's error vectors (layers 1..K; dropped samples zeroed) and per-sample weights
  /// (w = 0: dropped) of the last estimate.
  const std::vector<matrix<R>>& slice_terms(int t) const { return slices_.at(size_t(t)).eps; }
  const vector<R>& slice_weights(int t) const { return slices_.at(size_t(t)).w; }

 protected:
  /// free: the free phase; threads: column slices (clamped to the batch).
  vf_eps_estimator(relax_options free, double fail_residual, int threads);
  // One column slice of the batch with its workspaces.
  struct slice {
    matrix<R> x, y;
    vf_state<R> free, aux;
    std::vector<matrix<R>> eps, d, v, tmp;
    std::vector<char> failed;
    relax_report free_report;
    long relax_steps = 0;
    vector<R> w;
    aligned_vector<R> grad;
  };
  /// The method: s.eps (sized K + 1, layers 1..K, n_i x batch) from the relaxed free state
  /// s.free; adds its steps to s.relax_steps and flags failed samples in s.failed.
  virtual void error_vectors(slice& s, const vector_field_network<R>& net) = 0;
  const relax_options& free_options() const { return free_; }
  /// A sample whose residual is above this in any phase (or non-finite) is dropped.
  double fail_residual() const { return fail_residual_; }

 private:
  relax_options free_;
  double fail_residual_;
  int threads_;
  std::vector<slice> slices_;
};

/// The N = 0 limit of the N-point estimator (cauchy_ep over vector fields) with the same
/// options: ep_options::free, nudged (T2 = nudged.max_steps tangent steps, at its precision),
/// fail_residual and threads; n_points and beta are not used.
template <class R>
class forward_mode_ep : public vf_eps_estimator<R> {
 public:
  explicit forward_mode_ep(const ep_options& opt);
  std::string name() const override;

 private:
  using slice = typename vf_eps_estimator<R>::slice;
  void error_vectors(slice& s, const vector_field_network<R>& net) override;
  relax_options nudged_;
};

struct rbp_options {
  relax_options free{150, 1e-4, false};
  long adjoint_steps = 0;    ///< iterative adjoint steps (0: free.max_steps)
  bool dense = false;        ///< exact dense solve per sample (dense networks; config_error for a ConvNet)
  double fail_residual = 1;  ///< free phase residual above this (or non-finite eps): dropped
  int threads = 1;
};

/// Recurrent backprop: the exact gradient of the loss at the free fixed point for any feedback.
template <class R>
class recurrent_backprop : public vf_eps_estimator<R> {
 public:
  explicit recurrent_backprop(rbp_options opt);
  std::string name() const override;

 private:
  using slice = typename vf_eps_estimator<R>::slice;
  void error_vectors(slice& s, const vector_field_network<R>& net) override;
  rbp_options opt_;
};

extern template class vf_eps_estimator<float>;
extern template class vf_eps_estimator<double>;
extern template class forward_mode_ep<float>;
extern template class forward_mode_ep<double>;
extern template class recurrent_backprop<float>;
extern template class recurrent_backprop<double>;

}  // namespace eqprop
