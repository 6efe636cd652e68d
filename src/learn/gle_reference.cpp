#include "eqprop/learn/gle_reference.hpp"

#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"

namespace eqprop {

namespace {

template <class R>
using mat_t = Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>;
template <class R>
using vec_t = Eigen::Matrix<R, Eigen::Dynamic, 1>;

/// What the backward passes need from each forward step.
template <class R>
struct recorded_step {
  std::vector<mat_t<R>> rin, udot, dphi;  // per layer
  mat_t<R> out;                           // r_N after the step
};

template <class R>
std::vector<recorded_step<R>> run_window(gle_network<R>& net, std::span<const mat_t<R>> xs) {
  if (net.spec().gamma != 0)
    throw config_error("GLE references differentiate the free dynamics: set gamma = 0 for BPTT / adjoint runs");
  std::vector<recorded_step<R>> rec(xs.size());
  const int L = net.n_layers();
  for (std::size_t k = 0; k < xs.size(); ++k) {
    auto& s = rec[k];
    if (xs[k].cols() != net.batch()) net.resize_batch(xs[k].cols());
    s.rin.resize(L);
    s.rin[0] = xs[k];
    for (int l = 1; l < L; ++l) s.rin[l] = net.state(l - 1).r;
    net.step(xs[k], nullptr, R(0));
    s.udot.resize(L);
    s.dphi.resize(L);
    for (int l = 0; l < L; ++l) {
      s.udot[l] = net.state(l).udot;
      s.dphi[l] = net.state(l).dphi;
    }
    s.out = net.output();
  }
  return rec;
}

/// dC/dr averaged over the batch.
template <class R>
mat_t<R> loss_grad(gle_loss loss, const mat_t<R>& r, const mat_t<R>& t) {
  mat_t<R> g;
  gle_network<R>::output_error(loss, r, t, R(-1), g);  // -1 * (t - p) = p - t
  return g / R(r.cols());
}

template <class R>
void check_window(const gle_network<R>& net, std::size_t nx, std::size_t nt) {
  if (nx == 0) throw shape_error("GLE reference: empty window");
  if (nx != nt) throw shape_error(fmt::format("GLE reference: {} inputs but {} targets", nx, nt));
  (void)net;
}

}  // namespace

template <class R>
void gle_add_sample_losses(gle_loss loss, const mat_t<R>& r, const mat_t<R>& t, std::span<double> acc) {
  if (t.rows() != r.rows() || t.cols() != r.cols() || long(acc.size()) != r.cols())
    throw shape_error(fmt::format("GLE loss: output {}x{}, target {}x{}, {} sums", r.rows(), r.cols(), t.rows(),
                                  t.cols(), acc.size()));
  for (long j = 0; j < r.cols(); ++j) {
    if (loss == gle_loss::mse) {
      acc[j] += 0.5 * double((t.col(j) - r.col(j)).squaredNorm());
      continue;
    }
    const R m = r.col(j).maxCoeff();
    const R lse = m + std::log((r.col(j).array() - m).exp().sum());
    acc[j] -= double(t.col(j).dot((r.col(j).array() - lse).matrix()));
  }
}

template <class R>
double gle_loss_value(gle_loss loss, const mat_t<R>& r, const mat_t<R>& t) {
  std::vector<double> per_sample(std::size_t(r.cols()), 0.0);
  gle_add_sample_losses<R>(loss, r, t, per_sample);
  double s = 0;
  for (double v : per_sample) s += v;
  return s / double(r.cols());
}

template <class R>
double gle_window_loss(gle_network<R>& net, std::span<const mat_t<R>> xs, std::span<const mat_t<R>> targets) {
  check_window(net, xs.size(), targets.size());
  double total = 0;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    net.step(xs[k], nullptr, R(0));
    total += gle_loss_value<R>(net.spec().loss, net.output(), targets[k]);
  }
  return total / double(xs.size());
}

template <class R>
gle_window_result<R> gle_reference_gradient(gle_network<R>& net, std::span<const mat_t<R>> xs,
                                            std::span<const mat_t<R>> targets, R beta, gle_reference_kind kind,
                                            bool keep_lambda) {
  check_window(net, xs.size(), targets.size());
  const auto rec = run_window(net, xs);
  const int L = net.n_layers();
  const long K = long(xs.size());
  const long B = net.batch();
  const R dt = R(net.spec().dt);
  const auto& layout = net.layout();
  gle_window_result<R> res;
  res.grad.assign(net.params().size(), R(0));
  for (long k = 0; k < K; ++k) res.loss += gle_loss_value<R>(net.spec().loss, rec[k].out, targets[k]);
  res.loss /= double(K);
  std::vector<const param_block*> Wb(L), bb(L), tb(L);
  for (int l = 0; l < L; ++l) {
    Wb[l] = find_block(layout, fmt::format("W{}", l));
    bb[l] = find_block(layout, fmt::format("b{}", l));
    tb[l] = find_block(layout, fmt::format("tau_m{}", l));
  }
  auto accumulate = [&](int l, const mat_t<R>& abar, const mat_t<R>& rin) {
    Eigen::Map<mat_t<R>>(res.grad.data() + Wb[l]->offset, Wb[l]->rows, Wb[l]->cols).noalias() += abar * rin.transpose();
    if (bb[l]) Eigen::Map<vec_t<R>>(res.grad.data() + bb[l]->offset, bb[l]->rows) += abar.rowwise().sum();
  };
  const R scale = beta / R(K);

  if (kind == gle_reference_kind::bptt) {
    // Reverse mode through: a = W rin + b; u_breve = u + tau_r (a-u)/tau_m; u' = u + dt (a-u)/tau_m; r = phi(u_breve).
    std::vector<mat_t<R>> ubar(L), rbar(L);
    for (int l = 0; l < L; ++l) {
      ubar[l].setZero(net.spec().layers[l].size, B);
      rbar[l].setZero(net.spec().layers[l].size, B);
    }
    for (long k = K - 1; k >= 0; --k) {
      rbar[L - 1] += scale * loss_grad<R>(net.spec().loss, rec[k].out, targets[k]);
      std::vector<mat_t<R>> rbar_prev(L);
      for (int l = 0; l < L; ++l) rbar_prev[l].setZero(net.spec().layers[l].size, B);
      for (int l = 0; l < L; ++l) {
        const vec_t<R> tm = net.tau_m(l);
        const vec_t<R>& tr = net.tau_r(l);
        const mat_t<R> ub = (rbar[l].array() * rec[k].dphi[l].array()).matrix();  // dL/du_breve
        const vec_t<R> c_r = tr.cwiseQuotient(tm), c_dt = (dt * tm.cwiseInverse().array()).matrix();
        mat_t<R> abar = (ub.array().colwise() * c_r.array() + ubar[l].array().colwise() * c_dt.array()).matrix();
        if (tb[l]) {  // d u_breve/d tau_m = -tau_r u'/tau_m,  d u_next/d tau_m = -dt u'/tau_m
          const mat_t<R> q =
              ((ub.array().colwise() * tr.array() + dt * ubar[l].array()) * rec[k].udot[l].array()).matrix();
          Eigen::Map<vec_t<R>>(res.grad.data() + tb[l]->offset, tb[l]->rows) -=
              (q.rowwise().sum().array() / tm.array()).matrix();
        }
        ubar[l] =
            (ub.array().colwise() * (R(1) - c_r.array()) + ubar[l].array().colwise() * (R(1) - c_dt.array())).matrix();
        accumulate(l, abar, rec[k].rin[l]);
        if (l > 0) rbar_prev[l - 1].noalias() += net.W(l).transpose() * abar;
      }
      rbar.swap(rbar_prev);
    }
    return res;
  }

  // Adjoint method: lambda_l(k), top-down at each step, backwards in time per layer.
  std::vector<std::vector<mat_t<R>>> lambda(K, std::vector<mat_t<R>>(L));
  for (int l = L - 1; l >= 0; --l) {
    const vec_t<R> tm = net.tau_m(l);
    const vec_t<R>& tr = net.tau_r(l);
    const vec_t<R> decay = (-(dt / tm.array())).exp().matrix();
    const vec_t<R> gain = (R(1) - decay.array()).matrix();
    const vec_t<R> lead = (tr.array() / dt).matrix();
    std::vector<mat_t<R>> q(K);
    for (long k = 0; k < K; ++k) {
      mat_t<R> drive;
      if (l == L - 1) gle_network<R>::output_error(net.spec().loss, rec[k].out, targets[k], beta, drive);
      else drive = net.W(l + 1).transpose() * lambda[k][l + 1];
      q[k] = (drive.array() * rec[k].dphi[l].array()).matrix();
    }
    mat_t<R> lam = mat_t<R>::Zero(q[0].rows(), B);
    for (long k = K - 1; k >= 0; --k) {
      const mat_t<R>& qprev = k > 0 ? q[k - 1] : q[k];
      const mat_t<R> p = (q[k].array() - (q[k] - qprev).array().colwise() * lead.array()).matrix();
      lam = (lam.array().colwise() * decay.array() + p.array().colwise() * gain.array()).matrix();
      lambda[k][l] = lam;
      accumulate(l, (-R(1) / R(B * K)) * lam, rec[k].rin[l]);
    }
  }
  if (keep_lambda) res.lambda = std::move(lambda);
  return res;
}

#define EQPROP_GLE_REF(R)                                                                                          \
  template gle_window_result<R> gle_reference_gradient<R>(gle_network<R>&, std::span<const mat_t<R>>,              \
                                                          std::span<const mat_t<R>>, R, gle_reference_kind, bool); \
  template double gle_window_loss<R>(gle_network<R>&, std::span<const mat_t<R>>, std::span<const mat_t<R>>);       \
  template double gle_loss_value<R>(gle_loss, const mat_t<R>&, const mat_t<R>&);                                   \
  template void gle_add_sample_losses<R>(gle_loss, const mat_t<R>&, const mat_t<R>&, std::span<double>);
EQPROP_GLE_REF(float)
EQPROP_GLE_REF(double)
#undef EQPROP_GLE_REF

}  // namespace eqprop
