#include "eqprop/dynamics/relax.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/dynamics/conv_ops.hpp"
#include "eqprop/model/activate_n.hpp"

namespace eqprop {

template <class R>
matrix<R> one_hot(std::span<const int32_t> labels, int n_classes) {
  matrix<R> y = matrix<R>::Zero(n_classes, static_cast<long>(labels.size()));
  for (size_t b = 0; b < labels.size(); ++b) {
    if (labels[b] < 0 || labels[b] >= n_classes)
      throw shape_error(fmt::format("label {} of sample {} is outside [0, {})", labels[b], b, n_classes));
    y(labels[b], static_cast<long>(b)) = R(1);
  }
  return y;
}
template matrix<float> one_hot<float>(std::span<const int32_t>, int);
template matrix<double> one_hot<double>(std::span<const int32_t>, int);

template <class S>
void softmax_columns(const matrix<S>& logits, matrix<S>& probs) {
  using real = real_t<S>;
  probs.resize(logits.rows(), logits.cols());
  for (long b = 0; b < logits.cols(); ++b) {
    real mx = -std::numeric_limits<real>::infinity();
    for (long c = 0; c < logits.rows(); ++c) mx = std::max(mx, real_part(logits(c, b)));
    S sum(0);
    for (long c = 0; c < logits.rows(); ++c) {
      probs(c, b) = std::exp(logits(c, b) - S(mx));
      sum += probs(c, b);
    }
    for (long c = 0; c < logits.rows(); ++c) probs(c, b) /= sum;
  }
}
template void softmax_columns<float>(const matrix<float>&, matrix<float>&);
template void softmax_columns<double>(const matrix<double>&, matrix<double>&);
template void softmax_columns<std::complex<float>>(const matrix<std::complex<float>>&, matrix<std::complex<float>>&);
template void softmax_columns<std::complex<double>>(const matrix<std::complex<double>>&, matrix<std::complex<double>>&);

namespace {
template <class S>
bool is_finite(const S& v) {
  if constexpr (is_complex_v<S>) return std::isfinite(v.real()) && std::isfinite(v.imag());
  else return std::isfinite(v);
}

}  // namespace

void parallel_slices(int T, const std::function<void(int)>& f) {
  std::vector<std::exception_ptr> err(static_cast<size_t>(T));
#pragma omp parallel for schedule(static, 1) num_threads(T) if (T > 1)
  for (int t = 0; t < T; ++t) {
    try {
      f(t);
    } catch (...) {
      err[size_t(t)] = std::current_exception();
    }
  }
  for (auto& e : err)
    if (e) std::rethrow_exception(e);
}

void relax_options::validate() const {
  if (max_steps < 0) throw config_error("relax: max_steps must be >= 0");
  if (!(omega > 0 && omega < 2))
    throw config_error(fmt::format("relax.omega (over-relaxation) must be in (0, 2), got {}", omega));
}

relax_order parse_relax_order(const std::string& name) {
  if (name == "synchronous") return relax_order::synchronous;
  if (name == "alternating") return relax_order::alternating;
  throw config_error(fmt::format("relax.order must be synchronous or alternating, got '{}'", name));
}

template <class S, class P>
void relax_state<S, P>::set_input(const network& net, const matrix<real>& x, const matrix<real>& y) {
  size_buffers(net, x, y);
  refresh_drive(net);
}

template <class S, class P>
void relax_state<S, P>::set_input_shared(const network& net, const matrix<real>& x, const matrix<real>& y,
                                         const matrix<real>& drive) {
  size_buffers(net, x, y);
  if (drive.rows() != drive_.rows() || drive.cols() != drive_.cols())
    throw shape_error(fmt::format("set_input_shared: drive is {}x{} but the network needs {}x{}", drive.rows(),
                                  drive.cols(), drive_.rows(), drive_.cols()));
  drive_ = drive.template cast<S>();
}

template <class S, class P>
void relax_state<S, P>::size_buffers(const network& net, const matrix<real>& x, const matrix<real>& y) {
  const auto& spec = net.spec();
  const long B = x.cols();
  if (x.rows() != spec.sizes[0])
    throw shape_error(fmt::format("input has {} rows but the network expects {} inputs", x.rows(), spec.sizes[0]));
  if (y.cols() != B || y.rows() != spec.n_output())
    throw shape_error(fmt::format("target is {}x{} but the network needs {}x{} (outputs x batch)", y.rows(), y.cols(),
                                  spec.n_output(), B));
  if (B <= 0) throw shape_error("empty batch");
  z_current_ = false;
  x_ = x;
  y_ = y;
  const int K = net.n_layers();
  h_.resize(K);
  pre_.resize(K);
  for (int j = 0; j < K; ++j) {
    h_[j].setZero(spec.sizes[j + 1], B);
    pre_[j].setZero(spec.sizes[j + 1], B);
  }
  drive_.resize(spec.sizes[1], B);
  grad_h_.setZero(spec.sizes.back(), B);
  if (spec.output == output_kind::readout) {
    logits_.resize(spec.n_readout, B);
    probs_.resize(spec.n_readout, B);
  }
  residual_.setZero(B);
  col_nudge_.resize(0);
  next_.resize(K);
  for (int j = 0; j < K; ++j) next_[j].resize(spec.sizes[j + 1], B);
}

template <class S, class P>
void relax_state<S, P>::refresh_drive(const network& net) {
  // The input is real; the drive P(conv_0 x) + b_0 is computed once per batch in the
  // parameter type and converted to the state type.
  const auto& g = net.geometry(0);
  matrix<P> col, z, d;
  if constexpr (std::is_same_v<P, real>) conv_forward<P, P>(g, net.W(0), x_, col, z);
  else conv_forward<P, P>(g, net.W(0), x_.template cast<P>(), col, z);
  if (g.pool == pool_kind::none) d.swap(z);
  else pool_forward(g, z, d);
  add_channel_bias<P, P>(g, net.b(0), d);
  drive_ = d.template cast<S>();
}

template <class S, class P>
void relax_state<S, P>::bottom_up(const network& net, int j, const matrix<S>& l, matrix<S>& pre) {
  const auto& g = net.geometry(j);
  if (g.pool == pool_kind::none) {
    conv_forward<S, P>(g, net.W(j), l, col_, pre, precision_);
  } else {
    z_.resize(net.n_layers());
    conv_forward<S, P>(g, net.W(j), l, col_, z_[j], precision_);
    pool_forward(g, z_[j], pre);
  }
  add_channel_bias<S, P>(g, net.b(j), pre);
}

template <class S, class P>
void relax_state<S, P>::reset() {
  z_current_ = false;
  for (auto& m : h_) m.setZero();
}

template <class S, class P>
void relax_state<S, P>::copy_states_from(const relax_state& other) {
  z_current_ = false;
  for (size_t j = 0; j < h_.size(); ++j) h_[j] = other.h_[j];
}

template <class S, class P>
void relax_state<S, P>::set_column_nudge(const vector<S>& m) {
  if (m.size() != batch())
    throw shape_error(fmt::format("set_column_nudge: {} multipliers for a batch of {}", m.size(), batch()));
  col_nudge_ = m;
}

template <class S, class P>
void relax_state<S, P>::copy_columns_from(const relax_state& other, long first) {
  const long B = batch();
  if (other.h_.size() != h_.size() || first < 0 || first + B > other.batch())
    throw shape_error(
        fmt::format("copy_columns_from: columns [{}, {}) of a batch of {}", first, first + B, other.batch()));
  z_current_ = false;
  for (size_t j = 0; j < h_.size(); ++j) {
    h_[j] = other.h_[j].middleCols(first, B);
    pre_[j] = other.pre_[j].middleCols(first, B);
  }
  residual_ = other.residual_.segment(first, B);
}

template <class S, class P>
void relax_state<S, P>::set_states_from_real(const std::vector<matrix<real>>& h) {
  if (h.size() != h_.size()) throw shape_error("set_states_from_real: layer count mismatch");
  z_current_ = false;
  for (size_t j = 0; j < h_.size(); ++j) {
    if (h[j].rows() != h_[j].rows() || h[j].cols() != h_[j].cols())
      throw shape_error("set_states_from_real: layer shape mismatch");
    h_[j] = h[j].template cast<S>();
  }
}

template <class S, class P>
void relax_state<S, P>::compute_readout(const network& net) {
  logits_.noalias() = net.W_out() * h_.back();
  logits_.colwise() += net.b_out().template cast<S>();
  softmax_columns(logits_, probs_);
}

template <class S, class P>
void relax_state<S, P>::dC_dh(const network& net, std::vector<matrix<S>>& out) {
  out.resize(h_.size());
  for (size_t j = 0; j < h_.size(); ++j) out[j].setZero(h_[j].rows(), h_[j].cols());
  auto& last = out.back();
  if (net.spec().output == output_kind::readout) {
    compute_readout(net);
    probs_ -= y_.template cast<S>();
    last.noalias() = net.W_out().transpose() * probs_;
    probs_ += y_.template cast<S>();
  } else {
    last = h_.back() - y_.template cast<S>();
  }
}

template <class S, class P>
typename relax_state<S, P>::real relax_state<S, P>::step(const network& net, S beta, double noise_std, rng_t* rng,
                                                         real alpha, relax_order order) {
  const int K = net.n_layers();
  const long B = batch();
  if (net.spec().feedforward) {
    if (beta != S(0))
      throw config_error("a feed-forward network (network.feedforward) cannot be nudged: train it with backprop");
    return feedforward_sweep(net, noise_std, rng);
  }
  const bool alternating = order == relax_order::alternating && K > 1;
  if (alternating) {
    // The even layers' top-down terms read z_ of the odd pooled layers, which the previous
    // alternating step left current (conv of the even states it had just set); after anything
    // else touched the states, recompute them.
    if (!z_current_)
      for (int j = 1; j < K; j += 2)
        if (net.geometry(j).pool != pool_kind::none) {
          z_.resize(K);
          conv_forward<S, P>(net.geometry(j), net.W(j), h_[j - 1], col_, z_[j], precision_);
        }
  }
  // The pre-activation of layer j from the current states, in two parts: the bottom-up term
  // (which caches a pooled layer's conv output in z_), then the top-down term, the nudge of
  // the last layer and the noise. Synchronous steps run every bottom-up part first, so that
  // z_ is current for the top-down parts.
  auto bottom = [&](int j) {
    if (j == 0) pre_[0] = drive_;
    else bottom_up(net, j, h_[j - 1], pre_[j]);
  };
  auto rest = [&](int j) {
    if (j + 1 < K) {  // top-down term J_{j+1}^T h_{j+1}
      const auto& g = net.geometry(j + 1);
      const matrix<S>* dz = &h_[j + 1];
      if (g.pool != pool_kind::none) {
        pool_vjp(g, z_[j + 1], h_[j + 1], dz_);
        dz = &dz_;
      }
      conv_transpose<S, P>(g, net.W(j + 1), *dz, col_, pre_[j], true, precision_);
    }
    if (j == K - 1 && beta != S(0)) {
      auto& p = pre_.back();
      if (net.spec().output == output_kind::readout) {
        compute_readout(net);
        probs_ -= y_.template cast<S>();
        grad_h_.noalias() = net.W_out().transpose() * probs_;
      } else {
        grad_h_ = h_.back() - y_.template cast<S>();
      }
      if (col_nudge_.size() == 0) p.noalias() -= beta * grad_h_;
      else
        for (long b = 0; b < B; ++b) p.col(b) -= (beta * col_nudge_(b)) * grad_h_.col(b);
    }
    if (noise_std > 0) {
      if (!rng) throw internal_error("relax_state::step: noise requested without an rng");
      auto& p = pre_[j];
      for (long i = 0; i < p.size(); ++i) p.data()[i] += S(real(noise_std * standard_normal(*rng)));
    }
  };
  // States of the layers j0, j0 + stride, ... <- sigma(pre) (vectorized over a layer); the
  // per-sample squared changes are added to residual_.
  auto activate = [&](int j0, int stride) {
    dispatch_activation<S>(net.spec().activation, [&](auto a) {
      using Act = decltype(a);
      for (int j = j0; j < K; j += stride) {
        auto& hj = h_[j];
        auto& vj = next_[j];
        const long n = hj.rows();
        vj.resize(n, B);
        activate_n<Act>(pre_[j].data(), vj.data(), vj.size(), act_buf_);
        if (alpha == real(1)) {
          // Eigen's vectorized reduction (a sequential sum would be bound by the add latency).
          for (long b = 0; b < B; ++b) residual_(b) += (vj.col(b) - hj.col(b)).squaredNorm();
          hj.swap(vj);
        } else {
          // v <- alpha (sigma(pre) - h), then h += v: vectorized, like the branch above.
          vj = alpha * (vj - hj);
          for (long b = 0; b < B; ++b) residual_(b) += vj.col(b).squaredNorm();
          hj += vj;
        }
      }
    });
  };
  residual_.setZero();
  next_.resize(K);
  if (!alternating) {
    // Synchronous (Jacobi): every layer from the old states.
    for (int j = 0; j < K; ++j) bottom(j);
    for (int j = 0; j < K; ++j) rest(j);
    activate(0, 1);
  } else {
    // Alternating (Gauss-Seidel over the even and odd layers): the even layers from the old
    // states, then the odd layers from the new even ones. Same fixed point, same cost.
    for (int j = 0; j < K; j += 2) bottom(j), rest(j);
    activate(0, 2);
    for (int j = 1; j < K; j += 2) bottom(j), rest(j);
    activate(1, 2);
  }
  z_current_ = alternating;  // synchronous steps leave z_ as conv of the old states
  return finish_residuals();
}

template <class S, class P>
typename relax_state<S, P>::real relax_state<S, P>::finish_residuals() {
  real mx = 0;
  for (long b = 0; b < batch(); ++b) {
    residual_(b) = std::sqrt(residual_(b));
    if (!(residual_(b) <= mx)) mx = std::isnan(residual_(b)) ? std::numeric_limits<real>::infinity() : residual_(b);
  }
  return mx;
}

template <class S, class P>
typename relax_state<S, P>::real relax_state<S, P>::feedforward_sweep(const network& net, double noise_std,
                                                                      rng_t* rng) {
  const int K = net.n_layers();
  const long B = batch();
  residual_.setZero();
  dispatch_activation<S>(net.spec().activation, [&](auto a) {
    using Act = decltype(a);
    for (int j = 0; j < K; ++j) {
      if (j == 0) pre_[0] = drive_;
      else bottom_up(net, j, h_[j - 1], pre_[j]);
      if (noise_std > 0) {
        if (!rng) throw internal_error("relax_state::step: noise requested without an rng");
        for (long i = 0; i < pre_[j].size(); ++i) pre_[j].data()[i] += S(real(noise_std * standard_normal(*rng)));
      }
      const long n = h_[j].rows();
      for (long b = 0; b < B; ++b) {
        real acc = 0;
        for (long i = 0; i < n; ++i) {
          const S v = activate<Act>(pre_[j](i, b));
          acc += abs2(v - h_[j](i, b));
          h_[j](i, b) = v;
        }
        residual_(b) += acc;
      }
    }
  });
  return finish_residuals();
}

template <class S, class P>
bool relax_state<S, P>::column_finite(long b) const {
  for (const auto& hj : h_)
    for (long i = 0; i < hj.rows(); ++i)
      if (!is_finite(hj(i, b))) return false;
  return true;
}

template <class S, class P>
relax_report relax_state<S, P>::relax(const network& net, S beta, const relax_options& opt) {
  opt.validate();
  precision_ = opt.precision;
  const double tol = opt.tol_for<S>();
  // A feed-forward network is exact after one sweep: its residual is then 0 by definition.
  const bool ff = net.spec().feedforward;
  const conv_weights_unchanged fixed;  // net is const: its weights do not change during the steps
  relax_report rep = relax_columns(
      *this, ff ? std::min<long>(opt.max_steps, 1) : opt.max_steps, opt.stop_early, opt.freeze_converged && !ff, tol,
      [&] { return step(net, beta, opt.noise_std, opt.noise_rng, real(opt.omega), opt.order); });
  if (ff) residual_.setZero();
  report_columns(*this, tol, rep);
  return rep;
}

template <class S, class P>
void relax_state<S, P>::cost_per_sample(const network& net, vector<S>& out) {
  const long B = batch();
  out.resize(B);
  if (net.spec().output == output_kind::readout) {
    compute_readout(net);
    for (long b = 0; b < B; ++b) {
      // C = logsumexp(z) * sum(y) - y.z, with the max real part subtracted for stability.
      real mx = -std::numeric_limits<real>::infinity();
      for (long c = 0; c < logits_.rows(); ++c) mx = std::max(mx, real_part(logits_(c, b)));
      S s(0), yz(0);
      real ysum = 0;
      for (long c = 0; c < logits_.rows(); ++c) {
        s += std::exp(logits_(c, b) - S(mx));
        yz += S(y_(c, b)) * logits_(c, b);
        ysum += y_(c, b);
      }
      out(b) = (std::log(s) + S(mx)) * S(ysum) - yz;
    }
  } else {
    for (long b = 0; b < B; ++b) {
      S acc(0);
      for (long i = 0; i < h_.back().rows(); ++i) {
        const S d = h_.back()(i, b) - S(y_(i, b));
        acc += d * d;
      }
      out(b) = S(0.5) * acc;
    }
  }
}

template <class S, class P>
double relax_state<S, P>::mean_cost(const network& net) {
  vector<S> c;
  cost_per_sample(net, c);
  double s = 0;
  for (long b = 0; b < c.size(); ++b) s += double(real_part(c(b)));
  return s / double(c.size());
}

template <class S, class P>
std::vector<int32_t> relax_state<S, P>::predictions(const network& net) {
  const matrix<S>* out = &h_.back();
  if (net.spec().output == output_kind::readout) {
    compute_readout(net);
    out = &logits_;
  }
  std::vector<int32_t> pred(batch());
  for (long b = 0; b < batch(); ++b) {
    long best = 0;
    bool finite = is_finite((*out)(0, b));
    for (long c = 1; c < out->rows(); ++c) {
      finite = finite && is_finite((*out)(c, b));
      if (real_part((*out)(c, b)) > real_part((*out)(best, b))) best = c;
    }
    pred[b] = finite ? static_cast<int32_t>(best) : -1;  // a non-finite output predicts no class
  }
  return pred;
}

template <class S, class P>
void relax_state<S, P>::output_scores(const network& net, matrix<real>& out) {
  const matrix<S>* o = &h_.back();
  if (net.spec().output == output_kind::readout) {
    compute_readout(net);
    o = &logits_;
  }
  out.resize(o->rows(), o->cols());
  for (long i = 0; i < o->size(); ++i) out.data()[i] = real_part(o->data()[i]);
}

namespace {
// Copy of m with column b scaled by w(b); columns with w(b) == 0 are set to exactly zero
// (not multiplied), so a dropped sample with NaN states cannot poison the gradient.
template <class S, class R>
void weighted_columns(const matrix<S>& m, const vector<R>& w, matrix<S>& out) {
  out.resize(m.rows(), m.cols());
  for (long b = 0; b < m.cols(); ++b) {
    if (w(b) == R(0)) out.col(b).setZero();
    else out.col(b) = m.col(b) * S(w(b));
  }
}
template <class S, class R>
void masked_columns(const matrix<S>& m, const vector<R>& w, matrix<S>& out) {
  out.resize(m.rows(), m.cols());
  for (long b = 0; b < m.cols(); ++b) {
    if (w(b) == R(0)) out.col(b).setZero();
    else out.col(b) = m.col(b);
  }
}
// grad_block += Re(coef * (a diag(w) c^T)); tmp and tmp2 are scratch.
template <class S, class R>
void add_outer(matrix<S>& tmp, matrix<S>& tmp2, const matrix<S>& a, const vector<R>& w, const matrix<S>& c, S coef,
               matrix_map<R> grad_block) {
  weighted_columns(a, w, tmp);
  masked_columns(c, w, tmp2);
  const matrix<S> prod = tmp * tmp2.transpose();
  if constexpr (is_complex_v<S>) {
    grad_block.array() += coef.real() * prod.real().array() - coef.imag() * prod.imag().array();
  } else {
    grad_block.array() += coef * prod.array();
  }
}
// grad_block += Re(coef * a w)
template <class S, class R>
void add_weighted_sum(matrix<S>& tmp, const matrix<S>& a, const vector<R>& w, S coef, matrix_map<R> grad_block) {
  weighted_columns(a, w, tmp);
  const vector<S> s = tmp.rowwise().sum();
  if constexpr (is_complex_v<S>) {
    grad_block.array() += coef.real() * s.real().array() - coef.imag() * s.imag().array();
  } else {
    grad_block.array() += coef * s.array();
  }
}
}  // namespace

template <class S, class P>
void relax_state<S, P>::add_dF_dtheta(const network& net, S beta, S coef, const vector<real>& w, std::span<real> grad) {
  dF_dtheta_impl(net, beta, coef, w, grad, nullptr);
}

template <class S, class P>
void relax_state<S, P>::add_dF_dtheta(const network& net, S beta, S coef, const vector<real>& w, std::span<real> grad,
                                      matrix<real>& acc0) {
  if (acc0.rows() != net.geometry(0).conv_size() || acc0.cols() != batch())
    throw shape_error("add_dF_dtheta: acc0 must be conv_size(0) x batch");
  dF_dtheta_impl(net, beta, coef, w, grad, &acc0);
}

template <class S, class P>
void relax_state<S, P>::add_input_weight_grad(const network& net, const matrix<real>& acc0, const vector<real>& w,
                                              std::span<real> grad) {
  const auto& g = net.geometry(0);
  matrix<real> col, xm;
  const matrix<real>* x = &x_;
  if ((w.array() == real(0)).any()) {
    masked_columns(x_, w, xm);
    x = &xm;
  }
  conv_weight_grad<real, real>(g, acc0, *x, col, real(-1), block_view(grad, net.layout()[0]));
}

template <class S, class P>
void relax_state<S, P>::dF_dtheta_impl(const network& net, S beta, S coef, const vector<real>& w, std::span<real> grad,
                                       matrix<real>* acc0) {
  if (static_cast<long>(grad.size()) != net.n_params())
    throw shape_error(
        fmt::format("gradient buffer has {} entries, the network {} parameters", grad.size(), net.n_params()));
  if (w.size() != batch()) throw shape_error("add_dF_dtheta: sample weights must have one entry per sample");
  const auto& lay = net.layout();
  const int K = net.n_layers();
  // dF/dW_j = -d/dW_j [h_j . P(conv_j l_{j-1})] = -conv weight gradient of J_P^T h_j.
  for (int j = 0; j < K; ++j) {
    const auto& g = net.geometry(j);
    weighted_columns(h_[j], w, tmp_);
    const matrix<S>* u = &tmp_;
    const bool to_acc = j == 0 && acc0 != nullptr;
    if (!to_acc || g.pool != pool_kind::none) {
      if (j == 0) masked_columns(matrix<S>(x_.template cast<S>()), w, tmp2_);
      else masked_columns(h_[j - 1], w, tmp2_);
    }
    if (g.pool != pool_kind::none) {
      conv_forward<S, P>(g, net.W(j), tmp2_, col_, a_);
      pool_vjp(g, a_, tmp_, dz_);
      u = &dz_;
    }
    if (to_acc) {
      if constexpr (is_complex_v<S>) acc0->array() += coef.real() * u->real().array() - coef.imag() * u->imag().array();
      else acc0->array() += coef * u->array();
    } else {
      conv_weight_grad<S, real>(g, *u, tmp2_, col_, S(-1) * coef, block_view(grad, lay[2 * j]));
    }
    channel_sum_grad<S, real>(g, tmp_, S(-1) * coef, vector_map<real>(grad.data() + lay[2 * j + 1].offset, g.cout));
  }
  if (net.spec().output == output_kind::readout && beta != S(0)) {
    compute_readout(net);
    matrix<S> e = probs_ - y_.template cast<S>();
    if (col_nudge_.size() > 0) e *= col_nudge_.asDiagonal();
    add_outer<S, real>(tmp_, tmp2_, e, w, h_.back(), beta * coef, block_view(grad, lay[2 * K]));
    add_weighted_sum<S, real>(tmp_, e, w, beta * coef, block_view(grad, lay[2 * K + 1]));
  }
}

template <class S, class P>
void relax_state<S, P>::apply_coupling(const network& net, const std::vector<matrix<S>>& h_at,
                                       const std::vector<matrix<S>>& v, std::vector<matrix<S>>& out) {
  const int K = net.n_layers();
  out.resize(K);
  for (int j = 0; j < K; ++j) out[j].setZero(v[j].rows(), v[j].cols());
  // Connection j >= 1 couples h_{j-1} and h_j (connection 0 sees the clamped input only).
  for (int j = 1; j < K; ++j) {
    const auto& g = net.geometry(j);
    if (g.pool == pool_kind::none) {
      conv_forward<S, P>(g, net.W(j), v[j - 1], col_, a_);
      out[j] += a_;
      conv_transpose<S, P>(g, net.W(j), v[j], col_, out[j - 1], true);
    } else {
      matrix<S> z;
      conv_forward<S, P>(g, net.W(j), h_at[j - 1], col_, z);
      conv_forward<S, P>(g, net.W(j), v[j - 1], col_, a_);  // conv v_{j-1}
      pool_jvp(g, z, a_, c_);
      out[j] += c_;
      pool_vjp(g, z, v[j], dz_);
      pool_hvp(g, z, h_at[j], a_, c_);
      dz_ += c_;
      conv_transpose<S, P>(g, net.W(j), dz_, col_, out[j - 1], true);
    }
  }
}

template <class S, class P>
void relax_state<S, P>::add_coupling_param_grad(const network& net, const matrix<real>& x,
                                                const std::vector<matrix<S>>& h_at, const std::vector<matrix<S>>& u,
                                                std::span<real> grad) {
  if (static_cast<long>(grad.size()) != net.n_params())
    throw shape_error(
        fmt::format("gradient buffer has {} entries, the network {} parameters", grad.size(), net.n_params()));
  const auto& lay = net.layout();
  const int K = net.n_layers();
  const matrix<S> xs = x.template cast<S>();
  // u . pre = sum_j u_j . (P(conv_j l_{j-1}) + b_j) + h_j . J_P(conv_j l_{j-1}) conv_j u_{j-1}.
  for (int j = 0; j < K; ++j) {
    const auto& g = net.geometry(j);
    const matrix<S>& prev = j == 0 ? xs : h_at[j - 1];
    auto gW = block_view(grad, lay[2 * j]);
    if (g.pool == pool_kind::none) {
      conv_weight_grad<S, real>(g, u[j], prev, col_, S(1), gW);
      if (j > 0) conv_weight_grad<S, real>(g, h_at[j], u[j - 1], col_, S(1), gW);
    } else {
      matrix<S> z;
      conv_forward<S, P>(g, net.W(j), prev, col_, z);
      pool_vjp(g, z, u[j], dz_);
      if (j > 0) {
        conv_forward<S, P>(g, net.W(j), u[j - 1], col_, a_);
        pool_hvp(g, z, h_at[j], a_, c_);
        dz_ += c_;
        pool_vjp(g, z, h_at[j], c_);
        conv_weight_grad<S, real>(g, c_, u[j - 1], col_, S(1), gW);
      }
      conv_weight_grad<S, real>(g, dz_, prev, col_, S(1), gW);
    }
    channel_sum_grad<S, real>(g, u[j], S(1), vector_map<real>(grad.data() + lay[2 * j + 1].offset, g.cout));
  }
}

template <class S, class P>
void relax_state<S, P>::activation_deriv(activation_kind kind, std::vector<matrix<S>>& out) const {
  out.resize(pre_.size());
  dispatch_activation<S>(kind, [&](auto a) {
    using Act = decltype(a);
    for (size_t j = 0; j < pre_.size(); ++j) {
      out[j].resize(pre_[j].rows(), pre_[j].cols());
      for (long i = 0; i < pre_[j].size(); ++i) out[j].data()[i] = Act::deriv(pre_[j].data()[i]);
    }
  });
}

template class relax_state<float>;
template class relax_state<double>;
template class relax_state<std::complex<float>>;
template class relax_state<std::complex<double>>;
template class relax_state<std::complex<double>, std::complex<double>>;

}  // namespace eqprop
