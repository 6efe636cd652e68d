#include "eqprop/learn/cauchy_ep.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"

namespace eqprop {

void ep_options::validate() const {
  if (n_points < 1) throw config_error(fmt::format("estimator.n_points must be >= 1, got {}", n_points));
  if (!(beta > 0) || !std::isfinite(beta)) throw config_error(fmt::format("estimator.beta must be > 0, got {}", beta));
  if (free.max_steps < 1 || nudged.max_steps < 1)
    throw config_error("relaxation step counts (free_steps, nudged_steps) must be >= 1");
  if (!(fail_residual > 0)) throw config_error("estimator.fail_residual must be > 0");
  if (!(noise_std >= 0)) throw config_error(fmt::format("relax.noise_std must be >= 0, got {}", noise_std));
  if (average_last < 0 || average_last > std::min(free.max_steps, nudged.max_steps))
    throw config_error(fmt::format("estimator.average_last must be in [0, min(free_steps, nudged_steps)], got {}", average_last));
}

template <class R>
cauchy_ep<R>::cauchy_ep(ep_options opt) : opt_(std::move(opt)) {
  opt_.validate();
  const int N = opt_.n_points;
  const R r = R(opt_.beta);
  if (N == 1) {
    real_betas_ = {r};
    real_coefs_ = {R(1) / r};
  } else if (opt_.start == ep_start::free_state) {
    real_betas_.push_back(r);
    real_coefs_.push_back(R(1) / (R(N) * r));
    if (N % 2 == 0) {
      real_betas_.push_back(-r);
      real_coefs_.push_back(R(1) / (R(N) * -r));
    }
    for (int k = 1; k < (N + 1) / 2; ++k) {  // ceil(N/2) - 1 conjugate pairs
      const complex bk = std::polar(r, R(2 * std::numbers::pi * k / N));
      complex_betas_.push_back(bk);
      complex_coefs_.push_back(R(2) / (R(N) * bk));
    }
  } else {
    for (int k = 0; k < N; ++k) {
      const complex bk = std::polar(r, R(2 * std::numbers::pi * k / N));
      complex_betas_.push_back(bk);
      complex_coefs_.push_back(R(1) / (R(N) * bk));
    }
  }
  real_points_.resize(real_betas_.size());
  complex_points_.resize(complex_betas_.size());
  noise_rng_.seed(opt_.noise_seed);
  const size_t K = static_cast<size_t>(opt_.average_last);
  free_snaps_.resize(N == 1 ? K : 0);
  real_snaps_.assign(real_betas_.size(), std::vector<relax_state<R>>(K));
  complex_snaps_.assign(complex_betas_.size(), std::vector<relax_state<complex>>(K));
}

template <class R>
std::string cauchy_ep<R>::name() const {
  const std::string start = std::string(opt_.start == ep_start::warm ? " warm" : "") +
                            (opt_.noise_std > 0 ? fmt::format(" noise={}", opt_.noise_std) : "") +
                            (opt_.average_last > 0 ? fmt::format(" avg_last={}", opt_.average_last) : "");
  if (opt_.n_points == 1) return fmt::format("classic EP N=1 |beta|={}{}", opt_.beta, start);
  if (opt_.n_points == 2 && opt_.start == ep_start::free_state)
    return fmt::format("symmetric EP N=2 |beta|={}{}", opt_.beta, start);
  return fmt::format("holomorphic EP N={} |beta|={}{}", opt_.n_points, opt_.beta, start);
}

namespace {
// Marks samples whose last relaxation failed: non-finite, or residual above the limit.
template <class S, class P>
void mark_failures(const relax_state<S, P>& st, double limit, std::vector<char>& failed) {
  const auto& res = st.residual();
  for (long b = 0; b < res.size(); ++b)
    if (!(double(res(b)) <= limit)) failed[b] = 1;  // also catches NaN
  for (const auto& h : st.h())
    for (long b = 0; b < h.cols(); ++b)
      for (long i = 0; i < h.rows() && !failed[b]; ++i) {
        const auto v = h(i, b);
        if (!std::isfinite(std::abs(v))) failed[b] = 1;
      }
}

// Relaxes st for opt.max_steps steps; with snapshots, the last snaps.size() steps are run
// one at a time and the state after each is copied into the next snapshot.
template <class S, class P>
relax_report run_phase(relax_state<S, P>& st, const layered_network<P>& net, S beta, relax_options opt,
                       std::vector<relax_state<S, P>>& snaps, const matrix<real_t<S>>& x, const matrix<real_t<S>>& y) {
  const long K = static_cast<long>(snaps.size());
  if (K == 0) return st.relax(net, beta, opt);
  const long total = opt.max_steps;
  relax_report rep;
  opt.stop_early = false;  // the averaging window is the last K of exactly max_steps steps
  if (total > K) {
    opt.max_steps = total - K;
    rep = st.relax(net, beta, opt);
  }
  opt.max_steps = 1;
  for (long t = 0; t < K; ++t) {
    const long before = rep.steps;
    rep = st.relax(net, beta, opt);
    rep.steps += before;
    snaps[t].set_input(net, x, y);
    snaps[t].copy_states_from(st);
  }
  return rep;
}

// grad += coef * dF/dtheta, at the final state or averaged over the snapshots.
template <class S, class P>
void add_phase_term(relax_state<S, P>& st, std::vector<relax_state<S, P>>& snaps, const layered_network<P>& net, S beta,
                    S coef, const vector<real_t<S>>& w, std::span<real_t<S>> grad) {
  if (snaps.empty()) return st.add_dF_dtheta(net, beta, coef, w, grad);
  for (auto& s : snaps) s.add_dF_dtheta(net, beta, coef / real_t<S>(snaps.size()), w, grad);
}
}  // namespace

template <class R>
grad_result cauchy_ep<R>::estimate(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                   std::span<R> grad) {
  if (static_cast<long>(grad.size()) != net.n_params())
    throw shape_error(fmt::format("gradient buffer has {} entries, the network {} parameters", grad.size(), net.n_params()));
  grad_result out;
  const long B = x.cols();
  std::vector<char> failed(B, 0), non_finite(B, 0);

  relax_options free_opt = opt_.free, nudged_opt = opt_.nudged;
  nudged_opt.noise_std = opt_.noise_std;
  nudged_opt.noise_rng = &noise_rng_;
  if (opt_.noise_in_free_phase) {
    free_opt.noise_std = opt_.noise_std;
    free_opt.noise_rng = &noise_rng_;
  }
  const double limit = opt_.on_failure == nonconvergence_policy::keep ? INFINITY : opt_.fail_residual;

  // Free phase.
  free_.set_input(net, x, y);
  free_.reset();
  out.free = run_phase(free_, net, R(0), free_opt, free_snaps_, x, y);
  out.relax_steps += out.free.steps;
  mark_failures(free_, limit, failed);

  // Nudged points.
  for (size_t p = 0; p < real_points_.size(); ++p) {
    auto& st = real_points_[p];
    st.set_input(net, x, y);
    st.copy_states_from(free_);
    out.points.push_back(run_phase(st, net, real_betas_[p], nudged_opt, real_snaps_[p], x, y));
    out.relax_steps += out.points.back().steps;
    mark_failures(st, limit, failed);
  }
  for (size_t p = 0; p < complex_points_.size(); ++p) {
    auto& st = complex_points_[p];
    st.set_input(net, x, y);
    if (opt_.start == ep_start::warm && p > 0) st.copy_states_from(complex_points_[p - 1]);
    else st.set_states_from_real(free_.h());
    out.points.push_back(run_phase(st, net, complex_betas_[p], nudged_opt, complex_snaps_[p], x, y));
    out.relax_steps += out.points.back().steps;
    mark_failures(st, limit, failed);
  }

  const long n_failed = std::count(failed.begin(), failed.end(), 1);
  if (n_failed > 0 && opt_.on_failure == nonconvergence_policy::error) {
    double worst = out.free.max_residual;
    for (const auto& r : out.points) worst = std::max(worst, r.max_residual);
    throw convergence_error(fmt::format("{}: {} of {} samples did not converge (worst residual {:.3g}, limit {:.3g})",
                                        name(), n_failed, B, worst, opt_.fail_residual),
                            worst, out.free.steps);
  }
  out.n_dropped = n_failed;

  // Sample weights: the batch mean over the samples that did not fail.
  vector<R> w(B);
  const long kept = B - n_failed;
  for (long b = 0; b < B; ++b) w(b) = (failed[b] || kept == 0) ? R(0) : R(1) / R(kept);

  std::fill(grad.begin(), grad.end(), R(0));
  if (kept > 0) {
    if (opt_.n_points == 1) add_phase_term(free_, free_snaps_, net, R(0), -real_coefs_[0], w, grad);
    for (size_t p = 0; p < real_points_.size(); ++p)
      add_phase_term(real_points_[p], real_snaps_[p], net, real_betas_[p], real_coefs_[p], w, grad);
    for (size_t p = 0; p < complex_points_.size(); ++p)
      add_phase_term(complex_points_[p], complex_snaps_[p], net, complex_betas_[p], complex_coefs_[p], w, grad);
  }

  // Loss and predictions at the free state, over kept samples.
  vector<R> c;
  free_.cost_per_sample(net, c);
  double s = 0;
  for (long b = 0; b < B; ++b)
    if (!failed[b]) s += double(c(b));
  out.loss = kept > 0 ? s / double(kept) : NAN;
  out.predictions = free_.predictions(net);
  return out;
}

template class cauchy_ep<float>;
template class cauchy_ep<double>;

}  // namespace eqprop
