#include "eqprop/learn/deep.hpp"

#include <cmath>

#include "eqprop/core/error.hpp"
#include "eqprop/learn/stability.hpp"

namespace eqprop {

deep_decay parse_deep_decay(const std::string& s) {
  if (s == "row_sum") return deep_decay::row_sum;
  if (s == "abs_row_sum") return deep_decay::abs_row_sum;
  if (s == "unit") return deep_decay::unit;
  throw config_error("unknown DEEP decay `" + s + "` (expected row_sum | abs_row_sum | unit)");
}
deep_presyn parse_deep_presyn(const std::string& s) {
  if (s == "identity" || s == "none") return deep_presyn::identity;
  if (s == "hep_sigmoid") return deep_presyn::hep_sigmoid;
  if (s == "tanh") return deep_presyn::tanh;
  if (renamed_activation(s, activation_family::ep))
    throw config_error("presynaptic " + renamed_activation_message(s, activation_family::ep));
  throw config_error("unknown presynaptic activation `" + s + "` (expected identity | hep_sigmoid | tanh)");
}
deep_presyn parse_saved_deep_presyn(const std::string& s) {
  return s == "sigmoid" ? deep_presyn::hep_sigmoid : parse_deep_presyn(s);
}
deep_rule parse_deep_rule(const std::string& s) {
  if (s == "trajectory") return deep_rule::trajectory;
  if (s == "endpoint") return deep_rule::endpoint;
  if (s == "vector_field") return deep_rule::vector_field;
  throw config_error("unknown DEEP learning rule `" + s + "` (expected trajectory | endpoint | vector_field)");
}
deep_l1 parse_deep_l1(const std::string& s) {
  if (s == "subgradient") return deep_l1::subgradient;
  if (s == "soft_threshold" || s == "prox") return deep_l1::soft_threshold;
  throw config_error("unknown L1 mode `" + s + "` (expected subgradient | soft_threshold)");
}

std::string to_string(deep_decay d) {
  return d == deep_decay::row_sum ? "row_sum" : d == deep_decay::abs_row_sum ? "abs_row_sum" : "unit";
}
std::string to_string(deep_presyn p) {
  return p == deep_presyn::identity ? "identity" : p == deep_presyn::hep_sigmoid ? "hep_sigmoid" : "tanh";
}
std::string to_string(deep_rule r) {
  return r == deep_rule::trajectory ? "trajectory" : r == deep_rule::endpoint ? "endpoint" : "vector_field";
}
std::string to_string(deep_l1 m) { return m == deep_l1::subgradient ? "subgradient" : "soft_threshold"; }

activation_kind deep_presyn_activation(deep_presyn p) {
  return p == deep_presyn::identity ? activation_kind::linear
         : p == deep_presyn::hep_sigmoid ? activation_kind::hep_sigmoid
                                         : activation_kind::tanh;
}

void deep_check_settings(const deep_dynamics& dyn, const deep_learning& learn) {
  if (!learn.reciprocal_nudge) return;
  if (learn.rule != deep_rule::vector_field)
    throw config_error("DEEP: the reciprocal nudge (--reciprocal-nudge) needs the vector_field rule (--rule vector_field; "
                       "--baseline sets endpoint), got `" + to_string(learn.rule) +
                       "`: its nudge gives (s^β − s*)/β → J^{-T} ∂C/∂s, which only the vector-field rule turns into −∂C/∂W");
  if (dyn.clip)
    throw config_error("DEEP: the reciprocal nudge (--reciprocal-nudge) needs unclipped dynamics (--no-clip): its Jacobian "
                       "ignores the clip, so Jᵀ − J is wrong wherever a neuron is held at 0 or 1");
}

void deep_check_batch(const graph_network& net, const Eigen::MatrixXd& x, const Eigen::MatrixXd& y) {
  if (x.rows() != net.n_data_input())
    throw shape_error("DEEP: inputs have " + std::to_string(x.rows()) + " rows, the network has " +
                      std::to_string(net.n_data_input()) + " data inputs");
  if (y.rows() != net.n_output() || y.cols() != x.cols())
    throw shape_error("DEEP: targets are " + std::to_string(y.rows()) + " x " + std::to_string(y.cols()) +
                      ", expected " + std::to_string(net.n_output()) + " x " + std::to_string(x.cols()));
}

Eigen::MatrixXd deep_initial_state(const graph_network& net, const Eigen::MatrixXd& x, rng_t& rng) {
  if (x.rows() != net.n_data_input())
    throw shape_error("DEEP: inputs have " + std::to_string(x.rows()) + " rows, the network has " +
                      std::to_string(net.n_data_input()) + " data inputs");
  Eigen::MatrixXd s(net.size(), x.cols());
  s.topRows(net.n_data_input()) = x;
  s.row(net.bias_index()).setOnes();
  for (Eigen::Index b = 0; b < s.cols(); ++b)
    for (int j = net.n_input(); j < net.size(); ++j) s(j, b) = 0.1 * uniform01(rng);
  return s;
}

deep_phase_report deep_relax(const graph_network& net, const deep_dynamics& dyn, Eigen::MatrixXd& s,
                             const Eigen::MatrixXd* y, double beta,
                             const std::function<void(const Eigen::MatrixXd&, const Eigen::MatrixXd&)>& on_step,
                             const deep_linear_term* extra) {
  const int nf = net.n_free(), n_in = net.n_input(), n_out = net.n_output();
  if (s.rows() != net.size()) throw shape_error("DEEP: state has " + std::to_string(s.rows()) + " rows, expected " + std::to_string(net.size()));
  if (y && (y->rows() != n_out || y->cols() != s.cols())) throw shape_error("DEEP: nudging targets do not match the outputs");
  if (!(dyn.dt > 0)) throw config_error("DEEP: dt must be > 0");
  if (dyn.leak < 0) throw config_error("DEEP: the leak must be >= 0");
  if (extra && (extra->s_ref.rows() != s.rows() || extra->s_ref.cols() != s.cols() ||
                Eigen::Index(extra->k.size()) != s.cols()))
    throw shape_error("DEEP: the linear term does not match the state's " + std::to_string(s.cols()) + " samples");
  const graph_drive drive(net);
  Eigen::VectorXd decay(nf);
  for (int j = 0; j < nf; ++j) {
    const auto row = net.weights.row(n_in + j);
    decay(j) = dyn.decay == deep_decay::row_sum ? row.sum() : dyn.decay == deep_decay::abs_row_sum ? row.cwiseAbs().sum() : 1.0;
  }
  decay.array() += dyn.leak;
  const bool has_bias = net.bias.size() == nf && !net.bias.isZero(0.0);
  const activation_kind presyn = deep_presyn_activation(dyn.presyn);
  Eigen::MatrixXd rho, drho, drv(nf, s.cols()), next(nf, s.cols()), prev;
  deep_phase_report rep;
  const long budget = y ? dyn.nudged_steps : dyn.free_steps;
  for (long t = 0; t < budget; ++t) {
    if (dyn.presyn == deep_presyn::identity) drive.apply(s, drv);
    else { apply_activation(presyn, s, rho, drho); drive.apply(rho, drv); }
    if (has_bias) drv.colwise() += net.bias;
    drv.noalias() -= decay.asDiagonal() * s.bottomRows(nf);
    if (y) drv.bottomRows(n_out) += beta * (*y - s.bottomRows(n_out));
    if (extra)
      for (Eigen::Index b = 0; b < s.cols(); ++b)
        drv.col(b).noalias() += extra->k[std::size_t(b)] * (s.col(b).tail(nf) - extra->s_ref.col(b).tail(nf));
    if (!drv.allFinite()) { rep.finite = false; rep.steps = t; return rep; }
    next = s.bottomRows(nf) + dyn.dt * drv;
    if (dyn.clip) next = next.cwiseMax(0.0).cwiseMin(1.0);
    rep.residual = (next - s.bottomRows(nf)).colwise().squaredNorm().maxCoeff();
    if (on_step) prev = s;
    s.bottomRows(nf) = next;
    rep.steps = t + 1;
    if (on_step) on_step(prev, s);
    if (dyn.stop_tol > 0 && rep.residual <= dyn.stop_tol) { rep.converged = true; break; }
  }
  return rep;
}

void deep_l1_shrink(graph_network& net, double lambda, deep_l1 mode) {
  if (lambda <= 0) return;
  auto& w = net.weights;
  if (mode == deep_l1::subgradient) w -= lambda * w.cwiseSign();
  else w = w.cwiseSign().cwiseProduct((w.cwiseAbs().array() - lambda).max(0.0).matrix());
  net.apply_masks();
}

long deep_boltzmann_prune(graph_network& net, const deep_learning& learn, rng_t& rng) {
  if (!(learn.prune_temp > 0)) throw config_error("DEEP: the pruning temperature must be > 0");
  const int n = net.size();
  auto& w = net.weights;
  const auto& st = net.structural();
  long zeroed = 0;
  for (int j = 0; j < n; ++j) {
    if (!st.col(j).any()) continue;
    double den = 0;
    for (int i = 0; i < n; ++i) {
      const bool in_graph = st(i, j) && !net.pruned()(i, j);
      if (learn.exclude_structural && !in_graph) continue;
      den += std::exp(-std::abs(w(i, j)) / learn.prune_temp);
    }
    for (int i = 0; i < n; ++i) {
      if (!st(i, j) || net.pruned()(i, j) || std::abs(w(i, j)) > learn.prune_tol) continue;
      const double p = std::exp(-std::abs(w(i, j)) / learn.prune_temp) / den;
      if (p > uniform01(rng)) {
        if (w(i, j) != 0.0) ++zeroed;
        w(i, j) = 0.0;
        if (learn.persistent) net.pruned()(i, j) = true;
      }
    }
  }
  return zeroed;
}

deep_linear_term deep_reciprocal_term(const graph_network& net, const deep_dynamics& dyn, const Eigen::MatrixXd& s_free) {
  deep_linear_term t;
  t.s_ref = s_free;
  t.k.reserve(std::size_t(s_free.cols()));
  for (Eigen::Index b = 0; b < s_free.cols(); ++b) {
    const Eigen::MatrixXd j = deep_jacobian(net, dyn, s_free.col(b));
    t.k.push_back(j.transpose() - j);
  }
  return t;
}

Eigen::MatrixXd deep_vector_field_update(const graph_network& net, const deep_dynamics& dyn, const Eigen::MatrixXd& s_free,
                                         const Eigen::MatrixXd& s_nudged, double beta) {
  const int n = net.size(), nf = net.n_free(), n_in = net.n_input();
  if (s_free.rows() != n || s_nudged.rows() != n || s_free.cols() != s_nudged.cols())
    throw shape_error("DEEP: free and nudged states must both be " + std::to_string(n) + " x B");
  if (!(beta > 0)) throw config_error("DEEP: beta must be > 0");
  const double B = double(std::max<Eigen::Index>(1, s_free.cols()));
  const Eigen::MatrixXd delta = (s_nudged.bottomRows(nf) - s_free.bottomRows(nf)) / (beta * B);
  Eigen::MatrixXd pre, dpre;
  apply_activation(deep_presyn_activation(dyn.presyn), s_free, pre, dpre);
  Eigen::MatrixXd dw = Eigen::MatrixXd::Zero(n, n);
  dw.rightCols(nf) = pre * delta.transpose();  // drive: dF_j/dW_ij = rho(s_i)
  if (dyn.decay != deep_decay::unit) {         // decay of free i: dF_i/dW_ij = -(dD_i/dW_ij) s_i
    const Eigen::VectorXd g = s_free.bottomRows(nf).cwiseProduct(delta).rowwise().sum();
    for (int f = 0; f < nf; ++f) {
      const int i = n_in + f;
      if (dyn.decay == deep_decay::row_sum) dw.row(i).array() -= g(f);
      else dw.row(i) -= g(f) * net.weights.row(i).cwiseSign();
    }
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i)
      if (!net.structural()(i, j) || net.pruned()(i, j)) dw(i, j) = 0.0;
  return dw;
}

deep_step_result deep_learning_step(graph_network& net, const deep_dynamics& dyn, const deep_learning& learn,
                                    const Eigen::MatrixXd& x, const Eigen::MatrixXd& y, rng_t& rng) {
  deep_check_batch(net, x, y);
  deep_check_settings(dyn, learn);
  if (!(learn.beta > 0)) throw config_error("DEEP: beta must be > 0");
  const int n = net.size(), nf = net.n_free();
  const double B = double(x.cols());
  deep_step_result r;
  Eigen::MatrixXd s = deep_initial_state(net, x, rng);
  r.free = deep_relax(net, dyn, s, nullptr, 0.0);
  r.s_free = s;
  Eigen::MatrixXd acc = Eigen::MatrixXd::Zero(n, nf);
  std::function<void(const Eigen::MatrixXd&, const Eigen::MatrixXd&)> hook;
  if (learn.rule == deep_rule::trajectory)
    hook = [&](const Eigen::MatrixXd& prev, const Eigen::MatrixXd& next) {
      acc.noalias() += next * (learn.beta0 * next.bottomRows(nf) + learn.beta1 * (next.bottomRows(nf) - prev.bottomRows(nf))).transpose();
    };
  deep_linear_term reciprocal;
  if (learn.reciprocal_nudge) reciprocal = deep_reciprocal_term(net, dyn, r.s_free);
  r.nudged = deep_relax(net, dyn, s, &y, learn.beta, hook, learn.reciprocal_nudge ? &reciprocal : nullptr);
  r.s_nudged = s;
  if (!r.free.finite || !r.nudged.finite) return r;
  Eigen::MatrixXd dw = Eigen::MatrixXd::Zero(n, n);
  if (learn.rule == deep_rule::trajectory)
    dw.rightCols(nf) = acc / (B * double(std::max<long>(1, r.nudged.steps)));
  else if (learn.rule == deep_rule::endpoint)
    dw.rightCols(nf) = r.s_free * (r.s_nudged.bottomRows(nf) - r.s_free.bottomRows(nf)).transpose() / (learn.beta * B);
  else
    dw = deep_vector_field_update(net, dyn, r.s_free, r.s_nudged, learn.beta);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i)
      if (!net.structural()(i, j) || net.pruned()(i, j)) dw(i, j) = 0.0;
  if (learn.sign) dw = dw.cwiseSign();
  r.update_l1 = learn.lr * dw.cwiseAbs().sum();
  net.weights += learn.lr * dw;
  if (learn.learn_bias)
    net.bias += learn.lr * (r.s_nudged.bottomRows(nf) - r.s_free.bottomRows(nf)).rowwise().mean() / learn.beta;
  net.apply_masks();
  deep_l1_shrink(net, learn.l1, learn.l1_mode);
  if (learn.prune) r.n_pruned = deep_boltzmann_prune(net, learn, rng);
  return r;
}

deep_scores deep_score(const graph_network& net, const Eigen::MatrixXd& s, const Eigen::MatrixXd& y, bool one_hot) {
  const auto out = s.bottomRows(net.n_output());
  if (out.cols() != y.cols() || out.rows() != y.rows()) throw shape_error("DEEP: targets do not match the outputs");
  deep_scores sc;
  if (y.cols() == 0) return sc;
  long wrong = 0;
  double sq = 0;
  for (Eigen::Index b = 0; b < y.cols(); ++b) {
    if (!out.col(b).allFinite()) {  // never correct, whatever the comparisons below would say
      ++wrong;
      ++sc.n_non_finite;
      continue;
    }
    sq += (out.col(b) - y.col(b)).squaredNorm();
    bool ok = true;
    if (one_hot) {
      Eigen::Index po = 0, pt = 0;
      out.col(b).maxCoeff(&po);
      y.col(b).maxCoeff(&pt);
      ok = po == pt;
    } else {
      for (Eigen::Index k = 0; k < y.rows(); ++k) ok = ok && ((out(k, b) > 0.5) == (y(k, b) > 0.5));
    }
    wrong += !ok;
  }
  sc.error = double(wrong) / double(y.cols());
  const long n_finite = long(y.cols()) - sc.n_non_finite;
  sc.mse = n_finite > 0 ? sq / double(n_finite * y.rows()) : NAN;
  return sc;
}

}  // namespace eqprop
