// Equilibrium propagation with N teaching signals on a circle: the N-point Cauchy
// estimator of holomorphic EP (hep.md §3), which contains classic one-sided EP (N = 1)
// and symmetric +-beta EP (N = 2) as special cases, for every network kind with an
// ep_model (layered networks; vector fields without weight symmetry, generalized-ep.md §2).
//
// With beta_k = r e^{2 pi i k / N} and f(beta) = dF/dtheta at the nudged fixed point,
//   N = 1:  g = (f(r) - f(0)) / r                                  error O(r)
//   N >= 2: g = Re (1/N) sum_k f(beta_k) / beta_k                  error O(r^N)
// Real parameters and inputs make f(conj beta) = conj f(beta), so with start =
// free_state the points k and N-k are computed once (doubled), and the points +-r run
// in real arithmetic: 1 or 2 real and ceil(N/2)-1 complex relaxations per estimate.
// With start = warm the points are visited in order around the circle, each starting
// from the previous point's final state (all complex, no conjugate trick).
#pragma once
#include <complex>
#include <string>
#include <vector>

#include "eqprop/core/aligned.hpp"
#include "eqprop/dynamics/vf_state.hpp"
#include "eqprop/learn/estimator.hpp"
#include "eqprop/model/vector_field_network.hpp"

namespace eqprop {

enum class ep_start {
  free_state,  ///< every point starts from the free equilibrium (hep.md §4.2)
  warm,        ///< sequentially around the circle, each from the previous point (§4.3)
};

struct ep_options {
  int n_points = 1;   ///< N
  double beta = 0.1;  ///< |beta|, the radius r
  relax_options free{100, 0, false};
  relax_options nudged{100, 0, false};
  ep_start start = ep_start::free_state;
  nonconvergence_policy on_failure = nonconvergence_policy::drop;
  double fail_residual = 1.0;  ///< a sample whose residual exceeds this in any phase has failed
  /// Neuron noise (hep.md section 4.3): Gaussian noise of this std added to every
  /// pre-activation at every step of the nudged phases, and of the free phase too when
  /// noise_in_free_phase (the paper's training keeps the free phase noiseless).
  double noise_std = 0;
  bool noise_in_free_phase = false;
  uint64_t noise_seed = 0;
  /// > 0: dF/dtheta is averaged over the last average_last steps of every phase instead of
  /// read at the last step (the paper's noisy classic EP uses 5).
  int average_last = 0;
  /// Column slices of the batch relaxed (and differentiated) in parallel, one OpenMP thread
  /// each; 1 runs the whole batch on the calling thread. The result is deterministic for a
  /// given count; different counts agree to rounding (the batch sums of the gradient are
  /// split), and with stop_early each slice stops on its own samples (as a non-finite
  /// residual ends only its own slice's relaxation). With neuron noise the estimate runs on
  /// one thread (one noise stream).
  int threads = 1;
  /// With start = free_state, no noise and no averaging: the real points (+-r) relax side by
  /// side as one batch of 2B columns, and the complex points as one of (ceil(N/2)-1) B columns
  /// (relax_state::set_column_nudge), so that the products are wider. The same estimate
  /// (rounding aside); with stop_early the stacked points stop together, each sample frozen
  /// on its own (relax_options::freeze_converged).
  bool stack_points = true;
  void validate() const;
};

/// The state a continuous-time estimate (continuous_hep) reads its loss and predictions at
/// and finishes its gradient at: the mean of the network's states over
enum class continuous_reference {
  last_period_steps,  ///< every step of the last period (layered: the circle's centre, hep.md §4.4)
  segment_ends,       ///< the segment ends of the whole run, activities sigma(mean u) (generalized-ep.md §2)
};

/// What the estimator needs from a network kind besides its state type: the state of
/// scalar S, the per-slice accumulator of the point terms, and how a point's term is
/// added and the gradient finished. Specialised for layered and vector-field networks.
///
/// Layered (energy-based, hep.md): a point adds Re(coef dF/dtheta) at its state; the first
/// connection's weight term is gathered in one matrix and turned into a gradient at the end.
/// Vector field (generalized-ep.md §2.2): a point adds eps -= Re(coef r(beta)) to the error
/// vectors; the gradient is then eps_dst r_src^T with r at the free state, plus the readout's.
///
/// Continuous time (continuous_hep) also uses: per_sample_terms (the accumulator keeps one
/// column per sample, so a failed sample is dropped by its weight in finish(); otherwise the
/// terms are batch sums and the estimate is re-run without it), reference and states() (the
/// states averaged into the reference state) and set_reference (that state from their mean).
template <class Net>
struct ep_model;

template <class R>
struct ep_model<layered_network<R>> {
  template <class S>
  using state = relax_state<S, R>;
  using accumulator = matrix<R>;
  static constexpr bool can_stack = true;
  static void begin(accumulator& acc, const layered_network<R>& net, long B) {
    acc.setZero(net.geometry(0).conv_size(), B);
  }
  template <class S>
  static void point_input(state<S>& st, const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                          const state<R>& free) {
    st.set_input_shared(net, x, y, free.drive());
  }
  static void start_complex(state<std::complex<R>>& st, const state<R>& free) { st.set_states_from_real(free.h()); }
  template <class S>
  static void add_point(state<S>& st, const layered_network<R>& net, S beta, S coef, const vector<R>& w,
                        std::span<R> grad, accumulator& acc) {
    st.add_dF_dtheta(net, beta, coef, w, grad, acc);
  }
  static void finish(state<R>& free, const layered_network<R>& net, const accumulator& acc, const vector<R>& w,
                     std::span<R> grad) {
    free.add_input_weight_grad(net, acc, w, grad);
  }
  static constexpr bool per_sample_terms = false;
  static constexpr continuous_reference reference = continuous_reference::last_period_steps;
  template <class S>
  static const std::vector<matrix<S>>& states(const state<S>& st) {
    return st.h();
  }
  static void set_reference(state<R>& ref, const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                            const std::vector<matrix<R>>& mean) {
    ref.set_input(net, x, y);
    ref.set_states_from_real(mean);
  }
};

template <class R>
struct ep_model<vector_field_network<R>> {
  template <class S>
  using state = vf_state<S, R>;
  using accumulator = std::vector<matrix<R>>;  // eps of layers 1..K
  static constexpr bool can_stack = false;
  static void begin(accumulator& acc, const vector_field_network<R>& net, long B) {
    acc.assign(net.n_layers() + 1, matrix<R>());
    for (int i = 1; i <= net.n_layers(); ++i) acc[i].setZero(net.size(i), B);
  }
  template <class S>
  static void point_input(state<S>& st, const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                          const state<R>&) {
    st.set_input(net, x, y);
  }
  static void start_complex(state<std::complex<R>>& st, const state<R>& free) { st.set_states_from(free.u()); }
  template <class S>
  static void add_point(state<S>& st, const vector_field_network<R>&, S, S coef, const vector<R>&, std::span<R>,
                        accumulator& acc) {
    for (size_t i = 1; i < acc.size(); ++i) {
      if constexpr (is_complex_v<S>) acc[i] -= (coef * st.r()[i]).real();
      else acc[i] -= coef * st.r()[i];
    }
  }
  // Overwrites grad: the points added nothing to it.
  static void finish(state<R>& free, const vector_field_network<R>& net, const accumulator& acc, const vector<R>& w,
                     std::span<R> grad) {
    gep_assemble_gradient(net, free, acc, w, grad);
  }
  static constexpr bool per_sample_terms = true;
  static constexpr continuous_reference reference = continuous_reference::segment_ends;
  template <class S>
  static const std::vector<matrix<S>>& states(const state<S>& st) {
    return st.u();
  }
  static void set_reference(state<R>& ref, const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                            const std::vector<matrix<R>>& mean) {
    ref.set_input(net, x, y);
    ref.set_states_from(mean);
  }
};

/// The N-point estimator over any network kind with an ep_model (layered: energy-based EP and
/// hEP; vector field: generalized hEP without weight symmetry).
template <class R, class Net = layered_network<R>>
class cauchy_ep : public grad_estimator<R, Net> {
  using model = ep_model<Net>;
  template <class S>
  using state = typename model::template state<S>;

 public:
  using complex = std::complex<R>;
  using accumulator = typename model::accumulator;
  explicit cauchy_ep(ep_options opt);
  std::string name() const override;
  grad_result estimate(const Net& net, const matrix<R>& x, const matrix<R>& y, std::span<R> grad) override;
  const ep_options& options() const { return opt_; }
  /// The free-phase workspace of the last estimate (states, residuals) of column slice t
  /// (threads > 1 splits the batch into n_slices() contiguous slices).
  const state<R>& free_state(int t = 0) const { return slices_.at(size_t(t)).free; }
  state<R>& free_state(int t = 0) { return slices_.at(size_t(t)).free; }
  int n_slices() const { return int(slices_.size()); }
  /// Slice t's accumulated point terms and per-sample weights of the last estimate (w = 0:
  /// a dropped sample).
  const accumulator& slice_terms(int t) const { return slices_.at(size_t(t)).acc0; }
  const vector<R>& slice_weights(int t) const { return slices_.at(size_t(t)).w; }
  void reseed_noise(uint64_t seed) override { noise_rng_.seed(seed); }
  rng_t* noise_rng() override { return &noise_rng_; }

 private:
  // The workspaces of one column slice of the batch (the whole batch with threads = 1).
  struct slice {
    matrix<R> x, y;
    state<R> free;
    std::vector<state<R>> real_points;  // +r and, for even N, -r
    std::vector<state<complex>> complex_points;
    state<R> real_stack;           // the real points side by side (stack_points)
    state<complex> complex_stack;  // the complex points side by side
    matrix<R> xs, ys, drives;      // x, y and the input drive, tiled
    // Snapshots of the last average_last steps of each phase (free, real points, complex points).
    std::vector<state<R>> free_snaps;
    std::vector<std::vector<state<R>>> real_snaps;
    std::vector<std::vector<state<complex>>> complex_snaps;
    relax_report free_report;
    std::vector<relax_report> point_reports;  // the real points' first, then the complex points'
    size_t n_real_reports = 0;
    std::vector<char> failed;
    vector<R> w;
    accumulator acc0;        // the point terms model::add_point gathers outside grad
    aligned_vector<R> grad;  // this slice's gradient (threads > 1)
    vector<R> cost;
  };
  void init_slice(slice& s) const;
  void relax_slice(slice& s, const Net& net, const relax_options& free_opt, const relax_options& nudged_opt,
                   double limit);
  void grad_slice(slice& s, const Net& net, std::span<R> grad);
  // Relaxes the points of one kind (points[p] nudged with betas[p]) as one stacked batch from
  // the free state, then splits the result into points; returns the stacked run's report.
  template <class S>
  relax_report relax_stacked(slice& s, const Net& net, state<S>& stack, std::vector<state<S>>& points,
                             const std::vector<S>& betas, const relax_options& opt, double limit);

  ep_options opt_;
  std::vector<slice> slices_;
  std::vector<R> real_betas_;
  std::vector<complex> complex_betas_, complex_coefs_;
  std::vector<R> real_coefs_;
  rng_t noise_rng_;
};

extern template class cauchy_ep<float>;
extern template class cauchy_ep<double>;
extern template class cauchy_ep<float, vector_field_network<float>>;
extern template class cauchy_ep<double, vector_field_network<double>>;

}  // namespace eqprop
