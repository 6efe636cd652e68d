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
#pragma once
#include <complex>
#include <functional>
#include <string>
#include <vector>

#include "eqprop/learn/cauchy_ep.hpp"

namespace eqprop {

struct continuous_options {
  int n_points = 10;            ///< N phases per period
  double beta = 0.4;            ///< |beta|
  long steps_per_point = 30;    ///< T2
  int periods = 3;              ///< periods of the rotation
  bool smooth = false;
  double alpha = 1.0;           ///< dt / tau of the Euler step (1: plain fixed-point step)
  double noise_std = 0;         ///< neuron noise at every step
  uint64_t noise_seed = 0;
  nonconvergence_policy on_failure = nonconvergence_policy::drop;
  double fail_residual = 1.0;   ///< piecewise: residual at the end of a segment above this = failed
  void validate() const;
};

template <class R>
class continuous_hep : public grad_estimator<R> {
 public:
  using complex = std::complex<R>;
  /// Called after every period with the gradient estimate from the periods so far.
  using period_callback = std::function<void(int period, std::span<const R> grad)>;

  explicit continuous_hep(continuous_options opt);
  std::string name() const override;
  grad_result estimate(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                       std::span<R> grad) override;
  void reseed_noise(uint64_t seed) override { noise_rng_.seed(seed); }
  void on_period(period_callback cb) { on_period_ = std::move(cb); }
  const continuous_options& options() const { return opt_; }

 private:
  continuous_options opt_;
  relax_state<complex> st_;
  relax_state<R> mean_;                 // time-averaged state of the last period (real part)
  std::vector<matrix<complex>> sum_h_;  // running sum of the states over the current period
  aligned_vector<R> acc_, partial_;
  rng_t noise_rng_;
  period_callback on_period_;
};

extern template class continuous_hep<float>;
extern template class continuous_hep<double>;

}  // namespace eqprop
