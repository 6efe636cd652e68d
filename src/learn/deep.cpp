#include "eqprop/learn/deep.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

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
  return p == deep_presyn::identity      ? activation_kind::linear
         : p == deep_presyn::hep_sigmoid ? activation_kind::hep_sigmoid
                                         : activation_kind::tanh;
}

void deep_check_settings(const deep_dynamics& dyn, const deep_learning& learn) {
  if (!learn.reciprocal_nudge) return;
  if (learn.rule != deep_rule::vector_field)
    throw config_error(
        "DEEP: the reciprocal nudge (estimator.reciprocal_nudge) needs the vector_field rule "
        "(estimator.kind = vector_field; deep train's --baseline sets endpoint), got `" +
        to_string(learn.rule) +
        "`: its nudge gives (s^β − s*)/β → J^{-T} ∂C/∂s, which only the vector-field rule turns into −∂C/∂W");
  if (dyn.clip)
    throw config_error(
        "DEEP: the reciprocal nudge (estimator.reciprocal_nudge) needs unclipped dynamics (dynamics.clip = "
        "false; deep train: --no-clip): its Jacobian "
        "ignores the clip, so Jᵀ − J is wrong wherever a neuron is held at 0 or 1");
}

template <class R>
void deep_check_batch(const graph_network<R>& net, const matrix<R>& x, const matrix<R>& y) {
  if (x.rows() != net.n_data_input())
    throw shape_error("DEEP: inputs have " + std::to_string(x.rows()) + " rows, the network has " +
                      std::to_string(net.n_data_input()) + " data inputs");
  if (y.rows() != net.n_output() || y.cols() != x.cols())
    throw shape_error("DEEP: targets are " + std::to_string(y.rows()) + " x " + std::to_string(y.cols()) +
                      ", expected " + std::to_string(net.n_output()) + " x " + std::to_string(x.cols()));
}

template <class R>
matrix<R> deep_initial_state(const graph_network<R>& net, const matrix<R>& x, rng_t& rng) {
  if (x.rows() != net.n_data_input())
    throw shape_error("DEEP: inputs have " + std::to_string(x.rows()) + " rows, the network has " +
                      std::to_string(net.n_data_input()) + " data inputs");
  matrix<R> s(net.size(), x.cols());
  s.topRows(net.n_data_input()) = x;
  s.row(net.bias_index()).setOnes();
  for (Eigen::Index b = 0; b < s.cols(); ++b)
    for (int j = net.n_input(); j < net.size(); ++j) s(j, b) = R(0.1 * uniform01(rng));
  return s;
}

namespace {

// One DEEP phase on the relaxation driver: every per-sample buffer has one column per
// sample (the states, the nudging targets, the reciprocal term's reference states and its
// matrices flattened to n_free² rows), so frozen samples are compacted out with them.
template <class R>
struct deep_state {
  using scalar = R;
  matrix<R> s;      // N x B, inputs clamped
  matrix<R> y;      // n_output x B (nudged phase) or empty
  matrix<R> s_ref;  // n_free x B (linear term) or empty
  matrix<R> k;      // n_free² x B (linear term) or empty
  vector<R> res;    // ‖Δs_b‖ of the last step
  long batch() const { return long(s.cols()); }
  const vector<R>& residual() const { return res; }
  bool column_finite(long b) const { return s.col(b).allFinite(); }
  template <class F>
  void for_each_column_buffer(F&& f) {
    f(s);
    f(y);
    f(s_ref);
    f(k);
    f(res);
  }
  void columns_restored() {}
};

// Runs a phase from s (in place). on_step(s, delta), when given, is called after every step
// with the new states and the step's change of the free states (the trajectory rule); the
// caller must then not freeze, so that it sees every sample's every step.
template <class R, class OnStep>
relax_report relax_phase(const graph_network<R>& net, const deep_dynamics& dyn, matrix<R>& s, const matrix<R>* y,
                         double beta, const deep_linear_term* extra, bool freeze, OnStep&& on_step) {
  const int nf = net.n_free(), n_in = net.n_input(), n_out = net.n_output();
  if (s.rows() != net.size())
    throw shape_error("DEEP: state has " + std::to_string(s.rows()) + " rows, expected " + std::to_string(net.size()));
  if (y && (y->rows() != n_out || y->cols() != s.cols()))
    throw shape_error("DEEP: nudging targets do not match the outputs");
  if (!(dyn.dt > 0)) throw config_error("DEEP: dt must be > 0");
  if (dyn.leak < 0) throw config_error("DEEP: the leak must be >= 0");
  if (!(dyn.stop_tol >= 0)) throw config_error("DEEP: stop_tol must be >= 0");
  if (extra &&
      (extra->s_ref.rows() != s.rows() || extra->s_ref.cols() != s.cols() || Eigen::Index(extra->k.size()) != s.cols()))
    throw shape_error("DEEP: the linear term does not match the state's " + std::to_string(s.cols()) + " samples");
  const graph_drive<R> drive(net);
  vector<R> decay(nf);
  const auto w = net.weights();
  for (int j = 0; j < nf; ++j) {
    const auto row = w.row(n_in + j);
    decay(j) = dyn.decay == deep_decay::row_sum       ? row.sum()
               : dyn.decay == deep_decay::abs_row_sum ? row.cwiseAbs().sum()
                                                      : R(1);
  }
  decay.array() += R(dyn.leak);
  const bool has_bias = !net.bias().isZero(0.0);
  const activation_kind presyn = deep_presyn_activation(dyn.presyn);
  const R dt = R(dyn.dt), b_nudge = R(beta);
  deep_state<R> st;
  st.s.swap(s);
  if (y) st.y = *y;
  if (extra) {
    st.s_ref = extra->s_ref.bottomRows(nf).template cast<R>();
    st.k.resize(Eigen::Index(nf) * nf, st.s.cols());
    for (Eigen::Index b = 0; b < st.s.cols(); ++b)
      st.k.col(b) = Eigen::Map<const Eigen::VectorXd>(extra->k[std::size_t(b)].data(), st.k.rows()).template cast<R>();
  }
  st.res.setZero(st.s.cols());
  matrix<R> rho, drho, drv, next, delta;
  auto step = [&]() -> double {
    const Eigen::Index B = st.s.cols();
    if (dyn.presyn == deep_presyn::identity) drive.apply(st.s, drv);
    else {
      apply_activation(presyn, st.s, rho, drho);
      drive.apply(rho, drv);
    }
    if (has_bias) drv.colwise() += net.bias();
    drv.noalias() -= decay.asDiagonal() * st.s.bottomRows(nf);
    if (y) drv.bottomRows(n_out) += b_nudge * (st.y - st.s.bottomRows(n_out));
    if (extra)
      for (Eigen::Index b = 0; b < B; ++b)
        drv.col(b).noalias() +=
            const_matrix_map<R>(st.k.col(b).data(), nf, nf) * (st.s.col(b).tail(nf) - st.s_ref.col(b));
    next = st.s.bottomRows(nf) + dt * drv;
    if (dyn.clip) next = next.cwiseMax(R(0)).cwiseMin(R(1));
    delta = next - st.s.bottomRows(nf);
    st.res = delta.colwise().norm().transpose();
    st.s.bottomRows(nf) = next;
    on_step(st.s, delta);
    double mx = 0;  // NaN-propagating max
    for (Eigen::Index b = 0; b < B; ++b) {
      const double r = double(st.res(b));
      if (!(r <= mx)) mx = std::isnan(r) ? r : std::max(mx, r);
      if (std::isnan(mx)) break;
    }
    return mx;
  };
  const long budget = y ? dyn.nudged_steps : dyn.free_steps;
  const bool stop_early = dyn.stop_tol > 0;
  const double tol = std::sqrt(dyn.stop_tol);
  relax_report rep = relax_columns(st, budget, stop_early, freeze && stop_early, tol, step);
  report_columns(st, tol, rep);
  s.swap(st.s);
  return rep;
}

}  // namespace

template <class R>
relax_report deep_relax(const graph_network<R>& net, const deep_dynamics& dyn, matrix<R>& s,
                        const std::type_identity_t<matrix<R>>* y, double beta, const deep_linear_term* extra) {
  return relax_phase(net, dyn, s, y, beta, extra, dyn.freeze, [](const matrix<R>&, const matrix<R>&) {});
}

template <class R>
long deep_boltzmann_prune(graph_network<R>& net, const deep_learning& learn, rng_t& rng) {
  if (!(learn.prune_temp > 0)) throw config_error("DEEP: the pruning temperature must be > 0");
  const int n = net.size();
  auto w = net.weights();
  const auto& st = net.structural();
  long zeroed = 0;
  for (int j = 0; j < n; ++j) {
    if (!st.col(j).any()) continue;
    double den = 0;
    for (int i = 0; i < n; ++i) {
      if (learn.exclude_structural && !net.in_graph(i, j)) continue;
      den += std::exp(-std::abs(double(w(i, j))) / learn.prune_temp);
    }
    for (int i = 0; i < n; ++i) {
      if (!net.in_graph(i, j) || std::abs(double(w(i, j))) > learn.prune_tol) continue;
      const double p = std::exp(-std::abs(double(w(i, j))) / learn.prune_temp) / den;
      if (p > uniform01(rng)) {
        if (w(i, j) != R(0)) ++zeroed;
        w(i, j) = R(0);
        if (learn.persistent) net.pruned()(i, j) = true;
      }
    }
  }
  return zeroed;
}

template <class R>
deep_linear_term deep_reciprocal_term(const graph_network<R>& net, const deep_dynamics& dyn, const matrix<R>& s_free) {
  if constexpr (!std::is_same_v<R, double>) {
    return deep_reciprocal_term(net.template cast<double>(), dyn, Eigen::MatrixXd(s_free.template cast<double>()));
  } else {
    deep_linear_term t;
    t.s_ref = s_free;
    t.k.reserve(std::size_t(s_free.cols()));
    for (Eigen::Index b = 0; b < s_free.cols(); ++b) {
      const Eigen::MatrixXd j = deep_jacobian(net, dyn, s_free.col(b));
      t.k.push_back(j.transpose() - j);
    }
    return t;
  }
}

namespace {
// Zeroes the entries of an N x N update outside the graph (structural zeros, pruned edges).
template <class R, class M>
void mask_update(const graph_network<R>& net, M&& dw) {
  const int n = net.size();
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i)
      if (!net.in_graph(i, j)) dw(i, j) = R(0);
}
}  // namespace

template <class R>
matrix<R> deep_vector_field_update(const graph_network<R>& net, const deep_dynamics& dyn, const matrix<R>& s_free,
                                   const matrix<R>& s_nudged, double beta) {
  const int n = net.size(), nf = net.n_free(), n_in = net.n_input();
  if (s_free.rows() != n || s_nudged.rows() != n || s_free.cols() != s_nudged.cols())
    throw shape_error("DEEP: free and nudged states must both be " + std::to_string(n) + " x B");
  if (!(beta > 0)) throw config_error("DEEP: beta must be > 0");
  const R B = R(std::max<Eigen::Index>(1, s_free.cols()));
  const matrix<R> delta = (s_nudged.bottomRows(nf) - s_free.bottomRows(nf)) / (R(beta) * B);
  matrix<R> pre, dpre;
  apply_activation(deep_presyn_activation(dyn.presyn), s_free, pre, dpre);
  matrix<R> dw = matrix<R>::Zero(n, n);
  dw.rightCols(nf) = pre * delta.transpose();  // drive: dF_j/dW_ij = rho(s_i)
  if (dyn.decay != deep_decay::unit) {         // decay of free i: dF_i/dW_ij = -(dD_i/dW_ij) s_i
    const vector<R> g = s_free.bottomRows(nf).cwiseProduct(delta).rowwise().sum();
    for (int f = 0; f < nf; ++f) {
      const int i = n_in + f;
      if (dyn.decay == deep_decay::row_sum) dw.row(i).array() -= g(f);
      else dw.row(i) -= g(f) * net.weights().row(i).cwiseSign();
    }
  }
  mask_update(net, dw);
  return dw;
}

template <class R>
deep_step_result<R> deep_gradient(const graph_network<R>& net, const deep_dynamics& dyn, const deep_learning& learn,
                                  const matrix<R>& x, const matrix<R>& y, rng_t& rng, std::span<R> grad) {
  deep_check_batch(net, x, y);
  deep_check_settings(dyn, learn);
  if (!(learn.beta > 0)) throw config_error("DEEP: beta must be > 0");
  if (grad.size() != net.params().size()) throw shape_error("DEEP: the gradient buffer does not match the parameters");
  const int n = net.size(), nf = net.n_free();
  const R B = R(x.cols());
  std::fill(grad.begin(), grad.end(), R(0));
  deep_step_result<R> r;
  matrix<R> s = deep_initial_state(net, x, rng);
  r.free = deep_relax(net, dyn, s, static_cast<const matrix<R>*>(nullptr), 0.0);
  r.s_free = s;
  const bool trajectory = learn.rule == deep_rule::trajectory;
  matrix<R> acc;
  if (trajectory) acc.setZero(n, nf);
  const R beta0 = R(learn.beta0), beta1 = R(learn.beta1);
  deep_linear_term reciprocal;
  if (learn.reciprocal_nudge) reciprocal = deep_reciprocal_term(net, dyn, r.s_free);
  r.nudged = relax_phase(net, dyn, s, &y, learn.beta, learn.reciprocal_nudge ? &reciprocal : nullptr,
                         dyn.freeze && !trajectory, [&](const matrix<R>& next, const matrix<R>& delta) {
                           if (trajectory)
                             acc.noalias() += next * (beta0 * next.bottomRows(nf) + beta1 * delta).transpose();
                         });
  r.s_nudged = s;
  if (!r.finite()) return r;
  matrix<R> dw = matrix<R>::Zero(n, n);
  if (trajectory) dw.rightCols(nf) = acc / (B * R(std::max<long>(1, r.nudged.steps)));
  else if (learn.rule == deep_rule::endpoint)
    dw.rightCols(nf) =
        r.s_free * (r.s_nudged.bottomRows(nf) - r.s_free.bottomRows(nf)).transpose() / (R(learn.beta) * B);
  else dw = deep_vector_field_update(net, dyn, r.s_free, r.s_nudged, learn.beta);
  mask_update(net, dw);
  if (learn.sign) dw = dw.cwiseSign();
  r.update_l1 = learn.lr * double(dw.cwiseAbs().sum());
  graph_network<R>::weights_of(grad, net.params()) = -dw;
  if (learn.learn_bias)
    block_view(grad, net.params().block(1)) =
        -(r.s_nudged.bottomRows(nf) - r.s_free.bottomRows(nf)).rowwise().mean() / R(learn.beta);
  return r;
}

template <class R>
deep_scores deep_score(const graph_network<R>& net, const matrix<R>& s, const matrix<R>& y, bool one_hot) {
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
    sq += double((out.col(b) - y.col(b)).squaredNorm());
    bool ok = true;
    if (one_hot) {
      Eigen::Index po = 0, pt = 0;
      out.col(b).maxCoeff(&po);
      y.col(b).maxCoeff(&pt);
      ok = po == pt;
    } else {
      for (Eigen::Index k = 0; k < y.rows(); ++k) ok = ok && ((out(k, b) > R(0.5)) == (y(k, b) > R(0.5)));
    }
    wrong += !ok;
  }
  sc.error = double(wrong) / double(y.cols());
  const long n_finite = long(y.cols()) - sc.n_non_finite;
  sc.mse = n_finite > 0 ? sq / double(n_finite * y.rows()) : NAN;
  return sc;
}

template <class R>
relax_report deep_class_scores(const graph_network<R>& net, const deep_dynamics& dyn, const matrix<R>& x, rng_t& rng,
                               matrix<R>& scores, matrix<R>* outputs) {
  matrix<R> s = deep_initial_state(net, x, rng);
  const auto rep = deep_relax(net, dyn, s, nullptr, 0.0);
  const auto out = s.bottomRows(net.n_output());
  if (net.n_output() > 1) {
    scores = out;
  } else {
    scores.resize(2, x.cols());
    scores.row(0) = (R(1) - out.row(0).array()).matrix();
    scores.row(1) = out.row(0);
  }
  if (outputs) *outputs = out;
  return rep;
}

template <class R>
deep_estimator<R>::deep_estimator(deep_dynamics dyn, deep_learning learn, uint64_t seed)
    : dyn_(dyn), learn_(learn), rng_(seed) {
  deep_check_settings(dyn_, learn_);
}

template <class R>
std::string deep_estimator<R>::name() const {
  return fmt::format("DEEP {} rule beta={}", to_string(learn_.rule), learn_.beta);
}

template <class R>
grad_result deep_estimator<R>::estimate(const graph_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                        std::span<R> grad) {
  last_ = deep_gradient(net, dyn_, learn_, x, y, rng_, grad);
  grad_result out;
  out.free = last_.free;
  out.points = {last_.nudged};
  out.relax_steps = last_.free.steps + last_.nudged.steps;
  out.relax_sample_steps = last_.free.sample_steps + last_.nudged.sample_steps;
  const auto s_out = last_.s_free.bottomRows(net.n_output());
  const long B = x.cols();
  out.predictions.assign(std::size_t(B), -1);
  double sq = 0;
  long finite = 0;
  for (long b = 0; b < B; ++b) {
    if (!s_out.col(b).allFinite()) continue;
    ++finite;
    sq += 0.5 * double((s_out.col(b) - y.col(b)).squaredNorm());
    Eigen::Index k = 0;
    if (net.n_output() > 1) s_out.col(b).maxCoeff(&k);
    else k = s_out(0, b) > R(0.5) ? 1 : 0;
    out.predictions[std::size_t(b)] = int32_t(k);
  }
  out.loss = finite > 0 ? sq / double(finite) : NAN;
  out.n_dropped = last_.finite() ? 0 : B;
  return out;
}

template class deep_estimator<float>;
template class deep_estimator<double>;

#define EQPROP_DEEP_INSTANTIATE(R)                                                                                 \
  template void deep_check_batch(const graph_network<R>&, const matrix<R>&, const matrix<R>&);                     \
  template matrix<R> deep_initial_state(const graph_network<R>&, const matrix<R>&, rng_t&);                        \
  template relax_report deep_relax(const graph_network<R>&, const deep_dynamics&, matrix<R>&, const matrix<R>*,    \
                                   double, const deep_linear_term*);                                               \
  template deep_linear_term deep_reciprocal_term(const graph_network<R>&, const deep_dynamics&, const matrix<R>&); \
  template deep_step_result<R> deep_gradient(const graph_network<R>&, const deep_dynamics&, const deep_learning&,  \
                                             const matrix<R>&, const matrix<R>&, rng_t&, std::span<R>);            \
  template matrix<R> deep_vector_field_update(const graph_network<R>&, const deep_dynamics&, const matrix<R>&,     \
                                              const matrix<R>&, double);                                           \
  template long deep_boltzmann_prune(graph_network<R>&, const deep_learning&, rng_t&);                             \
  template deep_scores deep_score(const graph_network<R>&, const matrix<R>&, const matrix<R>&, bool);              \
  template relax_report deep_class_scores(const graph_network<R>&, const deep_dynamics&, const matrix<R>&, rng_t&, \
                                          matrix<R>&, matrix<R>*);
EQPROP_DEEP_INSTANTIATE(float)
EQPROP_DEEP_INSTANTIATE(double)
#undef EQPROP_DEEP_INSTANTIATE

}  // namespace eqprop
