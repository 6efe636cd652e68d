#include "eqprop/learn/generalized_ep.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <type_traits>

#include <Eigen/LU>
#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/dynamics/conv_ops.hpp"
#include "eqprop/dynamics/relax.hpp"
#include "eqprop/model/activate_n.hpp"

namespace eqprop {

// ---------------------------------------------------------------------------------------
// Options

std::string_view to_string(gep_method m) {
  switch (m) {
    case gep_method::cauchy: return "cauchy";
    case gep_method::exact: return "exact";
    case gep_method::online: return "online";
    case gep_method::rbp: return "rbp";
  }
  return "?";
}

gep_method parse_gep_method(std::string_view s) {
  if (s == "cauchy") return gep_method::cauchy;
  if (s == "exact") return gep_method::exact;
  if (s == "online") return gep_method::online;
  if (s == "rbp") return gep_method::rbp;
  throw config_error(fmt::format("unknown estimator method '{}': expected 'cauchy' (N-point hEP), 'exact' (N = 0, "
                                 "forward-mode d r/d beta), 'online' (continuous-time) or 'rbp' (recurrent backprop)", s));
}

void gep_options::validate() const {
  if ((method == gep_method::cauchy || method == gep_method::online) && n_points < 1)
    throw config_error(fmt::format("estimator.n_points must be >= 1, got {}", n_points));
  if (method == gep_method::online && n_points < 2)
    throw config_error("the online estimator needs estimator.n_points >= 2 phases per period");
  if (!(beta > 0) || !std::isfinite(beta)) throw config_error(fmt::format("estimator.beta must be > 0, got {}", beta));
  if (free_steps < 1 || nudged_steps < 1) throw config_error("estimator.free_steps and nudged_steps must be >= 1");
  if (method == gep_method::online && online_steps < nudged_steps)
    throw config_error("estimator.online_steps must be >= nudged_steps (at least one segment)");
  if (rbp_steps < 0) throw config_error("estimator.rbp_steps must be >= 0");
  if (!(fail_residual > 0)) throw config_error("estimator.fail_residual must be > 0");
  if (!(tol > 0)) throw config_error("estimator.tol must be > 0");
  if (!(homeo_lambda >= 0) || !std::isfinite(homeo_lambda))
    throw config_error(fmt::format("homeostasis.lambda must be >= 0, got {}", homeo_lambda));
  if (homeo_probes < 1) throw config_error(fmt::format("homeostasis.probes must be >= 1, got {}", homeo_probes));
}

ep_options gep_options::cauchy_options() const {
  ep_options o;
  o.n_points = n_points;
  o.beta = beta;
  o.free = free_relax();
  o.nudged = relax_options{nudged_steps, tol};
  o.nudged.precision = precision;
  o.fail_residual = fail_residual;
  o.threads = threads;
  return o;
}

relax_options gep_options::free_relax() const {
  relax_options o{free_steps, tol, stop_early};
  o.freeze_converged = freeze_converged;
  o.omega = omega;
  o.order = order;
  o.precision = precision;
  return o;
}

// ---------------------------------------------------------------------------------------
// Estimator

template <class R>
generalized_ep<R>::generalized_ep(gep_options opt) : opt_(opt) {
  opt_.validate();
  rng_.seed(opt_.seed);
  if (opt_.method == gep_method::cauchy)
    cauchy_ = std::make_unique<cauchy_ep<R, vector_field_network<R>>>(opt_.cauchy_options());
}

template <class R>
const vf_state<R>& generalized_ep<R>::free_state(int t) const {
  if (n_slices() == 0) throw internal_error("generalized_ep::free_state: no estimate yet");
  if (cauchy_) return cauchy_->free_state(t);
  return slices_.at(size_t(t)).free;
}

template <class R>
int generalized_ep<R>::n_slices() const {
  if (cauchy_) return eps_.empty() ? 0 : cauchy_->n_slices();
  return int(slices_.size());
}


template <class R>
std::string generalized_ep<R>::name() const {
  std::string h = opt_.homeo_lambda > 0 ? fmt::format(" + homeostasis lambda={}", opt_.homeo_lambda) : "";
  switch (opt_.method) {
    case gep_method::cauchy: return fmt::format("generalized hEP N={} |beta|={}{}", opt_.n_points, opt_.beta, h);
    case gep_method::exact: return fmt::format("generalized hEP exact d r/d beta (N=0){}", h);
    case gep_method::online:
      return fmt::format("continuous-time generalized hEP N={} |beta|={} T={}{}", opt_.n_points, opt_.beta, opt_.online_steps, h);
    case gep_method::rbp: return fmt::format("recurrent backprop ({}){}", opt_.rbp_dense ? "dense" : "iterative", h);
  }
  return "?";
}

namespace {
template <class S, class R>
void mark_failed(const vf_state<S, R>& st, double limit, std::vector<char>& failed) {
  const auto& res = st.residual();
  for (long b = 0; b < res.size(); ++b)
    if (!(double(res(b)) <= limit)) failed[b] = 1;  // NaN too
}
}  // namespace

template <class R>
void generalized_ep<R>::run_phases(slice& s, const vector_field_network<R>& net) {
  using C = std::complex<R>;
  const int K = net.n_layers();
  const long B = s.x.cols();
  const auto& x = s.x;
  const auto& y = s.y;
  s.failed.assign(B, 0);
  s.relax_steps = 0;
  s.eps.assign(K + 1, matrix<R>());
  for (int i = 1; i <= K; ++i) s.eps[i].setZero(net.size(i), B);
  const R beta = R(opt_.beta);
  const long T2 = opt_.nudged_steps;
  for (auto* st : {&s.free, &s.real_pt}) st->set_precision(opt_.precision);
  s.cplx_pt.set_precision(opt_.precision);
  // The free phase: T1 steps, or fewer with stop_early; every nudged phase runs exactly T2
  // steps from the free state (the estimator's definition), at the same precision.
  const relax_options free_opt = opt_.free_relax();
  relax_options nudged_opt{T2, opt_.tol};
  nudged_opt.precision = opt_.precision;
  if (opt_.method != gep_method::online) {
    s.free.set_input(net, x, y);
    s.free_report = s.free.relax(R(0), free_opt);
    s.relax_steps += s.free_report.steps;
    mark_failed(s.free, opt_.fail_residual, s.failed);
  }

  switch (opt_.method) {
    case gep_method::cauchy: throw internal_error("generalized_ep: the cauchy method runs on cauchy_ep");
    case gep_method::exact: {
      s.real_pt.set_input(net, x, y);
      s.real_pt.copy_states_from(s.free);
      s.ud.assign(K + 1, matrix<R>());
      for (int i = 1; i <= K; ++i) s.ud[i].setZero(net.size(i), B);
      for (long t = 0; t < T2; ++t) s.real_pt.tangent_step(s.ud);
      s.relax_steps += T2;
      mark_failed(s.real_pt, opt_.fail_residual, s.failed);
      s.real_pt.activation_deriv(s.d);
      for (int i = 1; i <= K; ++i) s.eps[i] = -s.d[i].cwiseProduct(s.ud[i]);
      break;
    }
    case gep_method::rbp: {
      s.free.compute_readout();
      s.free.activation_deriv(s.d);
      if (opt_.rbp_dense) {
        if (net.spec().is_convnet())
          throw config_error("the dense RBP solve is for dense networks; a ConvNet uses the iterative adjoint (rbp_dense = false)");
        const matrix<double> Cd = coupling_matrix(net);
        const long n = Cd.rows();
        std::vector<long> off(K + 1, 0);
        for (int i = 2; i <= K; ++i) off[i] = off[i - 1] + net.size(i - 1);
        Eigen::VectorXd dd(n), rhs = Eigen::VectorXd::Zero(n);
        for (long b = 0; b < B; ++b) {
          for (int i = 1; i <= K; ++i) dd.segment(off[i], net.size(i)) = s.d[i].col(b).template cast<double>();
          rhs.setZero();
          rhs.segment(off[K], net.size(K)) = s.free.dl_dr().col(b).template cast<double>();
          rhs = dd.asDiagonal() * rhs;
          const Eigen::MatrixXd A = Eigen::MatrixXd::Identity(n, n) - dd.asDiagonal() * Cd.transpose();
          const Eigen::VectorXd lam = A.partialPivLu().solve(rhs);
          for (int i = 1; i <= K; ++i) s.eps[i].col(b) = lam.segment(off[i], net.size(i)).template cast<R>();
        }
      } else {
        const long steps = opt_.rbp_steps > 0 ? opt_.rbp_steps : opt_.free_steps;
        s.lam.assign(K + 1, matrix<R>());
        for (int i = 1; i <= K; ++i) s.lam[i].setZero(net.size(i), B);
        for (long t = 0; t < steps; ++t) {
          s.free.coupling_vjp(s.lam, s.tmp);
          s.tmp[K] += s.free.dl_dr();
          for (int i = 1; i <= K; ++i) s.lam[i] = s.d[i].cwiseProduct(s.tmp[i]);
        }
        s.relax_steps += steps;
        for (int i = 1; i <= K; ++i) s.eps[i] = s.lam[i];
      }
      for (long b = 0; b < B; ++b)
        for (int i = 1; i <= K; ++i)
          if (!s.eps[i].col(b).allFinite()) s.failed[b] = 1;
      break;
    }
    case gep_method::online: {
      s.cplx_pt.set_input(net, x, y);
      s.cplx_pt.reset();
      s.acc_u.assign(K + 1, matrix<C>());
      s.acc_r.assign(K + 1, matrix<C>());
      for (int i = 1; i <= K; ++i) {
        s.acc_u[i].setZero(net.size(i), B);
        s.acc_r[i].setZero(net.size(i), B);
      }
      const long q = opt_.online_steps / T2;
      const int N = opt_.n_points;
      for (long seg = 0; seg < q; ++seg) {
        const C bs = std::polar(beta, R(2 * std::numbers::pi * double(seg % N) / N));
        s.free_report = s.cplx_pt.relax(bs, nudged_opt);
        s.relax_steps += T2;
        for (int i = 1; i <= K; ++i) {
          s.acc_u[i] += s.cplx_pt.u()[i];
          s.acc_r[i] += s.cplx_pt.r()[i] / bs;
        }
      }
      mark_failed(s.cplx_pt, opt_.fail_residual, s.failed);
      std::vector<matrix<R>> ubar(K + 1);
      for (int i = 1; i <= K; ++i) {
        ubar[i] = s.acc_u[i].real() / R(q);
        s.eps[i] = -s.acc_r[i].real() / R(q);
      }
      s.free.set_input(net, x, y);
      s.free.set_states_from(ubar);
      break;
    }
  }

  // Non-finite error vectors count as failures too.
  for (long b = 0; b < B; ++b)
    for (int i = 1; i <= K && !s.failed[b]; ++i)
      if (!s.eps[i].col(b).allFinite() || !s.free.r()[i].col(b).allFinite()) s.failed[b] = 1;
}

template <class R>
gep_result generalized_ep<R>::estimate_phases(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                              std::span<R> grad) {
  const int K = net.n_layers();
  const long B = x.cols();
  gep_result out;
  // Column slices, each relaxed (and differentiated) by one thread.
  const int T = static_cast<int>(std::clamp<long>(opt_.threads, 1, std::max<long>(B, 1)));
  slices_.resize(T);
  const std::vector<long> c0 = split_columns(x, y, slices_);
  std::vector<long> n(T);
  for (int t = 0; t < T; ++t) n[t] = c0[t + 1] - c0[t];
  parallel_slices(T, [&](int t) { run_phases(slices_[t], net); });

  std::vector<relax_report> reps(T);
  long n_failed = 0;
  for (int t = 0; t < T; ++t) {
    reps[t] = slices_[t].free_report;
    out.relax_steps = std::max(out.relax_steps, slices_[t].relax_steps);
    n_failed += std::count(slices_[t].failed.begin(), slices_[t].failed.end(), 1);
  }
  out.free = merge_reports(reps, n);
  out.n_dropped = n_failed;
  const long kept = B - n_failed;
  eps_.assign(K + 1, matrix<R>());
  for (int i = 1; i <= K; ++i) eps_[i].resize(net.size(i), B);
  out.predictions.resize(B);
  double loss_sum = 0;
  for (int t = 0; t < T; ++t) {
    auto& s = slices_[t];
    s.w.resize(n[t]);
    for (long b = 0; b < n[t]; ++b) {
      s.w(b) = (s.failed[b] || kept == 0) ? R(0) : R(1) / R(kept);
      if (s.failed[b])
        for (int i = 1; i <= K; ++i) s.eps[i].col(b).setZero();
    }
    for (int i = 1; i <= K; ++i) eps_[i].middleCols(c0[t], n[t]) = s.eps[i];
    vector<R> loss;
    s.free.loss_per_sample(loss);  // also computes the readout at the free state
    for (long b = 0; b < n[t]; ++b) {
      if (!s.failed[b]) loss_sum += double(loss(b));
      long k;
      s.free.probs().col(b).real().maxCoeff(&k);
      // a non-finite output predicts no class
      out.predictions[c0[t] + b] = s.free.probs().col(b).allFinite() ? static_cast<int32_t>(k) : -1;
    }
  }
  out.loss = kept > 0 ? loss_sum / double(kept) : NAN;
  std::fill(grad.begin(), grad.end(), R(0));
  if (kept > 0) {
    // The readout term must not see failed samples' NaNs: w = 0 does not cancel NaN.
    if (T == 1) {
      gep_assemble_gradient(net, slices_[0].free, slices_[0].eps, slices_[0].w, grad);
    } else {
      parallel_slices(T, [&](int t) {
        auto& s = slices_[t];
        s.grad.resize(grad.size());
        gep_assemble_gradient(net, s.free, s.eps, s.w, std::span<R>(s.grad));
      });
      for (int t = 0; t < T; ++t)
        for (size_t k = 0; k < grad.size(); ++k) grad[k] += slices_[t].grad[k];
    }
  }
  return out;
}

template <class R>
gep_result generalized_ep<R>::estimate_cauchy(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                              std::span<R> grad) {
  const grad_result g = cauchy_->estimate(net, x, y, grad);
  gep_result out;
  out.loss = g.loss;
  out.predictions = g.predictions;
  out.free = g.free;
  out.n_dropped = g.n_dropped;
  out.relax_steps = g.relax_steps;
  // The error vectors of the batch, dropped samples zeroed.
  const int K = net.n_layers();
  eps_.assign(K + 1, matrix<R>());
  for (int i = 1; i <= K; ++i) eps_[i].resize(net.size(i), x.cols());
  long c = 0;
  for (int t = 0; t < cauchy_->n_slices(); ++t) {
    const auto& e = cauchy_->slice_terms(t);
    const auto& w = cauchy_->slice_weights(t);
    for (int i = 1; i <= K; ++i) {
      eps_[i].middleCols(c, w.size()) = e[i];
      for (long b = 0; b < w.size(); ++b)
        if (w(b) == R(0)) eps_[i].col(c + b).setZero();
    }
    c += w.size();
  }
  return out;
}

template <class R>
gep_result generalized_ep<R>::estimate(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                       std::span<R> grad) {
  if (static_cast<long>(grad.size()) != net.n_params())
    throw shape_error(fmt::format("gradient buffer has {} entries, the network {} parameters", grad.size(), net.n_params()));
  if (x.cols() != y.cols()) throw shape_error(fmt::format("{} inputs but {} targets", x.cols(), y.cols()));
  gep_result out = cauchy_ ? estimate_cauchy(net, x, y, grad) : estimate_phases(net, x, y, grad);
  const long B = x.cols();
  const int T = n_slices();
  if (opt_.homeo_lambda > 0) {
    if (net.spec().is_convnet()) {  // the Jacobian depends on the state: probes at every sample's free state
      for (int t = 0; t < T; ++t) {
        const double share = double(free_state(t).batch()) / double(B);
        out.homeo_loss += share * homeostatic_loss_at(net, free_state(t), opt_.homeo_probes, rng_, grad,
                                                      opt_.homeo_lambda * share);
      }
    } else {
      out.homeo_loss = homeostatic_loss_mc(net, long(opt_.homeo_probes) * B, rng_, grad, opt_.homeo_lambda);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Homeostasis and diagnostics

namespace {
template <class R>
std::vector<long> layer_offsets(const vector_field_network<R>& net) {
  std::vector<long> off(net.n_layers() + 2, 0);
  for (int i = 2; i <= net.n_layers() + 1; ++i) off[i] = off[i - 1] + net.size(i - 1);
  return off;  // off[i] = start of layer i (i >= 1); off[K+1] = n
}

// out = C v (or C^T v) over layers 1..K with the network's own parameters.
template <class R>
void couple(const vector_field_network<R>& net, const std::vector<matrix<R>>& v, std::vector<matrix<R>>& out, bool transpose) {
  const int K = net.n_layers();
  out.resize(K + 1);
  for (int i = 1; i <= K; ++i) out[i].setZero(net.size(i), v[i].cols());
  for (int e = 0; e < net.n_edges(); ++e) {
    const auto& ed = net.edges()[e];
    if (ed.src == 0) continue;
    if (!transpose) out[ed.dst].noalias() += net.M(e) * v[ed.src];
    else out[ed.src].noalias() += net.M(e).transpose() * v[ed.dst];
  }
}
}  // namespace

template <class R>
matrix<double> coupling_matrix(const vector_field_network<R>& net) {
  if (net.spec().is_convnet())
    throw config_error("a ConvNet's Jacobian depends on the state: use the probe estimates at a state "
                       "(homeostatic_loss_at, jacobian_stats_at) instead of the dense coupling matrix");
  const auto off = layer_offsets(net);
  const long n = off[net.n_layers() + 1];
  matrix<double> Cm = matrix<double>::Zero(n, n);
  for (int e = 0; e < net.n_edges(); ++e) {
    const auto& ed = net.edges()[e];
    if (ed.src == 0) continue;
    Cm.block(off[ed.dst], off[ed.src], net.size(ed.dst), net.size(ed.src)) += net.M(e).template cast<double>();
  }
  return Cm;
}

template <class R>
double homeostatic_loss_mc(const vector_field_network<R>& net, long n_probes, rng_t& rng, std::span<R> grad, double coef) {
  if (n_probes < 1) throw config_error("homeostatic_loss_mc: need at least one probe");
  const int K = net.n_layers();
  const long n = net.spec().n_states();
  std::vector<matrix<R>> eps(K + 1), v, w, c;
  for (int i = 1; i <= K; ++i) {
    eps[i].resize(net.size(i), n_probes);
    for (long b = 0; b < n_probes; ++b)  // probe by probe: a probe's draws do not depend on the batch size
      for (long k = 0; k < net.size(i); ++k) eps[i](k, b) = R(standard_normal(rng));
  }
  couple(net, eps, v, false);  // J eps = C eps - eps
  for (int i = 1; i <= K; ++i) v[i] -= eps[i];
  couple(net, v, w, false);    // J (J eps)
  for (int i = 1; i <= K; ++i) w[i] -= v[i];
  double value = 0;
  for (int i = 1; i <= K; ++i)
    value += double(v[i].squaredNorm()) - double(eps[i].cwiseProduct(w[i]).sum());
  const double scale = 1.0 / (double(n) * double(n_probes));
  if (!grad.empty()) {
    couple(net, eps, c, true);  // J^T eps
    for (int i = 1; i <= K; ++i) c[i] -= eps[i];
    // d/dC [|J eps|^2 - eps^T J^2 eps] = 2 v eps^T - eps v^T - (J^T eps) eps^T
    const R s = R(coef * scale);
    for (int e = 0; e < net.n_edges(); ++e) {
      const auto& ed = net.edges()[e];
      if (ed.src == 0) continue;
      auto G = block_view(grad, net.weight_block(e));
      G.noalias() += (R(2) * s) * v[ed.dst] * eps[ed.src].transpose();
      G.noalias() -= s * eps[ed.dst] * v[ed.src].transpose();
      G.noalias() -= s * c[ed.dst] * eps[ed.src].transpose();
    }
  }
  return value * scale;
}

template <class R>
double homeostatic_loss_exact(const vector_field_network<R>& net, std::span<R> grad, double coef) {
  const matrix<double> Cm = coupling_matrix(net);
  const long n = Cm.rows();
  const matrix<double> A = 0.5 * (Cm - Cm.transpose());
  if (!grad.empty()) {
    const auto off = layer_offsets(net);
    for (int e = 0; e < net.n_edges(); ++e) {
      const auto& ed = net.edges()[e];
      if (ed.src == 0) continue;
      block_view(grad, net.weight_block(e)) +=
          (coef * 4.0 / double(n) * A.block(off[ed.dst], off[ed.src], net.size(ed.dst), net.size(ed.src))).template cast<R>();
    }
  }
  return 2.0 * A.squaredNorm() / double(n);
}

namespace {
// probes_per_sample Gaussian probes at every sample of st (columns p * B + b), in a state
// holding st's input and activities replicated; J eps = dC/dr eps - eps (activations bypassed).
template <class R>
struct probe_batch {
  matrix<R> x, y;
  std::vector<matrix<R>> r, eps, Jeps;
  vf_state<R> st;
  probe_batch(const vector_field_network<R>& net, const vf_state<R>& at, long probes_per_sample, rng_t& rng) {
    if (probes_per_sample < 1) throw config_error("homeostasis: need at least one probe per sample");
    const int K = net.n_layers();
    const long B = at.batch(), P = probes_per_sample * B;
    x.resize(net.size(0), P);
    y.resize(net.spec().n_classes, P);
    r.assign(K + 1, matrix<R>());
    eps.assign(K + 1, matrix<R>());
    for (int i = 1; i <= K; ++i) {
      r[i].resize(net.size(i), P);
      eps[i].resize(net.size(i), P);
    }
    for (long p = 0; p < probes_per_sample; ++p) {
      x.middleCols(p * B, B) = at.r()[0];
      y.middleCols(p * B, B) = at.y();
      for (int i = 1; i <= K; ++i) r[i].middleCols(p * B, B) = at.r()[i];
    }
    for (long c = 0; c < P; ++c)
      for (int i = 1; i <= K; ++i)
        for (long k = 0; k < net.size(i); ++k) eps[i](k, c) = R(standard_normal(rng));
    st.set_input(net, x, y);
    st.set_activities(r);
    jvp(eps, Jeps);
  }
  void jvp(const std::vector<matrix<R>>& v, std::vector<matrix<R>>& out) {
    st.coupling_jvp(v, out);
    for (size_t i = 1; i < out.size(); ++i) out[i] -= v[i];
  }
  void vjp(const std::vector<matrix<R>>& v, std::vector<matrix<R>>& out) {
    st.coupling_vjp(v, out);
    for (size_t i = 1; i < out.size(); ++i) out[i] -= v[i];
  }
  long columns() const { return x.cols(); }
  // grad += s * d/dtheta <a, J(theta) b> at the fixed activities: complex step in r along b
  // of the parameter VJP (exact to rounding: the field is analytic in r, or piecewise linear
  // for max pooling).
  void add_mixed(const vector_field_network<R>& net, const std::vector<matrix<R>>& a, const std::vector<matrix<R>>& b,
                 R s, std::span<R> grad) const {
    using C = std::complex<R>;
    const R h = std::is_same_v<R, float> ? R(1e-10) : R(1e-20);
    vf_state<C> cs;
    cs.set_input(net, x, y);
    std::vector<matrix<C>> rc(r.size()), ac(r.size());
    for (size_t i = 1; i < r.size(); ++i) {
      rc[i] = r[i].template cast<C>() + C(0, h) * b[i].template cast<C>();
      ac[i] = a[i].template cast<C>();
    }
    cs.set_activities(rc);
    cs.add_param_vjp(ac, C(0, -s / h), grad);
  }
};
}  // namespace

template <class R>
double homeostatic_loss_at(const vector_field_network<R>& net, const vf_state<R>& at, long probes_per_sample, rng_t& rng,
                           std::span<R> grad, double coef) {
  probe_batch<R> pb(net, at, probes_per_sample, rng);
  const int K = net.n_layers();
  std::vector<matrix<R>> JJeps;
  pb.jvp(pb.Jeps, JJeps);
  double value = 0;
  for (int i = 1; i <= K; ++i) value += double(pb.Jeps[i].squaredNorm()) - double(pb.eps[i].cwiseProduct(JJeps[i]).sum());
  const double scale = 1.0 / (double(net.spec().n_states()) * double(pb.columns()));
  if (!grad.empty()) {
    // d[|J e|^2 - e^T J J e] = 2 <Je, dJ e> - <J^T e, dJ e> - <e, dJ (J e)>
    std::vector<matrix<R>> JTeps, a(K + 1);
    pb.vjp(pb.eps, JTeps);
    for (int i = 1; i <= K; ++i) a[i] = R(2) * pb.Jeps[i] - JTeps[i];
    const R s = R(coef * scale);
    pb.add_mixed(net, a, pb.eps, s, grad);
    pb.add_mixed(net, pb.eps, pb.Jeps, -s, grad);
  }
  return value * scale;
}

template <class R>
jacobian_stats jacobian_stats_at(const vector_field_network<R>& net, const vf_state<R>& at, long probes_per_sample,
                                 rng_t& rng) {
  probe_batch<R> pb(net, at, probes_per_sample, rng);
  std::vector<matrix<R>> JTeps;
  pb.vjp(pb.eps, JTeps);
  double s2 = 0, a2 = 0;  // E |S e|^2 = |S|_F^2, E |A e|^2 = |A|_F^2 (per sample)
  for (int i = 1; i <= net.n_layers(); ++i) {
    s2 += double((pb.Jeps[i] + JTeps[i]).squaredNorm()) / 4;
    a2 += double((pb.Jeps[i] - JTeps[i]).squaredNorm()) / 4;
  }
  s2 /= double(pb.columns());
  a2 /= double(pb.columns());
  jacobian_stats out;
  out.symmetry_index = std::sqrt(s2) / (std::sqrt(s2) + std::sqrt(a2));
  out.homeo = 2 * a2 / double(net.spec().n_states());
  return out;
}

template <class R>
double jacobian_symmetry_index(const vector_field_network<R>& net) {
  const matrix<double> Cm = coupling_matrix(net);
  const matrix<double> S = 0.5 * (Cm + Cm.transpose()) - matrix<double>::Identity(Cm.rows(), Cm.cols());
  const double s = S.norm(), a = (0.5 * (Cm - Cm.transpose())).norm();
  return s / (s + a);
}

template <class R>
double feedback_angle_deg(const vector_field_network<R>& net) {
  double dot = 0, nw = 0, nb = 0;
  bool any = false;
  for (int e = 0; e < net.n_edges(); ++e) {
    if (net.edges()[e].forward) continue;
    const int f = net.reciprocal(e);
    if (f < 0) continue;
    any = true;
    const matrix<double> W = net.M(f).template cast<double>(), Bm = net.M(e).template cast<double>();
    // A conv feedback kernel is compared with the forward kernel itself (the VJP transposes it).
    dot += net.is_conv_edge(e) ? W.cwiseProduct(Bm).sum() : W.cwiseProduct(Bm.transpose()).sum();
    nw += W.squaredNorm();
    nb += Bm.squaredNorm();
  }
  if (!any) return NAN;
  const double c = std::clamp(dot / std::sqrt(nw * nb), -1.0, 1.0);
  return std::acos(c) * 180.0 / std::numbers::pi;
}

template <class R>
gep_diagnostics gep_diagnose(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                             const gep_options& ep, bool rbp_dense) {
  gep_diagnostics d;
  gep_options eo = ep;
  eo.homeo_lambda = 0;
  eo.threads = 1;  // the free state read below is the whole batch's
  gep_options ro = eo;
  ro.method = gep_method::rbp;
  ro.rbp_dense = rbp_dense;
  generalized_ep<R> e1(eo), e2(ro);
  aligned_vector<R> g1(net.n_params()), g2(net.n_params());
  const auto r1 = e1.estimate(net, x, y, g1);
  const auto r2 = e2.estimate(net, x, y, g2);
  d.n_dropped_ep = r1.n_dropped;
  d.n_dropped_rbp = r2.n_dropped;
  d.n_free_not_converged = r2.free.n_not_converged;
  for (int i = 1; i <= net.n_layers(); ++i) {
    const auto& a = e1.error_vectors()[i];
    const auto& b = e2.error_vectors()[i];
    const double na = double(a.norm()), nb = double(b.norm());
    d.layer_cosine.push_back(na > 0 && nb > 0 ? double(a.cwiseProduct(b).sum()) / (na * nb) : NAN);
  }
  const Eigen::Map<const vector<R>> v1(g1.data(), g1.size()), v2(g2.data(), g2.size());
  d.grad_cosine = double(v1.dot(v2)) / (double(v1.norm()) * double(v2.norm()));
  d.grad_rel_error = double((v1 - v2).norm()) / double(v2.norm());
  d.angle_deg = feedback_angle_deg(net);
  if (net.spec().is_convnet()) {  // probes at the free states of the batch
    rng_t rng(ep.seed ^ 0x6469616700ull);
    const auto js = jacobian_stats_at(net, e2.free_state(), 16, rng);
    d.symmetry_index = js.symmetry_index;
    d.homeo_exact = js.homeo;
  } else {
    d.symmetry_index = jacobian_symmetry_index(net);
    d.homeo_exact = homeostatic_loss_exact(net);
  }
  return d;
}

#define EQPROP_GEP_INSTANTIATE(R)                                                                                   \
  template class generalized_ep<R>;                                                                                 \
  template matrix<double> coupling_matrix(const vector_field_network<R>&);                                         \
  template double homeostatic_loss_mc(const vector_field_network<R>&, long, rng_t&, std::span<R>, double);         \
  template double homeostatic_loss_exact(const vector_field_network<R>&, std::span<R>, double);                    \
  template double homeostatic_loss_at(const vector_field_network<R>&, const vf_state<R>&, long, rng_t&, std::span<R>,  \
                                      double);                                                                      \
  template jacobian_stats jacobian_stats_at(const vector_field_network<R>&, const vf_state<R>&, long, rng_t&);      \
  template double jacobian_symmetry_index(const vector_field_network<R>&);                                         \
  template double feedback_angle_deg(const vector_field_network<R>&);                                              \
  template gep_diagnostics gep_diagnose(const vector_field_network<R>&, const matrix<R>&, const matrix<R>&,        \
                                        const gep_options&, bool);
EQPROP_GEP_INSTANTIATE(float)
EQPROP_GEP_INSTANTIATE(double)


}  // namespace eqprop
