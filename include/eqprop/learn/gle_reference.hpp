// Exact references for GLE networks (../shared/spec/gle.md §4): truncated BPTT through the
// Euler-discretised free dynamics (gamma = 0) and the continuous-time adjoint method (AM),
// both over a window of steps that starts from the network's current state. Both run the
// window forward (advancing the network's state exactly as gle_network::step without
// teaching would), then go backwards. They serve as gradient references and as training
// rules (one optimizer step per window).
//
// Loss of a window: L = beta/K sum_k C(r_N(k), y*_k), r_N(k) the output after step k,
// C = 1/2 |y* - r|^2 (mse) or -y* . log softmax r (ce), averaged over the batch. Gradients
// are dL/dtheta, i.e. in the units of one GLE step's gradient (-e r^T ~ beta dC/dW).
//
// BPTT is the exact gradient of L through the discrete dynamics (checked against finite
// differences). AM integrates lambda_l = I+_{tau_m} D-_{tau_r}[phi'(u_breve) W_{l+1}^T lambda_{l+1}]
// backwards (D- by a backward difference, then lambda(k) = exp(-dt/tau_m) lambda(k+1) +
// (1 - exp(-dt/tau_m)) p(k), a zero-order hold that makes I+ D- exactly the identity for
// tau_r = tau_m on constant signals; the authors' code uses the gain dt/tau_m, which differs
// by O(dt/tau_m)), and gives dL/dW_l = -1/(B K) sum_k lambda_l(k) r_{l-1}(k)^T. It treats the
// layers as simultaneous (no pipeline delay), as the continuous-time method does.
#pragma once
#include <span>
#include <vector>

#include "eqprop/model/gle_network.hpp"

namespace eqprop {

enum class gle_reference_kind { bptt, adjoint };

template <class R>
struct gle_window_result {
  using mat = Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>;
  std::vector<R> grad;  ///< dL/dtheta, laid out as net.params()
  double loss = 0;      ///< L / beta: the mean per-step loss over the window
  /// AM only, when requested: lambda[k][l] (n_l x B) for every step k and layer l.
  std::vector<std::vector<mat>> lambda;
};

/// Runs xs.size() steps (xs[k]: n_input x B, targets[k]: n_output x B, the target for the
/// output after step k) and returns the reference gradient. keep_lambda stores AM's lambda.
template <class R>
gle_window_result<R> gle_reference_gradient(gle_network<R>& net,
                                            std::span<const Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>> xs,
                                            std::span<const Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>> targets,
                                            R beta, gle_reference_kind kind, bool keep_lambda = false);

/// The window loss L / beta alone, after running the window (for finite differences).
template <class R>
double gle_window_loss(gle_network<R>& net, std::span<const Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>> xs,
                       std::span<const Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>> targets);

/// Adds the instantaneous loss C(r, target) of each sample (column j) to acc[j]; throws
/// shape_error unless r and target have the same shape and acc one entry per column.
template <class R>
void gle_add_sample_losses(gle_loss loss, const Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>& r,
                           const Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>& target, std::span<double> acc);

/// The instantaneous loss C(r, target), averaged over the batch.
template <class R>
double gle_loss_value(gle_loss loss, const Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>& r,
                      const Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>& target);

}  // namespace eqprop
