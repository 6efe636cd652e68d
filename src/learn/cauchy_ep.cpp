#include "eqprop/learn/cauchy_ep.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <numbers>
#include <type_traits>

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
    throw config_error(
        fmt::format("estimator.average_last must be in [0, min(free_steps, nudged_steps)], got {}", average_last));
  if (threads < 1) throw config_error(fmt::format("estimator.threads must be >= 1, got {}", threads));
}

template <class R, class Net>
cauchy_ep<R, Net>::cauchy_ep(ep_options opt) : opt_(std::move(opt)) {
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
  noise_rng_.seed(opt_.noise_seed);
  slices_.resize(1);
  init_slice(slices_[0]);
}

template <class R, class Net>
void cauchy_ep<R, Net>::init_slice(slice& s) const {
  s.real_points.resize(real_betas_.size());
  s.complex_points.resize(complex_betas_.size());
  const size_t K = static_cast<size_t>(opt_.average_last);
  s.free_snaps.resize(opt_.n_points == 1 ? K : 0);
  s.real_snaps.assign(real_betas_.size(), std::vector<state<R>>(K));
  s.complex_snaps.assign(complex_betas_.size(), std::vector<state<complex>>(K));
}

template <class R, class Net>
std::string cauchy_ep<R, Net>::name() const {
  const std::string start = std::string(opt_.start == ep_start::warm ? " warm" : "") +
                            (opt_.noise_std > 0 ? fmt::format(" noise={}", opt_.noise_std) : "") +
                            (opt_.average_last > 0 ? fmt::format(" avg_last={}", opt_.average_last) : "");
  if (opt_.n_points == 1) return fmt::format("classic EP N=1 |beta|={}{}", opt_.beta, start);
  if (opt_.n_points == 2 && opt_.start == ep_start::free_state)
    return fmt::format("symmetric EP N=2 |beta|={}{}", opt_.beta, start);
  return fmt::format("holomorphic EP N={} |beta|={}{}", opt_.n_points, opt_.beta, start);
}

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Relaxes st for opt.max_steps steps; with snapshots, the last snaps.size() steps are run
// one at a time and the state after each is copied into the next snapshot.
template <class St, class Net>
relax_report run_phase(St& st, const Net& net, typename St::scalar beta, relax_options opt, std::vector<St>& snaps,
                       const matrix<real_t<typename St::scalar>>& x, const matrix<real_t<typename St::scalar>>& y) {
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
    const long before = rep.steps, sample_before = rep.sample_steps;
    rep = st.relax(net, beta, opt);
    rep.steps += before;
    rep.sample_steps += sample_before;
    // A real layered state shares its input drive with the snapshot.
    if constexpr (!is_complex_v<typename St::scalar> && requires { st.drive(); })
      snaps[t].set_input_shared(net, x, y, st.drive());
    else snaps[t].set_input(net, x, y);
    snaps[t].copy_states_from(st);
  }
  return rep;
}

// grad += coef * the point's term, at the final state or averaged over the snapshots.
template <class Model, class St, class Net, class R>
void add_phase_term(St& st, std::vector<St>& snaps, const Net& net, typename St::scalar beta, typename St::scalar coef,
                    const vector<R>& w, std::span<R> grad, typename Model::accumulator& acc) {
  if (snaps.empty()) return Model::add_point(st, net, beta, coef, w, grad, acc);
  for (auto& s : snaps) Model::add_point(s, net, beta, coef / R(snaps.size()), w, grad, acc);
}

}  // namespace

template <class R, class Net>
void cauchy_ep<R, Net>::relax_slice(slice& s, const Net& net, const relax_options& free_opt,
                                    const relax_options& nudged_opt, double limit) {
  s.failed.assign(s.x.cols(), 0);
  s.point_reports.clear();
  auto t0 = std::chrono::steady_clock::now();
  s.free.set_input(net, s.x, s.y);
  s.free.reset();
  s.free_report = run_phase(s.free, net, R(0), free_opt, s.free_snaps, s.x, s.y);
  mark_failed_columns(s.free, limit, s.failed);
  s.free_report.seconds = seconds_since(t0);
  const bool stack = model::can_stack && opt_.stack_points && opt_.start == ep_start::free_state &&
                     opt_.average_last == 0 && nudged_opt.noise_std == 0;
  // The real points, then the complex points (point_reports in that order; n_real_reports of
  // them real). The nudged points share the free phase's input drive W_0 x + b_0.
  if constexpr (model::can_stack)
    if (stack && s.real_points.size() > 1)
      s.point_reports.push_back(relax_stacked(s, net, s.real_stack, s.real_points, real_betas_, nudged_opt, limit));
  if (s.point_reports.empty()) {
    for (size_t p = 0; p < s.real_points.size(); ++p) {
      t0 = std::chrono::steady_clock::now();
      auto& st = s.real_points[p];
      model::point_input(st, net, s.x, s.y, s.free);
      st.copy_states_from(s.free);
      s.point_reports.push_back(run_phase(st, net, real_betas_[p], nudged_opt, s.real_snaps[p], s.x, s.y));
      mark_failed_columns(st, limit, s.failed);
      s.point_reports.back().seconds = seconds_since(t0);
    }
  }
  s.n_real_reports = s.point_reports.size();
  if constexpr (model::can_stack)
    if (stack && s.complex_points.size() > 1)
      s.point_reports.push_back(
          relax_stacked(s, net, s.complex_stack, s.complex_points, complex_betas_, nudged_opt, limit));
  if (s.point_reports.size() == s.n_real_reports) {
    for (size_t p = 0; p < s.complex_points.size(); ++p) {
      t0 = std::chrono::steady_clock::now();
      auto& st = s.complex_points[p];
      model::point_input(st, net, s.x, s.y, s.free);
      if (opt_.start == ep_start::warm && p > 0) st.copy_states_from(s.complex_points[p - 1]);
      else model::start_complex(st, s.free);
      s.point_reports.push_back(run_phase(st, net, complex_betas_[p], nudged_opt, s.complex_snaps[p], s.x, s.y));
      mark_failed_columns(st, limit, s.failed);
      s.point_reports.back().seconds = seconds_since(t0);
    }
  }
}

template <class R, class Net>
template <class S>
relax_report cauchy_ep<R, Net>::relax_stacked(slice& s, const Net& net, state<S>& stack, std::vector<state<S>>& points,
                                              const std::vector<S>& betas, const relax_options& opt, double limit) {
  const auto t0 = std::chrono::steady_clock::now();
  const long B = s.x.cols(), M = static_cast<long>(points.size());
  // M copies of m side by side (block copies: Eigen's replicate() assigns element by element).
  auto tile = [&](const matrix<R>& m, matrix<R>& out) {
    out.resize(m.rows(), M * B);
    for (long p = 0; p < M; ++p) out.middleCols(p * B, B) = m;
  };
  tile(s.x, s.xs);
  tile(s.y, s.ys);
  tile(s.free.drive(), s.drives);
  stack.set_input_shared(net, s.xs, s.ys, s.drives);
  for (size_t j = 0; j < stack.h().size(); ++j)
    for (long p = 0; p < M; ++p) stack.h()[j].middleCols(p * B, B) = s.free.h()[j].template cast<S>();
  vector<S> nudge(M * B);
  for (long p = 0; p < M; ++p) nudge.segment(p * B, B).setConstant(betas[p]);
  stack.set_column_nudge(nudge);
  relax_report rep = stack.relax(net, S(1), opt);
  for (long p = 0; p < M; ++p) {
    points[p].set_input_shared(net, s.x, s.y, s.free.drive());
    points[p].copy_columns_from(stack, p * B);
    mark_failed_columns(points[p], limit, s.failed);
  }
  rep.seconds = seconds_since(t0);
  return rep;
}

template <class R, class Net>
void cauchy_ep<R, Net>::grad_slice(slice& s, const Net& net, std::span<R> grad) {
  std::fill(grad.begin(), grad.end(), R(0));
  model::begin(s.acc0, net, s.x.cols());
  if (opt_.n_points == 1) add_phase_term<model>(s.free, s.free_snaps, net, R(0), -real_coefs_[0], s.w, grad, s.acc0);
  for (size_t p = 0; p < s.real_points.size(); ++p)
    add_phase_term<model>(s.real_points[p], s.real_snaps[p], net, real_betas_[p], real_coefs_[p], s.w, grad, s.acc0);
  for (size_t p = 0; p < s.complex_points.size(); ++p)
    add_phase_term<model>(s.complex_points[p], s.complex_snaps[p], net, complex_betas_[p], complex_coefs_[p], s.w, grad,
                          s.acc0);
  model::finish(s.free, net, s.acc0, s.w, grad);
}

template <class R, class Net>
grad_result cauchy_ep<R, Net>::estimate(const Net& net, const matrix<R>& x, const matrix<R>& y, std::span<R> grad) {
  check_grad_size(net, grad, "holomorphic EP");
  grad_result out;
  const long B = x.cols();

  relax_options free_opt = opt_.free, nudged_opt = opt_.nudged;
  nudged_opt.noise_std = opt_.noise_std;
  nudged_opt.noise_rng = &noise_rng_;
  if (opt_.noise_in_free_phase) {
    free_opt.noise_std = opt_.noise_std;
    free_opt.noise_rng = &noise_rng_;
  }
  const double limit = opt_.on_failure == nonconvergence_policy::keep ? INFINITY : opt_.fail_residual;

  // Column slices: contiguous, as equal as possible, each relaxed by one thread.
  const int T = static_cast<int>(std::clamp<long>(opt_.noise_std > 0 ? 1 : opt_.threads, 1, B));
  if (static_cast<int>(slices_.size()) != T) {
    slices_.resize(T);
    for (auto& s : slices_) init_slice(s);
  }
  const std::vector<long> c0 = split_columns(x, y, slices_);
  std::vector<long> n(T);
  for (int t = 0; t < T; ++t) n[t] = c0[t + 1] - c0[t];

  // Free phase, then the nudged points, per slice.
  parallel_slices(T, [&](int t) { relax_slice(slices_[t], net, free_opt, nudged_opt, limit); });
  std::vector<relax_report> reps(T);
  for (int t = 0; t < T; ++t) reps[t] = slices_[t].free_report;
  out.free = merge_reports(reps, n);
  out.relax_steps += out.free.steps;
  out.relax_sample_steps += out.free.sample_steps;
  for (size_t p = 0; p < slices_[0].point_reports.size(); ++p) {
    for (int t = 0; t < T; ++t) reps[t] = slices_[t].point_reports[p];
    out.points.push_back(merge_reports(reps, n));
    out.relax_steps += out.points.back().steps;
    out.relax_sample_steps += out.points.back().sample_steps;
    if (p >= slices_[0].n_real_reports) out.relax_complex_sample_steps += out.points.back().sample_steps;
  }
  std::vector<char> failed;
  for (const auto& s : slices_) failed.insert(failed.end(), s.failed.begin(), s.failed.end());

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
  const long kept = B - n_failed;
  for (int t = 0; t < T; ++t) {
    auto& s = slices_[t];
    s.w.resize(n[t]);
    for (long b = 0; b < n[t]; ++b) s.w(b) = (failed[c0[t] + b] || kept == 0) ? R(0) : R(1) / R(kept);
  }

  // Gradient: per slice (into grad itself with one slice), then summed in slice order.
  const auto t_grad = std::chrono::steady_clock::now();
  if (kept == 0) {
    std::fill(grad.begin(), grad.end(), R(0));
  } else if (T == 1) {
    grad_slice(slices_[0], net, grad);
  } else {
    // Each thread differentiates its slice; the slices' gradients are summed in slice order.
    parallel_slices(T, [&](int t) {
      slices_[t].grad.resize(grad.size());
      grad_slice(slices_[t], net, slices_[t].grad);
    });
    sum_slice_gradients(slices_, grad);
  }
  out.grad_seconds = seconds_since(t_grad);

  // Loss and predictions at the free state, over kept samples.
  double s = 0;
  out.predictions.clear();
  for (int t = 0; t < T; ++t) {
    auto& sl = slices_[t];
    sl.free.cost_per_sample(net, sl.cost);
    for (long b = 0; b < n[t]; ++b)
      if (!failed[c0[t] + b]) s += double(sl.cost(b));
    const auto pred = sl.free.predictions(net);
    out.predictions.insert(out.predictions.end(), pred.begin(), pred.end());
  }
  out.loss = kept > 0 ? s / double(kept) : NAN;
  return out;
}

template class cauchy_ep<float>;
template class cauchy_ep<double>;
template class cauchy_ep<float, vector_field_network<float>>;
template class cauchy_ep<double, vector_field_network<double>>;

}  // namespace eqprop
