// Exact reference gradients (learn/reference.hpp): BPTT, implicit differentiation, finite
// differences and complex step must agree with each other in float64 (spec hep.md §4.5, §8).
#include "eqprop/learn/reference.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "eqprop/core/rng.hpp"

namespace eqprop {
namespace {

// The §8 network 4 -> 5 -> 4 (+ readout 3), or 4 -> 5 -> 3 with the last layer as output.
// Weights truncated normal with std init_scale, biases and readout bias random.
layered_network<double> make_net(activation_kind act, output_kind out, double init_scale, uint64_t seed,
                                 double bias_mean = 0.0, double bias_std = 0.3, std::vector<int> sizes = {}) {
  network_spec spec;
  spec.output = out;
  spec.sizes = out == output_kind::readout ? std::vector<int>{4, 5, 4} : std::vector<int>{4, 5, 3};
  if (!sizes.empty()) spec.sizes = sizes;
  spec.n_readout = out == output_kind::readout ? 3 : 0;
  spec.activation = act;
  spec.init_scale = init_scale;
  spec.seed = seed;
  layered_network<double> net(spec);
  rng_t rng(seed + 1000);
  for (int j = 0; j < net.n_layers(); ++j)
    for (long i = 0; i < net.b(j).size(); ++i) net.b(j)(i) = bias_mean + bias_std * standard_normal(rng);
  for (long i = 0; i < net.b_out().size(); ++i) net.b_out()(i) = 0.3 * standard_normal(rng);
  return net;
}

struct batch {
  matrix<double> x, y;
};

batch make_batch(const layered_network<double>& net, long B, uint64_t seed) {
  rng_t rng(seed);
  batch d;
  d.x.resize(net.spec().sizes[0], B);
  for (long i = 0; i < d.x.size(); ++i) d.x.data()[i] = uniform01(rng);
  const int n_out = net.spec().n_output();
  if (net.spec().output == output_kind::readout) {
    std::vector<int32_t> labels(B);
    for (long b = 0; b < B; ++b) labels[b] = static_cast<int32_t>(random_index(rng, n_out));
    d.y = one_hot<double>(labels, n_out);
  } else {
    d.y.resize(n_out, B);
    for (long i = 0; i < d.y.size(); ++i) d.y.data()[i] = 0.1 + 0.8 * uniform01(rng);
  }
  return d;
}

std::vector<double> run(grad_estimator<double>& est, const layered_network<double>& net, const batch& d,
                        grad_result* res = nullptr) {
  std::vector<double> g(net.n_params(), std::numeric_limits<double>::quiet_NaN());
  grad_result r = est.estimate(net, d.x, d.y, g);
  if (res) *res = r;
  return g;
}

relax_options converged_opts(long max_steps = 2000) {
  relax_options o;
  o.max_steps = max_steps;
  o.tol = 1e-15;
  o.stop_early = true;
  return o;
}

void report(const std::string& what, double v) {
  std::cout << "[reference] " << what << " = " << v << "\n";
  ::testing::Test::RecordProperty(what, std::to_string(v));
}

// ---------------------------------------------------------------------------------------

TEST(ReferenceHelpers, RelativeErrorCosineAndGroups) {
  const std::vector<double> b{3, 4, 0, 1, 0};
  const std::vector<float> a{3, 4, 0, 1, 1};
  EXPECT_NEAR(relative_error(a, b), 1.0 / std::sqrt(26.0), 1e-15);
  EXPECT_NEAR(cosine(b, b), 1.0, 1e-15);
  EXPECT_NEAR(cosine(a, b), 26.0 / (std::sqrt(27.0) * std::sqrt(26.0)), 1e-15);
  const std::vector<double> z(5, 0.0);
  EXPECT_EQ(relative_error(z, z), 0.0);
  EXPECT_TRUE(std::isinf(relative_error(b, z)));
  EXPECT_EQ(cosine(z, z), 1.0);
  EXPECT_EQ(cosine(b, z), 0.0);
  EXPECT_THROW(relative_error(std::vector<double>{1}, b), shape_error);

  // Groups follow param_group_names: layer0, layer1, readout (output layer: no readout group).
  auto net = make_net(activation_kind::hep_sigmoid, output_kind::readout, 0.5, 1);
  std::vector<double> g1(net.n_params(), 1.0), g2 = g1;
  const auto& lay = net.layout();
  g2[lay[2].offset] = 2.0;  // one entry of W1
  const auto rel = per_group_rel_error(lay, g2, g1);
  ASSERT_EQ(rel.size(), 3u);
  EXPECT_EQ(rel[0], 0.0);
  EXPECT_NEAR(rel[1], 1.0 / std::sqrt(double(lay[2].size() + lay[3].size())), 1e-15);
  EXPECT_EQ(rel[2], 0.0);
  for (double c : per_group_cosine(lay, g1, g1)) EXPECT_NEAR(c, 1.0, 1e-15);
  auto net_l = make_net(activation_kind::hep_sigmoid, output_kind::layer, 0.5, 1);
  std::vector<double> h1(net_l.n_params(), 1.0);
  EXPECT_EQ(per_group_rel_error(net_l.layout(), h1, h1).size(), param_group_names(net_l.spec()).size());
}

// BPTT through many steps of a contracting network is implicit differentiation.
TEST(ReferenceBptt, LongHorizonEqualsImplicitDenseAndIterative) {
  auto net = make_net(activation_kind::hep_sigmoid, output_kind::readout, 0.7, 1);
  const batch d = make_batch(net, 3, 11);

  grad_result rb;
  bptt_gradient<double> bptt(400);
  EXPECT_EQ(bptt.name(), "BPTT T=400");
  const auto g_bptt = run(bptt, net, d, &rb);
  EXPECT_EQ(rb.relax_steps, 400);
  EXPECT_EQ(rb.free.steps, 400);
  EXPECT_LT(rb.free.max_residual, 1e-14);  // the 400-step state is the fixed point

  implicit_gradient<double> dense(converged_opts(), adjoint_solver::dense);
  implicit_gradient<double> iter(converged_opts(), adjoint_solver::iterative);
  implicit_gradient<double> autom(converged_opts());
  grad_result ri;
  const auto g_dense = run(dense, net, d, &ri);
  const auto g_iter = run(iter, net, d);
  const auto g_auto = run(autom, net, d);
  EXPECT_EQ(autom.last_solver(), adjoint_solver::dense);  // n = 9 <= 1000
  EXPECT_GT(iter.last_adjoint_iterations(), 1);
  EXPECT_LT(dense.last_adjoint_residual(), 1e-14);
  EXPECT_LT(iter.last_adjoint_residual(), 1e-13);
  EXPECT_TRUE(ri.free.converged());
  EXPECT_EQ(ri.n_dropped, 0);
  EXPECT_NEAR(ri.loss, rb.loss, 1e-14);
  EXPECT_EQ(ri.predictions, rb.predictions);

  const double e_dense = relative_error(g_bptt, g_dense), e_iter = relative_error(g_bptt, g_iter);
  report("bptt400_vs_implicit_dense", e_dense);
  report("bptt400_vs_implicit_iterative", e_iter);
  report("implicit_dense_vs_iterative", relative_error(g_iter, g_dense));
  report("implicit_free_steps", double(ri.free.steps));
  report("implicit_adjoint_iterations", double(iter.last_adjoint_iterations()));
  EXPECT_LT(e_dense, 1e-9);
  EXPECT_LT(e_iter, 1e-9);
  EXPECT_LT(relative_error(g_iter, g_dense), 1e-12);
  // Same solver as `dense`; only summation order may differ.
  EXPECT_LT(relative_error(g_auto, g_dense), 1e-14);
  for (double c : per_group_cosine(net.layout(), g_bptt, g_dense)) EXPECT_GT(c, 1 - 1e-15);

  // Truncation to the last 200 of 400 steps loses only rho^200 of the gradient.
  bptt_gradient<double> trunc(400, 200);
  EXPECT_EQ(trunc.name(), "BPTT T=400 truncate=200");
  const double e_trunc = relative_error(run(trunc, net, d), g_dense);
  report("bptt400_truncate200_vs_implicit", e_trunc);
  EXPECT_LT(e_trunc, 1e-9);
  // A short truncation window does lose part of the gradient.
  bptt_gradient<double> trunc10(400, 10);
  const double e_trunc10 = relative_error(run(trunc10, net, d), g_dense);
  report("bptt400_truncate10_vs_implicit", e_trunc10);
  EXPECT_GT(e_trunc10, 1e-4);
  // truncate = T is no truncation; reusing an estimator on a new batch shape reallocates.
  bptt_gradient<double> full(400, 400);
  // (Not bitwise: Eigen's peeling depends on the alignment of the caller's gradient buffer.)
  EXPECT_LT(relative_error(run(full, net, d), g_bptt), 1e-14);
  const batch d5 = make_batch(net, 5, 12);
  EXPECT_LT(relative_error(run(bptt, net, d5), run(dense, net, d5)), 1e-9);
  EXPECT_LT(relative_error(run(bptt, net, d), g_bptt), 1e-14);
}

struct agree_case {
  activation_kind act;
  output_kind out;
};

class ReferenceAgree : public ::testing::TestWithParam<agree_case> {};

// BPTT (long), implicit, central finite differences and complex step all agree at the fixed point.
TEST_P(ReferenceAgree, AllReferencesAgreeAtTheFixedPoint) {
  const auto [act, out] = GetParam();
  const std::string tag = std::string(to_string(act)) + "_" + std::string(to_string(out));
  // tanh and holotanh have slope 1 (sigmoid(4x-2) up to 1 too): moderate weights contract.
  auto net = make_net(act, out, 0.5, 3, act == activation_kind::holotanh ? 1.0 : 0.0);
  const batch d = make_batch(net, 3, 5);
  const relax_options opt = converged_opts();

  implicit_gradient<double> imp(opt);
  grad_result ri;
  const auto g_imp = run(imp, net, d, &ri);
  ASSERT_TRUE(ri.free.converged());
  EXPECT_NEAR(ri.loss, loss_at_fixed_point(net, d.x, d.y, opt), 1e-15);

  bptt_gradient<double> bptt(400);
  const auto g_bptt = run(bptt, net, d);
  const auto g_fd = finite_difference_gradient(net, d.x, d.y, opt, 1e-6);
  const auto g_fd4 = finite_difference_gradient(net, d.x, d.y, opt, 1e-3, fd_stencil::central4);
  const auto g_cs = complex_step_gradient(net, d.x, d.y, opt);

  const double e_bptt = relative_error(g_bptt, g_imp), e_fd = relative_error(g_fd, g_imp),
               e_fd4 = relative_error(g_fd4, g_imp), e_cs = relative_error(g_cs, g_imp);
  report(tag + "_bptt400_vs_implicit", e_bptt);
  report(tag + "_fd2_vs_implicit", e_fd);
  report(tag + "_fd4_vs_implicit", e_fd4);
  report(tag + "_cs_vs_implicit", e_cs);
  report(tag + "_cs_vs_fd2", relative_error(g_cs, g_fd));
  EXPECT_LT(e_bptt, 1e-7);
  EXPECT_LT(e_fd, 1e-7);
  EXPECT_LT(e_fd4, 1e-7);
  EXPECT_LT(relative_error(g_cs, g_fd), 1e-7);
  EXPECT_LT(relative_error(g_bptt, g_fd), 1e-7);
  EXPECT_LT(e_cs, 1e-10);
  for (double e : per_group_rel_error(net.layout(), g_cs, g_imp)) EXPECT_LT(e, 1e-10);

  // A subset of indices gives the same entries, in the requested order.
  const std::vector<long> idx{net.n_params() - 1, 0, 7};
  const auto sub = complex_step_gradient(net, d.x, d.y, opt, 1e-30, idx);
  for (size_t k = 0; k < idx.size(); ++k) EXPECT_EQ(sub[k], g_cs[idx[k]]);
}

INSTANTIATE_TEST_SUITE_P(Reference, ReferenceAgree,
                         ::testing::Values(agree_case{activation_kind::hep_sigmoid, output_kind::readout},
                                           agree_case{activation_kind::hep_sigmoid, output_kind::layer},
                                           agree_case{activation_kind::holotanh, output_kind::readout},
                                           agree_case{activation_kind::holotanh, output_kind::layer},
                                           agree_case{activation_kind::tanh, output_kind::readout},
                                           agree_case{activation_kind::tanh, output_kind::layer}),
                         [](const auto& info) {
                           return std::string(to_string(info.param.act)) + "_" + std::string(to_string(info.param.out));
                         });

// One, two and three hidden layers (the middle layer of K = 3 is driven from both sides).
TEST(ReferenceAgreeDepth, BpttImplicitAndComplexStepAgreeForEveryDepth) {
  const std::vector<std::vector<int>> archs{{4, 5}, {4, 5, 4}, {3, 4, 5, 4}};
  for (const auto& sizes : archs) {
    for (activation_kind act : {activation_kind::hep_sigmoid, activation_kind::tanh}) {
      auto net = make_net(act, output_kind::readout, 0.5, 9, 0.0, 0.3, sizes);
      const batch d = make_batch(net, 2, 4);
      const std::string tag = fmt::format("K{}_{}", net.n_layers(), to_string(act));
      implicit_gradient<double> dense(converged_opts(), adjoint_solver::dense);
      implicit_gradient<double> iter(converged_opts(), adjoint_solver::iterative);
      bptt_gradient<double> bptt(400);
      const auto g_d = run(dense, net, d), g_i = run(iter, net, d), g_b = run(bptt, net, d);
      const auto g_cs = complex_step_gradient(net, d.x, d.y, converged_opts());
      report(tag + "_cs_vs_implicit_dense", relative_error(g_cs, g_d));
      report(tag + "_bptt400_vs_implicit_dense", relative_error(g_b, g_d));
      EXPECT_LT(relative_error(g_cs, g_d), 1e-10) << tag;
      EXPECT_LT(relative_error(g_i, g_d), 1e-12) << tag;
      EXPECT_LT(relative_error(g_b, g_d), 1e-9) << tag;
      const auto g_cs3 = complex_step_gradient_steps(net, d.x, d.y, 3);
      bptt_gradient<double> b3(3);
      EXPECT_LT(relative_error(run(b3, net, d), g_cs3), 1e-12) << tag;
    }
  }
}

// With few steps BPTT is the gradient of the T-step loss, not of the fixed-point loss.
TEST(ReferenceBptt, FewStepsIsTheTStepGradient) {
  for (output_kind out : {output_kind::readout, output_kind::layer}) {
    auto net = make_net(activation_kind::hep_sigmoid, out, 0.7, 1);
    const batch d = make_batch(net, 3, 11);
    const std::string tag = std::string("T3_") + std::string(to_string(out));
    bptt_gradient<double> bptt(3);
    grad_result r;
    const auto g3 = run(bptt, net, d, &r);
    EXPECT_NEAR(r.loss, loss_after_steps(net, d.x, d.y, 3), 1e-15);
    EXPECT_FALSE(r.free.converged());
    implicit_gradient<double> imp(converged_opts());
    const auto g_imp = run(imp, net, d);
    relax_options t3;
    t3.max_steps = 3;
    t3.stop_early = false;
    const auto g_fd = finite_difference_gradient_steps(net, d.x, d.y, t3.max_steps, 1e-6);
    const auto g_cs = complex_step_gradient_steps(net, d.x, d.y, 3);
    const double e_imp = relative_error(g3, g_imp), e_fd = relative_error(g3, g_fd), e_cs = relative_error(g3, g_cs);
    report(tag + "_bptt_vs_implicit", e_imp);
    report(tag + "_bptt_vs_fd2_of_T_step_loss", e_fd);
    report(tag + "_bptt_vs_cs_of_T_step_loss", e_cs);
    EXPECT_GT(e_imp, 1e-2);  // the check can fail
    EXPECT_LT(e_fd, 1e-7);
    EXPECT_LT(e_cs, 1e-12);
    // Truncated BPTT is not the T-step gradient either.
    bptt_gradient<double> trunc(3, 1);
    EXPECT_GT(relative_error(run(trunc, net, d), g_fd), 1e-3);
  }
}

// half_clamp01 (real only): BPTT equals finite differences of the T-step loss away from the kinks.
TEST(ReferenceBptt, HalfClamp01MatchesFiniteDifferencesAwayFromKinks) {
  auto net = make_net(activation_kind::half_clamp01, output_kind::readout, 0.7, 21, 1.0, 0.3);
  const batch d = make_batch(net, 3, 23);
  const long T = 6;
  // Precondition: no pre-activation within 1e-3 of a kink (0 or 2) during the T steps.
  relax_state<double> st;
  st.set_input(net, d.x, d.y);
  double min_dist = std::numeric_limits<double>::infinity();
  long n_linear = 0;
  for (long t = 0; t < T; ++t) {
    st.step(net, 0.0);
    for (const auto& p : st.pre())
      for (long i = 0; i < p.size(); ++i) {
        const double v = p.data()[i];
        min_dist = std::min({min_dist, std::abs(v), std::abs(v - 2.0)});
        n_linear += (v > 0 && v < 2);
      }
  }
  report("half_clamp01_min_kink_distance", min_dist);
  ASSERT_GT(min_dist, 1e-3);
  ASSERT_GT(n_linear, 0);  // the gradient flows through the states

  bptt_gradient<double> bptt(T);
  const auto g = run(bptt, net, d);
  const auto g_fd = finite_difference_gradient_steps(net, d.x, d.y, T, 1e-6);
  const double e = relative_error(g, g_fd);
  report("half_clamp01_T6_bptt_vs_fd2", e);
  EXPECT_LT(e, 1e-7);
  for (double c : per_group_cosine(net.layout(), g, g_fd)) EXPECT_GT(c, 1 - 1e-12);
  EXPECT_THROW(complex_step_gradient_steps(net, d.x, d.y, T), config_error);
}

TEST(ReferenceImplicit, ThrowsWhenTheFreePhaseDoesNotConverge) {
  auto net = make_net(activation_kind::hep_sigmoid, output_kind::readout, 0.7, 1);
  const batch d = make_batch(net, 3, 11);
  std::vector<double> g(net.n_params(), 0.0);
  relax_options two;
  two.max_steps = 2;
  implicit_gradient<double> imp(two);
  try {
    imp.estimate(net, d.x, d.y, g);
    FAIL() << "no convergence_error";
  } catch (const convergence_error& e) {
    EXPECT_EQ(e.iterations, 2);
    EXPECT_GT(e.residual, 1e-3);
    EXPECT_NE(std::string(e.what()).find("did not reach a fixed point"), std::string::npos) << e.what();
  }
  EXPECT_THROW(loss_at_fixed_point(net, d.x, d.y, two), convergence_error);
  EXPECT_THROW(finite_difference_gradient(net, d.x, d.y, two), convergence_error);
  EXPECT_THROW(complex_step_gradient(net, d.x, d.y, two), convergence_error);

  // This seed's synchronous iteration falls into a period-2 cycle (residual 1.6 forever).
  auto osc = make_net(activation_kind::hep_sigmoid, output_kind::readout, 0.7, 7);
  const batch dosc = make_batch(osc, 3, 11);
  implicit_gradient<double> imp_osc(converged_opts(3000));
  std::vector<double> go(osc.n_params(), 0.0);
  try {
    imp_osc.estimate(osc, dosc.x, dosc.y, go);
    FAIL() << "no convergence_error";
  } catch (const convergence_error& e) {
    report("oscillating_net_residual", e.residual);
    EXPECT_GT(e.residual, 0.1);
    EXPECT_EQ(e.iterations, 3000);
  }
  // BPTT of the T-step loss is still defined there.
  bptt_gradient<double> bptt_osc(50);
  for (double v : run(bptt_osc, osc, dosc)) EXPECT_TRUE(std::isfinite(v));

  // Huge weights with tanh.
  auto wild = make_net(activation_kind::tanh, output_kind::readout, 8.0, 5);
  const batch dw = make_batch(wild, 3, 6);
  implicit_gradient<double> imp_w(converged_opts(1000));
  std::vector<double> gw(wild.n_params(), 0.0);
  EXPECT_THROW(imp_w.estimate(wild, dw.x, dw.y, gw), convergence_error);

  // The iterative adjoint solver reports when it runs out of iterations.
  implicit_options io;
  io.free = converged_opts();
  io.solver = adjoint_solver::iterative;
  io.adjoint_max_iter = 3;
  implicit_gradient<double> few_iter(io);
  EXPECT_THROW(few_iter.estimate(net, d.x, d.y, g), convergence_error);
  EXPECT_EQ(few_iter.last_adjoint_iterations(), 3);

  // Bad configuration and shapes.
  EXPECT_THROW(bptt_gradient<double>(0), config_error);
  EXPECT_THROW(bptt_gradient<double>(3, 4), config_error);
  std::vector<double> short_g(3);
  bptt_gradient<double> bptt(3);
  EXPECT_THROW(bptt.estimate(net, d.x, d.y, short_g), shape_error);
}

// Policies for samples that did not converge. relax() stops the whole batch at the first
// non-finite sample, so the drop/keep arithmetic is checked on finite, slow samples.
TEST(ReferenceImplicit, NonConvergedSamplesAreDroppedAndCounted) {
  auto net = make_net(activation_kind::hep_sigmoid, output_kind::readout, 0.7, 1);
  const batch d = make_batch(net, 4, 13);
  const long B = d.x.cols();
  // Steps each sample needs alone to reach tol.
  relax_options probe;
  probe.max_steps = 2000;
  probe.tol = 1e-10;
  probe.stop_early = true;
  std::vector<long> need(B);
  for (long b = 0; b < B; ++b) {
    relax_state<double> st;
    st.set_input(net, d.x.col(b), d.y.col(b));
    need[b] = st.relax(net, 0.0, probe).steps;
  }
  const long lo = *std::min_element(need.begin(), need.end()), hi = *std::max_element(need.begin(), need.end());
  ASSERT_LT(lo, hi);
  implicit_options o;
  o.free.max_steps = (lo + hi) / 2;
  o.free.tol = 1e-10;
  o.free.stop_early = false;
  std::vector<long> conv;
  for (long b = 0; b < B; ++b)
    if (need[b] <= o.free.max_steps) conv.push_back(b);
  ASSERT_GT(conv.size(), 0u);
  ASSERT_LT(conv.size(), size_t(B));
  batch sub;
  sub.x.resize(d.x.rows(), long(conv.size()));
  sub.y.resize(d.y.rows(), long(conv.size()));
  for (size_t k = 0; k < conv.size(); ++k) sub.x.col(k) = d.x.col(conv[k]), sub.y.col(k) = d.y.col(conv[k]);

  implicit_gradient<double> err(o);
  std::vector<double> g(net.n_params());
  EXPECT_THROW(err.estimate(net, d.x, d.y, g), convergence_error);
  const auto g_sub = run(err, net, sub);

  o.policy = nonconvergence_policy::drop;
  implicit_gradient<double> drop(o);
  grad_result r;
  const auto g_drop = run(drop, net, d, &r);
  EXPECT_EQ(r.n_dropped, B - long(conv.size()));
  EXPECT_EQ(r.free.n_not_converged, B - long(conv.size()));
  EXPECT_EQ(r.predictions.size(), size_t(B));
  report("drop_policy_vs_subset", relative_error(g_drop, g_sub));
  EXPECT_LT(relative_error(g_drop, g_sub), 1e-12);
  EXPECT_NEAR(r.loss, loss_at_fixed_point(net, sub.x, sub.y, o.free), 1e-12);

  o.policy = nonconvergence_policy::keep;
  implicit_gradient<double> keep(o);
  const auto g_keep = run(keep, net, d, &r);
  EXPECT_EQ(r.n_dropped, 0);
  for (double v : g_keep) EXPECT_TRUE(std::isfinite(v));

  // Non-finite states (a NaN input): both references refuse.
  batch bad = d;
  bad.x(1, 1) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(err.estimate(net, bad.x, bad.y, g), convergence_error);
  bptt_gradient<double> bptt(10);
  EXPECT_THROW(bptt.estimate(net, bad.x, bad.y, g), convergence_error);
}

// The float instantiations compute the same gradients to float precision.
TEST(ReferenceFloat, FloatMatchesDouble) {
  auto net = make_net(activation_kind::hep_sigmoid, output_kind::readout, 0.7, 1);
  const batch d = make_batch(net, 3, 11);
  const layered_network<float> netf = net.cast<float>();
  const matrix<float> xf = d.x.cast<float>(), yf = d.y.cast<float>();
  std::vector<float> gf(netf.n_params());

  bptt_gradient<double> bd(40);
  bptt_gradient<float> bf(40);
  bf.estimate(netf, xf, yf, gf);
  const double e_bptt = relative_error(gf, run(bd, net, d));
  relax_options of;
  of.max_steps = 500;
  of.tol = 3e-6;
  of.stop_early = true;
  implicit_gradient<float> imf(of, adjoint_solver::iterative);
  imf.estimate(netf, xf, yf, gf);
  implicit_gradient<double> imd(converged_opts());
  const double e_imp = relative_error(gf, run(imd, net, d));
  report("float_vs_double_bptt40", e_bptt);
  report("float_vs_double_implicit", e_imp);
  EXPECT_LT(e_bptt, 1e-5);
  EXPECT_LT(e_imp, 1e-4);
  EXPECT_NEAR(loss_at_fixed_point(netf, xf, yf, of), loss_at_fixed_point(net, d.x, d.y, converged_opts()), 1e-5);
}

}  // namespace
}  // namespace eqprop
