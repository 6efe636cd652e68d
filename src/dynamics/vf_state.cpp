#include "eqprop/dynamics/vf_state.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/dynamics/conv_ops.hpp"
#include "eqprop/dynamics/relax.hpp"
#include "eqprop/model/activate_n.hpp"

namespace eqprop {

template <class S, class R>
void vf_state<S, R>::set_input(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y) {
  const int K = net.n_layers();
  const long B = x.cols();
  if (x.rows() != net.size(0))
    throw shape_error(fmt::format("input has {} rows, the network {} inputs", x.rows(), net.size(0)));
  if (y.rows() != net.spec().n_classes || y.cols() != B)
    throw shape_error(
        fmt::format("targets are {}x{}, expected {}x{} (one-hot)", y.rows(), y.cols(), net.spec().n_classes, B));
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
  compute_drive();
  y_ = y;
  logits_.setZero(net.spec().n_classes, B);
  probs_.setZero(net.spec().n_classes, B);
  e_.setZero(net.size(K), B);
  residual_.setZero(B);
  update_activities();
}

template <class S, class R>
void vf_state<S, R>::compute_drive() {
  const auto& net = *net_;
  const long B = r_[0].cols();
  for (size_t i = 1; i < drive_.size(); ++i) drive_[i].setZero(net.size(int(i)), B);
  // Biases of forward edges, and the input edges' terms (the input is fixed).
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
  drive_precision_ = precision_;
}

template <class S, class R>
void vf_state<S, R>::refresh_drive(const network& net) {
  if (&net != net_) throw internal_error("vf_state::refresh_drive: not the network of set_input");
  compute_drive();
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
        if (alpha == real(1))
          acc += (u_[i].col(b).template cast<wide>() - next_[i].col(b).template cast<wide>()).squaredNorm();
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
  if (drive_precision_ != precision_) compute_drive();  // the drive's products at this precision too
  const double tol = opt.tol_for<S>();
  const conv_weights_unchanged fixed;  // net_ is const: its weights do not change during the steps
  relax_report rep = relax_columns(*this, opt.max_steps, opt.stop_early, opt.freeze_converged, tol, [&] {
    return step(beta, opt.noise_std, opt.noise_rng, real_t<S>(opt.omega), opt.order);
  });
  report_columns(*this, tol, rep);
  return rep;
}

template <class S, class R>
relax_report vf_state<S, R>::relax(const network& net, S beta, const relax_options& opt) {
  if (&net != net_) throw_not_own_network();
  return relax(beta, opt);
}

template <class S, class R>
void vf_state<S, R>::throw_not_own_network() {
  throw internal_error("vf_state: not the network of set_input");
}

template <class S, class R>
std::vector<int32_t> vf_state<S, R>::predictions(const network&) {
  compute_readout();
  std::vector<int32_t> out(size_t(probs_.cols()));
  for (long b = 0; b < probs_.cols(); ++b) {
    long k;
    probs_.col(b).real().maxCoeff(&k);
    out[size_t(b)] = probs_.col(b).allFinite() ? static_cast<int32_t>(k) : -1;
  }
  return out;
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

template void gep_assemble_gradient(const vector_field_network<float>&, vf_state<float>&,
                                    const std::vector<matrix<float>>&, const vector<float>&, std::span<float>);
template void gep_assemble_gradient(const vector_field_network<double>&, vf_state<double>&,
                                    const std::vector<matrix<double>>&, const vector<double>&, std::span<double>);

template class vf_state<float>;
template class vf_state<double>;
template class vf_state<std::complex<float>>;
template class vf_state<std::complex<double>>;

}  // namespace eqprop
