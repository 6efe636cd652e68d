#include "eqprop/learn/deep.hpp"

#include <chrono>
#include <cmath>
#include <numeric>

#include "eqprop/core/error.hpp"

namespace eqprop {

deep_decay parse_deep_decay(const std::string& s) {
  if (s == "row_sum") return deep_decay::row_sum;
  if (s == "abs_row_sum") return deep_decay::abs_row_sum;
  if (s == "unit") return deep_decay::unit;
  throw config_error("unknown DEEP decay `" + s + "` (expected row_sum | abs_row_sum | unit)");
}
deep_presyn parse_deep_presyn(const std::string& s) {
  if (s == "identity" || s == "none") return deep_presyn::identity;
  if (s == "sigmoid") return deep_presyn::sigmoid;
  if (s == "tanh") return deep_presyn::tanh;
  throw config_error("unknown presynaptic activation `" + s + "` (expected identity | sigmoid | tanh)");
}
deep_rule parse_deep_rule(const std::string& s) {
  if (s == "trajectory") return deep_rule::trajectory;
  if (s == "endpoint") return deep_rule::endpoint;
  throw config_error("unknown DEEP learning rule `" + s + "` (expected trajectory | endpoint)");
}
deep_l1 parse_deep_l1(const std::string& s) {
  if (s == "subgradient") return deep_l1::subgradient;
  if (s == "soft_threshold" || s == "prox") return deep_l1::soft_threshold;
  throw config_error("unknown L1 mode `" + s + "` (expected subgradient | soft_threshold)");
}

namespace {

const char* name_of(deep_decay d) {
  return d == deep_decay::row_sum ? "row_sum" : d == deep_decay::abs_row_sum ? "abs_row_sum" : "unit";
}
const char* name_of(deep_presyn p) {
  return p == deep_presyn::identity ? "identity" : p == deep_presyn::sigmoid ? "sigmoid" : "tanh";
}

void apply_presyn(deep_presyn p, const Eigen::MatrixXd& s, Eigen::MatrixXd& out) {
  if (p == deep_presyn::sigmoid) out = (1.0 / (1.0 + (-(4.0 * s.array() - 2.0)).exp())).matrix();
  else out = s.array().tanh().matrix();
}

void check_batch(const graph_network& net, const Eigen::MatrixXd& x, const Eigen::MatrixXd& y) {
  if (x.rows() != net.n_data_input())
    throw shape_error("DEEP: inputs have " + std::to_string(x.rows()) + " rows, the network has " +
                      std::to_string(net.n_data_input()) + " data inputs");
  if (y.rows() != net.n_output() || y.cols() != x.cols())
    throw shape_error("DEEP: targets are " + std::to_string(y.rows()) + " x " + std::to_string(y.cols()) +
                      ", expected " + std::to_string(net.n_output()) + " x " + std::to_string(x.cols()));
}

// data_error naming the first sample (column) of m with a NaN/Inf value.
void check_finite_columns(const Eigen::MatrixXd& m, const char* what) {
  if (m.allFinite()) return;
  for (Eigen::Index b = 0; b < m.cols(); ++b)
    if (!m.col(b).allFinite())
      throw data_error("DEEP: " + std::string(what) + ": sample " + std::to_string(b) + " (0-based, of " +
                       std::to_string(m.cols()) + ") holds a NaN or infinite value");
}

}  // namespace

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
                             const std::function<void(const Eigen::MatrixXd&, const Eigen::MatrixXd&)>& on_step) {
  const int nf = net.n_free(), n_in = net.n_input(), n_out = net.n_output();
  if (s.rows() != net.size()) throw shape_error("DEEP: state has " + std::to_string(s.rows()) + " rows, expected " + std::to_string(net.size()));
  if (y && (y->rows() != n_out || y->cols() != s.cols())) throw shape_error("DEEP: nudging targets do not match the outputs");
  if (!(dyn.dt > 0)) throw config_error("DEEP: dt must be > 0");
  if (dyn.leak < 0) throw config_error("DEEP: the leak must be >= 0");
  const graph_drive drive(net);
  Eigen::VectorXd decay(nf);
  for (int j = 0; j < nf; ++j) {
    const auto row = net.weights.row(n_in + j);
    decay(j) = dyn.decay == deep_decay::row_sum ? row.sum() : dyn.decay == deep_decay::abs_row_sum ? row.cwiseAbs().sum() : 1.0;
  }
  decay.array() += dyn.leak;
  const bool has_bias = net.bias.size() == nf && !net.bias.isZero(0.0);
  Eigen::MatrixXd rho, drv(nf, s.cols()), next(nf, s.cols()), prev;
  deep_phase_report rep;
  const long budget = y ? dyn.nudged_steps : dyn.free_steps;
  for (long t = 0; t < budget; ++t) {
    if (dyn.presyn == deep_presyn::identity) drive.apply(s, drv);
    else { apply_presyn(dyn.presyn, s, rho); drive.apply(rho, drv); }
    if (has_bias) drv.colwise() += net.bias;
    drv.noalias() -= decay.asDiagonal() * s.bottomRows(nf);
    if (y) drv.bottomRows(n_out) += beta * (*y - s.bottomRows(n_out));
    if (!drv.allFinite()) { rep.finite = false; rep.steps = t; return rep; }
    next = (s.bottomRows(nf) + dyn.dt * drv).cwiseMax(0.0).cwiseMin(1.0);
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

deep_step_result deep_learning_step(graph_network& net, const deep_dynamics& dyn, const deep_learning& learn,
                                    const Eigen::MatrixXd& x, const Eigen::MatrixXd& y, rng_t& rng) {
  check_batch(net, x, y);
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
  r.nudged = deep_relax(net, dyn, s, &y, learn.beta, hook);
  r.s_nudged = s;
  if (!r.free.finite || !r.nudged.finite) return r;
  Eigen::MatrixXd dw = Eigen::MatrixXd::Zero(n, n);
  if (learn.rule == deep_rule::trajectory)
    dw.rightCols(nf) = acc / (B * double(std::max<long>(1, r.nudged.steps)));
  else
    dw.rightCols(nf) = r.s_free * (r.s_nudged.bottomRows(nf) - r.s_free.bottomRows(nf)).transpose() / (learn.beta * B);
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

deep_task make_logic_task(const std::string& name, bool one_hot) {
  deep_task t;
  t.name = name;
  t.one_hot = one_hot;
  std::vector<int> labels;
  if (name == "and" || name == "or" || name == "xor") {
    t.x.resize(2, 4);
    t.x << 0, 0, 1, 1,
           0, 1, 0, 1;
    for (int b = 0; b < 4; ++b) {
      const int a = int(t.x(0, b)), c = int(t.x(1, b));
      labels.push_back(name == "and" ? (a & c) : name == "or" ? (a | c) : (a ^ c));
    }
  } else if (name == "not" || name == "identity") {
    t.x.resize(1, 2);
    t.x << 0, 1;
    labels = name == "not" ? std::vector<int>{1, 0} : std::vector<int>{0, 1};
  } else {
    throw config_error("unknown logic task `" + name + "` (expected and | or | xor | not | identity)");
  }
  const int n = int(labels.size());
  t.y.setZero(one_hot ? 2 : 1, n);
  for (int b = 0; b < n; ++b) {
    if (one_hot) t.y(labels[b], b) = 1.0;
    else t.y(0, b) = labels[b];
  }
  return t;
}

Eigen::MatrixXd one_hot_targets(const std::vector<int32_t>& labels, int n_classes) {
  Eigen::MatrixXd y = Eigen::MatrixXd::Zero(n_classes, Eigen::Index(labels.size()));
  for (std::size_t b = 0; b < labels.size(); ++b) {
    if (labels[b] < 0 || labels[b] >= n_classes)
      throw data_error("label " + std::to_string(labels[b]) + " outside [0, " + std::to_string(n_classes) + ")");
    y(labels[b], Eigen::Index(b)) = 1.0;
  }
  return y;
}

namespace {

struct eval_scores {
  deep_scores free, nudged;
  double mean_residual = 0;
};

// Free (and optionally nudged) relaxation of a whole set, in chunks; states start from a
// generator seeded by `seed` so evaluations are reproducible.
eval_scores evaluate_set(const graph_network& net, const deep_run_settings& st, const Eigen::MatrixXd& x,
                         const Eigen::MatrixXd& y, bool one_hot, bool nudged, uint64_t seed) {
  eval_scores e;
  const Eigen::Index n = x.cols(), chunk = 1000;
  if (n == 0) return e;
  rng_t rng(seed);
  double err = 0, mse = 0, nerr = 0, nmse = 0, res = 0;
  long bad = 0, nbad = 0;
  for (Eigen::Index b0 = 0; b0 < n; b0 += chunk) {
    const Eigen::Index m = std::min(chunk, n - b0);
    const Eigen::MatrixXd xb = x.middleCols(b0, m), yb = y.middleCols(b0, m);
    Eigen::MatrixXd s = deep_initial_state(net, xb, rng);
    const auto rep = deep_relax(net, st.dyn, s, nullptr, 0.0);
    const auto sc = deep_score(net, s, yb, one_hot);
    err += sc.error * double(m);
    if (sc.n_non_finite < m) mse += sc.mse * double(m - sc.n_non_finite);
    bad += sc.n_non_finite;
    res += rep.residual * double(m);
    if (nudged) {
      deep_relax(net, st.dyn, s, &yb, st.learn.beta);
      const auto sn = deep_score(net, s, yb, one_hot);
      nerr += sn.error * double(m);
      if (sn.n_non_finite < m) nmse += sn.mse * double(m - sn.n_non_finite);
      nbad += sn.n_non_finite;
    }
  }
  e.free = {err / double(n), bad < n ? mse / double(n - bad) : NAN, bad};
  e.nudged = {nerr / double(n), nbad < n ? nmse / double(n - nbad) : NAN, nbad};
  e.mean_residual = res / double(n);
  return e;
}

}  // namespace

deep_run_result deep_train(graph_network& net, const deep_run_settings& st, const Eigen::MatrixXd& x_train,
                           const Eigen::MatrixXd& y_train, const Eigen::MatrixXd& x_test, const Eigen::MatrixXd& y_test,
                           bool one_hot, const std::function<void(const nlohmann::ordered_json&)>& on_epoch) {
  check_batch(net, x_train, y_train);
  if (x_test.cols() > 0) check_batch(net, x_test, y_test);
  if (st.epochs < 0) throw config_error("DEEP: epochs must be >= 0");
  if (x_train.cols() == 0) throw data_error("DEEP: no training samples; nothing to train or evaluate on");
  check_finite_columns(x_train, "training inputs");
  check_finite_columns(y_train, "training targets");
  check_finite_columns(x_test, "test inputs");
  check_finite_columns(y_test, "test targets");
  const Eigen::Index n = x_train.cols();
  const Eigen::Index bs = st.batch_size <= 0 ? n : std::min<Eigen::Index>(st.batch_size, n);
  rng_t rng(st.seed * 0x9E3779B97F4A7C15ULL + 17);
  std::vector<Eigen::Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Eigen::Index(0));
  deep_run_result res;
  Eigen::MatrixXd xb, yb;
  const auto t0 = std::chrono::steady_clock::now();
  for (long epoch = 1; epoch <= st.epochs; ++epoch) {
    if (bs < n)
      for (Eigen::Index i = n - 1; i > 0; --i)
        std::swap(order[std::size_t(i)], order[random_index(rng, uint64_t(i + 1))]);
    double upd = 0, free_steps = 0;
    long pruned = 0, batches = 0;
    for (Eigen::Index b0 = 0; b0 < n; b0 += bs) {
      const Eigen::Index m = std::min(bs, n - b0);
      xb.resize(x_train.rows(), m);
      yb.resize(y_train.rows(), m);
      for (Eigen::Index k = 0; k < m; ++k) {
        xb.col(k) = x_train.col(order[std::size_t(b0 + k)]);
        yb.col(k) = y_train.col(order[std::size_t(b0 + k)]);
      }
      const auto r = deep_learning_step(net, st.dyn, st.learn, xb, yb, rng);
      upd += r.update_l1;
      pruned += r.n_pruned;
      free_steps += double(r.free.steps);
      ++batches;
      if (!r.free.finite || !r.nudged.finite || !net.weights.allFinite() || !net.bias.allFinite()) {
        res.diverged = true;
        res.message = "DEEP diverged at epoch " + std::to_string(epoch) + ": non-finite states or weights";
        res.epochs_done = epoch - 1;
        return res;
      }
    }
    res.epochs_done = epoch;
    if (epoch % std::max<long>(1, st.eval_every) != 0 && epoch != st.epochs) continue;
    const auto tr = evaluate_set(net, st, x_train, y_train, one_hot, true, st.seed + 1000003ULL * uint64_t(epoch));
    const auto te = evaluate_set(net, st, x_test, y_test, one_hot, false, st.seed + 7919ULL * uint64_t(epoch));
    const long n_bad = tr.free.n_non_finite + tr.nudged.n_non_finite + te.free.n_non_finite;
    if (n_bad > 0) {  // no score of this evaluation is reported
      res.diverged = true;
      res.message = "DEEP diverged at epoch " + std::to_string(epoch) + ": the evaluation gave non-finite states for " +
                    std::to_string(tr.free.n_non_finite) + " of " + std::to_string(x_train.cols()) +
                    " training samples (free phase), " + std::to_string(tr.nudged.n_non_finite) + " (nudged) and " +
                    std::to_string(te.free.n_non_finite) + " of " + std::to_string(x_test.cols()) + " test samples";
      return res;
    }
    res.train_error = tr.free.error;
    res.train_mse = tr.free.mse;
    res.nudged_error = tr.nudged.error;
    res.test_error = x_test.cols() > 0 ? te.free.error : tr.free.error;
    res.sparsity = net.sparsity();
    if (on_epoch) {
      nlohmann::ordered_json row;
      row["epoch"] = epoch;
      row["train_error"] = tr.free.error;
      row["train_mse"] = tr.free.mse;
      row["nudged_error"] = tr.nudged.error;
      row["nudged_mse"] = tr.nudged.mse;
      if (x_test.cols() > 0) {
        row["test_error"] = te.free.error;
        row["test_accuracy"] = 1.0 - te.free.error;
        row["test_mse"] = te.free.mse;
      }
      row["train_accuracy"] = 1.0 - tr.free.error;
      row["free_residual"] = tr.mean_residual;
      row["mean_free_steps"] = free_steps / double(std::max<long>(1, batches));
      row["update_l1"] = upd;
      row["n_pruned"] = pruned;
      row["sparsity"] = res.sparsity;
      row["nnz"] = net.n_nonzero();
      row["time_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      on_epoch(row);
    }
  }
  return res;
}

nlohmann::ordered_json to_json(const deep_run_settings& st) {
  nlohmann::ordered_json j;
  j["graph"] = {{"n_input", st.graph.n_input}, {"hidden", st.graph.hidden}, {"n_output", st.graph.n_output},
                {"topology", to_string(st.graph.topology)}, {"init_std", st.graph.init_std}};
  j["dynamics"] = {{"dt", st.dyn.dt}, {"free_steps", st.dyn.free_steps}, {"nudged_steps", st.dyn.nudged_steps},
                   {"stop_tol", st.dyn.stop_tol}, {"leak", st.dyn.leak}, {"decay", name_of(st.dyn.decay)},
                   {"presyn", name_of(st.dyn.presyn)}};
  j["learning"] = {{"rule", st.learn.rule == deep_rule::trajectory ? "trajectory" : "endpoint"},
                   {"beta", st.learn.beta}, {"lr", st.learn.lr}, {"beta0", st.learn.beta0}, {"beta1", st.learn.beta1},
                   {"sign", st.learn.sign}, {"learn_bias", st.learn.learn_bias}, {"l1", st.learn.l1},
                   {"l1_mode", st.learn.l1_mode == deep_l1::subgradient ? "subgradient" : "soft_threshold"},
                   {"prune", st.learn.prune}, {"prune_tol", st.learn.prune_tol}, {"prune_temp", st.learn.prune_temp},
                   {"persistent", st.learn.persistent}, {"exclude_structural", st.learn.exclude_structural}};
  j["epochs"] = st.epochs;
  j["batch_size"] = st.batch_size;
  j["seed"] = st.seed;
  return j;
}

}  // namespace eqprop
