// DEEP (spec deep.md): graph networks, the published dynamics and their
// singular Jacobian, XOR with the published settings, the asymmetric baseline, pruning,
// and the stability certificates on matrices with known spectra.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>

#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/learn/deep.hpp"
#include "eqprop/learn/stability.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/deep_trainer.hpp"
#include "eqprop/train/graph_experiment.hpp"
#include "eqprop/train/model_kind.hpp"
#include "eqprop/train/trainer.hpp"

using namespace eqprop;

namespace {

graph_network<double> random_net(int n_in, int n_hidden, int n_out, uint64_t seed, double std = 0.3) {
  graph_spec g;
  g.n_input = n_in;
  g.hidden = {n_hidden};
  g.n_output = n_out;
  g.init_std = std;
  rng_t rng(seed);
  return graph_network<double>(g, rng);
}

// A graph config under configs/ with `sets` on top, run.seed = seed, and what the training
// loop builds from it for XOR (2 inputs; one output per class with network.one_hot).
struct graph_settings {
  config cfg;
  graph_spec graph;
  deep_dynamics dyn;
  deep_learning learn;
  uint64_t seed = 0;
};
graph_settings config_settings(const std::string& file, uint64_t seed, std::vector<std::string> sets = {}) {
  sets.push_back("run.seed=" + std::to_string(seed));
  graph_settings st{
      load_training_config({std::string(EQPROP_SOURCE_DIR) + "/configs/" + file}, sets), {}, {}, {}, seed};
  st.cfg.set("run.checkpoint_every", int64_t(st.cfg.get<long>("run.epochs")), "test");  // one checkpoint, at the end
  st.graph = graph_spec_from_config(st.cfg, 2, graph_outputs(st.cfg, 2));
  st.dyn = deep_dynamics_from_config(st.cfg);
  st.learn = deep_learning_from_config(st.cfg);
  return st;
}
graph_settings xor_one_hot_settings(uint64_t seed) {
  return config_settings("graph_xor_onehot.toml", seed);
}  // spec §7.1
// configs/graph_xor_recommended.toml (docs/deep.md, "Reliable DEEP").
graph_settings xor_recommended_settings(uint64_t seed) { return config_settings("graph_xor_recommended.toml", seed); }

// A graph run of the training loop (eqprop train) in a fresh temporary directory: its result,
// every metrics row, the epoch from which the test accuracy stays 1 (-1: not 1 at the end)
// and the trained network.
struct graph_run {
  train_result r;
  std::vector<nlohmann::ordered_json> rows;
  long solved_epoch = -1;
  graph_network<double> net;
};
graph_run train_graph(const graph_settings& st) {
  const auto dir = std::filesystem::path(::testing::TempDir()) /
                   ("eqprop_deep_train_" + std::to_string(::getpid()) + "_" + std::to_string(st.seed));
  std::filesystem::remove_all(dir);
  std::ostringstream log;
  train_options o;
  o.run_dir = dir;
  o.out = &log;
  o.quiet = true;
  std::vector<nlohmann::ordered_json> rows;
  o.on_epoch = [&](const nlohmann::ordered_json& row) { rows.push_back(row); };
  const train_result r = train(st.cfg, o);
  long solved = -1;
  for (const auto& row : rows) {
    if (!row.contains("test_acc")) continue;
    if (row["test_acc"].get<double>() < 1) solved = -1;
    else if (solved < 0) solved = row["epoch"].get<long>();
  }
  rng_t unused(1);  // a diverged run has no checkpoint: an untrained network stands in
  graph_run g{r, rows, solved,
              r.diverged ? graph_network<double>(st.graph, unused)
                         : saved_network<graph_network<double>>(load_saved_run(dir, ""))};
  std::filesystem::remove_all(dir);
  return g;
}

// The recommended dynamics: absolute decay, leak γ, ρ = logistic(4s − 2), no clipping,
// phases run to max ‖Δs‖² <= stop_tol.
deep_dynamics leaky_abs_dynamics(double leak, double stop_tol) {
  deep_dynamics dyn;
  dyn.decay = deep_decay::abs_row_sum;
  dyn.leak = leak;
  dyn.presyn = deep_presyn::hep_sigmoid;
  dyn.clip = false;
  dyn.stop_tol = stop_tol;
  return dyn;
}

// The leaky dynamics with the absolute decay: Σ_i W_ij ρ(s_i) − (Σ_k |W_jk| + γ) s_j, written
// out with scalar loops (ρ = logistic(4s − 2)).
Eigen::VectorXd leaky_abs_rate(const graph_network<double>& net, double leak, const Eigen::VectorXd& s) {
  const int n = net.size(), n_in = net.n_input();
  Eigen::VectorXd r(net.n_free());
  for (int j = n_in; j < n; ++j) {
    double drive = 0, out_abs = 0;
    for (int i = 0; i < n; ++i) drive += net.weights()(i, j) / (1.0 + std::exp(-(4.0 * s(i) - 2.0)));
    for (int k = 0; k < n; ++k) out_abs += std::abs(net.weights()(j, k));
    r(j - n_in) = drive - (out_abs + leak) * s(j);
  }
  return r;
}

}  // namespace

TEST(DeepGraph, MasksAndSparsityExcludeStructuralZeros) {
  auto net = random_net(2, 2, 2, 1);  // N = 3 + 2 + 2 = 7
  EXPECT_EQ(net.size(), 7);
  EXPECT_EQ(net.n_allowed(), 3 * 4 + 4 * 3);  // inputs -> free, free -> other free
  for (int i = 0; i < 7; ++i) {
    EXPECT_FALSE(net.structural()(i, i));
    for (int j = 0; j < 3; ++j) EXPECT_FALSE(net.structural()(i, j)) << "edge into input " << j;
  }
  EXPECT_DOUBLE_EQ(net.sparsity(), 0.0);
  int zeroed = 0;
  for (int j = 3; j < 7 && zeroed < 6; ++j) net.weights()(0, j) = 0, ++zeroed;
  net.weights()(3, 4) = net.weights()(4, 3) = 0;
  EXPECT_NEAR(net.sparsity(), 6.0 / 24.0, 1e-15);
  net.weights()(0, 1) = 5;  // into an input: removed by the mask
  net.pruned()(5, 6) = true;
  net.apply_masks();
  EXPECT_EQ(net.weights()(0, 1), 0.0);
  EXPECT_EQ(net.weights()(5, 6), 0.0);
}

TEST(DeepGraph, LayeredMaskKeepsBiasToAllLayers) {
  graph_spec g;
  g.n_input = 2;
  g.hidden = {3, 2};
  g.n_output = 1;
  g.topology = graph_topology::layered;
  rng_t rng(3);
  graph_network<double> net(g, rng);  // 0,1 inputs, 2 bias, 3-5 h1, 6-7 h2, 8 out
  EXPECT_TRUE(net.structural()(0, 3));
  EXPECT_FALSE(net.structural()(0, 6)) << "inputs reach only the first hidden layer";
  EXPECT_TRUE(net.structural()(2, 8)) << "the bias reaches every layer";
  EXPECT_TRUE(net.structural()(3, 6));
  EXPECT_TRUE(net.structural()(6, 3));
  EXPECT_FALSE(net.structural()(3, 4)) << "no intra-layer edges";
  EXPECT_FALSE(net.structural()(3, 8)) << "no skip edges";
  EXPECT_TRUE(net.structural()(8, 6));
}

TEST(DeepGraph, SparseDriveMatchesDense) {
  graph_spec g;
  g.n_input = 10;
  g.hidden = {20, 20};
  g.n_output = 5;
  g.topology = graph_topology::layered;
  rng_t rng(5);
  graph_network<double> net(g, rng);
  EXPECT_FALSE(graph_drive<double>(net).is_sparse()) << "layered, density " << net.density();
  for (int i = 0; i < net.size(); ++i)
    for (int j = 0; j < net.size(); ++j) net.pruned()(i, j) = uniform01(rng) < 0.8;
  net.apply_masks();
  const graph_drive<double> drive(net);
  EXPECT_TRUE(drive.is_sparse()) << "density " << net.density();
  Eigen::MatrixXd s = Eigen::MatrixXd::Random(net.size(), 3), out;
  drive.apply(s, out);
  const Eigen::MatrixXd ref = net.weights().rightCols(net.n_free()).transpose() * s;
  EXPECT_LT((out - ref).cwiseAbs().maxCoeff(), 1e-13);
}

TEST(DeepGraph, CustomAdjacencyRefusesEdgesIntoInputs) {
  graph_spec g;
  g.n_input = 1;
  g.hidden = {1};
  g.n_output = 1;
  g.topology = graph_topology::custom;
  g.adjacency = Eigen::MatrixXi::Zero(4, 4);
  g.adjacency(2, 0) = 1;
  rng_t rng(1);
  EXPECT_THROW(graph_network<double>(g, rng), config_error);
  g.adjacency.resize(3, 3);
  EXPECT_THROW(graph_network<double>(g, rng), shape_error);
}

// Spec rung D1: zero column sums, det J = 0, and the constant drift of the free activity.
TEST(DeepDynamics, PublishedJacobianIsSingularAndActivityDriftsLinearly) {
  auto net = random_net(2, 5, 2, 7);
  deep_dynamics dyn;
  Eigen::VectorXd s(net.size());
  s << 0.3, 0.8, 1.0, 0.4, 0.5, 0.45, 0.55, 0.5, 0.6, 0.52;
  const Eigen::MatrixXd j = deep_jacobian(net, dyn, s);
  EXPECT_LE((Eigen::RowVectorXd::Ones(j.rows()) * j).cwiseAbs().maxCoeff(), 1e-15);
  EXPECT_LE(std::abs(j.determinant()), 1e-14);
  // One small Euler step stays inside (0, 1): Σ_free Δs = dt Σ_inputs x_i Σ_free W_ij.
  net.weights() *= 0.01;
  Eigen::MatrixXd st = s;
  dyn.free_steps = 1;
  deep_relax(net, dyn, st, nullptr, 0.0);
  const int nf = net.n_free(), n_in = net.n_input();
  const double got = (st - s).bottomRows(nf).sum();
  const double want = dyn.dt * (s.head(n_in).transpose() * net.weights().topRightCorner(n_in, nf)).sum();
  EXPECT_NEAR(got, want, 1e-15);
  EXPECT_NE(want, 0.0);
  // ...at the same rate for every step while no neuron saturates.
  dyn.free_steps = 10;
  st = s;
  deep_relax(net, dyn, st, nullptr, 0.0);
  EXPECT_NEAR((st - s).bottomRows(nf).sum(), 10 * want, 1e-14);
}

TEST(DeepDynamics, ClipsToUnitIntervalAndStopsOnTolerance) {
  auto net = random_net(2, 3, 1, 9, 0.5);
  deep_dynamics dyn;
  dyn.stop_tol = 1e-20;
  dyn.free_steps = 100000;
  dyn.leak = 5;  // a strong leak converges quickly (dt * (D + leak) < 1 keeps Euler stable)
  rng_t rng(1);
  Eigen::MatrixXd x(2, 1);
  x << 1, 0;
  Eigen::MatrixXd s = deep_initial_state(net, x, rng);
  const auto rep = deep_relax(net, dyn, s, nullptr, 0.0);
  EXPECT_TRUE(rep.converged());
  EXPECT_LT(rep.steps, 100000);
  EXPECT_GE(s.minCoeff(), 0.0);
  EXPECT_LE(s.maxCoeff(), 1.0);
}

// The leak with the absolute decay makes the free phase a contraction in the 1-norm for
// every W (μ_1(J) <= −γ): large weights, no clipping, a start inside and one far outside
// [0, 1] reach the same point, and that point solves the leaky fixed-point equation.
TEST(DeepDynamics, LeakyAbsDecayHasOneFixedPointForAnyWeights) {
  auto net = random_net(2, 5, 2, 13, 2.0);
  deep_dynamics dyn = leaky_abs_dynamics(0.5, 1e-28);
  dyn.dt = 0.02;  // dt (γ + max_m Σ_k |W_mk|) <= 1: the Euler map contracts too
  dyn.free_steps = 200000;
  ASSERT_LE(dyn.dt * (dyn.leak + net.weights().cwiseAbs().rowwise().sum().maxCoeff()), 1.0);
  Eigen::MatrixXd x(2, 1);
  x << 1, 0;
  rng_t rng(4);
  Eigen::MatrixXd a = deep_initial_state(net, x, rng), b = a;
  b.bottomRows(net.n_free()).setConstant(5.0);
  ASSERT_TRUE(deep_relax(net, dyn, a, nullptr, 0.0).converged());
  ASSERT_TRUE(deep_relax(net, dyn, b, nullptr, 0.0).converged());
  EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-10);
  EXPECT_LE(leaky_abs_rate(net, dyn.leak, a.col(0)).cwiseAbs().maxCoeff(), 1e-10);
  const auto rep = analyze_stability(deep_jacobian(net, dyn, a.col(0)));
  EXPECT_LE(rep.mu_1, -dyn.leak + 1e-12);
  EXPECT_TRUE(rep.certified);
  // The published decay (row sums) with the same weights and leak is not contracting.
  deep_dynamics pub = dyn;
  pub.decay = deep_decay::row_sum;
  EXPECT_GT(analyze_stability(deep_jacobian(net, pub, a.col(0))).mu_1, 0.0);
}

// The vector-field rule is ∂F/∂W contracted with (s^β − s*)/β: compared with central
// differences of the rate (linear in W, so exact up to rounding), drive and decay terms both.
TEST(DeepRule, VectorFieldUpdateIsTheRateDerivativeTimesTheNudge) {
  for (const auto decay : {deep_decay::row_sum, deep_decay::abs_row_sum}) {
    auto net = random_net(2, 3, 2, 17, 0.4);
    deep_dynamics dyn;
    dyn.decay = decay;
    dyn.presyn = deep_presyn::hep_sigmoid;
    const double beta = 0.3;
    rng_t rng(5);
    Eigen::MatrixXd x(2, 3);
    x << 0, 1, 1, 1, 0, 1;
    const Eigen::MatrixXd s0 = deep_initial_state(net, x, rng);
    Eigen::MatrixXd s1 = s0;
    s1.bottomRows(net.n_free()) += 0.05 * Eigen::MatrixXd::Random(net.n_free(), 3);
    const Eigen::MatrixXd dw = deep_vector_field_update(net, dyn, s0, s1, beta);
    const double h = 1e-6;
    double worst = 0;
    for (int i = 0; i < net.size(); ++i)
      for (int j = 0; j < net.size(); ++j) {
        double want = 0;
        if (net.structural()(i, j)) {
          auto plus = net, minus = net;
          plus.weights()(i, j) += h;
          minus.weights()(i, j) -= h;
          for (Eigen::Index b = 0; b < 3; ++b)
            want += (deep_rate(plus, dyn, s0.col(b)) - deep_rate(minus, dyn, s0.col(b)))
                        .dot((s1.col(b) - s0.col(b)).tail(net.n_free())) /
                    (2 * h) / (beta * 3);
        }
        worst = std::max(worst, std::abs(dw(i, j) - want));
      }
    EXPECT_LE(worst, 1e-8) << "decay " << to_string(decay);
  }
}

// With the reciprocal nudge the vector-field update is −∂C/∂W (C = mean over the batch of
// ½‖y − s_out*‖²) up to O(β): checked against central differences of C through the free
// fixed point. Without it the update follows J⁻¹ instead of J⁻ᵀ and misses the gradient.
TEST(DeepRule, ReciprocalNudgeGivesTheLossGradient) {
  auto net = random_net(2, 3, 2, 19, 0.8);
  deep_dynamics dyn = leaky_abs_dynamics(1, 1e-30);
  dyn.free_steps = dyn.nudged_steps = 100000;
  const auto task = make_logic_task("xor", true);
  auto free_state = [&](const graph_network<double>& g) {
    rng_t rng(6);
    Eigen::MatrixXd s = deep_initial_state(g, task.x, rng);
    deep_relax(g, dyn, s, nullptr, 0.0);
    return s;
  };
  auto loss = [&](const graph_network<double>& g) {
    const Eigen::MatrixXd s = free_state(g);
    return 0.5 * (task.y - s.bottomRows(g.n_output())).squaredNorm() / double(task.x.cols());
  };
  const double beta = 1e-4;
  const Eigen::MatrixXd s_free = free_state(net);
  const deep_linear_term rec = deep_reciprocal_term(net, dyn, s_free);
  Eigen::MatrixXd s_rec = s_free, s_plain = s_free;
  deep_relax(net, dyn, s_rec, &task.y, beta, &rec);
  deep_relax(net, dyn, s_plain, &task.y, beta);
  const Eigen::MatrixXd upd = deep_vector_field_update(net, dyn, s_free, s_rec, beta);
  const Eigen::MatrixXd plain = deep_vector_field_update(net, dyn, s_free, s_plain, beta);
  Eigen::MatrixXd grad = Eigen::MatrixXd::Zero(net.size(), net.size());
  const double h = 1e-6;
  for (int i = 0; i < net.size(); ++i)
    for (int j = 0; j < net.size(); ++j)
      if (net.structural()(i, j)) {
        auto plus = net, minus = net;
        plus.weights()(i, j) += h;
        minus.weights()(i, j) -= h;
        grad(i, j) = (loss(plus) - loss(minus)) / (2 * h);
      }
  const double scale = grad.cwiseAbs().maxCoeff();
  ASSERT_GT(scale, 1e-3);
  EXPECT_LE((upd + grad).cwiseAbs().maxCoeff(), 1e-3 * scale);
  EXPECT_GT((plain + grad).cwiseAbs().maxCoeff(), 0.05 * scale) << "the plain nudge already gave the gradient";
}

// The recommended configuration solves XOR one-hot on every seed tried here (docs/results/deep.md:
// 10 of seeds 1-10, 50 of 1-50); the published settings fail on seed 1 (frozen hidden layer).
TEST(DeepXor, RecommendedSolvesSeedsWherePublishedFails) {
  const auto task = make_logic_task("xor", true);
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    const auto st = xor_recommended_settings(seed);
    const auto g = train_graph(st);
    ASSERT_FALSE(g.r.diverged) << "seed " << seed;
    EXPECT_EQ(g.r.test_accuracy, 1.0) << "seed " << seed;
    EXPECT_LT(g.r.test_loss, 0.02) << "seed " << seed;  // ½‖y − s‖² over 2 outputs: the MSE
    EXPECT_GT(g.solved_epoch, 0) << "seed " << seed;
    // Certified without saturation: μ_1 <= −γ at every pattern's fixed point.
    const auto stab = deep_stability(g.net, st.dyn, task.x);
    EXPECT_TRUE(stab.worst.certified);
    EXPECT_LE(stab.worst.mu_1, -st.dyn.leak + 1e-12);
    EXPECT_EQ(stab.worst.n_active, g.net.n_free());
  }
  const auto g = train_graph(xor_one_hot_settings(2));
  EXPECT_LE(g.r.test_accuracy, 0.75);
  EXPECT_EQ(g.solved_epoch, -1);
}

// Spec rung D2: XOR, one-hot, 2 hidden neurons, the published settings; seed 10 is one
// of the seeds that succeed (see docs/results/deep.md for the count over 10 seeds).
TEST(DeepXor, OneHotPublishedSettingsReachZeroError) {
  const auto st = xor_one_hot_settings(3);
  const auto task = make_logic_task("xor", true);
  const auto g = train_graph(st);
  const auto& net = g.net;
  ASSERT_FALSE(g.r.diverged);
  EXPECT_EQ(g.r.test_accuracy, 1.0);
  EXPECT_EQ(g.rows.back()["nudged_acc"].get<double>(), 1.0);
  // The published Gershgorin check reports False on a network that solved XOR.
  const auto stab = deep_stability(net, st.dyn, task.x);
  for (const auto& p : stab.per_pattern) {
    EXPECT_FALSE(p.gershgorin_rows && p.gershgorin_cols);
    EXPECT_LE(p.max_abs_column_sum, 1e-12);
    EXPECT_NE(p.verdict.find("sums to 0"), std::string::npos);
  }
  // With a leak larger than the free Jacobian's abscissa it is certified without saturation.
  deep_dynamics leaky = st.dyn;
  leaky.leak = std::max(0.0, stab.worst.spectral_abscissa) + 0.5;
  for (Eigen::Index b = 0; b < task.x.cols(); ++b) {
    Eigen::VectorXd s(net.size());
    s.setConstant(0.5);
    s.head(2) = task.x.col(b);
    s(2) = 1;
    const auto rep = analyze_stability(deep_jacobian(net, leaky, s));
    EXPECT_TRUE(rep.certified);
    EXPECT_LT(rep.spectral_abscissa, 0.0);
  }
}

// The library's epoch (free phase, nudged phase, trajectory rule, full-batch update) against
// a naive transcription of spec §2-§4.1, written out with scalar loops: same W and the same
// initial states give the same updated W. This is the check that the XOR success rate
// below is a property of the published algorithm, not of this implementation.
TEST(DeepXor, OneEpochMatchesNaiveTranscriptionOfTheSpec) {
  const auto st = xor_one_hot_settings(2);
  const auto task = make_logic_task("xor", true);
  rng_t rng(st.seed);
  graph_network<double> net(st.graph, rng);
  const int n = net.size(), n_in = net.n_input(), n_out = net.n_output(), nb = int(task.x.cols());
  rng_t train_rng(123);
  for (int epoch = 0; epoch < 3; ++epoch) {
    rng_t copy = train_rng;
    Eigen::MatrixXd s = deep_initial_state(net, task.x, copy);  // the states the step will draw
    const Eigen::MatrixXd w = net.weights();
    Eigen::MatrixXd acc = Eigen::MatrixXd::Zero(n, n);
    for (int phase = 0; phase < 2; ++phase) {
      const long steps = phase == 0 ? st.dyn.free_steps : st.dyn.nudged_steps;
      for (long t = 0; t < steps; ++t) {
        Eigen::MatrixXd next = s;
        for (int b = 0; b < nb; ++b)
          for (int j = n_in; j < n; ++j) {
            double drive = 0, out_sum = 0;
            for (int i = 0; i < n; ++i) drive += w(i, j) * s(i, b);
            for (int k = 0; k < n; ++k) out_sum += w(j, k);
            double ds = drive - s(j, b) * out_sum;
            if (phase == 1 && j >= n - n_out) ds += st.learn.beta * (task.y(j - (n - n_out), b) - s(j, b));
            next(j, b) = std::min(1.0, std::max(0.0, s(j, b) + st.dyn.dt * ds));
          }
        if (phase == 1)
          for (int b = 0; b < nb; ++b)
            for (int i = 0; i < n; ++i)
              for (int j = 0; j < n; ++j) acc(i, j) += next(i, b) * (next(j, b) - s(j, b));
        s = next;
      }
    }
    Eigen::MatrixXd want = w + st.learn.lr * acc / (double(nb) * double(st.dyn.nudged_steps));
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        if (i == j || j < n_in) want(i, j) = 0;
    const auto r = deep_learning_step(net, st.dyn, st.learn, task.x, task.y, train_rng);
    EXPECT_LE((r.s_nudged - s).cwiseAbs().maxCoeff(), 1e-13) << "epoch " << epoch;
    EXPECT_LE((net.weights() - want).cwiseAbs().maxCoeff(), 1e-13) << "epoch " << epoch;
    EXPECT_GT((net.weights() - w).cwiseAbs().sum(), 1e-3);  // the step did update
  }
}

// The published one-hot settings solve XOR for about one initialisation in ten (docs/results/deep.md:
// 3 of 30 seeds of the training loop, 8 of 100 of the former trainer's random streams, 13 of
// 100 in an independent NumPy transcription). Over seeds 1-10 the failures fall into three
// mechanisms, each measured on one extra learning step after the 200 epochs:
//  * frozen hidden layer: both hidden neurons sit clipped at 0 or 1 for every pattern and the
//    nudge does not move them, so the trajectory rule (pre x change of post) gives their
//    incoming weights exactly zero update; only the output weights learn and the free-phase
//    prediction keeps flipping;
//  * nudge too weak: outputs held at the wrong bound by a drive larger than β (y − s), so
//    even the nudged phase is wrong and the updates are tiny;
//  * blow-up: |W| grows past 10³ (dt |W| >> 1: Euler steps bang between the bounds).
TEST(DeepXor, PublishedSettingsSolveAboutOneSeedInTenAndWhyTheOthersFail) {
  // Which seed lands in which class depends on the last bits of the arithmetic (this build:
  // seeds 1 and 3 solved, 4 frozen, 1 weak, 3 blown; another build may differ), so the test
  // asserts the rates and that nearly every failure shows one mechanism's signature.
  const auto task = make_logic_task("xor", true);
  int solved = 0, frozen = 0, weak = 0, blown = 0, other = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    const auto st = xor_one_hot_settings(seed);
    auto g = train_graph(st);
    ASSERT_FALSE(g.r.diverged);
    if (g.r.test_accuracy == 1.0) {
      ++solved;
      continue;
    }
    auto& net = g.net;
    const bool nudged_wrong = g.rows.back()["nudged_acc"].get<double>() < 1.0;
    const Eigen::MatrixXd w = net.weights();
    rng_t r2(99);
    const auto step = deep_learning_step(net, st.dyn, st.learn, task.x, task.y, r2);
    const Eigen::MatrixXd dw = net.weights() - w;
    const int h0 = net.n_input(), nh = net.n_hidden(), o0 = net.first_output();
    const auto hidden_free = step.s_free.middleRows(h0, nh).array();
    const bool hidden_clipped = ((hidden_free == 0.0) || (hidden_free == 1.0)).all();
    const double dw_hidden = dw.middleCols(h0, nh).cwiseAbs().sum(),
                 dw_out = dw.middleCols(o0, net.n_output()).cwiseAbs().sum();
    if (w.cwiseAbs().maxCoeff() > 1e3) ++blown;
    else if (nudged_wrong && dw_hidden + dw_out < 0.05) ++weak;  // the nudge cannot flip the outputs
    else if (!nudged_wrong && hidden_clipped && dw_hidden == 0.0 && dw_out > 1e-3) ++frozen;  // hidden layer frozen
    else ++other;
  }
  EXPECT_GE(solved, 1);
  EXPECT_LE(solved, 3);
  EXPECT_GE(frozen, 3);
  EXPECT_LE(other, 2);
  EXPECT_EQ(solved + frozen + weak + blown + other, 10);
}

// Spec rung D3: asymmetric vector-field EP stays near 0.5 on XOR; its Gershgorin tests pass.
TEST(DeepBaseline, AsymmetricVectorFieldStuckNearHalf) {
  const auto st = config_settings("graph_xor_asym_baseline.toml", 1);
  const auto task = make_logic_task("xor", false);
  const auto g = train_graph(st);
  const auto& net = g.net;
  EXPECT_GT(g.r.test_loss, 0.12);  // ½ (y − s)² with the output ≈ 0.5 gives 0.125
  rng_t r2(3);
  Eigen::MatrixXd s = deep_initial_state(net, task.x, r2);
  deep_relax(net, st.dyn, s, nullptr, 0.0);
  EXPECT_LT((s.bottomRows(1).array() - 0.5).abs().maxCoeff(), 0.05);
  const auto stab = deep_stability(net, st.dyn, task.x);
  EXPECT_TRUE(stab.worst.gershgorin_rows);
  EXPECT_TRUE(stab.worst.gershgorin_cols);
  EXPECT_TRUE(stab.worst.certified);
}

TEST(DeepPruning, BoltzmannPruningPersistentMaskAndL1) {
  auto net = random_net(2, 4, 2, 11, 0.005);  // every weight weak
  deep_learning learn;
  learn.prune = true;
  learn.persistent = true;
  rng_t rng(2);
  long total = 0;
  for (int k = 0; k < 30; ++k) total += deep_boltzmann_prune(net, learn, rng);
  EXPECT_GT(total, 0);
  EXPECT_GT(net.sparsity(), 0.3);
  EXPECT_EQ(net.pruned().count(), net.n_allowed() - net.n_nonzero());
  net.weights().setConstant(1.0);
  net.apply_masks();  // pruned edges stay pruned
  EXPECT_EQ(net.n_nonzero(), net.n_allowed() - net.pruned().count());
  // Strong weights are never pruned.
  auto strong = random_net(2, 4, 2, 12, 1.0);
  for (int i = 0; i < strong.size(); ++i)
    for (int j = 0; j < strong.size(); ++j)
      if (strong.structural()(i, j)) strong.weights()(i, j) = 0.5;
  EXPECT_EQ(deep_boltzmann_prune(strong, learn, rng), 0);
  // L1: subgradient moves every weight by λ; soft-threshold stops at zero.
  auto a = random_net(1, 1, 1, 1);
  a.weights()(1, 2) = 0.3;
  a.weights()(2, 3) = -0.0001;
  auto b = a;
  deep_learning l1;
  l1.l1 = 0.001;
  deep_constraints(a, l1).apply(a.params().values());
  l1.l1_mode = deep_l1::soft_threshold;
  deep_constraints(b, l1).apply(b.params().values());
  EXPECT_NEAR(a.weights()(1, 2), 0.299, 1e-15);
  EXPECT_NEAR(a.weights()(2, 3), 0.0009, 1e-15);
  EXPECT_NEAR(b.weights()(1, 2), 0.299, 1e-15);
  EXPECT_EQ(b.weights()(2, 3), 0.0);
}

// Published pruning (L1 subgradient + non-persistent Boltzmann pruning) switched on when
// a run that solved XOR resumes (published settings, seed 3, 0% error from epoch 90): after
// 200 more epochs the error is 0 with edges pruned, and at some epoch at least 3 of the 24
// allowed edges were (the L1 shrinkage brings weights below prune.tol gradually, and the
// run is chaotic: this build ends at sparsity 0.21, the sanitizer build at 0.08).
TEST(DeepPruning, XorKeepsZeroErrorWhilePruned) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("eqprop_deep_prune_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::ostringstream log;
  train_options o;
  o.run_dir = dir;
  o.out = &log;
  const auto first = train(xor_one_hot_settings(3).cfg, o);
  ASSERT_EQ(first.test_accuracy, 1.0);
  config cfg = saved_run_config(load_checkpoint(dir / "checkpoint.eqck"), dir);
  config more(cfg.schema());
  more.set_override("run.epochs=400");
  more.set_override("constraints.l1=1.5e-4");
  more.set_override("prune.enabled=true");
  cfg.apply_resume_changes(more);
  o.resume = true;
  double last = 0, most = 0;
  o.on_epoch = [&](const nlohmann::ordered_json& row) {
    last = row["sparsity"].get<double>();
    most = std::max(most, last);
  };
  const auto pruned = train(cfg, o);
  EXPECT_EQ(pruned.epochs_done, 400);
  EXPECT_EQ(pruned.test_accuracy, 1.0);
  EXPECT_GT(last, 0.0);
  EXPECT_GE(most, 3.0 / 24.0 - 1e-12);
  std::filesystem::remove_all(dir);
}

// Known spectra.
TEST(Stability, DiagonalMatrix) {
  Eigen::MatrixXd j = Eigen::Vector3d(-1, -2, -3).asDiagonal();
  const auto r = analyze_stability(j);
  EXPECT_NEAR(r.spectral_abscissa, -1, 1e-12);
  EXPECT_DOUBLE_EQ(r.mu_1, -1);
  EXPECT_NEAR(r.mu_2, -1, 1e-12);
  EXPECT_DOUBLE_EQ(r.mu_inf, -1);
  EXPECT_TRUE(r.gershgorin_rows && r.gershgorin_cols && r.certified);
  j(1, 1) = 0.5;
  const auto u = analyze_stability(j);
  EXPECT_NEAR(u.spectral_abscissa, 0.5, 1e-12);
  EXPECT_FALSE(u.certified);
  EXPECT_FALSE(u.diagonal_negative);
  EXPECT_FALSE(u.gershgorin_rows);
  EXPECT_EQ(u.rows_failing, 0);  // dominance holds; the sign of the diagonal fails
}

TEST(Stability, TriangularMatrixHurwitzButNotDiagonallyDominant) {
  Eigen::MatrixXd j(2, 2);
  j << -1, 5, 0, -2;
  const auto r = analyze_stability(j);
  EXPECT_NEAR(r.spectral_abscissa, -1, 1e-12);
  EXPECT_DOUBLE_EQ(r.mu_inf, 4);  // -1 + 5
  EXPECT_DOUBLE_EQ(r.mu_1, 3);    // -2 + 5
  EXPECT_NEAR(r.mu_2, (-3 + std::sqrt(1 + 25.0)) / 2, 1e-12);
  EXPECT_FALSE(r.gershgorin_rows);
  EXPECT_TRUE(r.gershgorin_cols == false);
  EXPECT_TRUE(r.certified);
  EXPECT_NE(r.verdict.find("Hurwitz"), std::string::npos);
}

TEST(Stability, RotationPlusDecayBlock) {
  const double a = 0.3, w = 2;
  Eigen::MatrixXd j(2, 2);
  j << -a, w, -w, -a;
  const auto r = analyze_stability(j);
  EXPECT_NEAR(r.spectral_abscissa, -a, 1e-12);
  EXPECT_NEAR(r.mu_2, -a, 1e-12);  // normal matrix: μ_2 = abscissa
  EXPECT_DOUBLE_EQ(r.mu_1, -a + w);
  EXPECT_DOUBLE_EQ(r.mu_inf, -a + w);
  EXPECT_TRUE(r.certified);
  EXPECT_NE(r.verdict.find("mu_2 < 0"), std::string::npos);
}

TEST(Stability, ZeroColumnSumsAndActiveSet) {
  Eigen::MatrixXd j(3, 3);  // a graph Laplacian flow: columns sum to zero
  j << -1, 0.5, 0.2, 0.6, -0.5, 0.3, 0.4, 0.0, -0.5;
  const auto r = analyze_stability(j);
  EXPECT_LE(r.max_abs_column_sum, 1e-15);
  EXPECT_NEAR(r.spectral_abscissa, 0, 1e-12);
  EXPECT_FALSE(r.certified);
  EXPECT_NE(r.verdict.find("sums to 0"), std::string::npos);
  // Saturating neuron 2 leaves the principal sub-matrix [[-1, .5], [.6, -.5]]: Hurwitz.
  const auto a = analyze_stability(j, {true, true, false});
  EXPECT_EQ(a.n_active, 2);
  EXPECT_NEAR(a.active_spectral_abscissa, (-1.5 + std::sqrt(0.25 + 1.2)) / 2, 1e-12);
  EXPECT_TRUE(a.certified);
  EXPECT_NE(a.verdict.find("through saturation"), std::string::npos);
}

TEST(Stability, LeakCertifiesFreshNetworkWithoutSaturation) {
  auto net = random_net(2, 5, 2, 21, 0.05);
  deep_dynamics dyn;
  dyn.leak = 1;
  Eigen::VectorXd s = Eigen::VectorXd::Constant(net.size(), 0.5);
  const auto pub = analyze_stability(deep_jacobian(net, deep_dynamics{}, s));
  EXPECT_GE(pub.spectral_abscissa, -1e-12);
  const auto r = analyze_stability(deep_jacobian(net, dyn, s));
  EXPECT_TRUE(r.certified);
  EXPECT_LT(r.mu_1, 0);
  EXPECT_NEAR(r.spectral_abscissa, pub.spectral_abscissa - 1, 1e-9);
}

TEST(Stability, RejectsNonSquare) { EXPECT_THROW(analyze_stability(Eigen::MatrixXd::Zero(2, 3)), shape_error); }

// Runs a shell command; returns its exit status and appends stdout (and stderr) to out.
static int run_command(const std::string& cmd, std::string& out) {
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return -1;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  return pclose(f);
}

// `deep train` is `eqprop train` with model.kind = graph: it says so, solves XOR with the
// recommended config (4 hidden: 48 edges), and a file of its flags (`one-hot = true`, as
// configs of the former trainer were written) trains exactly the network of the graph config.
TEST(DeepCli, RecommendedConfigSolvesXorAndFlagFilesAreTranslated) {
  const char* cli = std::getenv("EQPROP_CLI");
  if (!cli || !*cli) GTEST_SKIP() << "EQPROP_CLI not set";
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("eqprop_deep_alias_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string config = std::string(EQPROP_SOURCE_DIR) + "/configs/graph_xor_recommended.toml";
  std::string out;
  EXPECT_EQ(run_command(std::string(cli) + " deep train --config " + config + " --seed 1 --quiet --run-dir " +
                            (dir / "a").string(),
                        out),
            0)
      << out;
  EXPECT_NE(out.find("note: this is `eqprop train " + config + " --set model.kind=graph"), std::string::npos) << out;
  EXPECT_NE(out.find("(48 edges)"), std::string::npos) << "4 hidden neurons from the config: " << out;
  EXPECT_NE(out.find("final test accuracy: 100.00%"), std::string::npos) << out;
  {
    std::ofstream f(dir / "flags.toml");
    f << "task = \"xor\"\none-hot = true\nhidden = \"4\"\ninit-std = 0.5\ndecay = \"abs_row_sum\"\nleak = 1.0\n"
         "presyn = \"hep_sigmoid\"\nno-clip = true\nrule = \"vector_field\"\nreciprocal-nudge = true\nbeta = 0.5\n"
         "lr = 2.0\nstop-tol = 1e-14\nepochs = 800\n";
  }
  out.clear();
  EXPECT_EQ(run_command(std::string(cli) + " deep train --config " + (dir / "flags.toml").string() +
                            " --epochs 30 --quiet --run-dir " + (dir / "b").string(),
                        out),
            0)
      << out;
  out.clear();
  EXPECT_EQ(run_command(std::string(cli) + " train " + config + " --set run.seed=1 --epochs 30 --quiet --run-dir " +
                            (dir / "c").string(),
                        out),
            0)
      << out;
  const auto b = load_checkpoint(dir / "b" / "checkpoint.eqck"), c = load_checkpoint(dir / "c" / "checkpoint.eqck");
  EXPECT_EQ(b.array("params").to_vector<double>(), c.array("params").to_vector<double>());
  std::filesystem::remove_all(dir);
}

// `deep train --seeds K` counts from --seed (default 1), as the former trainer did, and
// reports how many runs reach 0% error; --stability writes each run's report.
TEST(DeepCli, SeedsCountFromSeedAndStabilityIsWritten) {
  const char* cli = std::getenv("EQPROP_CLI");
  if (!cli || !*cli) GTEST_SKIP() << "EQPROP_CLI not set";
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("eqprop_deep_seeds_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::string out;
  EXPECT_EQ(run_command(std::string(cli) +
                            " deep train --task xor --one-hot --seed 3 --seeds 2 --epochs 120 --stability "
                            "--quiet --run-dir " +
                            dir.string(),
                        out),
            0)
      << out;
  EXPECT_NE(out.find("--seeds 3-4"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(dir / "seed-3" / "stability.json")) << out;
  EXPECT_TRUE(std::filesystem::exists(dir / "seed-4" / "stability.json")) << out;
  EXPECT_NE(out.find(" of 2 runs reach 0% error"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}

TEST(DeepCli, TrainWritesRunAndStabilityReadsIt) {
  const char* cli = std::getenv("EQPROP_CLI");
  if (!cli || !*cli) GTEST_SKIP() << "EQPROP_CLI not set";
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("eqprop_deep_cli_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const std::string cmd = std::string(cli) + " train " + std::string(EQPROP_SOURCE_DIR) +
                          "/configs/graph_xor_onehot.toml --seed 3 --quiet --run-dir " + dir.string();
  std::string out;
  EXPECT_EQ(run_command(cmd, out), 0) << out;
  EXPECT_NE(out.find("final test accuracy: 100.00%"), std::string::npos) << out;
  EXPECT_NE(out.find("(24 edges)"), std::string::npos) << "one-hot, 2 hidden from the config: " << out;
  EXPECT_TRUE(std::filesystem::exists(dir / "metrics.csv"));
  out.clear();
  EXPECT_EQ(run_command(std::string(cli) + " deep stability " + dir.string(), out), 0) << out;
  EXPECT_NE(out.find("sums to 0"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}

// ρ = hep_sigmoid is the table's act::hep_sigmoid in the relaxation rate and in the Jacobian;
// the retired name `sigmoid` is refused naming hep_sigmoid, and saved settings holding it load.
TEST(DeepPresyn, HepSigmoidIsTheTableFunctionAndSigmoidIsRetired) {
  EXPECT_EQ(parse_deep_presyn("hep_sigmoid"), deep_presyn::hep_sigmoid);
  EXPECT_EQ(to_string(deep_presyn::hep_sigmoid), "hep_sigmoid");
  EXPECT_EQ(deep_presyn_activation(deep_presyn::hep_sigmoid), activation_kind::hep_sigmoid);
  try {
    parse_deep_presyn("sigmoid");
    ADD_FAILURE() << "`sigmoid` was accepted";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("'hep_sigmoid'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(parse_saved_deep_presyn("sigmoid"), deep_presyn::hep_sigmoid);
  EXPECT_EQ(parse_saved_deep_presyn("tanh"), deep_presyn::tanh);
  EXPECT_THROW(parse_saved_deep_presyn("hard_sigmoid"), config_error);

  auto net = random_net(2, 3, 2, 23, 0.7);
  deep_dynamics dyn;
  dyn.presyn = deep_presyn::hep_sigmoid;
  Eigen::VectorXd s(net.size());
  for (int i = 0; i < net.size(); ++i) s(i) = 0.1 + 0.13 * i;
  s(net.bias_index()) = 1;
  const Eigen::VectorXd rate = deep_rate(net, dyn, s);
  const Eigen::MatrixXd jac = deep_jacobian(net, dyn, s);
  const int n_in = net.n_input(), nf = net.n_free();
  for (int j = 0; j < nf; ++j) {
    double want = -net.weights().row(n_in + j).sum() * s(n_in + j);
    for (int i = 0; i < net.size(); ++i) want += net.weights()(i, n_in + j) * act::hep_sigmoid::value(s(i));
    EXPECT_NEAR(rate(j), want, 1e-14) << "neuron " << j;
    for (int m = 0; m < nf; ++m) {
      if (m != j) {
        EXPECT_NEAR(jac(j, m), net.weights()(n_in + m, n_in + j) * act::hep_sigmoid::deriv(s(n_in + m)), 1e-14);
      }
    }
  }
}

// The reciprocal nudge is refused where its correction is wrong: with the trajectory or
// endpoint rule, and with clipping (deep_jacobian ignores the clip's active set).
TEST(DeepRule, ReciprocalNudgeNeedsVectorFieldRuleWithoutClip) {
  const auto st = xor_recommended_settings(1);
  EXPECT_NO_THROW(deep_check_settings(st.dyn, st.learn));
  const auto task = make_logic_task("xor", true);
  for (const auto rule : {deep_rule::trajectory, deep_rule::endpoint}) {
    auto bad = st;
    bad.learn.rule = rule;
    EXPECT_THROW(deep_check_settings(bad.dyn, bad.learn), config_error) << to_string(rule);
    rng_t rng(1);
    graph_network<double> net(bad.graph, rng);
    EXPECT_THROW(deep_learning_step(net, bad.dyn, bad.learn, task.x, task.y, rng), config_error) << to_string(rule);
    // The training loop refuses the config before it writes a run directory.
    const auto cfg = load_training_config({std::string(EQPROP_SOURCE_DIR) + "/configs/graph_xor_recommended.toml"},
                                          {"estimator.kind=" + std::string(to_string(rule))});
    const auto dir =
        std::filesystem::path(::testing::TempDir()) / ("eqprop_deep_refused_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::ostringstream log;
    train_options o;
    o.run_dir = dir;
    o.out = &log;
    EXPECT_THROW(train(cfg, o), config_error) << to_string(rule);
    EXPECT_FALSE(std::filesystem::exists(dir)) << to_string(rule);
  }
  auto clipped = st;
  clipped.dyn.clip = true;
  try {
    deep_check_settings(clipped.dyn, clipped.learn);
    ADD_FAILURE() << "clipping with the reciprocal nudge was accepted";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("dynamics.clip = false"), std::string::npos) << e.what();
  }
  clipped.learn.reciprocal_nudge = false;
  EXPECT_NO_THROW(deep_check_settings(clipped.dyn, clipped.learn));
}

// The evaluation's nudged phase is the learning one: with the reciprocal nudge the logged
// nudged_mse is that of the reciprocal nudged fixed point (unique: the leaky absolute decay
// contracts), not that of the plain nudge.
TEST(DeepTrain, NudgedScoresUseTheReciprocalNudge) {
  const auto st =
      config_settings("graph_xor_recommended.toml", 2,
                      {"relax.tol=1e-28", "relax.free_steps=100000", "relax.nudged_steps=100000", "run.epochs=1"});
  const auto task = make_logic_task("xor", true);
  const auto g = train_graph(st);
  const auto& net = g.net;
  const double logged = g.rows.back()["nudged_mse"].get<double>();
  rng_t r2(99);
  Eigen::MatrixXd s_free = deep_initial_state(net, task.x, r2);
  ASSERT_TRUE(deep_relax(net, st.dyn, s_free, nullptr, 0.0).converged());
  const deep_linear_term rec = deep_reciprocal_term(net, st.dyn, s_free);
  Eigen::MatrixXd s_rec = s_free, s_plain = s_free;
  ASSERT_TRUE(deep_relax(net, st.dyn, s_rec, &task.y, st.learn.beta, &rec).converged());
  ASSERT_TRUE(deep_relax(net, st.dyn, s_plain, &task.y, st.learn.beta).converged());
  const double want = deep_score(net, s_rec, task.y, true).mse, plain = deep_score(net, s_plain, task.y, true).mse;
  EXPECT_NEAR(logged, want, 1e-9);
  EXPECT_GT(std::abs(plain - want), 1e-4) << "the plain nudge gives the same MSE: the test cannot tell them apart";
}

// The CLI refuses `--presyn sigmoid` (naming hep_sigmoid) and the reciprocal nudge with the
// trajectory rule or with clipping, before training (exit status 2, no epoch line).
TEST(DeepCli, RefusesRetiredPresynAndWrongReciprocalCombinations) {
  const char* cli = std::getenv("EQPROP_CLI");
  if (!cli || !*cli) GTEST_SKIP() << "EQPROP_CLI not set";
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("eqprop_deep_refuse_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const std::string rec = std::string(cli) + " deep train --config " + std::string(EQPROP_SOURCE_DIR) +
                          "/configs/graph_xor_recommended.toml --epochs 1 --quiet --run-dir " + dir.string();
  struct bad_case {
    std::string args, message;
  };
  for (const auto& c : {bad_case{" --presyn sigmoid", "hep_sigmoid"}, bad_case{" --rule trajectory", "vector_field"},
                        bad_case{" --rule endpoint", "vector_field"}}) {
    std::string out;
    EXPECT_EQ(WEXITSTATUS(run_command(rec + c.args, out)), 2) << c.args << ": " << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << c.args << ": " << out;
    EXPECT_EQ(out.find("epoch 1/"), std::string::npos) << c.args << ": " << out;
    EXPECT_FALSE(std::filesystem::exists(dir)) << c.args << ": a refused config leaves no run directory";
  }
  std::string out;
  EXPECT_EQ(WEXITSTATUS(run_command(std::string(cli) +
                                        " deep train --task xor --one-hot --rule vector_field "
                                        "--reciprocal-nudge --epochs 1 --quiet --run-dir " +
                                        dir.string(),
                                    out)),
            2)
      << out;
  EXPECT_NE(out.find("--no-clip"), std::string::npos) << out;
}

// `eqprop bench -w deep_yinyang_leak` trains with configs/graph_yin_yang_leak.toml read from the
// working directory (30 hidden: 1221 edges) and names the file when it is not there.
TEST(DeepCli, BenchReadsTheYinYangConfig) {
  const char* cli = std::getenv("EQPROP_CLI");
  if (!cli || !*cli) GTEST_SKIP() << "EQPROP_CLI not set";
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("eqprop_deep_bench_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string json = (dir / "b.json").string();
  std::string out;
  ASSERT_EQ(run_command("cd " + std::string(EQPROP_SOURCE_DIR) + " && " + cli +
                            " bench -w deep_yinyang_leak --seconds 0.1 --no-peak --json " + json,
                        out),
            0)
      << out;
  std::ifstream f(json);
  const auto j = nlohmann::json::parse(f);
  ASSERT_EQ(j.at("workloads").size(), 1u);
  EXPECT_EQ(j.at("workloads")[0].at("edges").get<long>(), 1221);
  EXPECT_DOUBLE_EQ(j.at("workloads")[0].at("relax_steps_per_batch").get<double>(), 200.0);  // T1 + T2 = 100 + 100
  out.clear();
  EXPECT_NE(
      run_command("cd " + dir.string() + " && " + cli + " bench -w deep_yinyang_leak --seconds 0.1 --no-peak", out), 0);
  EXPECT_NE(out.find("configs/graph_yin_yang_leak.toml"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}

// A checkpoint of the former `deep train` (meta kind "deep": settings, weights, bias, probe
// inputs), also one saved with the retired presynaptic name `sigmoid`, gives `deep stability`
// the report of the same network trained by `eqprop train`.
TEST(DeepCli, StabilityReadsCheckpointsOfTheFormerTrainer) {
  const char* cli = std::getenv("EQPROP_CLI");
  if (!cli || !*cli) GTEST_SKIP() << "EQPROP_CLI not set";
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("eqprop_deep_old_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::string out;
  ASSERT_EQ(
      run_command(std::string(cli) + " train " + std::string(EQPROP_SOURCE_DIR) +
                      "/configs/graph_xor_recommended.toml --seed 1 --epochs 20 --quiet --run-dir " + dir.string(),
                  out),
      0)
      << out;
  const saved_run run = load_saved_run(dir, "");
  const auto net = saved_network<graph_network<double>>(run);
  const auto& cfg = run.cfg;
  checkpoint old;
  old.meta["kind"] = "deep";
  auto& st = old.meta["settings"];
  st["graph"] = {{"n_input", net.n_data_input()},
                 {"n_output", net.n_output()},
                 {"hidden", cfg.get<std::vector<int>>("network.hidden")},
                 {"topology", cfg.get<std::string>("network.topology")}};
  st["dynamics"] = {{"dt", cfg.get<double>("dynamics.dt")},
                    {"free_steps", cfg.get<long>("relax.free_steps")},
                    {"stop_tol", cfg.get<double>("relax.tol")},
                    {"leak", cfg.get<double>("dynamics.leak")},
                    {"decay", cfg.get<std::string>("dynamics.decay")},
                    {"presyn", "sigmoid"},
                    {"clip", false}};
  old.arrays["weights"] = checkpoint_array::from_eigen(net.weights());
  old.arrays["bias"] = checkpoint_array::from_eigen(net.bias());
  old.arrays["probe_inputs"] = run.ck.array("probe_inputs");
  save_checkpoint(dir / "old.eqck", old);
  std::string now, before;
  ASSERT_EQ(run_command(std::string(cli) + " deep stability --json " + dir.string(), now), 0) << now;
  ASSERT_EQ(run_command(std::string(cli) + " deep stability --json " + (dir / "old.eqck").string(), before), 0)
      << before;
  EXPECT_EQ(before, now);
  EXPECT_NE(now.find("\"n_active\": 6"), std::string::npos) << "no clip: every free neuron active: " << now;
  std::filesystem::remove_all(dir);
}

// Per-sample freezing (dyn.freeze) on a contracting leaky network: samples that converge
// early stop stepping, the others run on; the states agree with the unfrozen run to 1e-12
// (the remaining distance of a frozen sample to its fixed point is below its last step,
// 1e-13, divided by the contraction's gap) in fewer sample-steps, and the report counts
// every sample as converged.
TEST(DeepDriver, FreezingGivesTheUnfrozenStates) {
  auto net = random_net(2, 6, 2, 23, 0.3);
  deep_dynamics dyn = leaky_abs_dynamics(5, 1e-26);
  dyn.dt = 0.1;
  dyn.free_steps = 5000;
  Eigen::MatrixXd x(2, 16);
  for (int b = 0; b < 16; ++b) x.col(b) << (b % 4) / 3.0, (b / 4) / 3.0;
  rng_t rng(8);
  Eigen::MatrixXd a = deep_initial_state(net, x, rng);
  a.bottomRows(net.n_free()).leftCols(8).setConstant(3.0);  // half the batch starts far away
  Eigen::MatrixXd b = a;
  const auto plain = deep_relax(net, dyn, a, nullptr, 0.0);
  dyn.freeze = true;
  const auto frozen = deep_relax(net, dyn, b, nullptr, 0.0);
  ASSERT_TRUE(plain.converged());
  ASSERT_TRUE(frozen.converged());
  EXPECT_EQ(frozen.steps, plain.steps);
  EXPECT_LT(frozen.sample_steps, plain.sample_steps);
  EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LE(frozen.max_residual, 1e-13);
}

// The trajectory rule sums over every nudged step of every sample, so its nudged phase
// never freezes: with freeze on and a free phase that runs its whole budget (stop_tol 0),
// one learning step updates the weights exactly as with freeze off.
TEST(DeepDriver, TrajectoryRuleIgnoresFreezing) {
  const auto st = xor_one_hot_settings(3);
  const auto task = make_logic_task("xor", true);
  rng_t r0(st.seed);
  graph_network<double> a(st.graph, r0);
  auto b = a;
  deep_dynamics dyn = st.dyn;
  dyn.nudged_steps = 200;
  rng_t ra(5), rb(5);
  deep_learning_step(a, dyn, st.learn, task.x, task.y, ra);
  dyn.freeze = true;
  dyn.stop_tol = 0;
  deep_learning_step(b, dyn, st.learn, task.x, task.y, rb);
  EXPECT_EQ((a.weights() - b.weights()).cwiseAbs().maxCoeff(), 0.0);
}

// float32 and float64 networks from the same draws give the same learning step to float32
// accuracy: the Yin-Yang benchmark's settings (leak 3, endpoint rule, T1 = T2 = 100, dt 0.1)
// on a 4+1-30-3 graph, one batch of 20: end states within 1e-5, updated weights within
// 1e-5 (the step changes them by about 1e-2).
TEST(DeepDriver, Float32StepAgreesWithFloat64) {
  graph_spec g;
  g.n_input = 4;
  g.hidden = {30};
  g.n_output = 3;
  rng_t r0(11);
  graph_network<double> nd(g, r0);
  graph_network<float> nf = nd.cast<float>();
  deep_dynamics dyn;
  dyn.leak = 3;
  dyn.dt = 0.1;
  dyn.free_steps = dyn.nudged_steps = 100;
  deep_learning learn;
  learn.rule = deep_rule::endpoint;
  learn.beta = 0.5;
  learn.lr = 0.3;
  rng_t rx(12);
  Eigen::MatrixXd x(4, 20), y = Eigen::MatrixXd::Zero(3, 20);
  for (int b = 0; b < 20; ++b) {
    for (int i = 0; i < 4; ++i) x(i, b) = uniform01(rx);
    y(b % 3, b) = 1;
  }
  const Eigen::MatrixXd w0 = nd.weights();
  rng_t rd(13), rf(13);
  const auto sd = deep_learning_step(nd, dyn, learn, x, y, rd);
  const auto sf =
      deep_learning_step(nf, dyn, learn, Eigen::MatrixXf(x.cast<float>()), Eigen::MatrixXf(y.cast<float>()), rf);
  ASSERT_TRUE(sd.finite() && sf.finite());
  EXPECT_LE((sd.s_free - sf.s_free.cast<double>()).cwiseAbs().maxCoeff(), 1e-5);
  EXPECT_LE((sd.s_nudged - sf.s_nudged.cast<double>()).cwiseAbs().maxCoeff(), 1e-5);
  EXPECT_GT((nd.weights() - w0).cwiseAbs().maxCoeff(), 1e-3);
  EXPECT_LE((nd.weights() - nf.weights().cast<double>()).cwiseAbs().maxCoeff(), 1e-5);
}

// DEEP behind the estimator interface: the same update as deep_gradient from the same
// stream, the free phase's loss ½‖y − s_out‖² and its predictions.
TEST(DeepEstimator, IsDeepGradientBehindTheInterface) {
  const auto st = xor_one_hot_settings(2);
  const auto task = make_logic_task("xor", true);
  rng_t init(st.seed);
  graph_network<double> net(st.graph, init);
  std::vector<double> g1(net.params().size()), g2(net.params().size());
  rng_t rng(5);
  const auto direct = deep_gradient(net, st.dyn, st.learn, task.x, task.y, rng, std::span<double>(g1));
  deep_estimator<double> est(st.dyn, st.learn, 5);
  grad_estimator<double, graph_network<double>>& iface = est;
  const auto r = iface.estimate(net, task.x, task.y, g2);
  EXPECT_EQ(g1, g2);
  const auto out = direct.s_free.bottomRows(net.n_output());
  EXPECT_NEAR(r.loss, 0.5 * (out - task.y).squaredNorm() / double(task.x.cols()), 1e-15);
  const auto sc = deep_score(net, direct.s_free, task.y, true);
  long wrong = 0;
  for (long b = 0; b < task.x.cols(); ++b) {
    Eigen::Index k;
    task.y.col(b).maxCoeff(&k);
    wrong += r.predictions[std::size_t(b)] != k;
  }
  EXPECT_DOUBLE_EQ(double(wrong) / double(task.x.cols()), sc.error);
  EXPECT_EQ(r.free.steps, direct.free.steps);
  ASSERT_EQ(r.points.size(), 1u);
  EXPECT_EQ(r.points[0].steps, direct.nudged.steps);
}
