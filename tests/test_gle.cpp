// GLE / LE: the discrete dynamics against exact references in float64.
#include <cmath>
#include <numbers>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>
#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/learn/gle_reference.hpp"
#include "eqprop/model/gle_network.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/gle_tasks.hpp"

using namespace eqprop;
using matd = Eigen::MatrixXd;

namespace {

double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return ab / std::sqrt(aa * bb);
}

/// An LE network (tau_r = tau_m per neuron, heterogeneous across neurons): 3-5-4-out.
gle_spec le_spec(gle_loss loss, int n_out) {
  gle_spec s;
  s.n_input = 3;
  s.dt = 0.1;
  s.loss = loss;
  s.layers.push_back(gle_layer(5, activation_kind::tanh, {0.3, 0.5, 1.0, 2.0, 0.1}, {0.3, 0.5, 1.0, 2.0, 0.1}));
  s.layers.push_back(gle_layer(4, activation_kind::softplus, {1, 0.7, 0.2, 3}, {1, 0.7, 0.2, 3}));
  s.layers.push_back(
      gle_layer(n_out, activation_kind::linear, std::vector<double>(n_out, 1.2), std::vector<double>(n_out, 1.2)));
  s.seed = 7;
  return s;
}

/// Plain backprop of beta * C(phi(W r + b)...) for the same network: the gradient LE must equal.
std::vector<double> backprop_gradient(const gle_network<double>& net, const matd& x, const matd& y, double beta) {
  const int L = net.n_layers();
  std::vector<matd> r(L + 1), d(L);
  r[0] = x;
  for (int l = 0; l < L; ++l) {
    matd a = net.W(l) * r[l];
    if (const double* b = net.b(l)) a.colwise() += Eigen::Map<const Eigen::VectorXd>(b, net.spec().layers[l].size);
    matd out, der;
    apply_activation<double>(net.spec().layers[l].phi, a, out, der);
    r[l + 1] = out;
    d[l] = der;
  }
  matd g;  // -beta dC/dr * B
  gle_network<double>::output_error(net.spec().loss, r[L], y, beta, g);
  std::vector<double> grad(net.params().size(), 0.0);
  matd delta = (g.array() * d[L - 1].array()).matrix();  // = -B dL/da
  const double B = double(x.cols());
  for (int l = L - 1; l >= 0; --l) {
    for (const auto& blk : net.layout()) {
      if (blk.name == fmt::format("W{}", l))
        Eigen::Map<matd>(grad.data() + blk.offset, blk.rows, blk.cols) = -delta * r[l].transpose() / B;
      if (blk.name == fmt::format("b{}", l))
        Eigen::Map<Eigen::VectorXd>(grad.data() + blk.offset, blk.rows) = -delta.rowwise().sum() / B;
    }
    if (l > 0) delta = ((net.W(l).transpose() * delta).array() * d[l - 1].array()).matrix();
  }
  return grad;
}

}  // namespace

TEST(Gle, LatentEquilibriumGivesExactBackpropGradientEveryStep) {
  for (auto loss : {gle_loss::mse, gle_loss::ce}) {
    gle_network<double> net(le_spec(loss, 2));
    rng_t rng(3);
    auto N = [](rng_t& g) { return standard_normal(g); };
    matd x(3, 4), y = matd::Zero(2, 4);
    for (long i = 0; i < x.size(); ++i) x(i) = N(rng);
    for (int j = 0; j < 4; ++j) {
      if (loss == gle_loss::ce) y(j % 2, j) = 1;
      else y.col(j) << N(rng), N(rng);
    }
    const double beta = 0.7;
    const auto bp = backprop_gradient(net, x, y, beta);
    std::vector<double> g(net.params().size());
    net.reset_state(4);
    const int L = net.n_layers();
    for (int k = 0; k < 2 * L + 1; ++k) net.step(x, &y, beta, g);  // fill the pipeline
    double worst = 0;
    for (int k = 0; k < 10; ++k) {
      net.step(x, &y, beta, g);
      worst = std::max(worst, rel_error(g, bp));
    }
    EXPECT_LT(worst, 1e-13) << (loss == gle_loss::ce ? "ce" : "mse");
    // ... and before the pipeline is full it is not (the test can fail)
    net.reset_state(4);
    net.step(x, &y, beta, g);
    net.step(x, &y, beta, g);
    EXPECT_GT(rel_error(g, bp), 0.1);
  }
}

TEST(Gle, InstantaneousNeuronFollowsItsInputWithZeroLag) {
  const auto r = gle_operator_response(1.5, 1.5, 2.0, 0.01);
  EXPECT_NEAR(r.forward_gain, 1.0, 1e-12);
  EXPECT_NEAR(r.forward_phase, 0.0, 1e-12);
  EXPECT_NEAR(r.gle_gain, 1.0, 1e-12);  // error neuron transparent
  EXPECT_NEAR(r.gle_phase, 0.0, 1e-12);
}

TEST(Gle, ErrorOperatorHasTheAdjointsPhaseAndTheInverseGain) {
  // spec §2.5: tau_m = 1, tau_r = 0.2, omega = 2: phase 0.727 rad, gains 0.48 (forward, adjoint) and 2.08 (GLE).
  const auto r = gle_operator_response(1.0, 0.2, 2.0, 1e-3);
  EXPECT_NEAR(r.theory_phase, -0.7266, 1e-3);
  EXPECT_NEAR(r.forward_phase, r.theory_phase, 5e-3);
  EXPECT_NEAR(r.forward_gain, r.theory_gain, 5e-3);
  EXPECT_NEAR(r.adjoint_phase, -r.theory_phase, 5e-3);
  EXPECT_NEAR(r.adjoint_gain, r.theory_gain, 5e-3);
  EXPECT_NEAR(r.gle_phase, -r.theory_phase, 5e-3);
  EXPECT_NEAR(r.gle_gain, 1 / r.theory_gain, 1e-2);
  EXPECT_NEAR(r.gle_gain, 2.076, 1e-2);
}

TEST(Gle, BpttMatchesFiniteDifferencesIncludingTimeConstants) {
  gle_spec s;
  s.n_input = 2;
  s.dt = 0.05;
  s.loss = gle_loss::mse;
  s.learn_tau_m = true;
  s.layers.push_back(gle_layer(3, activation_kind::tanh, {0.5, 1.0, 0.3}, {0.1, 1.0, 0.05}));
  s.layers.push_back(gle_layer(2, activation_kind::softplus, {0.4, 0.8}, {0.2, 0.05}));
  s.seed = 11;
  gle_network<double> net(s);
  net.reset_state(2);
  rng_t rng(5);
  auto N = [](rng_t& g) { return standard_normal(g); };
  const int K = 40;
  std::vector<matd> xs(K, matd(2, 2)), ts(K, matd(2, 2));
  for (int k = 0; k < K; ++k)
    for (long i = 0; i < 4; ++i) xs[k](i) = std::sin(0.2 * k + i) + 0.3 * N(rng), ts[k](i) = 0.5 * N(rng);
  for (int k = 0; k < 10; ++k) net.step(xs[k], nullptr, 0);  // a non-trivial start state
  const double beta = 0.3;
  gle_network<double> copy = net;
  const auto ref = gle_reference_gradient<double>(copy, xs, ts, beta, gle_reference_kind::bptt);
  std::vector<double> fd(net.params().size());
  const double h = 1e-6;
  for (std::size_t i = 0; i < fd.size(); ++i) {
    gle_network<double> p = net, m = net;
    p.params()[i] += h;
    m.params()[i] -= h;
    fd[i] = beta * (gle_window_loss<double>(p, xs, ts) - gle_window_loss<double>(m, xs, ts)) / (2 * h);
  }
  EXPECT_LT(rel_error(ref.grad, fd), 1e-7);
  // the window advanced the copy exactly like free steps
  gle_network<double> free_run = net;
  for (int k = 0; k < K; ++k) free_run.step(xs[k], nullptr, 0);
  EXPECT_EQ((free_run.output() - copy.output()).norm(), 0.0);
}

TEST(Gle, AdjointMethodConvergesToBpttAsDtShrinks) {
  // The continuous adjoint and discrete BPTT agree up to O(dt) (pipeline delay, discretisation).
  double prev = 1;
  for (double dt : {0.05, 0.01}) {
    gle_spec s;
    s.n_input = 1;
    s.dt = dt;
    s.loss = gle_loss::mse;
    s.layers.push_back(gle_layer(3, activation_kind::tanh, {1, 1, 0.5}, {1, 0.1, 0.1}));
    s.layers.push_back(gle_layer(1, activation_kind::linear, {1}, {1}));
    s.seed = 2;
    gle_network<double> net(s);
    net.reset_state(1);
    const int K = int(std::lround(30 / dt));
    std::vector<matd> xs(K, matd(1, 1)), ts(K, matd(1, 1));
    for (int k = 0; k < K; ++k) {
      const double t = k * dt;
      xs[k](0, 0) = std::sin(0.49 * t) + std::sin(1.07 * t);
      ts[k](0, 0) = 0.5 * std::sin(0.49 * t - 0.6);
    }
    gle_network<double> a = net, b = net;
    const auto bptt = gle_reference_gradient<double>(a, xs, ts, 1.0, gle_reference_kind::bptt);
    const auto am = gle_reference_gradient<double>(b, xs, ts, 1.0, gle_reference_kind::adjoint);
    const double err = rel_error(am.grad, bptt.grad);
    EXPECT_GT(cosine(am.grad, bptt.grad), 0.99) << "dt " << dt;
    EXPECT_LT(err, prev) << "dt " << dt;
    prev = err;
  }
  EXPECT_LT(prev, 0.05);
}

TEST(Gle, LagLineSlowGleRecoversTeacherAndInstantaneousBpDoesNot) {
  lagline_options o;
  o.record_every = 100000;
  const auto gle = run_lagline(o);
  EXPECT_LT(gle.w_rel_error, 1e-3);
  EXPECT_LT(gle.tau_rel_error, 1e-3);
  EXPECT_LT(gle.final_loss, 1e-8);
  o.rule = gle_rule::bp_instantaneous;
  const auto bp = run_lagline(o);
  EXPECT_GT(std::max(bp.w_rel_error, bp.tau_rel_error), 1e-2);
  EXPECT_GT(bp.final_loss, 100 * gle.final_loss);
}

// States start at zero by default; "rest" starts r at phi(0). With a softplus hidden layer
// (phi(0) = log 2, phi'(0) = 1/2) under an LE output layer the first outputs differ by
// W_1 phi(0); after relaxing with a fixed input both starts reach the same state.
TEST(Gle, InitialStateZeroOrRest) {
  gle_spec s;
  s.n_input = 2;
  s.dt = 0.1;
  s.loss = gle_loss::mse;
  s.layers.push_back(gle_layer(3, activation_kind::softplus, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}));
  s.layers.push_back(gle_layer(2, activation_kind::linear, {0.4, 0.4}, {0.4, 0.4}));
  gle_network<double> zero(s);
  EXPECT_EQ(zero.spec().initial_state, gle_initial_state::zero);
  s.initial_state = gle_initial_state::rest;
  gle_network<double> rest(s);
  for (auto* n : {&zero, &rest}) {
    n->W(1) << 1.0, 0.5, -0.25, 0.2, 0.2, 0.2;
    n->reset_state(1);
  }
  EXPECT_EQ(zero.state(0).r.norm(), 0.0);
  EXPECT_EQ(zero.state(0).dphi.norm(), 0.0);
  EXPECT_NEAR(rest.state(0).r(1, 0), std::log(2.0), 1e-15);
  EXPECT_NEAR(rest.state(0).dphi(2, 0), 0.5, 1e-15);
  matd x(2, 1);
  x << 0.3, -0.2;
  zero.step(x, nullptr, 0);
  rest.step(x, nullptr, 0);
  EXPECT_EQ(zero.state(0).r, rest.state(0).r);  // the hidden layer sees x either way
  EXPECT_NEAR(rest.output()(0, 0) - zero.output()(0, 0), 1.25 * std::log(2.0), 1e-14);
  EXPECT_NEAR(rest.output()(1, 0) - zero.output()(1, 0), 0.6 * std::log(2.0), 1e-14);
  for (int k = 0; k < 400; ++k) {
    zero.step(x, nullptr, 0);
    rest.step(x, nullptr, 0);
  }
  EXPECT_LT((rest.output() - zero.output()).norm(), 1e-12);
  EXPECT_GT(zero.output().norm(), 0.1);
  EXPECT_EQ(parse_gle_initial_state("rest"), gle_initial_state::rest);
  EXPECT_THROW(parse_gle_initial_state("resting"), config_error);
}

TEST(Gle, BatchResizeTilesAndTruncatesState) {
  gle_network<double> net(le_spec(gle_loss::mse, 2));
  net.reset_state(2);
  matd x(3, 2);
  x << 1, 2, 3, 4, 5, 6;
  for (int k = 0; k < 5; ++k) net.step(x, nullptr, 0);
  const matd u = net.state(0).u;
  net.resize_batch(5);
  ASSERT_EQ(net.state(0).u.cols(), 5);
  EXPECT_EQ(net.state(0).u.col(4), u.col(0));
  EXPECT_EQ(net.state(0).u.col(3), u.col(1));
  net.resize_batch(1);
  EXPECT_EQ(net.state(0).u.col(0), u.col(0));
}

TEST(Gle, BadSpecsAndShapesAreRefused) {
  auto s = le_spec(gle_loss::mse, 2);
  s.layers[0].tau_m[0] = 0.05;  // < dt
  EXPECT_THROW(gle_network<double>{s}, config_error);
  s = le_spec(gle_loss::mse, 2);
  s.layers[1].tau_r.pop_back();
  EXPECT_THROW(gle_network<double>{s}, config_error);
  gle_network<double> net(le_spec(gle_loss::mse, 2));
  net.reset_state(2);
  EXPECT_THROW(net.step(matd::Zero(4, 2), nullptr, 0), shape_error);
  matd bad_target = matd::Zero(3, 2);
  EXPECT_THROW(net.step(matd::Zero(3, 2), &bad_target, 1.0), shape_error);
  EXPECT_THROW(parse_tau_groups("18:0.6"), config_error);
  EXPECT_THROW(parse_activation("tanhh"), config_error);
  const auto g = parse_tau_groups("18:0.6:0.2, 18:1.2:0.2, 17:1.2:1.2");
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[2].count, 17);
  gle_layer_spec L;
  L.size = 52;
  EXPECT_THROW(set_tau_groups(L, g), config_error);
}

TEST(Gle, Mnist1dNetworkHasThePapersParameterCount) {
  config cfg(gle_schema());
  const auto spec = gle_spec_from_config(cfg, 1, 10);
  gle_network<float> net(spec);
  EXPECT_EQ(net.params().size(), 14956u);
  EXPECT_EQ(net.n_layers(), 7);
  EXPECT_FLOAT_EQ(net.tau_m(2)(0), 0.6f);
  EXPECT_FLOAT_EQ(net.tau_r(2)(17), 0.2f);
  EXPECT_FLOAT_EQ(net.tau_r(2)(52), 1.2f);
}

// ---- the command-line tool (run through ctest, which sets EQPROP_CLI)
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {
struct cli_result {
  int status;
  std::string out;
};
cli_result run_cli(const std::string& args) {
  const char* cli = std::getenv("EQPROP_CLI");
  FILE* f = popen((std::string(cli) + " " + args + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  const int st = pclose(f);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), out};
}
}  // namespace

TEST(GleCli, OperatorLagnetAndTrainErrors) {
  const char* cli = std::getenv("EQPROP_CLI");
  if (!cli || !*cli) GTEST_SKIP() << "EQPROP_CLI not set";
  auto r = run_cli("gle operator --tau-m 1 --tau-r 0.2 --omega 2");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("2.076"), std::string::npos) << r.out;  // GLE error gain 1/|H|
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("gle_cli_" + std::to_string(::getpid()));
  r = run_cli("gle lagnet --window 60 --no-plot --out " + dir.string());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("w[0][0] 0.5000 -> -0.5000"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "lagnet_traces.csv"));
  // bad input: unknown config key, bad tau groups, missing data
  r = run_cli("gle train --set network.widht=5");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("network.width"), std::string::npos) << r.out;
  r = run_cli("gle train --set network.tau_groups=\\\"10:0.6:0.2\\\" --data-dir " + dir.string());
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("tau groups cover 10 neurons but the layer has 53"), std::string::npos) << r.out;
  r = run_cli("gle train --data-dir " + (dir / "nothing").string());
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("mnist-1d"), std::string::npos) << r.out;
  std::filesystem::remove_all(dir);
}

TEST(GleCli, ResumeContinuesBitIdentically) {
  const char* cli = std::getenv("EQPROP_CLI");
  if (!cli || !*cli) GTEST_SKIP() << "EQPROP_CLI not set";
  const char* env_data = std::getenv("EQPROP_DATA");
  const auto data = env_data && *env_data ? std::filesystem::path(env_data)
                                          : std::filesystem::path(EQPROP_SOURCE_DIR) / ".." / "shared" / "data";
  if (!std::filesystem::exists(data / "mnist-1d" / "gle-360" / "x_train.npy")) GTEST_SKIP() << "no MNIST-1D data";
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("gle_resume_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const std::string common = "gle train -q --data-dir " + data.string() +
                             " --set data.limit_train=150 --set data.limit_test=60 --set network.depth=2"
                             " --set run.batch=50 --set run.eval_batch=30 --set schedule.plateau_patience=0 ";
  auto a = run_cli(common + "--epochs 3 --run-dir " + (dir / "a").string());
  ASSERT_EQ(a.status, 0) << a.out;
  auto b = run_cli(common + "--epochs 1 --run-dir " + (dir / "b").string());
  ASSERT_EQ(b.status, 0) << b.out;
  auto c = run_cli("gle train -q --epochs 3 --data-dir " + data.string() + " --resume " + (dir / "b").string());
  ASSERT_EQ(c.status, 0) << c.out;
  const auto ca = load_checkpoint(dir / "a" / "checkpoint.eqck"), cb = load_checkpoint(dir / "b" / "checkpoint.eqck");
  EXPECT_EQ(cb.meta.at("epoch").get<long>(), 3);
  const auto pa = ca.array("params").to_vector<float>(), pb = cb.array("params").to_vector<float>();
  ASSERT_EQ(pa.size(), pb.size());
  EXPECT_EQ(0, std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)));
  // the metrics log of the resumed run has each epoch once
  std::ifstream f(dir / "b" / "metrics.csv");
  std::string line;
  int rows = 0;
  while (std::getline(f, line)) ++rows;
  EXPECT_EQ(rows, 4);  // header + 3 epochs
  std::filesystem::remove_all(dir);
}
