// Gradient estimators against exact references (hep.md §8, issue: core).
#include <cmath>
#include <filesystem>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/matmul.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/cauchy_ep.hpp"
#include "eqprop/learn/reference.hpp"
#include "test_util.hpp"

using namespace eqprop;

namespace {

// The toy network of the spec's float64 error table: 4 -> 5 -> softmax readout 3, sigma(4x-2).
struct toy {
  layered_network<double> net;
  matrix<double> x, y;
  toy(uint64_t seed = 3, long batch = 2, double scale = 0.5, activation_kind act = activation_kind::hep_sigmoid) {
    network_spec s;
    s.sizes = {4, 5};
    s.n_readout = 3;
    s.activation = act;
    s.init_scale = scale;
    s.seed = seed;
    net = layered_network<double>(s);
    rng_t rng(seed + 100);
    test::random_batch(rng, 4, batch, 3, x, y);
  }
};

const relax_options converged{5000, 1e-15, true};

ep_options ep_with(int N, double beta, relax_options free, relax_options nudged) {
  ep_options o;
  o.n_points = N;
  o.beta = beta;
  o.free = free;
  o.nudged = nudged;
  return o;
}

double ep_error(const toy& t, const std::vector<double>& ref, int N, double beta,
                ep_start start = ep_start::free_state) {
  ep_options o;
  o.n_points = N;
  o.beta = beta;
  o.free = converged;
  o.nudged = converged;
  o.start = start;
  cauchy_ep<double> est(o);
  std::vector<double> g(t.net.n_params());
  est.estimate(t.net, t.x, t.y, g);
  return relative_error(g, ref);
}

std::vector<double> exact(const toy& t) {
  std::vector<double> ref(t.net.n_params());
  implicit_gradient<double> ig(converged);
  ig.estimate(t.net, t.x, t.y, ref);
  return ref;
}

}  // namespace

// hep.md §8 (a): the error of the N-point estimator falls like |beta|^N.
TEST(EstimatorScaling, LogLogSlopeIsN) {
  toy t;
  const auto ref = exact(t);
  for (int N = 1; N <= 4; ++N) {
    const double e1 = ep_error(t, ref, N, 0.1), e2 = ep_error(t, ref, N, 0.05), e3 = ep_error(t, ref, N, 0.025);
    const double slope = std::log(e1 / e3) / std::log(0.1 / 0.025);
    std::printf("N=%d  err(0.1)=%.3e err(0.05)=%.3e err(0.025)=%.3e slope=%.3f\n", N, e1, e2, e3, slope);
    EXPECT_NEAR(slope, double(N), 0.15) << "N=" << N;
  }
}

// The hard sigmoid clamp(x, 0, 1) of the 2021 EP code's MNIST ConvNet: symmetric EP against
// the exact implicit gradient, error falling like |beta|^2 while no nudge moves a unit across a
// kink (here up to |beta| = 0.02; at 0.1 one crosses and the error is 6.6e-2).
TEST(EstimatorScaling, Clamp01SymmetricEpMatchesTheImplicitGradient) {
  toy t(3, 2, 1.0, activation_kind::clamp01);
  const auto ref = exact(t);
  double norm = 0;
  for (double v : ref) norm += v * v;
  ASSERT_GT(norm, 1e-6);
  const double e1 = ep_error(t, ref, 2, 0.02), e2 = ep_error(t, ref, 2, 0.01);
  std::printf("clamp01, N=2: err(0.02)=%.3e err(0.01)=%.3e, N=1: err(0.01)=%.3e\n", e1, e2, ep_error(t, ref, 1, 0.01));
  EXPECT_LT(e1, 2e-3);
  EXPECT_NEAR(std::log(e1 / e2) / std::log(2.0), 2.0, 0.2);
}

// hep.md §8 (b), (c): magnitudes of the float64 table at |beta| = 0.1 and N = 8 below 1e-8.
TEST(EstimatorScaling, MagnitudesAtBeta01) {
  toy t;
  const auto ref = exact(t);
  const double e1 = ep_error(t, ref, 1, 0.1), e2 = ep_error(t, ref, 2, 0.1), e4 = ep_error(t, ref, 4, 0.1),
               e8 = ep_error(t, ref, 8, 0.1);
  std::printf("|beta|=0.1: N=1 %.2e  N=2 %.2e  N=4 %.2e  N=8 %.2e\n", e1, e2, e4, e8);
  // Same order as the spec's table (5.0e-2, 2.5e-3, 1.7e-5, 3.2e-9) for moderate weights.
  EXPECT_GT(e1, 1e-2);
  EXPECT_LT(e1, 2.5e-1);
  EXPECT_GT(e2, 5e-4);
  EXPECT_LT(e2, 1.25e-2);
  EXPECT_GT(e4, 3e-6);
  EXPECT_LT(e4, 1e-4);
  EXPECT_LT(e8, 1e-8);
}

// The finite-radius estimate converges geometrically in N at fixed |beta|.
TEST(EstimatorScaling, ExactAsNGrows) {
  toy t;
  const auto ref = exact(t);
  double prev = 1;
  for (int N : {2, 4, 6, 8, 12}) {
    const double e = ep_error(t, ref, N, 0.2);
    EXPECT_LT(e, prev) << "N=" << N;
    prev = e;
  }
  EXPECT_LT(prev, 1e-9);
}

// Warm start around the circle (no conjugate trick, all complex) gives the same estimate
// as the conjugate-pair path from the free state when every point converges.
TEST(EstimatorPaths, WarmStartEqualsConjugatePairs) {
  toy t;
  const auto ref = exact(t);
  for (int N : {2, 3, 5, 8}) {
    ep_options o;
    o.n_points = N;
    o.beta = 0.2;
    o.free = converged;
    o.nudged = converged;
    cauchy_ep<double> a(o);
    o.start = ep_start::warm;
    cauchy_ep<double> b(o);
    std::vector<double> ga(t.net.n_params()), gb(t.net.n_params());
    a.estimate(t.net, t.x, t.y, ga);
    b.estimate(t.net, t.x, t.y, gb);
    EXPECT_LT(relative_error(gb, ga), 1e-11) << "N=" << N;
  }
}

// hep.md §8 (d): at |beta| = 1 the complex iteration does not converge for some phases;
// the library reports it and never silently returns a value.
TEST(EstimatorFailures, NonConvergenceIsReportedAndHandled) {
  toy t(3, 2, 1.0);  // weights of std 1: the complex iteration diverges for some phases at |beta| = 1
  ep_options o;
  o.n_points = 8;
  o.beta = 1.0;
  o.free = converged;
  o.nudged = relax_options{400, 1e-12, true};
  o.on_failure = nonconvergence_policy::keep;
  {
    cauchy_ep<double> est(o);
    std::vector<double> g(t.net.n_params());
    auto r = est.estimate(t.net, t.x, t.y, g);
    long nc = 0;
    for (const auto& p : r.points) nc += p.n_not_converged;
    std::printf("|beta|=1 N=8: %ld non-converged sample-points\n", nc);
    EXPECT_GT(nc, 0);
    EXPECT_EQ(r.free.n_not_converged, 0);
    // Inside the convergence radius every phase converges.
    ep_options small = o;
    small.beta = 0.1;
    cauchy_ep<double> ok(small);
    auto r2 = ok.estimate(t.net, t.x, t.y, g);
    for (const auto& p : r2.points) EXPECT_EQ(p.n_not_converged, 0);
  }
  o.on_failure = nonconvergence_policy::error;
  o.fail_residual = 1e-6;
  {
    cauchy_ep<double> est(o);
    std::vector<double> g(t.net.n_params());
    EXPECT_THROW(est.estimate(t.net, t.x, t.y, g), convergence_error);
  }
  o.on_failure = nonconvergence_policy::drop;
  {
    cauchy_ep<double> est(o);
    std::vector<double> g(t.net.n_params());
    auto r = est.estimate(t.net, t.x, t.y, g);
    EXPECT_GT(r.n_dropped, 0);
    for (double v : g) EXPECT_TRUE(std::isfinite(v));
  }
}

TEST(EstimatorFailures, DivergedStatesAreDroppedNotAveraged) {
  toy t(5, 3);
  // One sample with an absurd input makes its states non-finite (exp overflow in NaN).
  t.x(0, 1) = std::numeric_limits<double>::quiet_NaN();
  ep_options o;
  o.n_points = 2;
  o.beta = 0.1;
  cauchy_ep<double> est(o);
  std::vector<double> g(t.net.n_params());
  auto r = est.estimate(t.net, t.x, t.y, g);
  EXPECT_EQ(r.n_dropped, 1);
  EXPECT_EQ(r.free.n_non_finite, 1);
  for (double v : g) EXPECT_TRUE(std::isfinite(v));
}

TEST(EstimatorConfig, NonHolomorphicActivationRefusedForComplexPoints) {
  network_spec s;
  s.sizes = {4, 5};
  s.n_readout = 3;
  s.activation = activation_kind::half_clamp01;
  layered_network<double> net(s);
  matrix<double> x = matrix<double>::Constant(4, 1, 0.5);
  matrix<double> y = one_hot<double>(std::vector<int32_t>{1}, 3);
  std::vector<double> g(net.n_params());
  ep_options o;
  o.n_points = 4;
  cauchy_ep<double> holo(o);
  EXPECT_THROW(holo.estimate(net, x, y, g), config_error);
  o.n_points = 2;  // +-beta runs in real arithmetic: allowed
  cauchy_ep<double> sym(o);
  EXPECT_NO_THROW(sym.estimate(net, x, y, g));
  ep_options bad;
  bad.n_points = 0;
  EXPECT_THROW(cauchy_ep<double>{bad}, config_error);
  bad.n_points = 2;
  bad.beta = -1;
  EXPECT_THROW(cauchy_ep<double>{bad}, config_error);
}

namespace {
// The float32 784-256-256 network (readout 10, sigmoid, init 0.05, seed 1) of the next tests,
// on 10 MNIST test images (random inputs where the data is missing), with the float64 BPTT
// gradient of the 100-step loss.
struct mnist_sized_case {
  layered_network<float> net;
  matrix<float> x, y;
  std::vector<double> ref;
  mnist_sized_case() {
    network_spec s;
    s.sizes = {784, 256, 256};
    s.n_readout = 10;
    s.activation = activation_kind::hep_sigmoid;
    s.init_scale = 0.05;
    s.seed = 1;
    net = layered_network<float>(s);
    matrix<double> x64;
    std::vector<int32_t> labels;
    const auto data_dir = std::filesystem::path(EQPROP_SOURCE_DIR) / ".." / "shared" / "data";
    if (std::filesystem::exists(data_dir / "mnist")) {
      auto split = load_dataset("mnist", data_dir);
      x64 = split.test.x.leftCols(10).cast<double>();
      labels.assign(split.test.y.begin(), split.test.y.begin() + 10);
    } else {
      rng_t rng(7);
      x64.resize(784, 10);
      for (long i = 0; i < x64.size(); ++i) x64.data()[i] = uniform01(rng);
      for (int b = 0; b < 10; ++b) labels.push_back(b);
    }
    const matrix<double> y64 = one_hot<double>(labels, 10);
    ref.resize(net.n_params());
    bptt_gradient<double> bptt(100);
    bptt.estimate(net.cast<double>(), x64, y64, ref);
    x = x64.cast<float>();
    y = y64.cast<float>();
  }
};
}  // namespace

// Issue: float32 784-256-256 (readout 10), init 0.05, batch 10, 100 free + 100 nudged
// steps: holomorphic N >= 4 at |beta| = 0.5 reaches cosine >= 0.9999 with BPTT.
TEST(EstimatorFloat32, MnistSizedNetworkMatchesBptt) {
  const mnist_sized_case t;
  const auto& [net, x, y, ref] = t;
  double cos_classic = 0;
  for (int N : {1, 4, 6}) {
    cauchy_ep<float> est(ep_with(N, 0.5, relax_options{100}, relax_options{100}));
    std::vector<float> g(net.n_params());
    est.estimate(net, x, y, g);
    const double c = cosine(std::vector<double>(g.begin(), g.end()), ref);
    std::printf("float32 784-256-256, |beta|=0.5, N=%d: cosine with BPTT %.6f\n", N, c);
    if (N == 1) cos_classic = c;
    else EXPECT_GE(c, 0.9999) << "N=" << N;
  }
  EXPECT_LT(cos_classic, 0.9999);  // classic EP at the same |beta| is visibly biased
}

// relax.precision = bfloat16 (reduced precision measured against float32). Same
// network as above, symmetric EP, 100 + 100 steps, BPTT reference. Rounding the states to
// bfloat16 at every step leaves the relaxation at a residual floor (about 1e-2 here, against
// 1e-6 in float32), and the EP difference quotient divides that jitter by 2|beta|: the error
// is far above float32's at |beta| = 0.1 and falls with |beta|. Measured on the MNIST batch:
// free residual 1.2e-2 (float32 1.2e-6); rel. error 0.095 (float32 1.9e-4) at |beta| = 0.1,
// 0.024 at 0.5 (random inputs: 0.165 and 0.039).
TEST(EstimatorBfloat16, RoundingFloorAndErrorAgainstFloat32) {
  if (!bfloat16_available()) GTEST_SKIP() << "no bfloat16 products here (" << matmul_backend() << ")";
  const mnist_sized_case t;
  const auto& [net, x, y, ref] = t;
  auto run = [&](double beta, matmul_precision p, double* free_residual) {
    relax_options o{100};
    o.precision = p;
    cauchy_ep<float> est(ep_with(2, beta, o, o));
    std::vector<float> g(net.n_params());
    *free_residual = est.estimate(net, x, y, g).free.max_residual;
    return relative_error(std::vector<double>(g.begin(), g.end()), ref);
  };
  double r32, r16;
  const double e32 = run(0.1, matmul_precision::float32, &r32), e16 = run(0.1, matmul_precision::bfloat16, &r16);
  double r16b;
  const double e16_wide = run(0.5, matmul_precision::bfloat16, &r16b);
  std::printf(
      "bfloat16 products: free residual %.2e (float32 %.2e); rel. error %.2e at |beta| = 0.1 (float32 %.2e), "
      "%.2e at 0.5\n",
      r16, r32, e16, e32, e16_wide);
  EXPECT_LT(r32, 1e-5);
  EXPECT_GT(r16, 1e-3);  // the rounding floor: bfloat16 relaxations never reach float32's tol
  EXPECT_GT(e16, 10 * e32);
  EXPECT_LT(e16, 0.3);
  EXPECT_LT(e16_wide, 0.5 * e16);  // the jitter is divided by 2|beta|
}

namespace {
// A random 12-10-8 + readout 5 network (sigmoid) on an odd batch of 7.
struct small_net {
  layered_network<double> net;
  matrix<double> x, y;
  explicit small_net(double scale = 1.0) {
    network_spec s;
    s.sizes = {12, 10, 8};
    s.n_readout = 5;
    s.activation = activation_kind::hep_sigmoid;
    s.init_scale = scale;
    s.seed = 11;
    net = layered_network<double>(s);
    rng_t rng(12);
    test::random_batch(rng, 12, 7, 5, x, y);
  }
};

std::vector<double> estimate_with(const small_net& t, ep_options o, grad_result* res = nullptr) {
  cauchy_ep<double> est(o);
  std::vector<double> g(t.net.n_params());
  const grad_result r = est.estimate(t.net, t.x, t.y, g);
  if (res) *res = r;
  return g;
}
}  // namespace

// estimator.threads: the batch split over 2 threads gives a deterministic gradient, equal to
// the 1-thread gradient to rounding, with the same predictions, loss and report.
TEST(CauchyEp, ThreadsDeterministicAndEqualToOneThread) {
  const small_net t;
  for (int N : {1, 2, 4}) {
    ep_options o = ep_with(N, 0.2, relax_options{80}, relax_options{30});
    grad_result r1, r2, r2b;
    o.threads = 1;
    const auto g1 = estimate_with(t, o, &r1);
    o.threads = 2;
    const auto g2 = estimate_with(t, o, &r2);
    const auto g2b = estimate_with(t, o, &r2b);
    EXPECT_EQ(g2, g2b) << "N=" << N;  // bit-identical for a fixed thread count
    EXPECT_LT(relative_error(g2, g1), 1e-13) << "N=" << N;
    EXPECT_EQ(r1.predictions, r2.predictions);
    EXPECT_NEAR(r1.loss, r2.loss, 1e-14);
    EXPECT_EQ(r1.relax_steps, r2.relax_steps);
    EXPECT_EQ(r1.points.size(), r2.points.size());
    EXPECT_NEAR(r1.free.max_residual, r2.free.max_residual, 1e-15);
    o.threads = 16;  // more threads than samples: one sample per slice
    EXPECT_LT(relative_error(estimate_with(t, o), g1), 1e-13) << "N=" << N;
  }
  // Averaging over the last steps of every phase, on 1 and 2 threads.
  ep_options o = ep_with(4, 0.2, relax_options{80}, relax_options{30});
  o.average_last = 3;
  const auto a1 = estimate_with(t, o);
  o.threads = 2;
  EXPECT_LT(relative_error(estimate_with(t, o), a1), 1e-13);
  // A non-finite sample in the second slice is dropped and does not reach the gradient. (A
  // non-finite residual ends the relaxation of its whole slice, as it ends the whole batch's
  // on one thread, so here the counts of dropped samples differ between thread counts.)
  small_net u;
  u.x(0, 5) = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> g2(u.net.n_params()), g2b(u.net.n_params());
  cauchy_ep<double> two(o);
  const auto r = two.estimate(u.net, u.x, u.y, g2);
  two.estimate(u.net, u.x, u.y, g2b);
  EXPECT_GE(r.n_dropped, 1);
  EXPECT_EQ(r.free.n_non_finite, 1);
  EXPECT_EQ(g2, g2b);
  for (double v : g2) EXPECT_TRUE(std::isfinite(v));
  ep_options bad;
  bad.threads = 0;
  EXPECT_THROW(cauchy_ep<double>{bad}, config_error);
}

// relax.stop_early: a converged relaxation stops early and gives the fixed-step gradient to
// within a tolerance set by tol (float64, tol 1e-11: relative error < 1e-8).
TEST(CauchyEp, EarlyStoppingSavesStepsAndKeepsTheGradient) {
  const small_net t(0.5);
  ep_options o = ep_with(4, 0.2, relax_options{400}, relax_options{200});
  grad_result full, early;
  const auto g_full = estimate_with(t, o, &full);
  o.free = relax_options{400, 1e-11, true};
  o.nudged = relax_options{200, 1e-11, true};
  const auto g_early = estimate_with(t, o, &early);
  EXPECT_LT(early.relax_steps, full.relax_steps / 2);
  EXPECT_TRUE(early.free.converged());
  EXPECT_LT(relative_error(g_early, g_full), 1e-8);
  std::printf("early stopping: %ld of %ld steps, relative gradient error %.2e\n", early.relax_steps, full.relax_steps,
              relative_error(g_early, g_full));
}

// relax.order = alternating (even layers, then odd layers from the new even ones) reaches the
// synchronous fixed point, real and complex nudged, in fewer steps; the estimate is unchanged.
// The complex point is the one continued from the free state (a homotopy in beta). At init
// scale 1 this net's synchronous steps oscillate forever (residual ~1.8) while alternating
// ones converge in 44 steps; at |beta| = 0.5 alternating steps from the free state reached
// a different complex fixed point than the continued one (docs/dev/performance.md), so the test
// keeps |beta| = 0.3 where both orders stay on the branch.
TEST(RelaxState, AlternatingOrderSameFixedPointFewerSteps) {
  const small_net t(0.5);
  relax_options sync{5000, 1e-13, true}, alt = sync;
  alt.order = relax_order::alternating;
  auto max_diff = [](const auto& a, const auto& b) {
    double m = 0;
    for (size_t j = 0; j < a.size(); ++j) m = std::max(m, double((a[j] - b[j]).cwiseAbs().maxCoeff()));
    return m;
  };
  relax_state<double> s, a;
  s.set_input(t.net, t.x, t.y);
  a.set_input(t.net, t.x, t.y);
  const auto rs = s.relax(t.net, 0.0, sync), ra = a.relax(t.net, 0.0, alt);
  ASSERT_TRUE(rs.converged() && ra.converged());
  EXPECT_LT(max_diff(s.h(), a.h()), 1e-11);
  EXPECT_LT(ra.steps, rs.steps);
  relax_state<std::complex<double>, double> cs, ca;
  const std::complex<double> beta = std::polar(0.3, 2.0);
  cs.set_input(t.net, t.x, t.y);
  ca.set_input(t.net, t.x, t.y);
  cs.set_states_from_real(s.h());
  ca.set_states_from_real(s.h());
  const auto cr = cs.relax(t.net, beta, sync), car = ca.relax(t.net, beta, alt);
  ASSERT_TRUE(cr.converged() && car.converged());
  {  // the branch continued from the free state along beta * k / 100, k = 1..100
    relax_state<std::complex<double>, double> hs;
    hs.set_input(t.net, t.x, t.y);
    hs.set_states_from_real(s.h());
    for (int k = 1; k <= 100; ++k) hs.relax(t.net, beta * (k / 100.0), sync);
    EXPECT_LT(max_diff(hs.h(), ca.h()), 1e-11);
  }
  EXPECT_LT(max_diff(cs.h(), ca.h()), 1e-11);
  EXPECT_LT(car.steps, cr.steps);
  std::printf("alternating order: free %ld vs %ld steps, complex nudged %ld vs %ld steps\n", ra.steps, rs.steps,
              car.steps, cr.steps);

  ep_options o = ep_with(4, 0.3, sync, sync);
  const auto g_sync = estimate_with(t, o);
  o.free.order = o.nudged.order = relax_order::alternating;
  const auto g_alt = estimate_with(t, o);
  EXPECT_LT(relative_error(g_alt, g_sync), 1e-9);

  // Successive over-relaxation (relax.omega): the same fixed point in fewer steps, and the
  // same estimate; omega outside (0, 2) is refused.
  relax_options sor = alt;
  sor.omega = 1.4;
  relax_state<double> w;
  w.set_input(t.net, t.x, t.y);
  const auto rw = w.relax(t.net, 0.0, sor);
  ASSERT_TRUE(rw.converged());
  EXPECT_LT(max_diff(w.h(), a.h()), 1e-11);
  EXPECT_LT(rw.steps, ra.steps);
  std::printf("over-relaxation omega 1.4: free %ld steps (alternating %ld)\n", rw.steps, ra.steps);
  o.free.omega = o.nudged.omega = 1.4;
  EXPECT_LT(relative_error(estimate_with(t, o), g_sync), 1e-9);
  sor.omega = 2.0;
  EXPECT_THROW(w.relax(t.net, 0.0, sor), config_error);
}

// relax.stop_early freezes each sample once it is below tol and compacts the rest: the states
// (in the original column order) and residuals match a relaxation that steps every sample to
// the end, fewer sample-steps run, and the estimate is unchanged; real and complex nudged.
TEST(RelaxState, FreezingConvergedSamplesKeepsStatesAndOrder) {
  const small_net t(0.5);
  relax_options all{2000, 1e-11, true}, each = all;
  all.freeze_converged = false;
  for (auto order : {relax_order::synchronous, relax_order::alternating}) {
    all.order = each.order = order;
    relax_state<double> s, f;
    s.set_input(t.net, t.x, t.y);
    f.set_input(t.net, t.x, t.y);
    const auto rs = s.relax(t.net, 0.0, all), rf = f.relax(t.net, 0.0, each);
    ASSERT_TRUE(rs.converged() && rf.converged());
    EXPECT_EQ(rs.steps, rf.steps);  // the slowest sample sets the steps
    EXPECT_EQ(rs.sample_steps, rs.steps * t.x.cols());
    EXPECT_LT(rf.sample_steps, rs.sample_steps);
    EXPECT_EQ(f.batch(), t.x.cols());
    EXPECT_EQ((f.x() - t.x).cwiseAbs().maxCoeff(), 0.0);
    for (size_t j = 0; j < s.h().size(); ++j) {
      EXPECT_LT((s.h()[j] - f.h()[j]).cwiseAbs().maxCoeff(), 1e-10);
      EXPECT_LT((s.pre()[j] - f.pre()[j]).cwiseAbs().maxCoeff(), 1e-9);
    }
    EXPECT_LE(f.residual().maxCoeff(), 1e-11);
    relax_state<std::complex<double>, double> cs, cf;
    for (auto* c : {&cs, &cf}) {
      c->set_input(t.net, t.x, t.y);
      c->set_states_from_real(s.h());
    }
    const std::complex<double> beta = std::polar(0.3, 1.0);
    const auto crs = cs.relax(t.net, beta, all), crf = cf.relax(t.net, beta, each);
    ASSERT_TRUE(crs.converged() && crf.converged());
    EXPECT_LT(crf.sample_steps, crs.sample_steps);
    for (size_t j = 0; j < s.h().size(); ++j) EXPECT_LT((cs.h()[j] - cf.h()[j]).cwiseAbs().maxCoeff(), 1e-10);
    std::printf("freezing (%s): free %ld of %ld sample-steps, complex nudged %ld of %ld\n",
                order == relax_order::synchronous ? "synchronous" : "alternating", rf.sample_steps, rs.sample_steps,
                crf.sample_steps, crs.sample_steps);
    ep_options o = ep_with(4, 0.3, all, all);
    const auto g_all = estimate_with(t, o);
    o.free = o.nudged = each;
    EXPECT_LT(relative_error(estimate_with(t, o), g_all), 1e-8);
  }
}

// The nudged points share the free phase's input drive, and the first connection's weight
// gradient accumulated over points (acc0) equals the per-point products to rounding.
TEST(RelaxState, SharedDriveAndAccumulatedInputGradient) {
  const small_net t;
  relax_state<double> a, b;
  a.set_input(t.net, t.x, t.y);
  b.set_input_shared(t.net, t.x, t.y, a.drive());
  EXPECT_EQ(a.drive(), b.drive());
  a.relax(t.net, 0.0, relax_options{50});
  b.copy_states_from(a);
  b.relax(t.net, 0.3, relax_options{20});
  EXPECT_THROW(b.set_input_shared(t.net, t.x, t.y, matrix<double>::Zero(3, 7)), shape_error);
  const vector<double> w = vector<double>::Constant(7, 1.0 / 7);
  std::vector<double> g_direct(t.net.n_params(), 0.0), g_acc(t.net.n_params(), 0.0);
  a.add_dF_dtheta(t.net, 0.0, -1.5, w, g_direct);
  b.add_dF_dtheta(t.net, 0.3, 2.0, w, g_direct);
  matrix<double> acc0 = matrix<double>::Zero(10, 7);
  a.add_dF_dtheta(t.net, 0.0, -1.5, w, g_acc, acc0);
  b.add_dF_dtheta(t.net, 0.3, 2.0, w, g_acc, acc0);
  a.add_input_weight_grad(t.net, acc0, w, g_acc);
  EXPECT_LT(relative_error(g_acc, g_direct), 1e-14);
  // complex states: Re(coef * u_0) accumulated in real arithmetic
  relax_state<std::complex<double>, double> c;
  c.set_input_shared(t.net, t.x, t.y, a.drive());
  c.set_states_from_real(a.h());
  const std::complex<double> beta = std::polar(0.3, 1.0), coef = std::polar(2.0, -0.5);
  c.relax(t.net, beta, relax_options{20});
  std::vector<double> h_direct(t.net.n_params(), 0.0), h_acc(t.net.n_params(), 0.0);
  c.add_dF_dtheta(t.net, beta, coef, w, h_direct);
  acc0.setZero();
  c.add_dF_dtheta(t.net, beta, coef, w, h_acc, acc0);
  a.add_input_weight_grad(t.net, acc0, w, h_acc);
  EXPECT_LT(relative_error(h_acc, h_direct), 1e-14);
}

// Per-column nudge multipliers: a batch of three copies of the samples, nudged with three
// different complex betas side by side, relaxes (and differentiates) each copy exactly as a
// separate relaxation with that beta; freezing keeps the multipliers with their columns.
TEST(RelaxState, ColumnNudgeEqualsSeparateBetas) {
  const small_net t(0.5);
  using C = std::complex<double>;
  const long B = t.x.cols();
  const std::vector<C> betas = {std::polar(0.3, 0.7), std::polar(0.3, 2.1), C(-0.2, 0)};
  relax_state<double> free;
  free.set_input(t.net, t.x, t.y);
  free.relax(t.net, 0.0, relax_options{3000, 1e-13, true});
  matrix<double> x3(t.x.rows(), 3 * B), y3(t.y.rows(), 3 * B);
  std::vector<matrix<double>> h3(free.h().size());
  vector<C> m(3 * B);
  for (size_t j = 0; j < h3.size(); ++j) h3[j].resize(free.h()[j].rows(), 3 * B);
  for (long p = 0; p < 3; ++p) {
    x3.middleCols(p * B, B) = t.x;
    y3.middleCols(p * B, B) = t.y;
    for (size_t j = 0; j < h3.size(); ++j) h3[j].middleCols(p * B, B) = free.h()[j];
    m.segment(p * B, B).setConstant(betas[p]);
  }
  for (bool early : {false, true}) {
    relax_options o{early ? 3000 : 40, 1e-12, early};
    relax_state<C, double> stack;
    stack.set_input(t.net, x3, y3);
    stack.set_states_from_real(h3);
    EXPECT_THROW(stack.set_column_nudge(vector<C>::Ones(B)), shape_error);
    stack.set_column_nudge(m);
    stack.relax(t.net, C(1), o);
    for (long p = 0; p < 3; ++p) {
      relax_state<C, double> one, part;
      one.set_input(t.net, t.x, t.y);
      one.set_states_from_real(free.h());
      one.relax(t.net, betas[p], o);
      part.set_input(t.net, t.x, t.y);
      part.copy_columns_from(stack, p * B);
      for (size_t j = 0; j < h3.size(); ++j)
        EXPECT_LT((part.h()[j] - one.h()[j]).cwiseAbs().maxCoeff(), early ? 1e-10 : 1e-13) << "point " << p;
      EXPECT_LT((part.residual() - one.residual()).cwiseAbs().maxCoeff(), early ? 1e-11 : 1e-13);
    }
    // dF/dtheta of the stack with per-column weights = the sum over the separate points.
    if (!early) {
      const vector<double> w = vector<double>::Constant(3 * B, 0.25);
      std::vector<double> g_stack(t.net.n_params(), 0.0), g_sum(t.net.n_params(), 0.0);
      stack.add_dF_dtheta(t.net, C(1), C(1.5, -0.5), w, g_stack);
      for (long p = 0; p < 3; ++p) {
        relax_state<C, double> part;
        part.set_input(t.net, t.x, t.y);
        part.copy_columns_from(stack, p * B);
        part.add_dF_dtheta(t.net, betas[p], C(1.5, -0.5), vector<double>::Constant(B, 0.25), g_sum);
      }
      EXPECT_LT(relative_error(g_stack, g_sum), 1e-13);
    }
  }
  relax_state<C, double> narrow;
  narrow.set_input(t.net, t.x, t.y);
  EXPECT_THROW(narrow.copy_columns_from(narrow, 1), shape_error);
}

// estimator.stack_points: the real points and the complex points relaxed side by side give
// the estimate of separate relaxations (fixed steps: to rounding; early stopping: to the
// tolerance), on 1 and 2 threads, for the readout and for an output layer.
TEST(CauchyEp, StackedPointsEqualSeparatePoints) {
  const small_net t(0.5);
  small_net u(0.5);
  {
    network_spec s = u.net.spec();
    s.sizes = {12, 10, 5};
    s.n_readout = 0;
    s.output = output_kind::layer;
    u.net = layered_network<double>(s);
  }
  for (const small_net* n : std::vector<const small_net*>{&t, &u}) {
    for (int N : {2, 4, 10}) {
      for (int threads : {1, 2}) {
        ep_options o = ep_with(N, 0.3, relax_options{80}, relax_options{40});
        o.threads = threads;
        o.stack_points = false;
        grad_result rs, rt;
        const auto g_sep = estimate_with(*n, o, &rs);
        o.stack_points = true;
        const auto g_stack = estimate_with(*n, o, &rt);
        EXPECT_LT(relative_error(g_stack, g_sep), 1e-12) << "N=" << N << " threads=" << threads;
        EXPECT_EQ(rt.relax_sample_steps, rs.relax_sample_steps);
        // One report per relaxation run: +-r stacked into one, the complex points into one.
        EXPECT_EQ(rt.points.size(), size_t(N == 2 ? 1 : 2)) << "N=" << N;
        EXPECT_EQ(rs.points.size(), size_t(N == 2 ? 2 : 1 + N / 2)) << "N=" << N;
        relax_options early{3000, 1e-11, true};
        early.order = relax_order::alternating;
        o.free = o.nudged = early;
        const auto g_early = estimate_with(*n, o, &rt);
        o.stack_points = false;
        EXPECT_LT(relative_error(g_early, estimate_with(*n, o, &rs)), 1e-8) << "N=" << N;
        EXPECT_EQ(rt.n_dropped, 0);
      }
    }
  }
}
