// Continuous-time holomorphic EP (hep.md section 4.4): no free phase, no resets. The
// network starts from h = 0 in complex arithmetic and runs while the teaching signal
// beta(t) = |beta| e^{i phi(t)} rotates; every synapse accumulates its demodulated local
// term Re[dF/dtheta(h(t), beta(t)) / beta(t)], and the time average is the gradient
// (the first Fourier coefficient of f around the circle: exact when the rotation is
// adiabatic and every phase converges).
//
// Two forms:
//  - piecewise (smooth = false): beta is held for steps_per_point steps at each of the N
//    phases 2 pi k / N, the term is read at the end of each segment (the paper's oscEP);
//  - smooth (smooth = true): beta advances by 2 pi / (N steps_per_point) every step and
//    the term is integrated every step; with alpha = dt / tau < 1 the network is the
//    Euler-discretised ODE tau dh/dt = -h + sigma(pre(h, beta(t))), so the period in
//    units of tau is N * steps_per_point * alpha (adiabaticity studies).
// The transient from h = 0 is part of the average, as in the paper.
//
// One estimator for every network kind with an ep_model (cauchy_ep.hpp): layered networks
// (terms dF/dtheta, the loss at the mean state of the last period) and vector fields without
// weight symmetry (generalized-ep.md §2: error vectors eps -= Re(r / beta) at the segment
// ends, the presynaptic factors and the loss at sigma(mean u) over all segment ends).
#pragma once
#include <complex>
#include <functional>
#include <string>
#include <vector>

#include "eqprop/learn/cauchy_ep.hpp"

namespace eqprop {

struct continuous_options {
  int n_points = 10;          ///< N phases per period
  double beta = 0.4;          ///< |beta|
  long steps_per_point = 30;  ///< T2, the steps of one segment (one phase point)
  int periods = 3;            ///< periods of the rotation (N segments each)
  /// > 0: the run is this many segments instead (segment s at phase 2 pi (s mod N) / N), not
  /// necessarily a multiple of N; the last period may then be partial.
  long segments = 0;
  bool smooth = false;
  double alpha = 1.0;    ///< dt / tau of the Euler step (1: plain fixed-point step)
  double noise_std = 0;  ///< neuron noise at every step
  uint64_t noise_seed = 0;
  nonconvergence_policy on_failure = nonconvergence_policy::drop;
  double fail_residual = 1.0;  ///< piecewise: residual at the end of a segment above this = failed
  double tol = 0;              ///< the segment reports count residuals above this (0: the scalar's default)
  matmul_precision precision = matmul_precision::float32;  ///< operands of the float32 products
  /// Column slices of the batch run in parallel, one thread each (as ep_options::threads);
  /// one thread with neuron noise (one stream) or a period callback.
  int threads = 1;
  void validate() const;
  long n_segments() const { return segments > 0 ? segments : long(periods) * n_points; }
};

template <class R, class Net = layered_network<R>>
class continuous_hep : public grad_estimator<R, Net> {
  using model = ep_model<Net>;
  template <class S>
  using state = typename model::template state<S>;

 public:
  using complex = std::complex<R>;
  using accumulator = typename model::accumulator;
  /// Called after every complete period with the gradient estimate from the periods so far.
  using period_callback = std::function<void(int period, std::span<const R> grad)>;

  explicit continuous_hep(continuous_options opt);
  std::string name() const override;
  grad_result estimate(const Net& net, const matrix<R>& x, const matrix<R>& y, std::span<R> grad) override;
  void reseed_noise(uint64_t seed) override { noise_rng_.seed(seed); }
  rng_t* noise_rng() override { return &noise_rng_; }
  void on_period(period_callback cb) { on_period_ = std::move(cb); }
  const continuous_options& options() const { return opt_; }
  /// The reference state (continuous_reference) of column slice t of the last estimate: there
  /// is no free phase, it stands for the free state.
  const state<R>& free_state(int t = 0) const { return slices_.at(size_t(t)).ref; }
  int n_slices() const { return int(slices_.size()); }
  /// Slice t's accumulated terms and per-sample weights of the last estimate (w = 0: dropped).
  const accumulator& slice_terms(int t) const { return slices_.at(size_t(t)).acc; }
  const vector<R>& slice_weights(int t) const { return slices_.at(size_t(t)).w; }

 private:
  struct slice {
    matrix<R> x, y;
    state<complex> st;
    state<R> ref;                      // the reference state
    std::vector<matrix<complex>> sum;  // running sum of the states averaged into ref
    long n_sum = 0;
    accumulator acc;
    aligned_vector<R> grad, partial;
    vector<R> w;               // per-sample weights (1/B during the run)
    std::vector<char> failed;  // 1: an unsettled segment end, 2: non-finite
    relax_report last;         // the last segment
    long relax_steps = 0;
    vector<R> cost;
  };
  void run_slice(slice& s, const Net& net, long batch, std::span<R> grad_out);
  void set_reference(slice& s, const Net& net);

  continuous_options opt_;
  std::vector<slice> slices_;
  rng_t noise_rng_;
  period_callback on_period_;
};

extern template class continuous_hep<float>;
extern template class continuous_hep<double>;
extern template class continuous_hep<float, vector_field_network<float>>;
extern template class continuous_hep<double, vector_field_network<double>>;

}  // namespace eqprop
