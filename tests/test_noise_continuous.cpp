// Neuron noise, phase averaging and continuous-time holomorphic EP (hep.md sections 4.3
// and 4.4; issue: holomorphic EP complete).
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/learn/cauchy_ep.hpp"
#include "eqprop/learn/continuous_hep.hpp"
#include "eqprop/learn/reference.hpp"
#include "test_util.hpp"

using namespace eqprop;

namespace {

struct toy {
  layered_network<double> net;
  matrix<double> x, y;
  explicit toy(uint64_t seed = 3, long batch = 3, std::vector<int> sizes = {4, 5, 4}, double scale = 0.5) {
    network_spec s;
    s.sizes = sizes;
    s.n_readout = 3;
    s.activation = activation_kind::hep_sigmoid;
    s.init_scale = scale;
    s.seed = seed;
    net = layered_network<double>(s);
    rng_t rng(seed + 100);
    test::random_batch(rng, sizes[0], batch, 3, x, y);
  }
  std::vector<double> implicit() const {
    std::vector<double> g(net.n_params());
    implicit_gradient<double> ig(relax_options{5000, 1e-15, true});
    ig.estimate(net, x, y, g);
    return g;
  }
};

std::vector<double> estimate(grad_estimator<double>& est, const toy& t, grad_result* res = nullptr) {
  std::vector<double> g(t.net.n_params());
  auto r = est.estimate(t.net, t.x, t.y, g);
  if (res) *res = r;
  return g;
}

ep_options ep(int N, double beta, long T = 300) {
  ep_options o;
  o.n_points = N;
  o.beta = beta;
  o.free = {T, 1e-13, false};
  o.nudged = {T, 1e-13, false};
  o.on_failure = nonconvergence_policy::keep;
  return o;
}

}  // namespace

// Noise is reproducible from its seed, differs between seeds, and a zero std changes nothing.
TEST(NeuronNoise, SeededReproducibleAndOffByDefault) {
  toy t;
  auto o = ep(4, 0.3);
  cauchy_ep<double> clean(o);
  const auto g0 = estimate(clean, t);
  o.noise_std = 0.01;
  o.noise_seed = 7;
  cauchy_ep<double> a(o), b(o);
  const auto ga = estimate(a, t), gb = estimate(b, t);
  EXPECT_LT(relative_error(ga, gb), 1e-14);  // same noise (not bitwise: buffer alignment)
  a.reseed_noise(8);
  const auto gc = estimate(a, t);
  EXPECT_GT(relative_error(gc, ga), 1e-6);
  // Small noise perturbs the estimate a little, not a lot.
  const double e = relative_error(ga, g0);
  EXPECT_GT(e, 1e-5);
  EXPECT_LT(e, 0.5);
  // The free phase stays noiseless unless asked: its residual is still at rounding level.
  grad_result r;
  estimate(b, t, &r);
  EXPECT_LT(r.free.max_residual, 1e-12);
  o.noise_in_free_phase = true;
  cauchy_ep<double> f(o);
  estimate(f, t, &r);
  EXPECT_GT(r.free.max_residual, 1e-4);
}

// Averaging dF/dtheta over the last steps changes nothing at a converged fixed point, and
// reduces the noise of classic EP (the paper's noisy_ep_grad1) by a measured factor.
TEST(NeuronNoise, AveragingLastStepsReducesNoiseOfClassicEp) {
  toy t;
  auto o = ep(1, 0.2);
  cauchy_ep<double> last(o);
  o.average_last = 5;
  cauchy_ep<double> avg(o);
  const auto g_clean = estimate(last, t);
  EXPECT_LT(relative_error(estimate(avg, t), g_clean), 1e-12);

  double err_last = 0, err_avg = 0;
  for (int trial = 0; trial < 40; ++trial) {
    auto on = ep(1, 0.2);
    on.noise_std = 0.01;
    on.noise_in_free_phase = true;
    on.noise_seed = 1000 + trial;
    cauchy_ep<double> n1(on);
    err_last += relative_error(estimate(n1, t), g_clean);
    on.average_last = 5;
    cauchy_ep<double> n5(on);
    err_avg += relative_error(estimate(n5, t), g_clean);
  }
  std::printf("classic EP with noise 0.01: mean rel. deviation last step %.4f, averaged over 5 steps %.4f\n",
              err_last / 40, err_avg / 40);
  EXPECT_LT(err_avg, 0.7 * err_last);  // 5 nearly independent steps: about 1/sqrt(5) = 0.45
}

// With long enough segments every phase point settles, so the piecewise continuous
// estimator equals the N-point Cauchy estimator (the transient from h = 0 is forgotten).
TEST(ContinuousHep, PiecewiseWithSettledSegmentsEqualsNPointEstimator) {
  toy t;
  const int N = 6;
  const double beta = 0.4;
  cauchy_ep<double> cauchy(ep(N, beta));
  const auto g_cauchy = estimate(cauchy, t);
  continuous_options c;
  c.n_points = N;
  c.beta = beta;
  c.steps_per_point = 300;
  c.periods = 2;
  continuous_hep<double> cont(c);
  std::vector<std::vector<double>> per_period;
  cont.on_period([&](int, std::span<const double> g) { per_period.emplace_back(g.begin(), g.end()); });
  grad_result r;
  const auto g = estimate(cont, t, &r);
  EXPECT_EQ(r.relax_steps, 2L * N * 300);
  EXPECT_EQ(r.n_dropped, 0);
  ASSERT_EQ(per_period.size(), 2u);
  EXPECT_LT(relative_error(per_period[1], g), 1e-15);
  EXPECT_LT(relative_error(g, g_cauchy), 1e-10);
  EXPECT_LT(relative_error(per_period[0], g_cauchy), 1e-10);
  // And it is close to the exact gradient, as the N-point estimator is.
  EXPECT_LT(relative_error(g, t.implicit()), 1e-3);
}

// Short segments make the first period inaccurate (the transient and unsettled phases);
// more periods and longer segments fix it, as in the paper's Fig. 3ab.
TEST(ContinuousHep, CosineImprovesWithSegmentLengthAndPeriods) {
  toy t;
  const auto ref = t.implicit();
  auto cos_after = [&](long T2, int periods) {
    continuous_options c;
    c.n_points = 8;
    c.beta = 0.3;
    c.steps_per_point = T2;
    c.periods = periods;
    continuous_hep<double> est(c);
    return cosine(estimate(est, t), ref);
  };
  const double c2_1 = cos_after(2, 1), c2_20 = cos_after(2, 20), c30_1 = cos_after(30, 1);
  std::printf("cosine with the exact gradient: T2=2 1 period %.6f, 20 periods %.6f; T2=30 1 period %.8f\n", c2_1, c2_20,
              c30_1);
  EXPECT_GT(c2_20, c2_1);
  EXPECT_GT(c30_1, 0.999);
  EXPECT_GT(c30_1, c2_1);
}

// The smooth form integrates tau dh/dt = -h + sigma(pre) with a smoothly rotating beta:
// slower rotation relative to tau (adiabatic) gives a more accurate gradient.
TEST(ContinuousHep, SmoothOdeFormIsAccurateWhenAdiabatic) {
  toy t;
  const auto ref = t.implicit();
  auto err = [&](long steps_per_point, int periods) {
    continuous_options c;
    c.n_points = 8;
    c.beta = 0.3;
    c.steps_per_point = steps_per_point;
    c.periods = periods;
    c.smooth = true;
    c.alpha = 0.2;
    continuous_hep<double> est(c);
    return relative_error(estimate(est, t), ref);
  };
  // The transient from h = 0 is part of the average (as in the paper), so its weight
  // falls like 1/periods; the lag behind beta(t) falls with the period in units of tau.
  const double fast = err(5, 20), slow5 = err(100, 5), slow20 = err(100, 20);
  std::printf(
      "smooth continuous hEP, dt/tau=0.2: rel. error %.3e (period 8 tau, 20 periods), %.3e (period 160 tau, "
      "5 periods), %.3e (period 160 tau, 20 periods)\n",
      fast, slow5, slow20);
  EXPECT_LT(slow20, 0.015);
  EXPECT_LT(slow20, 0.5 * slow5);
  EXPECT_LT(slow20, 0.2 * fast);
}

TEST(ContinuousHep, BadOptionsAreConfigErrors) {
  continuous_options c;
  c.alpha = 1.5;
  EXPECT_THROW(continuous_hep<double>{c}, config_error);
  c = {};
  c.periods = 0;
  EXPECT_THROW(continuous_hep<double>{c}, config_error);
  ep_options o = ep(1, 0.1, 10);
  o.average_last = 11;
  EXPECT_THROW(cauchy_ep<double>{o}, config_error);
}
