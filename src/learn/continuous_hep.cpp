#include "eqprop/learn/continuous_hep.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"

namespace eqprop {

void continuous_options::validate() const {
  if (n_points < 1) throw config_error(fmt::format("estimator.n_points must be >= 1, got {}", n_points));
  if (!(beta > 0) || !std::isfinite(beta)) throw config_error(fmt::format("estimator.beta must be > 0, got {}", beta));
  if (steps_per_point < 1) throw config_error("relax.nudged_steps (steps per phase point) must be >= 1");
  if (periods < 1) throw config_error(fmt::format("estimator.periods must be >= 1, got {}", periods));
  if (!(alpha > 0 && alpha <= 1)) throw config_error(fmt::format("estimator.alpha (dt/tau) must be in (0, 1], got {}", alpha));
  if (!(noise_std >= 0)) throw config_error(fmt::format("relax.noise_std must be >= 0, got {}", noise_std));
  if (!(fail_residual > 0)) throw config_error("estimator.fail_residual must be > 0");
}

template <class R>
continuous_hep<R>::continuous_hep(continuous_options opt) : opt_(std::move(opt)) {
  opt_.validate();
  noise_rng_.seed(opt_.noise_seed);
}

template <class R>
std::string continuous_hep<R>::name() const {
  return fmt::format("continuous hEP N={} |beta|={} T2={} periods={}{}{}{}", opt_.n_points, opt_.beta, opt_.steps_per_point,
                     opt_.periods, opt_.smooth ? " smooth" : "", opt_.alpha != 1 ? fmt::format(" dt/tau={}", opt_.alpha) : "",
                     opt_.noise_std > 0 ? fmt::format(" noise={}", opt_.noise_std) : "");
}

template <class R>
grad_result continuous_hep<R>::estimate(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                        std::span<R> grad) {
  if (static_cast<long>(grad.size()) != net.n_params())
    throw shape_error(fmt::format("gradient buffer has {} entries, the network {} parameters", grad.size(), net.n_params()));
  const int N = opt_.n_points, P = opt_.periods;
  const long T2 = opt_.steps_per_point, B = x.cols();
  const R r = R(opt_.beta), alpha = R(opt_.alpha);
  const double noise = opt_.noise_std;
  rng_t* rng = noise > 0 ? &noise_rng_ : nullptr;
  const double limit = opt_.on_failure == nonconvergence_policy::keep ? INFINITY : opt_.fail_residual;

  grad_result out;
  st_.set_input(net, x, y);
  st_.reset();
  sum_h_.resize(st_.h().size());
  acc_.assign(grad.size(), R(0));
  partial_.resize(grad.size());
  std::vector<char> failed(B, 0);
  // Terms are accumulated over the whole batch (w = 1/B); failed samples are known only
  // at the end, and the drop policy then re-runs the estimate without them.
  const vector<R> w = vector<R>::Constant(B, R(1) / R(B));
  const long steps_per_period = N * T2;
  for (int p = 0; p < P; ++p) {
    for (size_t j = 0; j < sum_h_.size(); ++j) sum_h_[j] = matrix<complex>::Zero(st_.h()[j].rows(), B);
    for (int k = 0; k < N; ++k) {
      relax_report seg;
      for (long t = 0; t < T2; ++t) {
        const double phase = opt_.smooth ? 2 * std::numbers::pi * double(k * T2 + t) / double(steps_per_period)
                                         : 2 * std::numbers::pi * double(k) / double(N);
        const complex beta = std::polar(r, R(phase));
        st_.step(net, beta, noise, rng, alpha);
        for (size_t j = 0; j < sum_h_.size(); ++j) sum_h_[j] += st_.h()[j];
        if (opt_.smooth) st_.add_dF_dtheta(net, beta, complex(1) / (R(P * steps_per_period) * beta), w, acc_);
      }
      out.relax_steps += T2;
      const complex beta_k = std::polar(r, R(2 * std::numbers::pi * k / N));
      if (!opt_.smooth) st_.add_dF_dtheta(net, beta_k, complex(1) / (R(P * N) * beta_k), w, acc_);
      // Failures: non-finite states always; in piecewise mode also a segment end that has
      // not settled (residual of its last step above fail_residual).
      const auto& res = st_.residual();
      for (long b = 0; b < B; ++b) {
        bool bad = !std::isfinite(double(res(b))) || (!opt_.smooth && double(res(b)) > limit);
        for (const auto& hj : st_.h())
          for (long i = 0; i < hj.rows() && !bad; ++i) bad = !std::isfinite(std::abs(hj(i, b)));
        if (bad) failed[b] = 1;
      }
    }
    if (on_period_) {
      for (size_t i = 0; i < acc_.size(); ++i) partial_[i] = acc_[i] * R(P) / R(p + 1);
      on_period_(p + 1, partial_);
    }
  }

  const long n_failed = std::count(failed.begin(), failed.end(), 1);
  out.n_dropped = n_failed;
  if (n_failed > 0 && opt_.on_failure == nonconvergence_policy::error)
    throw convergence_error(fmt::format("{}: {} of {} samples failed (non-finite or unsettled segment)", name(), n_failed, B),
                            double(st_.residual().maxCoeff()), out.relax_steps);
  bool finite = true;
  for (R v : acc_) finite = finite && std::isfinite(v);
  if (n_failed > 0 && (opt_.on_failure == nonconvergence_policy::drop || !finite)) {
    // The sums mix all samples: recompute the estimate on the kept samples only.
    std::vector<long> keep;
    for (long b = 0; b < B; ++b)
      if (!failed[b]) keep.push_back(b);
    std::fill(grad.begin(), grad.end(), R(0));
    if (keep.empty()) {
      out.loss = NAN;
      out.predictions.assign(B, -1);
      return out;
    }
    matrix<R> xk(x.rows(), long(keep.size())), yk(y.rows(), long(keep.size()));
    for (size_t i = 0; i < keep.size(); ++i) {
      xk.col(long(i)) = x.col(keep[i]);
      yk.col(long(i)) = y.col(keep[i]);
    }
    auto cb = std::move(on_period_);
    on_period_ = nullptr;
    grad_result sub = estimate(net, xk, yk, grad);
    on_period_ = std::move(cb);
    std::vector<int32_t> preds(B, -1);
    for (size_t i = 0; i < keep.size(); ++i) preds[keep[i]] = sub.predictions[i];
    sub.predictions = preds;
    sub.n_dropped = n_failed + sub.n_dropped;
    sub.relax_steps += out.relax_steps;
    return sub;
  }
  std::copy(acc_.begin(), acc_.end(), grad.begin());

  // Loss and predictions at the time-averaged state of the last period (the mean over
  // the circle of a holomorphic function is its value at the centre: the free state).
  std::vector<matrix<R>> hm(sum_h_.size());
  for (size_t j = 0; j < sum_h_.size(); ++j) hm[j] = (sum_h_[j] / R(steps_per_period)).real();
  mean_.set_input(net, x, y);
  mean_.set_states_from_real(hm);
  vector<R> c;
  mean_.cost_per_sample(net, c);
  double s = 0;
  long kept = 0;
  for (long b = 0; b < B; ++b)
    if (std::isfinite(double(c(b)))) s += double(c(b)), ++kept;
  out.loss = kept ? s / double(kept) : NAN;
  out.predictions = mean_.predictions(net);
  out.free.steps = 0;
  return out;
}

template class continuous_hep<float>;
template class continuous_hep<double>;

}  // namespace eqprop
