#include "eqprop/learn/vf_estimators.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include "eqprop/core/eigen.hpp"

#include "eqprop/core/error.hpp"
#include "eqprop/learn/generalized_ep.hpp"

namespace eqprop {

template <class R>
vf_eps_estimator<R>::vf_eps_estimator(relax_options free, double fail_residual, int threads)
    : free_(free), fail_residual_(fail_residual), threads_(threads) {
  if (!(fail_residual > 0)) throw config_error("estimator.fail_residual must be > 0");
  if (threads < 1) throw config_error(fmt::format("estimator.threads must be >= 1, got {}", threads));
}

template <class R>
grad_result vf_eps_estimator<R>::estimate(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                          std::span<R> grad) {
  check_grad_size(net, grad, this->name().c_str());
  if (x.cols() != y.cols()) throw shape_error(fmt::format("{} inputs but {} targets", x.cols(), y.cols()));
  const int K = net.n_layers();
  const long B = x.cols();
  grad_result out;
  // Column slices, each relaxed (and differentiated) by one thread.
  const int T = static_cast<int>(std::clamp<long>(threads_, 1, std::max<long>(B, 1)));
  slices_.resize(T);
  const std::vector<long> c0 = split_columns(x, y, slices_);
  std::vector<long> n(T);
  for (int t = 0; t < T; ++t) n[t] = c0[t + 1] - c0[t];
  parallel_slices(T, [&](int t) {
    slice& s = slices_[t];
    s.failed.assign(n[t], 0);
    s.free.set_precision(free_.precision);
    s.free.set_input(net, s.x, s.y);
    s.free_report = s.free.relax(R(0), free_);
    s.relax_steps = s.free_report.steps;
    mark_failed_columns(s.free, fail_residual_, s.failed);
    error_vectors(s, net);
    // Non-finite error vectors or free states count as failures too.
    for (long b = 0; b < n[t]; ++b)
      for (int i = 1; i <= K && !s.failed[b]; ++i)
        if (!s.eps[i].col(b).allFinite() || !s.free.r()[i].col(b).allFinite()) s.failed[b] = 1;
  });

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
    vector<R> loss;
    s.free.loss_per_sample(loss);  // also computes the readout at the free state
    for (long b = 0; b < n[t]; ++b)
      if (!s.failed[b]) loss_sum += double(loss(b));
    const auto pred = s.free.predictions(net);
    std::copy(pred.begin(), pred.end(), out.predictions.begin() + c0[t]);
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
      sum_slice_gradients(slices_, grad);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------

template <class R>
forward_mode_ep<R>::forward_mode_ep(const ep_options& opt)
    : vf_eps_estimator<R>(opt.free, opt.fail_residual, opt.threads), nudged_(opt.nudged) {
  opt.free.validate();
  nudged_.validate();
  if (opt.free.max_steps < 1 || nudged_.max_steps < 1)
    throw config_error("relaxation step counts (free_steps, nudged_steps) must be >= 1");
}

template <class R>
std::string forward_mode_ep<R>::name() const {
  return "forward-mode EP d r/d beta (N=0)";
}

template <class R>
void forward_mode_ep<R>::error_vectors(slice& s, const vector_field_network<R>& net) {
  const int K = net.n_layers();
  const long B = s.x.cols();
  s.aux.set_precision(nudged_.precision);
  s.aux.set_input(net, s.x, s.y);
  s.aux.copy_states_from(s.free);
  s.v.assign(K + 1, matrix<R>());
  for (int i = 1; i <= K; ++i) s.v[i].setZero(net.size(i), B);
  for (long t = 0; t < nudged_.max_steps; ++t) s.aux.tangent_step(s.v);
  s.relax_steps += nudged_.max_steps;
  mark_failed_columns(s.aux, this->fail_residual(), s.failed);
  s.aux.activation_deriv(s.d);
  s.eps.assign(K + 1, matrix<R>());
  for (int i = 1; i <= K; ++i) s.eps[i] = -s.d[i].cwiseProduct(s.v[i]);
}

// ---------------------------------------------------------------------------------------

template <class R>
recurrent_backprop<R>::recurrent_backprop(rbp_options opt)
    : vf_eps_estimator<R>(opt.free, opt.fail_residual, opt.threads), opt_(opt) {
  opt_.free.validate();
  if (opt_.adjoint_steps < 0) throw config_error("estimator.rbp_steps must be >= 0");
}

template <class R>
std::string recurrent_backprop<R>::name() const {
  return fmt::format("recurrent backprop ({})", opt_.dense ? "dense" : "iterative");
}

template <class R>
void recurrent_backprop<R>::error_vectors(slice& s, const vector_field_network<R>& net) {
  const int K = net.n_layers();
  const long B = s.x.cols();
  s.free.compute_readout();
  s.free.activation_deriv(s.d);
  s.eps.assign(K + 1, matrix<R>());
  for (int i = 1; i <= K; ++i) s.eps[i].setZero(net.size(i), B);
  if (opt_.dense) {
    if (net.spec().is_convnet())
      throw config_error(
          "the dense RBP solve is for dense networks; a ConvNet uses the iterative adjoint (rbp_dense = false)");
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
    const long steps = opt_.adjoint_steps > 0 ? opt_.adjoint_steps : opt_.free.max_steps;
    for (long t = 0; t < steps; ++t) {  // lambda <- D (C^T lambda + e), from 0
      s.free.coupling_vjp(s.eps, s.tmp);
      s.tmp[K] += s.free.dl_dr();
      for (int i = 1; i <= K; ++i) s.eps[i] = s.d[i].cwiseProduct(s.tmp[i]);
    }
    s.relax_steps += steps;
  }
}

template class vf_eps_estimator<float>;
template class vf_eps_estimator<double>;
template class forward_mode_ep<float>;
template class forward_mode_ep<double>;
template class recurrent_backprop<float>;
template class recurrent_backprop<double>;

}  // namespace eqprop
