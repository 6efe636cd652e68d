// Parameter constraints (train/constraints.hpp): boxes, masks and L1 shrinkage applied by
// the optimizer after every step, exactly as the per-network code they replace.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/params.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/learn/deep.hpp"
#include "eqprop/model/gle_network.hpp"
#include "eqprop/model/graph_network.hpp"
#include "eqprop/train/constraints.hpp"
#include "eqprop/train/deep_trainer.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "eqprop/train/optimizer.hpp"
#include "test_util.hpp"

using namespace eqprop;

namespace {

// W: 2 x 3 (6 entries), b: 4 entries, values spread over both signs, with zeros and
// entries smaller than the L1 thresholds used below.
template <class R>
param_buffer<R> small_buffer() {
  param_buffer<R> p;
  p.add("W", 0, 2, 3);
  p.add("b", 1, 4, 1);
  const double v[] = {0.7, -0.03, 0.0, -1.25, 0.2, 0.049, -0.4, 3.0, -0.0, 0.01};
  for (std::size_t i = 0; i < p.size(); ++i) p.values()[i] = R(v[i]);
  return p;
}

template <class R>
std::vector<R> copy_of(const param_buffer<R>& p) {
  return {p.values().begin(), p.values().end()};
}

template <class R>
R sign_of(R w) {
  return R((w > R(0)) - (w < R(0)));
}

template <class R>
void expect_bits_equal(std::span<const R> got, const std::vector<R>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "entry " << i;
}

}  // namespace

TEST(Constraints, BoxClampsExactlyAndLeavesOtherBlocks) {
  auto run = []<class R>(R) {
    auto p = small_buffer<R>();
    auto want = copy_of(p);
    param_constraints c(p.layout());
    c.add_box("b", -0.3, 0.1);
    c.apply(p.values());
    for (long i = 6; i < 10; ++i) want[i] = std::min(std::max(want[i], R(-0.3)), R(0.1));
    expect_bits_equal<R>(p.values(), want);
    EXPECT_EQ(p.values()[6], R(-0.3));
    EXPECT_EQ(p.values()[7], R(0.1));
    // one-sided: w >= 0 on W
    c.add_box("W", 0.0, std::numeric_limits<double>::infinity());
    c.apply(p.values());
    for (long i = 0; i < 6; ++i) want[i] = std::max(want[i], R(0));
    expect_bits_equal<R>(p.values(), want);
  };
  run(float{});
  run(double{});
}

TEST(Constraints, MaskZeroesExactlyAndSurvivesAdamStep) {
  auto p = small_buffer<double>();
  const std::vector<char> keep = {1, 0, 1, 1, 0, 1};  // W(1,0) and W(0,2) forced to 0
  param_constraints c(p.layout());
  c.add_mask("W", keep);
  c.apply(p.values());
  EXPECT_EQ(p.values()[1], 0.0);
  EXPECT_EQ(p.values()[4], 0.0);
  EXPECT_EQ(p.values()[0], 0.7);

  optimizer_options oo;
  oo.kind = optimizer_kind::adam;
  oo.lr = 0.1;
  optimizer<double> free_opt(oo, p.layout(), 2), opt(oo, p.layout(), 2);
  opt.set_constraints(c);
  auto q = p;
  const std::vector<double> g = {0.3, -2.0, 0.1, 0.5, 1.5, -0.2, 0.4, 0.0, -1.0, 0.05};
  for (int s = 0; s < 3; ++s) {
    opt.step(p.values(), g, 1.0);
    free_opt.step(q.values(), g, 1.0);
  }
  EXPECT_NE(q.values()[1], 0.0) << "without the mask the step moves the entry";
  auto want = copy_of(q);
  want[1] = want[4] = 0.0;
  expect_bits_equal<double>(p.values(), want);
  // pruning: the mask is replaced through the optimizer
  auto pruned = keep;
  pruned[0] = 0;
  opt.constraints().set_mask("W", pruned);
  opt.step(p.values(), g, 1.0);
  EXPECT_EQ(p.values()[0], 0.0);
  EXPECT_EQ(opt.constraints().mask("W"), pruned);
}

TEST(Constraints, L1SubgradientAndProximalMatchTheFormulas) {
  auto run = []<class R>(R) {
    for (auto form : {l1_form::subgradient, l1_form::proximal})
      for (double factor : {1.0, 0.5}) {
        auto p = small_buffer<R>();
        auto want = copy_of(p);
        const double lambda = 0.05;
        param_constraints c(p.layout());
        c.add_l1("W", lambda, form);
        c.apply(p.values(), factor);
        const R t = R(lambda * factor);
        for (long i = 0; i < 6; ++i) {
          const R w = want[i];
          want[i] = form == l1_form::subgradient ? w - t * sign_of(w) : sign_of(w) * std::max(std::abs(w) - t, R(0));
        }
        expect_bits_equal<R>(p.values(), want);
      }
  };
  run(float{});
  run(double{});
}

// DEEP's constraints (deep_constraints): the published shrinkage formulas on the allowed
// weights, zero on structural and pruned edges, bit for bit.
TEST(Constraints, DeepMaskAndL1MatchTheFormulas) {
  for (auto mode : {deep_l1::subgradient, deep_l1::soft_threshold}) {
    graph_spec g;
    g.n_input = 2;
    g.hidden = {3, 2};
    g.n_output = 1;
    g.topology = graph_topology::layered;
    g.init_std = 0.3;
    rng_t rng(7);
    graph_network<double> net(g, rng);
    const int n = net.size();
    net.pruned()(3, 6) = net.pruned()(8, 6) = true;
    net.weights()(0, 6) = 0.5;  // outside the structural mask: the mask zeroes it
    const matrix<double> w0 = net.weights();
    deep_learning learn;
    learn.l1 = 0.1;
    learn.l1_mode = mode;
    deep_constraints(net, learn).apply(net.params().values());
    long moved = 0;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < n; ++i) {
        const double w = w0(i, j), t = learn.l1;
        double want = mode == deep_l1::subgradient ? w - t * ((w > 0) - (w < 0))
                                                   : ((w > 0) - (w < 0)) * std::max(std::abs(w) - t, 0.0);
        if (!net.in_graph(i, j)) want = 0;
        EXPECT_EQ(net.weights()(i, j), want) << i << "," << j;
        moved += want != 0;
      }
    EXPECT_GT(moved, 0);
  }
}

TEST(Constraints, OrderIsL1ThenBoxThenMask) {
  param_buffer<double> p;
  p.add("w", 0, 3, 1);
  p.values()[0] = 1.0, p.values()[1] = 1.0, p.values()[2] = 1.0;
  param_constraints c(p.layout());
  c.add_mask("w", {1, 1, 0}).add_box("w", 0.6, 2.0).add_l1("w", 0.5, l1_form::proximal);
  c.apply(p.values());
  EXPECT_EQ(p.values()[0], 0.6) << "shrinkage (1 -> 0.5) before the box (0.5 -> 0.6)";
  EXPECT_EQ(p.values()[2], 0.0) << "the mask last, even against the box";
}

TEST(Constraints, BadConfigNamesTheBlock) {
  using test::error_of;
  const auto p = small_buffer<double>();
  param_constraints c(p.layout());
  constexpr double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  auto has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  };
  has(error_of<config_error>([&] { c.add_box("tau_m3", 0, 1); }), "'tau_m3'");
  has(error_of<config_error>([&] { c.add_box("tau_m3", 0, 1); }), "blocks: W, b");
  has(error_of<config_error>([&] { c.add_box("b", 2, 1); }), "'b'");
  has(error_of<config_error>([&] { c.add_box("b", nan, 1); }), "'b'");
  has(error_of<config_error>([&] { c.add_box("b", 0, nan); }), "'b'");
  has(error_of<config_error>([&] { c.add_box("b", inf, inf); }), "'b'");
  has(error_of<config_error>([&] { c.add_l1("W", -0.1, l1_form::proximal); }), "'W'");
  has(error_of<config_error>([&] { c.add_l1("W", nan, l1_form::subgradient); }), "'W'");
  has(error_of<config_error>([&] { c.add_l1("x", 0.1, l1_form::subgradient); }), "'x'");
  has(error_of<config_error>([&] { c.add_mask("W", {1, 0}); }), "'W'");
  has(error_of<config_error>([&] { (void)c.mask("W"); }), "'W'");
  EXPECT_TRUE(c.empty()) << "a refused constraint is not added";
  c.add_box("b", 0, 1);
  has(error_of<config_error>([&] { c.add_box("b", 0, 2); }), "'b'");
  std::vector<double> short_buffer(3);
  EXPECT_THROW(c.apply(std::span<double>(short_buffer)), shape_error);
  optimizer<double> opt(optimizer_options{}, {{"other", 0, 10, 1, 0}}, 1);
  EXPECT_THROW(opt.set_constraints(c), internal_error);
}

// GLE's learned tau_m: the box constraint attached to the optimizer gives the parameters of
// a direct clamp of tau_m into [tau_min, tau_max] after every optimizer step, bit for bit.
TEST(Constraints, GleTauBoxMatchesDirectClampBitForBit) {
  auto run = []<class R>(R) {
    using mat = Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic>;
    gle_spec s;
    s.n_input = 2;
    s.dt = 0.1;
    s.loss = gle_loss::mse;
    s.learn_tau_m = true;
    s.tau_min = 0.3;
    s.tau_max = 0.9;
    s.layers.push_back(gle_layer(3, activation_kind::tanh, {0.35, 0.6, 0.85}, {0.1, 0.6, 0.1}));
    s.layers.push_back(gle_layer(2, activation_kind::linear, {0.5, 0.8}, {0.5, 0.8}));
    gle_network<R> a(s), b(s);
    optimizer_options oo;
    oo.kind = optimizer_kind::adam;
    oo.lr = 0.05;
    optimizer<R> opt_a(oo, a.layout(), a.n_groups()), opt_b(oo, b.layout(), b.n_groups());
    opt_a.set_constraints(gle_tau_constraints(a));
    a.reset_state(2);
    b.reset_state(2);
    std::vector<R> ga(a.params().size()), gb(b.params().size());
    mat x(2, 2), y(2, 2);
    long clamped = 0;
    for (int k = 0; k < 60; ++k) {
      x << R(std::sin(0.3 * k)), R(1), R(-0.5), R(std::cos(0.2 * k));
      y << R(1), R(-1), R(0.5), R(2);
      a.step(x, &y, R(1), ga);
      b.step(x, &y, R(1), gb);
      opt_a.step(a.params(), ga, 1.0);
      opt_b.step(b.params(), gb, 1.0);
      for (int l = 0; l < b.n_layers(); ++l) {
        auto t = b.tau_m(l);
        for (long i = 0; i < t.size(); ++i) clamped += t[i] < R(s.tau_min) || t[i] > R(s.tau_max);
        t = t.cwiseMax(R(s.tau_min)).cwiseMin(R(s.tau_max));
      }
      std::span<const R> pa = a.params();
      expect_bits_equal<R>(pa, std::vector<R>(b.params().begin(), b.params().end()));
    }
    EXPECT_GT(clamped, 0) << "the test must drive tau_m out of [tau_min, tau_max]";
  };
  run(float{});
  run(double{});
}
