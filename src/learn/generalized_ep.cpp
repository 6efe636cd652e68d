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
// vf_state

template <class S, class R>
void vf_state<S, R>::set_input(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y) {
  const int K = net.n_layers();
  const long B = x.cols();
  if (x.rows() != net.size(0)) throw shape_error(fmt::format("input has {} rows, the network {} inputs", x.rows(), net.size(0)));
  if (y.rows() != net.spec().n_classes || y.cols() != B)
    throw shape_error(fmt::format("targets are {}x{}, expected {}x{} (one-hot)", y.rows(), y.cols(), net.spec().n_classes, B));
  net_ = &net;
  z_.assign(net.n_edges(), matrix<S>());
  u_.assign(K + 1, matrix<S>());
  r_.assign(K + 1, matrix<S>());
  drive_.assign(K + 1, matrix<S>());
  next_.assign(K + 1, matrix<S>());
  tmp_.assign(K + 1, matrix<S>());
  r_[0] = x.template cast<S>();
  for (int i = 1; i <= K; ++i) {
    u_[i].setZero(net.size(i), B);
    drive_[i].setZero(net.size(i), B);
    next_[i].setZero(net.size(i), B);
    tmp_[i].setZero(net.size(i), B);
  }
  // The drive: biases of forward edges, and the input edges' terms (the input is fixed).
  for (int e = 0; e < net.n_edges(); ++e) {
    const auto& ed = net.edges()[e];
    const auto& g = net.geometry(e);
    if (ed.src == 0) {
      if (net.is_conv_edge(e)) {
        conv_forward<S, R>(g, net.M(e), r_[0], col_, z_[e]);
        pool_forward(g, z_[e], t1_);
        drive_[ed.dst] += t1_;
      } else {
        matmul<S, R>(net.M(e), false, r_[0].data(), B, drive_[ed.dst].data(), true, precision_);
      }
    }
    if (ed.forward) add_channel_bias<S, R>(g, net.b(e), drive_[ed.dst]);
  }
  y_ = y;
  logits_.setZero(net.spec().n_classes, B);
  probs_.setZero(net.spec().n_classes, B);
  e_.setZero(net.size(K), B);
  residual_.setZero(B);
  update_activities();
}

template <class S, class R>
void vf_state<S, R>::zero_samples(const std::vector<char>& flagged) {
  for (long b = 0; b < static_cast<long>(flagged.size()); ++b) {
    if (!flagged[b]) continue;
    for (auto& m : r_) m.col(b).setZero();
    for (size_t i = 1; i < u_.size(); ++i) u_[i].col(b).setZero();
  }
  for (int e = 0; e < net_->n_edges(); ++e)  // the input edges' cached convolutions of x
    if (net_->edges()[e].src == 0 && net_->is_conv_edge(e))
      conv_forward<S, R>(net_->geometry(e), net_->M(e), r_[0], col_, z_[e]);
  lin_valid_ = false;
}

template <class S, class R>
void vf_state<S, R>::set_activities(const std::vector<matrix<S>>& r) {
  for (size_t i = 1; i < r_.size(); ++i) {
    if (r[i].rows() != r_[i].rows() || r[i].cols() != r_[i].cols())
      throw shape_error(fmt::format("set_activities: layer {} is {}x{}, expected {}x{}", i, r[i].rows(), r[i].cols(),
                                    r_[i].rows(), r_[i].cols()));
    r_[i] = r[i];
  }
  lin_valid_ = false;
}

template <class S, class R>
void vf_state<S, R>::add_coupling(std::vector<matrix<S>>& out, int parity) {
  const auto& edges = net_->edges();
  for (size_t e = 0; e < edges.size(); ++e) {
    const auto& ed = edges[e];
    if (ed.src == 0 || (parity >= 0 && ed.dst % 2 != parity)) continue;
    if (!net_->is_conv_edge(int(e))) {
      matmul<S, R>(net_->M(int(e)), false, r_[ed.src].data(), r_[ed.src].cols(), out[ed.dst].data(), true, precision_);
      continue;
    }
    const auto& g = net_->geometry(int(e));
    const auto M = net_->M(int(e));
    if (ed.forward) {  // P(conv_W r_src)
      conv_forward<S, R>(g, M, r_[ed.src], col_, z_[e]);
      pool_forward(g, z_[e], t1_);
      out[ed.dst] += t1_;
    } else {  // conv_B^T J_P(conv_B r_dst)^T r_src
      conv_forward<S, R>(g, M, r_[ed.dst], col_, z_[e]);
      pool_vjp(g, z_[e], r_[ed.src], dz_);
      conv_transpose<S, R>(g, M, dz_, col_, out[ed.dst], true);
    }
  }
  lin_valid_ = parity < 0;
}

template <class S, class R>
void vf_state<S, R>::linearize() {
  if (lin_valid_) return;
  const auto& edges = net_->edges();
  for (size_t e = 0; e < edges.size(); ++e) {
    const auto& ed = edges[e];
    if (ed.src == 0 || !net_->is_conv_edge(int(e))) continue;
    conv_forward<S, R>(net_->geometry(int(e)), net_->M(int(e)), r_[ed.forward ? ed.src : ed.dst], col_, z_[e]);
  }
  lin_valid_ = true;
}

template <class S, class R>
void vf_state<S, R>::coupling_jvp(const std::vector<matrix<S>>& v, std::vector<matrix<S>>& out) {
  linearize();
  const auto& edges = net_->edges();
  out.resize(u_.size());
  for (size_t i = 1; i < u_.size(); ++i) out[i].setZero(u_[i].rows(), v[i].cols());
  for (size_t e = 0; e < edges.size(); ++e) {
    const auto& ed = edges[e];
    if (ed.src == 0) continue;
    if (!net_->is_conv_edge(int(e))) {
      matmul<S, R>(net_->M(int(e)), false, v[ed.src].data(), v[ed.src].cols(), out[ed.dst].data(), true, precision_);
      continue;
    }
    const auto& g = net_->geometry(int(e));
    const auto M = net_->M(int(e));
    if (ed.forward) {  // J_P conv_W v_src
      conv_forward<S, R>(g, M, v[ed.src], col_, t1_);
      pool_jvp(g, z_[e], t1_, t2_);
      out[ed.dst] += t2_;
    } else {  // conv_B^T J_P^T v_src + conv_B^T H_P[r_src] conv_B v_dst
      pool_vjp(g, z_[e], v[ed.src], dz_);
      conv_transpose<S, R>(g, M, dz_, col_, out[ed.dst], true);
      if (g.pool == pool_kind::softmax) {
        conv_forward<S, R>(g, M, v[ed.dst], col_, t1_);
        pool_hvp(g, z_[e], r_[ed.src], t1_, t2_);
        conv_transpose<S, R>(g, M, t2_, col_, out[ed.dst], true);
      }
    }
  }
}

template <class S, class R>
void vf_state<S, R>::coupling_vjp(const std::vector<matrix<S>>& a, std::vector<matrix<S>>& out) {
  linearize();
  const auto& edges = net_->edges();
  out.resize(u_.size());
  for (size_t i = 1; i < u_.size(); ++i) out[i].setZero(u_[i].rows(), a[i].cols());
  for (size_t e = 0; e < edges.size(); ++e) {
    const auto& ed = edges[e];
    if (ed.src == 0) continue;
    if (!net_->is_conv_edge(int(e))) {
      matmul<S, R>(net_->M(int(e)), true, a[ed.dst].data(), a[ed.dst].cols(), out[ed.src].data(), true, precision_);
      continue;
    }
    const auto& g = net_->geometry(int(e));
    const auto M = net_->M(int(e));
    if (ed.forward) {  // conv_W^T J_P^T a_dst
      pool_vjp(g, z_[e], a[ed.dst], dz_);
      conv_transpose<S, R>(g, M, dz_, col_, out[ed.src], true);
    } else {  // to r_src: J_P conv_B a_dst; to r_dst: conv_B^T H_P[r_src] conv_B a_dst (H symmetric)
      conv_forward<S, R>(g, M, a[ed.dst], col_, t1_);
      pool_jvp(g, z_[e], t1_, t2_);
      out[ed.src] += t2_;
      if (g.pool == pool_kind::softmax) {
        pool_hvp(g, z_[e], r_[ed.src], t1_, t2_);
        conv_transpose<S, R>(g, M, t2_, col_, out[ed.dst], true);
      }
    }
  }
}

template <class S, class R>
void vf_state<S, R>::add_param_vjp(const std::vector<matrix<S>>& a, S coef, std::span<R> grad) {
  linearize();
  const auto& net = *net_;
  for (int e = 0; e < net.n_edges(); ++e) {
    const auto& ed = net.edges()[e];
    auto gW = block_view(grad, net.weight_block(e));
    const int bi = net.bias_block_index(e);
    if (!net.is_conv_edge(e)) {  // a_dst r_src^T
      if constexpr (is_complex_v<S>) gW.noalias() += (coef * a[ed.dst] * r_[ed.src].transpose()).real();
      else gW.noalias() += coef * a[ed.dst] * r_[ed.src].transpose();
    } else {
      const auto& g = net.geometry(e);
      if (ed.forward) {  // d/dW <a, P(conv_W r_src)> = (J_P^T a) (x) r_src
        pool_vjp(g, z_[e], a[ed.dst], dz_);
        conv_weight_grad<S, R>(g, dz_, r_[ed.src], col_, coef, gW);
      } else {  // d/dB <a_dst, conv_B^T J_P(conv_B r_dst)^T r_src> = <J_P(z) conv_B a_dst, r_src>
        pool_vjp(g, z_[e], r_[ed.src], dz_);
        conv_weight_grad<S, R>(g, dz_, a[ed.dst], col_, coef, gW);
        if (g.pool == pool_kind::softmax) {
          conv_forward<S, R>(g, net.M(e), a[ed.dst], col_, t1_);
          pool_hvp(g, z_[e], r_[ed.src], t1_, t2_);
          conv_weight_grad<S, R>(g, t2_, r_[ed.dst], col_, coef, gW);
        }
      }
    }
    if (bi >= 0) {
      const auto& lb = net.layout()[bi];
      vector_map<R> gb(grad.data() + lb.offset, lb.rows);
      if (!net.is_conv_edge(e)) {
        if constexpr (is_complex_v<S>) gb += (coef * a[ed.dst].rowwise().sum()).real();
        else gb += coef * a[ed.dst].rowwise().sum();
      } else {
        channel_sum_grad<S, R>(net.geometry(e), a[ed.dst], coef, gb);
      }
    }
  }
}

template <class S, class R>
void vf_state<S, R>::reset() {
  for (size_t i = 1; i < u_.size(); ++i) u_[i].setZero();
  update_activities();
}

template <class S, class R>
void vf_state<S, R>::copy_states_from(const vf_state& o) {
  for (size_t i = 1; i < u_.size(); ++i) u_[i] = o.u_[i];
  update_activities();
}

template <class S, class R>
void vf_state<S, R>::update_activities(int parity) {
  dispatch_activation<S>(net_->spec().activation, [&](auto act) {
    using A = decltype(act);
    for (size_t i = 1; i < u_.size(); ++i) {
      if (parity >= 0 && int(i % 2) != parity) continue;
      r_[i].resize(u_[i].rows(), u_[i].cols());
      activate_n<A>(u_[i].data(), r_[i].data(), u_[i].size(), act_buf_);
    }
  });
  lin_valid_ = false;
}

template <class S, class R>
void vf_state<S, R>::activation_deriv(std::vector<matrix<S>>& out) const {
  out.resize(u_.size());
  dispatch_activation<S>(net_->spec().activation, [&](auto act) {
    using A = decltype(act);
    for (size_t i = 1; i < u_.size(); ++i) out[i] = u_[i].unaryExpr([](const S& v) { return A::deriv(v); });
  });
}

template <class S, class R>
void vf_state<S, R>::compute_readout() {
  const int K = static_cast<int>(u_.size()) - 1;
  const long B = r_[K].cols();
  logits_.resize(net_->spec().n_classes, B);
  matmul<S, R>(net_->W_ro(), false, r_[K].data(), B, logits_.data(), false, precision_);
  logits_.colwise() += net_->b_ro().template cast<S>();
  softmax_columns(logits_, probs_);
  probs_ -= y_.template cast<S>();
  e_.resize(r_[K].rows(), B);
  matmul<S, R>(net_->W_ro(), true, probs_.data(), B, e_.data(), false, precision_);
  probs_ += y_.template cast<S>();
}

template <class S, class R>
void vf_state<S, R>::loss_per_sample(vector<R>& out) {
  compute_readout();
  out.resize(logits_.cols());
  for (long b = 0; b < logits_.cols(); ++b) {
    R mx = real_part(logits_(0, b));
    for (long k = 1; k < logits_.rows(); ++k) mx = std::max(mx, R(real_part(logits_(k, b))));
    R s = 0, yz = 0;
    for (long k = 0; k < logits_.rows(); ++k) {
      s += std::exp(R(real_part(logits_(k, b))) - mx);
      yz += y_(k, b) * R(real_part(logits_(k, b)));
    }
    out(b) = mx + std::log(s) - yz;
  }
}

template <class S, class R>
real_t<S> vf_state<S, R>::step(S beta, double noise_std, rng_t* rng, real_t<S> alpha, relax_order order) {
  using real = real_t<S>;
  const int K = static_cast<int>(u_.size()) - 1;
  residual_.setZero(u_[K].cols());
  // The layers of one parity (-1: all) <- their update from the current activities.
  auto update = [&](int parity) {
    auto mine = [&](int i) { return parity < 0 || i % 2 == parity; };
    for (int i = 1; i <= K; ++i)
      if (mine(i)) next_[i] = drive_[i];
    add_coupling(next_, parity);
    if (beta != S(0) && mine(K)) {
      compute_readout();
      next_[K] -= beta * e_;
    }
    if (noise_std > 0) {
      if (!rng) throw internal_error("vf_state::step: noise requested without an rng");
      for (int i = 1; i <= K; ++i)
        if (mine(i))
          for (long k = 0; k < next_[i].size(); ++k) next_[i].data()[k] += S(real(noise_std * standard_normal(*rng)));
    }
    for (int i = 1; i <= K; ++i) {
      if (!mine(i)) continue;
      if (alpha == real(1)) {
        for (long b = 0; b < residual_.size(); ++b) residual_(b) += (next_[i].col(b) - u_[i].col(b)).squaredNorm();
        u_[i].swap(next_[i]);
      } else {
        next_[i] = alpha * (next_[i] - u_[i]);
        for (long b = 0; b < residual_.size(); ++b) residual_(b) += next_[i].col(b).squaredNorm();
        u_[i] += next_[i];
      }
    }
    update_activities(parity);
  };
  if (order == relax_order::alternating && K > 1) {
    update(1);  // layers 1, 3, ... from the old activities
    update(0);  // then 2, 4, ... from the new ones
  } else {
    update(-1);
  }
  // u is unbounded: a sum of squares can overflow while every state is finite. Such columns
  // are summed again in double, from the old and new states (next_ holds the old u when
  // alpha = 1, else the update itself).
  using wide = std::conditional_t<is_complex_v<S>, std::complex<double>, double>;
  real mx = 0;
  for (long b = 0; b < residual_.size(); ++b) {
    if (std::isfinite(residual_(b))) {
      residual_(b) = std::sqrt(residual_(b));
    } else {
      double acc = 0;
      for (int i = 1; i <= K; ++i) {
        if (alpha == real(1)) acc += (u_[i].col(b).template cast<wide>() - next_[i].col(b).template cast<wide>()).squaredNorm();
        else acc += next_[i].col(b).template cast<wide>().squaredNorm();
      }
      residual_(b) = real(std::sqrt(acc));  // inf only if the update's length does not fit in real (or NaN)
    }
    if (!(residual_(b) <= mx)) mx = std::isnan(residual_(b)) ? std::numeric_limits<real>::infinity() : residual_(b);
  }
  return mx;
}

template <class S, class R>
bool vf_state<S, R>::column_finite(long b) const {
  for (size_t i = 1; i < u_.size(); ++i)
    if (!u_[i].col(b).allFinite()) return false;
  return true;
}

template <class S, class R>
relax_report vf_state<S, R>::relax(S beta, const relax_options& opt) {
  opt.validate();
  precision_ = opt.precision;
  const double tol = opt.tol_for<S>();
  relax_report rep = relax_columns(*this, opt.max_steps, opt.stop_early, opt.freeze_converged, tol,
                                   [&] { return step(beta, opt.noise_std, opt.noise_rng, real_t<S>(opt.omega), opt.order); });
  report_columns(*this, tol, rep);
  return rep;
}

template <class S, class R>
void vf_state<S, R>::tangent_step(std::vector<matrix<S>>& ud) {
  const int K = static_cast<int>(u_.size()) - 1;
  std::vector<matrix<S>>& d = tmp_;
  dispatch_activation<S>(net_->spec().activation, [&](auto act) {
    using A = decltype(act);
    for (int i = 1; i <= K; ++i) d[i] = u_[i].unaryExpr([](const S& v) { return A::deriv(v); }).cwiseProduct(ud[i]);
  });
  coupling_jvp(d, next_);
  compute_readout();
  next_[K] -= e_;  // d/dbeta of -beta e(r_K) at beta = 0
  for (int i = 1; i <= K; ++i) ud[i].swap(next_[i]);
  step(S(0));
}

template class vf_state<float>;
template class vf_state<double>;
template class vf_state<std::complex<float>>;
template class vf_state<std::complex<double>>;

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
    case gep_method::cauchy: {
      const int N = opt_.n_points;
      s.real_pt.set_input(net, x, y);
      // Real points: +beta and, for even N >= 2, -beta.
      std::vector<std::pair<R, R>> real_pts;  // beta, coefficient of r
      if (N == 1) real_pts.push_back({beta, R(1) / beta});
      else {
        real_pts.push_back({beta, R(1) / (R(N) * beta)});
        if (N % 2 == 0) real_pts.push_back({-beta, R(1) / (R(N) * -beta)});
      }
      for (auto [b, c] : real_pts) {
        s.real_pt.copy_states_from(s.free);
        s.real_pt.relax(b, nudged_opt);
        s.relax_steps += T2;
        mark_failed(s.real_pt, opt_.fail_residual, s.failed);
        for (int i = 1; i <= K; ++i) s.eps[i] -= c * s.real_pt.r()[i];
      }
      if (N == 1)
        for (int i = 1; i <= K; ++i) s.eps[i] += s.free.r()[i] / beta;
      if (N >= 3) {
        s.cplx_pt.set_input(net, x, y);
        for (int k = 1; k < (N + 1) / 2; ++k) {  // conjugate pairs, each computed once and doubled
          const C bk = std::polar(beta, R(2 * std::numbers::pi * k / N));
          const C coef = R(2) / (R(N) * bk);
          s.cplx_pt.set_states_from(s.free.u());
          s.cplx_pt.relax(bk, nudged_opt);
          s.relax_steps += T2;
          mark_failed(s.cplx_pt, opt_.fail_residual, s.failed);
          for (int i = 1; i <= K; ++i) s.eps[i] -= (coef * s.cplx_pt.r()[i]).real();
        }
      }
      break;
    }
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
gep_result generalized_ep<R>::estimate(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                       std::span<R> grad) {
  if (static_cast<long>(grad.size()) != net.n_params())
    throw shape_error(fmt::format("gradient buffer has {} entries, the network {} parameters", grad.size(), net.n_params()));
  if (x.cols() != y.cols()) throw shape_error(fmt::format("{} inputs but {} targets", x.cols(), y.cols()));
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
  if (opt_.homeo_lambda > 0) {
    if (net.spec().is_convnet()) {  // the Jacobian depends on the state: probes at every sample's free state
      for (int t = 0; t < T; ++t) {
        const double share = double(n[t]) / double(B);
        out.homeo_loss += share * homeostatic_loss_at(net, slices_[t].free, opt_.homeo_probes, rng_, grad,
                                                      opt_.homeo_lambda * share);
      }
    } else {
      out.homeo_loss = homeostatic_loss_mc(net, long(opt_.homeo_probes) * B, rng_, grad, opt_.homeo_lambda);
    }
  }
  return out;
}

template <class R>
void gep_assemble_gradient(const vector_field_network<R>& net, vf_state<R>& st, const std::vector<matrix<R>>& eps,
                           const vector<R>& w, std::span<R> grad) {
  std::fill(grad.begin(), grad.end(), R(0));
  const int K = net.n_layers();
  // Failed samples (w = 0) may hold NaN, which w = 0 does not cancel: their columns are zeroed.
  std::vector<char> dropped(w.size(), 0);
  for (long b = 0; b < w.size(); ++b) dropped[b] = w(b) == R(0);
  if (std::find(dropped.begin(), dropped.end(), 1) != dropped.end()) st.zero_samples(dropped);
  std::vector<matrix<R>> a(K + 1);
  for (int i = 1; i <= K; ++i) {
    a[i] = eps[i];
    for (long b = 0; b < a[i].cols(); ++b)
      if (dropped[b]) a[i].col(b).setZero();
    a[i] = a[i] * w.asDiagonal();
  }
  st.add_param_vjp(a, R(1), grad);
  st.compute_readout();
  const matrix<R> dz = (st.probs() - st.y()) * w.asDiagonal();
  const auto& lw = net.layout()[net.layout().size() - 2];
  const auto& lb = net.layout()[net.layout().size() - 1];
  block_view(grad, lw).noalias() = dz * st.r()[K].transpose();
  block_view(grad, lb) = dz.rowwise().sum();
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
  template void gep_assemble_gradient(const vector_field_network<R>&, vf_state<R>&,                                \
                                      const std::vector<matrix<R>>&, const vector<R>&, std::span<R>);               \
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
