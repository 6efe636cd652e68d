#include "eqprop/learn/reference.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "eqprop/dynamics/conv_ops.hpp"
#include "eqprop/learn/cauchy_ep.hpp"

namespace eqprop {

std::string_view to_string(adjoint_solver s) {
  switch (s) {
    case adjoint_solver::automatic:
      return "auto";
    case adjoint_solver::iterative:
      return "iterative";
    case adjoint_solver::dense:
      return "dense";
  }
  return "?";
}

namespace {

template <class R>
R tol_of(const relax_options& opt) {
  return opt.tol > 0 ? R(opt.tol) : scalar_traits<R>::default_tol;
}

template <class R>
bool column_finite(const std::vector<matrix<R>>& h, long b) {
  for (const auto& m : h)
    if (!m.col(b).allFinite()) return false;
  return true;
}

// probs = softmax(W_out h + b_out), column by column, max-shifted.
template <class R>
void readout_probs(const layered_network<R>& net, const matrix<R>& h, matrix<R>& probs) {
  probs.noalias() = net.W_out() * h;
  probs.colwise() += net.b_out();
  for (long b = 0; b < probs.cols(); ++b) {
    auto c = probs.col(b);
    const R mx = c.maxCoeff();
    c = (c.array() - mx).exp();
    c /= c.sum();
  }
}

// Readout terms at the final state: dW_out += scale (p - y) h^T, db_out += scale sum (p - y).
template <class R>
void accumulate_readout_grads(const layered_network<R>& net, const matrix<R>& h_last, const matrix<R>& y, R scale,
                              matrix<R>& probs, std::span<R> grad) {
  if (net.spec().output != output_kind::readout) return;
  const auto& lay = net.layout();
  const int K = net.n_layers();
  readout_probs(net, h_last, probs);
  probs -= y;
  probs *= scale;
  block_view(grad, lay[2 * K]).noalias() += probs * h_last.transpose();
  block_view(grad, lay[2 * K + 1]).col(0) += probs.rowwise().sum();
}

}  // namespace

// ---------------------------------------------------------------------------------------
// BPTT
// ---------------------------------------------------------------------------------------

template <class R>
bptt_gradient<R>::bptt_gradient(long steps, long truncate) : steps_(steps), truncate_(truncate) {
  if (steps < 1) throw config_error(fmt::format("BPTT needs at least 1 free step, got {}", steps));
  if (truncate < 0 || truncate > steps)
    throw config_error(
        fmt::format("BPTT truncate must be in [0, steps = {}] (0 = no truncation), got {}", steps, truncate));
}

template <class R>
std::string bptt_gradient<R>::name() const {
  if (truncate_ > 0 && truncate_ < steps_) return fmt::format("BPTT T={} truncate={}", steps_, truncate_);
  return fmt::format("BPTT T={}", steps_);
}

template <class R>
grad_result bptt_gradient<R>::estimate(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                       std::span<R> grad) {
  check_grad_size(net, grad, "BPTT");
  state_.set_input(net, x, y);
  const auto& spec = net.spec();
  const int K = net.n_layers();
  const long B = x.cols();
  const long T = steps_;
  const long S = truncate_ > 0 ? truncate_ : steps_;  // steps differentiated

  // Buffers: once per (batch, layer sizes, S).
  if (B != shape_B_ || spec.sizes != shape_sizes_ || static_cast<long>(hist_h_.size()) != S) {
    hist_h_.assign(S, std::vector<matrix<R>>(K));
    hist_d_.assign(S, std::vector<matrix<R>>(K));
    delta_.assign(K, matrix<R>());
    u_.assign(K, matrix<R>());
    for (int j = 0; j < K; ++j) {
      for (long s = 0; s < S; ++s) {
        hist_h_[s][j].resize(spec.sizes[j + 1], B);
        hist_d_[s][j].resize(spec.sizes[j + 1], B);
      }
      delta_[j].resize(spec.sizes[j + 1], B);
      u_[j].resize(spec.sizes[j + 1], B);
    }
    shape_B_ = B;
    shape_sizes_ = spec.sizes;
  }

  // Forward: step t (1..T) maps h^{t-1} to h^t = sigma(pre^t). Slot s = t - (T - S) - 1
  // stores h^{t-1} and sigma'(pre^t) for the differentiated steps.
  relax_report rep;
  relax_options last;
  last.max_steps = 1;
  for (long t = 1; t <= T; ++t) {
    const long s = t - (T - S) - 1;
    if (s >= 0)
      for (int j = 0; j < K; ++j) hist_h_[s][j] = state_.h()[j];
    if (t < T) state_.step(net, R(0));
    else rep = state_.relax(net, R(0), last);  // the last step, with a report of its residual
    if (s >= 0) state_.activation_deriv(spec.activation, hist_d_[s]);
  }
  rep.steps = T;
  if (rep.n_non_finite > 0)
    throw convergence_error(
        fmt::format("BPTT: {} of {} samples have non-finite states after {} free steps", rep.n_non_finite, B, T),
        rep.max_residual, T);

  grad_result out;
  out.loss = state_.mean_cost(net);
  out.predictions = state_.predictions(net);
  out.free = rep;
  out.relax_steps = T;

  // Reverse: delta^T = dC/dh^T / B; u^t = delta^t . sigma'(pre^t); delta^{t-1} = J u^t.
  std::fill(grad.begin(), grad.end(), R(0));
  state_.dC_dh(net, delta_);
  const R inv_b = R(1) / R(B);
  for (auto& d : delta_) d *= inv_b;
  for (long s = S - 1; s >= 0; --s) {
    for (int j = 0; j < K; ++j) u_[j] = delta_[j].cwiseProduct(hist_d_[s][j]);
    state_.add_coupling_param_grad(net, x, hist_h_[s], u_, grad);
    if (s > 0) state_.apply_coupling(net, hist_h_[s], u_, delta_);
  }
  accumulate_readout_grads(net, state_.h().back(), y, inv_b, probs_, grad);
  return out;
}

// ---------------------------------------------------------------------------------------
// Feed-forward backprop
// ---------------------------------------------------------------------------------------

template <class R>
grad_result feedforward_backprop<R>::estimate(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                              std::span<R> grad) {
  check_grad_size(net, grad, "feed-forward backprop");
  if (!net.spec().feedforward)
    throw config_error(
        "estimator 'backprop' trains feed-forward networks: set network.feedforward = true (and "
        "usually network.activation = \"relu\"); for the recurrent network use bptt or implicit");
  state_.set_input(net, x, y);
  relax_options one;
  one.max_steps = 1;
  grad_result out;
  out.free = state_.relax(net, R(0), one);
  out.relax_steps = 1;
  if (out.free.n_non_finite > 0)
    throw convergence_error(fmt::format("feed-forward backprop: {} of {} samples have non-finite activations",
                                        out.free.n_non_finite, x.cols()),
                            out.free.max_residual, 1);
  out.loss = state_.mean_cost(net);
  out.predictions = state_.predictions(net);
  std::fill(grad.begin(), grad.end(), R(0));
  const int K = net.n_layers();
  const long B = x.cols();
  const R inv_b = R(1) / R(B);
  const auto& lay = net.layout();
  state_.dC_dh(net, delta_);
  delta_.back() *= inv_b;  // dL/dh of the last layer, batch mean
  state_.activation_deriv(net.spec().activation, deriv_);
  matrix<R> dprev;
  for (int j = K - 1; j >= 0; --j) {
    const auto& g = net.geometry(j);
    const matrix<R>& prev = j == 0 ? x : state_.h()[j - 1];
    u_ = delta_[j].cwiseProduct(deriv_[j]);  // dL/dpre_j
    channel_sum_grad<R, R>(g, u_, R(1), vector_map<R>(grad.data() + lay[2 * j + 1].offset, g.cout));
    const matrix<R>* dz = &u_;
    matrix<R> pooled_back;
    if (g.pool != pool_kind::none) {
      conv_forward<R, R>(g, net.W(j), prev, col_, z_);
      pool_vjp(g, z_, u_, pooled_back);
      dz = &pooled_back;
    }
    conv_weight_grad<R, R>(g, *dz, prev, col_, R(1), block_view(grad, lay[2 * j]));
    if (j > 0) {
      conv_transpose<R, R>(g, net.W(j), *dz, col_, dprev, false);
      delta_[j - 1] = dprev;
    }
  }
  accumulate_readout_grads(net, state_.h().back(), y, inv_b, probs_, grad);
  return out;
}

// ---------------------------------------------------------------------------------------
// Implicit differentiation
// ---------------------------------------------------------------------------------------

template <class R>
implicit_gradient<R>::implicit_gradient(relax_options free, adjoint_solver solver)
    : implicit_gradient(implicit_options{free, solver}) {}

template <class R>
implicit_gradient<R>::implicit_gradient(implicit_options opt) : opt_(opt) {
  if (opt_.free.max_steps < 1)
    throw config_error(fmt::format("implicit gradient: free.max_steps must be >= 1, got {}", opt_.free.max_steps));
  if (!(opt_.adjoint_tol >= 0)) throw config_error("implicit gradient: adjoint_tol must be >= 0");
  if (opt_.adjoint_max_iter < 1) throw config_error("implicit gradient: adjoint_max_iter must be >= 1");
  if (opt_.free.noise_std != 0)
    throw config_error("implicit gradient: the free phase of an exact reference must be noiseless (noise_std = 0)");
}

template <class R>
std::string implicit_gradient<R>::name() const {
  return fmt::format("implicit ({}) steps<={} tol={:g}", to_string(opt_.solver), opt_.free.max_steps,
                     double(tol_of<R>(opt_.free)));
}

template <class R>
grad_result implicit_gradient<R>::estimate(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                           std::span<R> grad) {
  check_grad_size(net, grad, "implicit gradient");
  state_.set_input(net, x, y);
  const auto& spec = net.spec();
  const int K = net.n_layers();
  const long B = x.cols();
  const R tol = tol_of<R>(opt_.free);

  grad_result out;
  out.free = state_.relax(net, R(0), opt_.free);
  out.relax_steps = out.free.steps;
  out.predictions = state_.predictions(net);
  if (!out.free.converged() && opt_.policy == nonconvergence_policy::error)
    throw convergence_error(
        fmt::format("implicit gradient: the free phase did not reach a fixed point: {} of {} samples have a residual "
                    "above tol = {:g} after {} steps (largest {:g}, {} non-finite); implicit differentiation is only "
                    "exact at a fixed point: run more steps, or use a BPTT reference for the T-step loss",
                    out.free.n_not_converged, B, double(tol), out.free.steps, out.free.max_residual,
                    out.free.n_non_finite),
        out.free.max_residual, out.free.steps);

  // Samples used: finite, and converged unless policy = keep.
  std::vector<long> kept;
  kept.reserve(B);
  const auto& res = state_.residual();
  for (long b = 0; b < B; ++b) {
    const bool finite = std::isfinite(res(b)) && column_finite(state_.h(), b);
    const bool conv = finite && res(b) <= tol;
    if (conv || (finite && opt_.policy == nonconvergence_policy::keep)) kept.push_back(b);
  }
  const long Bk = static_cast<long>(kept.size());
  out.n_dropped = B - Bk;
  std::fill(grad.begin(), grad.end(), R(0));
  last_iters_ = 0;
  last_adj_residual_ = 0;
  if (Bk == 0) {
    out.loss = std::numeric_limits<double>::quiet_NaN();
    return out;
  }
  {
    vector<R> c;
    state_.cost_per_sample(net, c);
    double s = 0;
    for (long b : kept) s += double(c(b));
    out.loss = s / double(Bk);
  }

  // Kept columns of h*, D = sigma'(pre*), g = dC/dh* / Bk, x and y.
  state_.activation_deriv(spec.activation, d_full_);
  state_.dC_dh(net, g_full_);
  auto gather = [&](const auto& src, auto& dst) {
    dst.resize(src.rows(), Bk);
    for (long k = 0; k < Bk; ++k) dst.col(k) = src.col(kept[k]);
  };
  h_.resize(K), d_.resize(K), g_.resize(K), lam_.resize(K), v_.resize(K), tmp_.resize(K);
  const R inv_b = R(1) / R(Bk);
  for (int j = 0; j < K; ++j) {
    gather(state_.h()[j], h_[j]);
    gather(d_full_[j], d_[j]);
    gather(g_full_[j], g_[j]);
    g_[j] *= inv_b;
    lam_[j].resize(h_[j].rows(), Bk);
  }
  gather(x, x_kept_);
  gather(y, y_kept_);

  long n = 0;
  std::vector<long> off(K);
  for (int j = 0; j < K; ++j) off[j] = n, n += spec.sizes[j + 1];
  adjoint_solver solver = opt_.solver;
  if (solver == adjoint_solver::automatic)
    solver = n <= 1000 && !spec.is_convnet() ? adjoint_solver::dense : adjoint_solver::iterative;
  if (solver == adjoint_solver::dense && spec.is_convnet())
    throw config_error(
        "implicit gradient: the dense adjoint solver is for MLPs; ConvNets use the iterative one "
        "(adjoint_solver = iterative or auto)");
  last_solver_ = solver;

  // Per-sample |g|.
  std::vector<double> gnorm(Bk, 0.0);
  for (int j = 0; j < K; ++j)
    for (long b = 0; b < Bk; ++b) gnorm[b] += double(g_[j].col(b).squaredNorm());
  for (auto& v : gnorm) v = std::sqrt(v);

  if (solver == adjoint_solver::iterative) {
    const double atol = opt_.adjoint_tol > 0 ? opt_.adjoint_tol : 50.0 * double(scalar_traits<R>::eps);
    for (int j = 0; j < K; ++j) lam_[j] = g_[j];
    std::vector<double> dn(Bk);
    bool done = false;
    double worst = 0;
    long it = 0;
    while (it < opt_.adjoint_max_iter) {
      ++it;
      for (int j = 0; j < K; ++j) v_[j] = d_[j].cwiseProduct(lam_[j]);
      state_.apply_coupling(net, h_, v_, tmp_);
      std::fill(dn.begin(), dn.end(), 0.0);
      for (int j = 0; j < K; ++j) {
        tmp_[j] += g_[j];  // new lambda
        for (long b = 0; b < Bk; ++b) dn[b] += double((tmp_[j].col(b) - lam_[j].col(b)).squaredNorm());
        lam_[j].swap(tmp_[j]);
      }
      done = true;
      worst = 0;
      for (long b = 0; b < Bk; ++b) {
        const double d = std::sqrt(dn[b]);
        if (!std::isfinite(d))
          throw convergence_error(fmt::format("implicit gradient: the adjoint iteration diverged (non-finite) at "
                                              "iteration {}; J D is not contracting, use adjoint_solver::dense",
                                              it),
                                  d, it);
        const double rel = gnorm[b] > 0 ? d / gnorm[b] : d;
        worst = std::max(worst, rel);
        if (!(d <= atol * gnorm[b])) done = false;
      }
      if (done) break;
    }
    last_iters_ = it;
    if (!done)
      throw convergence_error(fmt::format("implicit gradient: the adjoint iteration lambda <- g + J D lambda did not "
                                          "converge in {} iterations (relative update {:g} > {:g}); J D is not "
                                          "contracting enough at this fixed point, use adjoint_solver::dense",
                                          it, worst, atol),
                              worst, it);
  } else {
    // Dense: J is the symmetric block matrix with W_j below and W_j^T above the diagonal.
    J_.setZero(n, n);
    for (int j = 1; j < K; ++j) {
      J_.block(off[j], off[j - 1], spec.sizes[j + 1], spec.sizes[j]) = net.W(j);
      J_.block(off[j - 1], off[j], spec.sizes[j], spec.sizes[j + 1]) = net.W(j).transpose();
    }
    dv_.resize(n), gv_.resize(n);
    for (long b = 0; b < Bk; ++b) {
      for (int j = 0; j < K; ++j) {
        dv_.segment(off[j], spec.sizes[j + 1]) = d_[j].col(b);
        gv_.segment(off[j], spec.sizes[j + 1]) = g_[j].col(b);
      }
      M_.noalias() = -(J_ * dv_.asDiagonal());
      M_.diagonal().array() += R(1);
      lu_.compute(M_);
      lv_ = lu_.solve(gv_);
      for (int j = 0; j < K; ++j) lam_[j].col(b) = lv_.segment(off[j], spec.sizes[j + 1]);
    }
  }

  // u = D lambda (= dL/dpre), and the achieved residual |(I - J D) lambda - g| / |g|.
  for (int j = 0; j < K; ++j) v_[j] = d_[j].cwiseProduct(lam_[j]);
  state_.apply_coupling(net, h_, v_, tmp_);
  {
    std::vector<double> rn(Bk, 0.0);
    for (int j = 0; j < K; ++j)
      for (long b = 0; b < Bk; ++b) rn[b] += double((lam_[j].col(b) - tmp_[j].col(b) - g_[j].col(b)).squaredNorm());
    double worst = 0;
    for (long b = 0; b < Bk; ++b) {
      const double r = std::sqrt(rn[b]);
      const double rel = gnorm[b] > 0 ? r / gnorm[b] : r;
      worst = std::isfinite(rel) ? std::max(worst, rel) : std::numeric_limits<double>::infinity();
    }
    last_adj_residual_ = worst;
    const double limit = std::sqrt(double(scalar_traits<R>::eps));
    if (!(worst <= limit))
      throw convergence_error(
          fmt::format("implicit gradient: the adjoint system (I - J D) lambda = dC/dh is singular or "
                      "ill-conditioned at this fixed point (relative residual {:g})",
                      worst),
          worst, last_iters_);
  }
  state_.add_coupling_param_grad(net, x_kept_, h_, v_, grad);
  accumulate_readout_grads(net, h_.back(), y_kept_, inv_b, probs_, grad);
  return out;
}

// ---------------------------------------------------------------------------------------
// Losses, finite differences, complex step
// ---------------------------------------------------------------------------------------

namespace {

// The loss of the current parameters: at the fixed point (opt) or after `steps` steps.
struct loss_target {
  bool fixed_point;
  relax_options opt;  // fixed point
  long steps;         // after_steps
};

// Relaxes st (any network kind's state, real) from zero with the current parameters and
// returns the mean cost.
template <class St, class Net>
double eval_loss(St& st, const Net& net, const loss_target& tgt, const char* who) {
  using R = typename St::scalar;
  st.refresh_drive(net);
  st.reset();
  relax_options o = tgt.opt;
  o.noise_std = 0;
  o.noise_rng = nullptr;
  if (!tgt.fixed_point) {
    o = relax_options{};
    o.max_steps = tgt.steps;
  }
  const relax_report rep = st.relax(net, R(0), o);
  if (rep.n_non_finite > 0 || (tgt.fixed_point && !rep.converged()))
    throw convergence_error(fmt::format("{}: {} of {} samples not converged to tol = {:g} after {} steps (largest "
                                        "residual {:g}, {} non-finite)",
                                        who, rep.n_not_converged, st.batch(), double(tol_of<R>(o)), rep.steps,
                                        rep.max_residual, rep.n_non_finite),
                            rep.max_residual, rep.steps);
  vector<R> c;
  st.cost_per_sample(net, c);
  double s = 0;
  for (long b = 0; b < c.size(); ++b) s += double(c(b));
  return s / double(c.size());
}

std::vector<long> index_list(long n_params, std::span<const long> indices) {
  std::vector<long> idx;
  if (indices.empty()) {
    idx.resize(n_params);
    for (long i = 0; i < n_params; ++i) idx[i] = i;
  } else {
    for (long i : indices) {
      if (i < 0 || i >= n_params) throw shape_error(fmt::format("parameter index {} is outside [0, {})", i, n_params));
      idx.push_back(i);
    }
  }
  return idx;
}

template <class Net>
std::vector<double> fd_impl(const Net& net0, const matrix<double>& x, const matrix<double>& y, const loss_target& tgt,
                            double h, fd_stencil stencil, std::span<const long> indices) {
  if (!(h > 0) || !std::isfinite(h))
    throw config_error(fmt::format("finite differences: step h must be > 0, got {}", h));
  Net net = net0;
  typename ep_model<Net>::template state<double> st;
  st.set_input(net, x, y);
  const auto idx = index_list(net.n_params(), indices);
  std::vector<double> g(idx.size());
  auto p = net.params();
  auto L = [&](long i, double v) {
    p[i] = v;
    return eval_loss(st, net, tgt, "finite differences");
  };
  for (size_t k = 0; k < idx.size(); ++k) {
    const long i = idx[k];
    const double p0 = p[i];
    if (stencil == fd_stencil::central2) {
      const double up = p0 + h, dn = p0 - h;
      g[k] = (L(i, up) - L(i, dn)) / (up - dn);
    } else {
      g[k] = (-L(i, p0 + 2 * h) + 8 * L(i, p0 + h) - 8 * L(i, p0 - h) + L(i, p0 - 2 * h)) / (12 * h);
    }
    p[i] = p0;
  }
  return g;
}

using cplx = std::complex<double>;

// Im(mean C) / h for the complex network (one parameter perturbed by i h).
double complex_loss_slope(relax_state<cplx, cplx>& st, const layered_network<cplx>& net, const loss_target& tgt,
                          double h, std::vector<matrix<double>>& prev_t) {
  st.refresh_drive(net);
  st.reset();
  const int K = net.n_layers();
  const long B = st.batch();
  if (!tgt.fixed_point) {
    double r = 0;
    for (long t = 0; t < tgt.steps; ++t) r = st.step(net, cplx(0));
    if (!std::isfinite(r))
      throw convergence_error(fmt::format("complex step: non-finite states after {} steps", tgt.steps), r, tgt.steps);
  } else {
    // Converge the state (real part, residual <= tol) and its tangent Im(h)/h (relative
    // change per step <= max(tol, 1e-14)): the imaginary part is only exact at the fixed point.
    const double tol = tol_of<double>(tgt.opt);
    const double ttol = std::max(tol, 1e-14);
    prev_t.resize(K);
    for (int j = 0; j < K; ++j) prev_t[j].setZero(st.h()[j].rows(), B);
    std::vector<double> dn(B), tn(B);
    double r = std::numeric_limits<double>::infinity(), tc = r;
    long t = 0;
    while (t < tgt.opt.max_steps) {
      r = st.step(net, cplx(0));
      ++t;
      std::fill(dn.begin(), dn.end(), 0.0);
      std::fill(tn.begin(), tn.end(), 0.0);
      for (int j = 0; j < K; ++j) {
        const matrix<double> cur = st.h()[j].imag() / h;
        for (long b = 0; b < B; ++b) {
          dn[b] += (cur.col(b) - prev_t[j].col(b)).squaredNorm();
          tn[b] += cur.col(b).squaredNorm();
        }
        prev_t[j] = cur;
      }
      tc = 0;
      for (long b = 0; b < B; ++b) {
        const double rel = std::sqrt(dn[b]) / std::max(1.0, std::sqrt(tn[b]));
        tc = std::isfinite(rel) ? std::max(tc, rel) : std::numeric_limits<double>::infinity();
      }
      if (!std::isfinite(r) || !std::isfinite(tc)) break;
      if (tgt.opt.stop_early && r <= tol && tc <= ttol) break;
    }
    if (!(r <= tol && tc <= ttol))
      throw convergence_error(fmt::format("complex step: the fixed point was not reached after {} steps (residual "
                                          "{:g}, tol {:g}; relative tangent change {:g}, tol {:g})",
                                          t, r, tol, tc, ttol),
                              r, t);
  }
  vector<cplx> c;
  st.cost_per_sample(net, c);
  double s = 0;
  for (long b = 0; b < B; ++b) s += c(b).imag();
  return s / double(B) / h;
}

std::vector<double> cs_impl(const layered_network<double>& net0, const matrix<double>& x, const matrix<double>& y,
                            const loss_target& tgt, double h, std::span<const long> indices) {
  if (!(h > 0) || !std::isfinite(h)) throw config_error(fmt::format("complex step: h must be > 0, got {}", h));
  if (!is_holomorphic(net0.spec().activation))
    throw config_error(
        fmt::format("complex step differentiation needs a holomorphic activation, got '{}'; use "
                    "finite differences for it",
                    to_string(net0.spec().activation)));
  layered_network<cplx> net = net0.cast<cplx>();
  relax_state<cplx, cplx> st;
  st.set_input(net, x, y);
  const auto idx = index_list(net.n_params(), indices);
  std::vector<double> g(idx.size());
  std::vector<matrix<double>> prev_t;
  auto p = net.params();
  for (size_t k = 0; k < idx.size(); ++k) {
    const long i = idx[k];
    const cplx p0 = p[i];
    p[i] = p0 + cplx(0, h);
    g[k] = complex_loss_slope(st, net, tgt, h, prev_t);
    p[i] = p0;
  }
  return g;
}

}  // namespace

template <class R>
double loss_at_fixed_point(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                           const relax_options& opt) {
  relax_state<R> st;
  st.set_input(net, x, y);
  return eval_loss(st, net, loss_target{true, opt, 0}, "loss_at_fixed_point");
}

template <class R>
double loss_after_steps(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y, long steps) {
  if (steps < 0) throw config_error("loss_after_steps: steps must be >= 0");
  relax_state<R> st;
  st.set_input(net, x, y);
  return eval_loss(st, net, loss_target{false, {}, steps}, "loss_after_steps");
}

template <class Net>
std::vector<double> finite_difference_gradient(const Net& net, const matrix<double>& x, const matrix<double>& y,
                                               const relax_options& opt, double h, fd_stencil stencil,
                                               std::span<const long> indices) {
  return fd_impl(net, x, y, loss_target{true, opt, 0}, h, stencil, indices);
}
template std::vector<double> finite_difference_gradient(const layered_network<double>&, const matrix<double>&,
                                                        const matrix<double>&, const relax_options&, double, fd_stencil,
                                                        std::span<const long>);
template std::vector<double> finite_difference_gradient(const vector_field_network<double>&, const matrix<double>&,
                                                        const matrix<double>&, const relax_options&, double, fd_stencil,
                                                        std::span<const long>);

std::vector<double> finite_difference_gradient_steps(const layered_network<double>& net, const matrix<double>& x,
                                                     const matrix<double>& y, long steps, double h, fd_stencil stencil,
                                                     std::span<const long> indices) {
  if (steps < 0) throw config_error("finite_difference_gradient_steps: steps must be >= 0");
  return fd_impl(net, x, y, loss_target{false, {}, steps}, h, stencil, indices);
}

std::vector<double> complex_step_gradient(const layered_network<double>& net, const matrix<double>& x,
                                          const matrix<double>& y, const relax_options& opt, double h,
                                          std::span<const long> indices) {
  return cs_impl(net, x, y, loss_target{true, opt, 0}, h, indices);
}

std::vector<double> complex_step_gradient_steps(const layered_network<double>& net, const matrix<double>& x,
                                                const matrix<double>& y, long steps, double h,
                                                std::span<const long> indices) {
  if (steps < 0) throw config_error("complex_step_gradient_steps: steps must be >= 0");
  return cs_impl(net, x, y, loss_target{false, {}, steps}, h, indices);
}

template class bptt_gradient<float>;
template class bptt_gradient<double>;
template class implicit_gradient<float>;
template class implicit_gradient<double>;
template class feedforward_backprop<float>;
template class feedforward_backprop<double>;
template double loss_at_fixed_point<float>(const layered_network<float>&, const matrix<float>&, const matrix<float>&,
                                           const relax_options&);
template double loss_at_fixed_point<double>(const layered_network<double>&, const matrix<double>&,
                                            const matrix<double>&, const relax_options&);
template double loss_after_steps<float>(const layered_network<float>&, const matrix<float>&, const matrix<float>&,
                                        long);
template double loss_after_steps<double>(const layered_network<double>&, const matrix<double>&, const matrix<double>&,
                                         long);

}  // namespace eqprop
