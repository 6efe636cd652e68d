#include "eqprop/learn/continuous_hep.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/dynamics/conv_ops.hpp"

namespace eqprop {

void continuous_options::validate() const {
  if (n_points < 1) throw config_error(fmt::format("estimator.n_points must be >= 1, got {}", n_points));
  if (!(beta > 0) || !std::isfinite(beta)) throw config_error(fmt::format("estimator.beta must be > 0, got {}", beta));
  if (steps_per_point < 1) throw config_error("relax.nudged_steps (steps per phase point) must be >= 1");
  if (periods < 1 && segments < 1) throw config_error(fmt::format("estimator.periods must be >= 1, got {}", periods));
  if (!(alpha > 0 && alpha <= 1))
    throw config_error(fmt::format("estimator.alpha (dt/tau) must be in (0, 1], got {}", alpha));
  if (!(noise_std >= 0)) throw config_error(fmt::format("relax.noise_std must be >= 0, got {}", noise_std));
  if (!(fail_residual > 0)) throw config_error("estimator.fail_residual must be > 0");
  if (segments < 0) throw config_error(fmt::format("estimator.segments must be >= 0, got {}", segments));
  if (threads < 1) throw config_error(fmt::format("estimator.threads must be >= 1, got {}", threads));
}

template <class R, class Net>
continuous_hep<R, Net>::continuous_hep(continuous_options opt) : opt_(std::move(opt)) {
  opt_.validate();
  noise_rng_.seed(opt_.noise_seed);
}

template <class R, class Net>
std::string continuous_hep<R, Net>::name() const {
  const std::string count =
      opt_.segments > 0 ? fmt::format("segments={}", opt_.segments) : fmt::format("periods={}", opt_.periods);
  return fmt::format("continuous hEP N={} |beta|={} T2={} {}{}{}{}", opt_.n_points, opt_.beta, opt_.steps_per_point,
                     count, opt_.smooth ? " smooth" : "", opt_.alpha != 1 ? fmt::format(" dt/tau={}", opt_.alpha) : "",
                     opt_.noise_std > 0 ? fmt::format(" noise={}", opt_.noise_std) : "");
}

namespace {
template <class R>
matrix<R> scaled(const matrix<R>& a, R c) {
  return a * c;
}
template <class R>
std::vector<matrix<R>> scaled(const std::vector<matrix<R>>& a, R c) {
  std::vector<matrix<R>> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = a[i] * c;
  return out;
}
}  // namespace

template <class R, class Net>
void continuous_hep<R, Net>::set_reference(slice& s, const Net& net) {
  std::vector<matrix<R>> mean(s.sum.size());
  for (size_t j = 0; j < s.sum.size(); ++j) mean[j] = (s.sum[j] / R(std::max<long>(s.n_sum, 1))).real();
  s.ref.set_precision(opt_.precision);
  model::set_reference(s.ref, net, s.x, s.y, mean);
}

// The whole run on one slice: its terms in s.acc and s.grad (weights 1/batch), its failures
// and the sums of its reference state; with a period callback (one slice), grad_out receives
// the estimate so far after every period.
template <class R, class Net>
void continuous_hep<R, Net>::run_slice(slice& s, const Net& net, long batch, std::span<R> grad_out) {
  const int N = opt_.n_points;
  const long T2 = opt_.steps_per_point, n = s.x.cols(), nseg = opt_.n_segments();
  const R r = R(opt_.beta), alpha = R(opt_.alpha);
  const double noise = opt_.noise_std,
               limit = opt_.on_failure == nonconvergence_policy::keep ? INFINITY : opt_.fail_residual;
  rng_t* rng = noise > 0 ? &noise_rng_ : nullptr;
  const bool every_step = model::reference == continuous_reference::last_period_steps;
  s.st.set_precision(opt_.precision);
  s.st.set_input(net, s.x, s.y);
  s.st.reset();
  const auto& h = model::states(s.st);
  auto clear_sum = [&] {
    s.sum.resize(h.size());
    for (size_t j = 0; j < h.size(); ++j) s.sum[j] = matrix<complex>::Zero(h[j].rows(), h[j].cols());
    s.n_sum = 0;
  };
  auto add_sum = [&] {
    for (size_t j = 0; j < h.size(); ++j) s.sum[j] += h[j];
    ++s.n_sum;
  };
  clear_sum();
  model::begin(s.acc, net, n);
  s.grad.assign(size_t(net.n_params()), R(0));
  s.w = vector<R>::Constant(n, R(1) / R(batch));
  s.failed.assign(size_t(n), 0);
  s.relax_steps = 0;
  relax_options seg_opt;
  seg_opt.tol = opt_.tol;
  const double tol = seg_opt.tol_for<complex>();
  const long steps_per_period = N * T2;
  for (long seg = 0; seg < nseg; ++seg) {
    const int k = int(seg % N);
    if (every_step && k == 0) clear_sum();  // the mean over the last period only
    const complex beta_k = std::polar(r, R(2 * std::numbers::pi * k / N));
    long t = 0;
    const conv_weights_unchanged fixed;  // net is const during the segment's steps
    s.last = relax_columns(s.st, T2, false, false, tol, [&] {
      const complex beta =
          opt_.smooth ? std::polar(r, R(2 * std::numbers::pi * double(k * T2 + t) / double(steps_per_period))) : beta_k;
      const R res = s.st.step(net, beta, noise, rng, alpha);
      ++t;
      if (every_step) add_sum();
      if (opt_.smooth) model::add_point(s.st, net, beta, complex(1) / (R(nseg * T2) * beta), s.w, s.grad, s.acc);
      return res;
    });
    report_columns(s.st, tol, s.last);
    s.relax_steps += T2;
    if (!opt_.smooth) model::add_point(s.st, net, beta_k, complex(1) / (R(nseg) * beta_k), s.w, s.grad, s.acc);
    if (!every_step) add_sum();
    // Failures: non-finite states always; in piecewise mode also a segment end that has not
    // settled (residual of its last step above fail_residual).
    const auto& res = s.st.residual();
    for (long b = 0; b < n; ++b) {
      if (!std::isfinite(double(res(b))) || !s.st.column_finite(b)) s.failed[b] = 2;
      else if (!opt_.smooth && double(res(b)) > limit && !s.failed[b]) s.failed[b] = 1;
    }
    if (on_period_ && k == N - 1) {  // the estimate so far: the terms scaled to the whole run
      const R scale = R(nseg) / R(seg + 1);
      set_reference(s, net);
      s.partial.resize(s.grad.size());
      for (size_t i = 0; i < s.grad.size(); ++i) s.partial[i] = s.grad[i] * scale;
      model::finish(s.ref, net, scaled(s.acc, scale), s.w, s.partial);
      std::copy(s.partial.begin(), s.partial.end(), grad_out.begin());
      on_period_(int((seg + 1) / N), grad_out);
    }
  }
  set_reference(s, net);
}

template <class R, class Net>
grad_result continuous_hep<R, Net>::estimate(const Net& net, const matrix<R>& x, const matrix<R>& y,
                                             std::span<R> grad) {
  check_grad_size(net, grad, "continuous hEP");
  if (x.cols() != y.cols()) throw shape_error(fmt::format("{} inputs but {} targets", x.cols(), y.cols()));
  const long B = x.cols();
  grad_result out;
  const int T =
      static_cast<int>(std::clamp<long>(opt_.noise_std > 0 || on_period_ ? 1 : opt_.threads, 1, std::max<long>(B, 1)));
  slices_.resize(T);
  const std::vector<long> c0 = split_columns(x, y, slices_);
  std::vector<long> n(T);
  for (int t = 0; t < T; ++t) n[t] = c0[t + 1] - c0[t];
  parallel_slices(T, [&](int t) { run_slice(slices_[t], net, B, grad); });

  std::vector<relax_report> reps(T);
  std::vector<char> failed;
  for (int t = 0; t < T; ++t) {
    reps[t] = slices_[t].last;
    out.relax_steps = std::max(out.relax_steps, slices_[t].relax_steps);
    failed.insert(failed.end(), slices_[t].failed.begin(), slices_[t].failed.end());
  }
  out.free = merge_reports(reps, n);  // no free phase: the last segment
  const long n_failed = std::count_if(failed.begin(), failed.end(), [](char f) { return f != 0; });
  if (n_failed > 0 && opt_.on_failure == nonconvergence_policy::error)
    throw convergence_error(
        fmt::format("{}: {} of {} samples failed (non-finite or unsettled segment)", name(), n_failed, B),
        out.free.max_residual, out.relax_steps);
  // Dropped: non-finite samples always, unsettled ones unless the policy keeps them.
  std::vector<char> dropped(failed.size());
  for (size_t b = 0; b < failed.size(); ++b)
    dropped[b] = failed[b] == 2 || (failed[b] == 1 && opt_.on_failure == nonconvergence_policy::drop);
  const long n_dropped = std::count(dropped.begin(), dropped.end(), 1);
  out.n_dropped = n_dropped;

  if (n_dropped > 0 && !model::per_sample_terms) {
    // The terms are batch sums: recompute the estimate on the kept samples only.
    std::vector<long> keep;
    for (long b = 0; b < B; ++b)
      if (!dropped[b]) keep.push_back(b);
    std::fill(grad.begin(), grad.end(), R(0));
    if (keep.empty()) {
      out.loss = NAN;
      out.predictions.assign(B, -1);
      return out;
    }
    const matrix<R> xk = x(Eigen::all, keep), yk = y(Eigen::all, keep);
    auto cb = std::move(on_period_);
    on_period_ = nullptr;
    grad_result sub = estimate(net, xk, yk, grad);
    on_period_ = std::move(cb);
    std::vector<int32_t> preds(B, -1);
    for (size_t i = 0; i < keep.size(); ++i) preds[keep[i]] = sub.predictions[i];
    sub.predictions = preds;
    sub.n_dropped += n_dropped;
    sub.relax_steps += out.relax_steps;
    return sub;
  }

  // Loss and predictions at the reference states (before finish, which zeroes dropped samples).
  const long kept = B - n_dropped;
  double sum = 0;
  long counted = 0;
  out.predictions.clear();
  for (int t = 0; t < T; ++t) {
    auto& s = slices_[t];
    for (long b = 0; b < n[t]; ++b) s.w(b) = (dropped[c0[t] + b] || kept == 0) ? R(0) : R(1) / R(kept);
    s.ref.cost_per_sample(net, s.cost);
    for (long b = 0; b < n[t]; ++b)
      if (!dropped[c0[t] + b] && std::isfinite(double(real_part(s.cost(b)))))
        sum += double(real_part(s.cost(b))), ++counted;
    const auto pred = s.ref.predictions(net);
    out.predictions.insert(out.predictions.end(), pred.begin(), pred.end());
  }
  out.loss = counted ? sum / double(counted) : NAN;

  // The gradient: every slice's terms finished at its reference state, summed in slice order.
  std::fill(grad.begin(), grad.end(), R(0));
  if (kept == 0) return out;
  parallel_slices(T, [&](int t) { model::finish(slices_[t].ref, net, slices_[t].acc, slices_[t].w, slices_[t].grad); });
  sum_slice_gradients(slices_, grad);
  return out;
}

template class continuous_hep<float>;
template class continuous_hep<double>;
template class continuous_hep<float, vector_field_network<float>>;
template class continuous_hep<double, vector_field_network<double>>;

}  // namespace eqprop
