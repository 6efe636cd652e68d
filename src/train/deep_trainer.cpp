#include "eqprop/train/deep_trainer.hpp"

#include <chrono>
#include <cmath>
#include <numeric>

#include "eqprop/core/error.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/train/optimizer.hpp"

namespace eqprop {

deep_task make_logic_task(const std::string& name, bool one_hot) {
  const dataset d = logic_gate_dataset(name);
  deep_task t;
  t.name = name;
  t.one_hot = one_hot;
  t.x = d.x.cast<double>();
  const int n = int(d.y.size());
  t.y.setZero(one_hot ? 2 : 1, n);
  for (int b = 0; b < n; ++b) {
    if (one_hot) t.y(d.y[size_t(b)], b) = 1.0;
    else t.y(0, b) = d.y[size_t(b)];
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

void deep_check_dtype(const std::string& dtype) {
  if (dtype != "float32" && dtype != "float64")
    throw config_error("DEEP: dtype must be float32 or float64, got `" + dtype + "`");
}

template <class R>
param_constraints deep_constraints(const graph_network<R>& net, const deep_learning& learn) {
  const int n = net.size();
  std::vector<char> keep(std::size_t(n) * std::size_t(n));
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i) keep[std::size_t(j) * std::size_t(n) + std::size_t(i)] = net.in_graph(i, j);
  param_constraints c(net.params().layout());
  c.add_mask("W", std::move(keep));
  if (learn.l1 > 0) c.add_l1("W", learn.l1, learn.l1_mode == deep_l1::subgradient ? l1_form::subgradient : l1_form::proximal);
  return c;
}

template <class R>
deep_step_result<R> deep_learning_step(graph_network<R>& net, const deep_dynamics& dyn, const deep_learning& learn,
                                       const matrix<R>& x, const matrix<R>& y, rng_t& rng) {
  aligned_vector<R> grad(net.params().size());
  auto r = deep_gradient(net, dyn, learn, x, y, rng, std::span<R>(grad));
  if (!r.finite()) return r;
  optimizer_options o;
  o.kind = optimizer_kind::sgd;
  o.lr = learn.lr;
  optimizer<R> opt(o, net.params().layout(), 1);
  opt.set_constraints(deep_constraints(net, learn));
  opt.step(net.params().values(), grad, 1.0);
  r.n_pruned = learn.prune ? deep_boltzmann_prune(net, learn, rng) : 0;
  return r;
}

namespace {

// data_error naming the first sample (column) of m with a NaN/Inf value.
void check_finite_columns(const Eigen::MatrixXd& m, const char* what) {
  if (m.allFinite()) return;
  for (Eigen::Index b = 0; b < m.cols(); ++b)
    if (!m.col(b).allFinite())
      throw data_error("DEEP: " + std::string(what) + ": sample " + std::to_string(b) + " (0-based, of " +
                       std::to_string(m.cols()) + ") holds a NaN or infinite value");
}

struct eval_scores {
  deep_scores free, nudged;
  double mean_residual = 0;
};

// Free (and optionally nudged) relaxation of a whole set, in chunks; states start from a
// generator seeded by `seed` so evaluations are reproducible. The nudged phase is the one
// learning uses: from the free state, with the reciprocal term when st.learn.reciprocal_nudge.
template <class R>
eval_scores evaluate_set(const graph_network<R>& net, const deep_run_settings& st, const matrix<R>& x, const matrix<R>& y,
                         bool one_hot, bool nudged, uint64_t seed) {
  eval_scores e;
  const Eigen::Index n = x.cols(), chunk = 1000;
  if (n == 0) return e;
  rng_t rng(seed);
  double err = 0, mse = 0, nerr = 0, nmse = 0, res = 0;
  long bad = 0, nbad = 0;
  for (Eigen::Index b0 = 0; b0 < n; b0 += chunk) {
    const Eigen::Index m = std::min(chunk, n - b0);
    const matrix<R> xb = x.middleCols(b0, m), yb = y.middleCols(b0, m);
    matrix<R> s = deep_initial_state(net, xb, rng);
    const auto rep = deep_relax(net, st.dyn, s, nullptr, 0.0);
    const auto sc = deep_score(net, s, yb, one_hot);
    err += sc.error * double(m);
    if (sc.n_non_finite < m) mse += sc.mse * double(m - sc.n_non_finite);
    bad += sc.n_non_finite;
    res += rep.max_residual * rep.max_residual * double(m);  // the squared step length, as stop_tol
    if (nudged) {
      deep_linear_term reciprocal;
      if (st.learn.reciprocal_nudge) reciprocal = deep_reciprocal_term(net, st.dyn, s);
      deep_relax(net, st.dyn, s, &yb, st.learn.beta, st.learn.reciprocal_nudge ? &reciprocal : nullptr);
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

template <class R>
deep_run_result deep_train(graph_network<R>& net, const deep_run_settings& st, const Eigen::MatrixXd& x_train_d,
                           const Eigen::MatrixXd& y_train_d, const Eigen::MatrixXd& x_test_d, const Eigen::MatrixXd& y_test_d,
                           bool one_hot, const std::function<void(const nlohmann::ordered_json&)>& on_epoch) {
  const matrix<R> x_train = x_train_d.cast<R>(), y_train = y_train_d.cast<R>();
  const matrix<R> x_test = x_test_d.cast<R>(), y_test = y_test_d.cast<R>();
  deep_check_batch(net, x_train, y_train);
  if (x_test.cols() > 0) deep_check_batch(net, x_test, y_test);
  if (st.epochs < 0) throw config_error("DEEP: epochs must be >= 0");
  deep_check_settings(st.dyn, st.learn);
  if (x_train.cols() == 0) throw data_error("DEEP: no training samples; nothing to train or evaluate on");
  check_finite_columns(x_train_d, "training inputs");
  check_finite_columns(y_train_d, "training targets");
  check_finite_columns(x_test_d, "test inputs");
  check_finite_columns(y_test_d, "test targets");
  const Eigen::Index n = x_train.cols();
  const Eigen::Index bs = st.batch_size <= 0 ? n : std::min<Eigen::Index>(st.batch_size, n);
  rng_t rng(st.seed * 0x9E3779B97F4A7C15ULL + 17);
  std::vector<Eigen::Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Eigen::Index(0));
  deep_run_result res;
  matrix<R> xb, yb;
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
      if (!r.finite() || !net.weights().allFinite() || !net.bias().allFinite()) {
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
    if (tr.free.error > 0) res.solved_epoch = -1;
    else if (res.solved_epoch < 0) res.solved_epoch = epoch;
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
  j["dtype"] = st.dtype;
  j["graph"] = {{"n_input", st.graph.n_input}, {"hidden", st.graph.hidden}, {"n_output", st.graph.n_output},
                {"topology", to_string(st.graph.topology)}, {"init_std", st.graph.init_std}};
  j["dynamics"] = {{"dt", st.dyn.dt}, {"free_steps", st.dyn.free_steps}, {"nudged_steps", st.dyn.nudged_steps},
                   {"stop_tol", st.dyn.stop_tol}, {"freeze", st.dyn.freeze}, {"leak", st.dyn.leak}, {"decay", to_string(st.dyn.decay)},
                   {"presyn", to_string(st.dyn.presyn)}, {"clip", st.dyn.clip}};
  j["learning"] = {{"rule", to_string(st.learn.rule)},
                   {"beta", st.learn.beta}, {"lr", st.learn.lr}, {"beta0", st.learn.beta0}, {"beta1", st.learn.beta1},
                   {"sign", st.learn.sign}, {"learn_bias", st.learn.learn_bias},
                   {"reciprocal_nudge", st.learn.reciprocal_nudge}, {"l1", st.learn.l1},
                   {"l1_mode", to_string(st.learn.l1_mode)},
                   {"prune", st.learn.prune}, {"prune_tol", st.learn.prune_tol}, {"prune_temp", st.learn.prune_temp},
                   {"persistent", st.learn.persistent}, {"exclude_structural", st.learn.exclude_structural}};
  j["epochs"] = st.epochs;
  j["batch_size"] = st.batch_size;
  j["seed"] = st.seed;
  return j;
}

template param_constraints deep_constraints(const graph_network<float>&, const deep_learning&);
template param_constraints deep_constraints(const graph_network<double>&, const deep_learning&);
template deep_step_result<float> deep_learning_step(graph_network<float>&, const deep_dynamics&, const deep_learning&,
                                                    const matrix<float>&, const matrix<float>&, rng_t&);
template deep_step_result<double> deep_learning_step(graph_network<double>&, const deep_dynamics&, const deep_learning&,
                                                     const matrix<double>&, const matrix<double>&, rng_t&);
template deep_run_result deep_train(graph_network<float>&, const deep_run_settings&, const Eigen::MatrixXd&,
                                    const Eigen::MatrixXd&, const Eigen::MatrixXd&, const Eigen::MatrixXd&, bool,
                                    const std::function<void(const nlohmann::ordered_json&)>&);
template deep_run_result deep_train(graph_network<double>&, const deep_run_settings&, const Eigen::MatrixXd&,
                                    const Eigen::MatrixXd&, const Eigen::MatrixXd&, const Eigen::MatrixXd&, bool,
                                    const std::function<void(const nlohmann::ordered_json&)>&);

}  // namespace eqprop
