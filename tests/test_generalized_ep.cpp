// Generalized EP on vector-field networks without weight symmetry, recurrent backprop and
// Jacobian homeostasis against exact references (spec generalized-ep.md §2.5, §4).
#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/relax.hpp"
#include "eqprop/learn/cauchy_ep.hpp"
#include "eqprop/learn/continuous_hep.hpp"
#include "eqprop/learn/generalized_ep.hpp"
#include "eqprop/learn/reference.hpp"
#include "eqprop/train/vf_experiment.hpp"
#include "test_util.hpp"

using namespace eqprop;

namespace {

std::string sci(double v) { return fmt::format("{:.3e}", v); }

// A float64 vector-field toy: input 4 -> 5 -> out 3 (+ softmax readout 3 classes).
struct vf_toy {
  vector_field_network<double> net;
  matrix<double> x, y;
  vf_toy(double angle, std::vector<int> sizes = {4, 5, 3}, vf_topology topo = vf_topology::chain, uint64_t seed = 3,
         long batch = 4, double scale = 0) {
    vf_spec s;
    s.sizes = sizes;
    s.n_classes = 3;
    s.topology = topo;
    s.angle_deg = angle;
    s.init_scale = scale;
    s.seed = seed;
    net = vector_field_network<double>(s);
    rng_t rng(seed + 100);
    test::random_batch(rng, sizes[0], batch, 3, x, y);
  }
};

gep_options converged_opts(gep_method m, int N = 2, double beta = 0.2) {
  gep_options o;
  o.method = m;
  o.n_points = N;
  o.beta = beta;
  o.free_steps = 600;
  o.nudged_steps = 600;
  o.tol = 1e-13;
  return o;
}

std::vector<double> gep_grad(const vf_toy& t, const gep_options& o, gep_result* res = nullptr) {
  generalized_ep<double> est(o);
  std::vector<double> g(t.net.n_params());
  const auto r = est.estimate(t.net, t.x, t.y, g);
  if (res) *res = r;
  return g;
}

std::vector<double> rbp(const vf_toy& t, bool dense = true) {
  auto o = converged_opts(gep_method::rbp);
  o.rbp_dense = dense;
  gep_result r;
  auto g = gep_grad(t, o, &r);
  EXPECT_LT(r.free.max_residual, 1e-13) << "free phase not converged";
  return g;
}

// The layered (energy-based) network of a tied vector field (B = W^T) with the same forward
// weights and readout.
layered_network<double> tied_layered(const vf_toy& t) {
  network_spec ls;
  ls.sizes = t.net.spec().sizes;
  ls.n_readout = 3;
  ls.activation = activation_kind::hep_sigmoid;
  layered_network<double> lnet(ls);
  for (int j = 0; j + 1 < int(ls.sizes.size()); ++j) {  // forward edge j: j -> j+1
    lnet.W(j) = t.net.M(j);
    lnet.b(j) = t.net.b(j);
  }
  lnet.W_out() = t.net.W_ro();
  lnet.b_out() = t.net.b_ro();
  return lnet;
}

// A vector field's gradient g mapped onto the tied parameters of tied_layered(t): the forward
// gradient plus the transposed feedback gradient.
std::vector<double> map_to_tied(const vf_toy& t, std::vector<double> g, const layered_network<double>& lnet) {
  std::vector<double> mapped(lnet.n_params(), 0.0);
  const auto& L = lnet.layout();
  const int J = int(t.net.spec().sizes.size()) - 1;
  for (int j = 0; j < J; ++j) {
    matrix<double> gw = block_view(std::span<double>(g), t.net.weight_block(j));
    for (int e = 0; e < t.net.n_edges(); ++e)
      if (!t.net.edges()[e].forward && t.net.reciprocal(e) == j)
        gw += block_view(std::span<double>(g), t.net.weight_block(e)).transpose();
    block_view(std::span<double>(mapped), L[2 * j]) = gw;
    block_view(std::span<double>(mapped), L[2 * j + 1]) =
        block_view(std::span<double>(g), t.net.layout()[t.net.bias_block_index(j)]);
  }
  const auto& lw = t.net.layout()[t.net.layout().size() - 2];
  const auto& lb = t.net.layout()[t.net.layout().size() - 1];
  block_view(std::span<double>(mapped), L[2 * J]) = block_view(std::span<double>(g), lw);
  block_view(std::span<double>(mapped), L[2 * J + 1]) = block_view(std::span<double>(g), lb);
  return mapped;
}

}  // namespace

// With B = W^T the exact derivative (N = 0) of generalized EP is the symmetric network's
// exact gradient: the forward gradient plus the transposed feedback gradient equals the
// implicit-differentiation gradient of the same layered (energy-based) network.
TEST(GeneralizedEp, TiedFeedbackEqualsSymmetricExactGradient) {
  vf_toy t(0.0, {4, 5, 4, 3});
  t.net.tie_feedback();
  auto g = gep_grad(t, converged_opts(gep_method::exact));
  layered_network<double> lnet = tied_layered(t);
  std::vector<double> ref(lnet.n_params()), hep(lnet.n_params());
  implicit_gradient<double>(relax_options{5000, 1e-15, true}).estimate(lnet, t.x, t.y, ref);
  const std::vector<double> mapped = map_to_tied(t, g, lnet);
  const double err = relative_error(mapped, ref);
  EXPECT_LT(err, 1e-10) << "generalized exact vs symmetric implicit gradient";

  // And the symmetric holomorphic EP estimator of the existing library at N = 12, |beta| = 0.05
  // (error ~ |beta|^12) agrees with the generalized estimate to the same precision.
  ep_options eo;
  eo.n_points = 12;
  eo.beta = 0.05;
  eo.free = relax_options{5000, 1e-15, true};
  eo.nudged = relax_options{5000, 1e-15, true};
  cauchy_ep<double>(eo).estimate(lnet, t.x, t.y, hep);
  EXPECT_LT(relative_error(mapped, hep), 1e-10) << "generalized exact vs symmetric hEP N=12";
  // The generalized Cauchy estimator at the same N (presynaptic factors at the free state).
  const auto gc = gep_grad(t, converged_opts(gep_method::cauchy, 12, 0.05));
  EXPECT_LT(relative_error(gc, g), 1e-10);
  RecordProperty("rel_err_exact_vs_hep12", sci(relative_error(mapped, hep)));
  RecordProperty("rel_err_exact_vs_implicit", sci(err));
}

// One continuous-time estimator over both network kinds: with B = W^T and settled segments,
// continuous_hep on the vector field (error vectors, sigma(mean u)) and on the layered network
// (dF/dtheta terms) give the same gradient; on threads, every method agrees with one thread
// (GeneralizedEp.ThreadSlicesAgreeWithOneThread).
TEST(GeneralizedEp, ContinuousTimeEstimatorAgreesAcrossNetworkKinds) {
  vf_toy t(0.0, {4, 5, 4, 3});
  t.net.tie_feedback();
  const layered_network<double> lnet = tied_layered(t);
  continuous_options c;
  c.n_points = 12;
  c.beta = 0.05;
  c.steps_per_point = 400;
  c.periods = 1;
  c.tol = 1e-13;
  std::vector<double> gv(t.net.n_params()), gl(lnet.n_params()), ref(lnet.n_params());
  const auto rv = continuous_hep<double, vector_field_network<double>>(c).estimate(t.net, t.x, t.y, gv);
  const auto rl = continuous_hep<double>(c).estimate(lnet, t.x, t.y, gl);
  EXPECT_EQ(rv.n_dropped, 0);
  EXPECT_EQ(rl.n_dropped, 0);
  EXPECT_LT(rv.free.max_residual, 1e-12);
  EXPECT_EQ(rv.predictions, rl.predictions);
  const double err = relative_error(map_to_tied(t, gv, lnet), gl);
  EXPECT_LT(err, 1e-10);
  implicit_gradient<double>(relax_options{5000, 1e-15, true}).estimate(lnet, t.x, t.y, ref);
  EXPECT_LT(relative_error(gl, ref), 1e-10);
  RecordProperty("rel_err_vf_vs_layered", sci(err));
}

// RBP is the exact gradient of the loss at the fixed point for any feedback; the iterative
// adjoint agrees with the dense solve.
TEST(GeneralizedEp, RbpMatchesFiniteDifferences) {
  for (auto topo : {vf_topology::chain, vf_topology::loop}) {
    vf_toy t(90.0, {4, 5, 4, 3}, topo);
    const auto g = rbp(t);
    const auto gi = rbp(t, false);
    EXPECT_LT(relative_error(gi, g), 1e-10);
    // The library's finite differences, the same for every network kind.
    const auto fd = finite_difference_gradient(t.net, t.x, t.y, relax_options{1500, 1e-14}, 1e-6);
    EXPECT_LT(relative_error(g, fd), 1e-7) << to_string(topo);
    RecordProperty(std::string("rbp_vs_fd_") + std::string(to_string(topo)), sci(relative_error(g, fd)));
    RecordProperty(std::string("rbp_iter_vs_dense_") + std::string(to_string(topo)), sci(relative_error(gi, g)));
  }
}

// The forward-mode derivative (N = 0) is the limit of the Cauchy estimate, whatever B.
TEST(GeneralizedEp, ExactDerivativeIsCauchyLimit) {
  vf_toy t(90.0);
  const auto g0 = gep_grad(t, converged_opts(gep_method::exact));
  const auto g12 = gep_grad(t, converged_opts(gep_method::cauchy, 12, 0.1));
  EXPECT_LT(relative_error(g12, g0), 1e-10);
  const auto g1 = gep_grad(t, converged_opts(gep_method::cauchy, 1, 1e-4));
  EXPECT_LT(relative_error(g1, g0), 1e-3);  // one-sided: O(beta)
  EXPECT_GT(relative_error(g1, g0), 1e-7);
}

// Asymmetry bias (spec §2.5): with random feedback the error against RBP is flat in N
// (and in |beta|); with B = W^T it vanishes like |beta|^N: halving |beta| divides it by 2^N.
TEST(GeneralizedEp, AsymmetryBiasFlatInNWhileSymmetricFalls) {
  vf_toy ta(90.0, {4, 5, 3}, vf_topology::chain, 1, 8), ts(0.0, {4, 5, 3}, vf_topology::chain, 1, 8);
  const auto ra = rbp(ta), rs = rbp(ts);
  auto err = [](const vf_toy& t, const std::vector<double>& ref, int N, double beta) {
    const auto o = N == 0 ? converged_opts(gep_method::exact) : converged_opts(gep_method::cauchy, N, beta);
    return relative_error(gep_grad(t, o), ref);
  };
  const double e0 = err(ta, ra, 0, 0.2);
  EXPECT_GT(e0, 0.1);  // the asymmetry bias is large ...
  for (double beta : {0.1, 0.2, 0.3})
    for (int N = 2; N <= 6; ++N)
      EXPECT_NEAR(err(ta, ra, N, beta), e0, 0.01 * e0) << "N=" << N << " beta=" << beta;  // ... and flat
  EXPECT_LT(err(ts, rs, 0, 0.2), 1e-12);
  for (int N : {2, 4, 6}) {
    const double e1 = err(ts, rs, N, 0.1), e2 = err(ts, rs, N, 0.05);
    EXPECT_NEAR(std::log2(e1 / e2), double(N), 0.25) << "N=" << N << ": " << e1 << " -> " << e2;
    RecordProperty("err_a0_beta0.1_N" + std::to_string(N), sci(e1));
  }
  EXPECT_LT(err(ts, rs, 6, 0.05), 1e-6);
  RecordProperty("err_a90", sci(e0));
}

// The continuous-time estimate: with segments long enough to settle (adiabatic) it is the
// N-point Cauchy estimate of the same circle; with short segments the state lags behind the
// rotating nudge and the estimate is biased, less so as the segments lengthen.
TEST(GeneralizedEp, OnlineApproachesExactDerivative) {
  vf_toy t(90.0);
  const auto g0 = gep_grad(t, converged_opts(gep_method::exact));
  const auto g8 = gep_grad(t, converged_opts(gep_method::cauchy, 8, 0.1));
  auto online = [&](long T2, long periods) {
    auto o = converged_opts(gep_method::online, 8, 0.1);
    o.nudged_steps = T2;
    o.online_steps = T2 * 8 * periods;
    return gep_grad(t, o);
  };
  const double e_ad = relative_error(online(60, 5), g8);
  EXPECT_LT(e_ad, 1e-10);
  EXPECT_LT(relative_error(online(60, 5), g0), 1e-8);
  const double e2 = relative_error(online(2, 40), g0), e4 = relative_error(online(4, 40), g0),
               e8 = relative_error(online(8, 40), g0);
  EXPECT_GT(e2, 1e-3);
  EXPECT_LT(e4, 0.5 * e2);
  EXPECT_LT(e8, 0.5 * e4);
  RecordProperty("online_err_T2_2_4_8", fmt::format("{:.3e} {:.3e} {:.3e}", e2, e4, e8));
}

// L_homeo = E[|J eps|^2 - eps^T J^2 eps] = 2 |A|_F^2 (spec §4.1), per neuron.
TEST(GeneralizedEp, HomeostaticLossMonteCarloMatchesExact) {
  vf_toy t(90.0, {4, 5, 4, 3});
  rng_t rng(7);
  std::vector<double> gm(t.net.n_params(), 0.0), ge(t.net.n_params(), 0.0);
  const double mc = homeostatic_loss_mc(t.net, 200000, rng, std::span<double>(gm));
  const double ex = homeostatic_loss_exact(t.net, std::span<double>(ge));
  EXPECT_NEAR(mc / ex, 1.0, 0.05);
  EXPECT_LT(relative_error(gm, ge), 0.05);
  RecordProperty("homeo_mc_grad_vs_exact", sci(relative_error(gm, ge)));
  RecordProperty("homeo_mc", sci(mc));
  RecordProperty("homeo_exact", sci(ex));

  // Exact: 2|A|^2/n from the explicit Jacobian.
  const matrix<double> Cm = coupling_matrix(t.net);
  const matrix<double> J = Cm - matrix<double>::Identity(Cm.rows(), Cm.cols());
  const double direct = ((J.transpose() * J).trace() - (J * J).trace()) / double(Cm.rows());
  EXPECT_NEAR(ex, direct, 1e-12 * direct);

  // Weight gradients against central differences (the MC one with its probes fixed).
  auto fd_check = [&](auto loss, const std::vector<double>& g) {
    std::vector<double> fd(t.net.n_params());
    const double h = 1e-5;
    for (long i = 0; i < t.net.n_params(); ++i) {
      const double p0 = t.net.params()[i];
      t.net.params()[i] = p0 + h;
      const double lp = loss();
      t.net.params()[i] = p0 - h;
      const double lm = loss();
      t.net.params()[i] = p0;
      fd[i] = (lp - lm) / (2 * h);
    }
    return relative_error(g, fd);
  };
  std::vector<double> g5(t.net.n_params(), 0.0);
  rng_t r5(11);
  homeostatic_loss_mc(t.net, 5, r5, std::span<double>(g5));
  const double e_mc = fd_check(
      [&] {
        rng_t r(11);
        return homeostatic_loss_mc(t.net, 5, r);
      },
      g5);
  const double e_ex = fd_check([&] { return homeostatic_loss_exact(t.net); }, ge);
  EXPECT_LT(e_mc, 1e-8);
  EXPECT_LT(e_ex, 1e-8);
  RecordProperty("homeo_exact_grad_fd_err", sci(e_ex));
  RecordProperty("homeo_grad_fd_err", sci(e_mc));
}

TEST(GeneralizedEp, DiagnosticsSymmetricAndRandomFeedback) {
  vf_toy ts(0.0), ta(90.0, {4, 5, 4, 3}), tl(90.0, {4, 5, 4, 3}, vf_topology::loop);
  EXPECT_NEAR(jacobian_symmetry_index(ts.net), 1.0, 1e-15);
  EXPECT_NEAR(feedback_angle_deg(ts.net), 0.0, 1e-5);
  EXPECT_NEAR(homeostatic_loss_exact(ts.net), 0.0, 1e-30);
  EXPECT_LT(jacobian_symmetry_index(ta.net), 0.95);
  EXPECT_NEAR(feedback_angle_deg(ta.net), 90.0, 30.0);
  EXPECT_TRUE(std::isnan(feedback_angle_deg(tl.net)));  // the loop has no reciprocal pair
  EXPECT_EQ(tl.net.n_edges(), 4);
  // Per-layer cosines: 1 for tied feedback, below 1 otherwise.
  const auto ds = gep_diagnose(ts.net, ts.x, ts.y, converged_opts(gep_method::exact), true);
  for (double c : ds.layer_cosine) EXPECT_NEAR(c, 1.0, 1e-12);
  const auto da = gep_diagnose(ta.net, ta.x, ta.y, converged_opts(gep_method::exact), true);
  EXPECT_LT(*std::min_element(da.layer_cosine.begin(), da.layer_cosine.end()), 0.999);
  EXPECT_EQ(da.layer_cosine.size(), 3u);
}

// A network whose relaxation diverges: every failure is counted, the gradient stays finite.
TEST(GeneralizedEp, NonConvergenceIsCountedNeverSilent) {
  vf_toy t(90.0, {4, 5, 4, 3}, vf_topology::chain, 3, 8, 4.0);
  auto o = converged_opts(gep_method::cauchy, 4, 0.5);
  o.free_steps = 50;
  o.nudged_steps = 20;
  o.tol = 1e-6;
  o.fail_residual = 1e-3;
  gep_result r;
  const auto g = gep_grad(t, o, &r);
  EXPECT_GT(r.free.n_not_converged, 0);
  EXPECT_GT(r.n_dropped, 0);
  for (double v : g) EXPECT_TRUE(std::isfinite(v));
}

TEST(GeneralizedEp, ConfigErrors) {
  config cfg(vector_field_schema());
  try {
    cfg.set_override("homeostasis.lamda=1");
    FAIL() << "unknown key accepted";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("homeostasis.lambda"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cfg.set_override("network.topology=ring"), config_error);  // not one of the schema's choices
  cfg.set_override("network.topology=edges");
  cfg.set_override("network.edges=[\"0>1\", \"fb:0>1\"]");
  EXPECT_THROW(make_vf_spec(cfg, 784, 10).validate(), config_error);  // duplicate pair / feedback from input
  cfg.set_override("network.edges=[\"0>1\", \"1>2\", \"2>3\", \"fb:3>1\", \"fb:2>1\"]");
  EXPECT_EQ(vector_field_network<float>(make_vf_spec(cfg, 6, 3)).n_edges(), 5);
  EXPECT_THROW(cfg.set_override("estimator.method=holomorphic"), config_error);  // renamed: estimator.kind
  EXPECT_THROW(cfg.set_override("estimator.kind=bptt"), config_error);
}

// The relaxation driver serves the vector-field state too: stopping early with per-sample
// freezing and over-relaxation reach the fixed point of the fixed-step relaxation, in fewer
// sample steps, and the estimate from that free state agrees with the fixed-step one.
TEST(GeneralizedEp, DriverFreezesAndOverRelaxesToTheSameFixedPoint) {
  vf_toy t(90.0, {4, 6, 5, 3}, vf_topology::chain, 5, 16);
  vf_state<double> ref, frz;
  ref.set_input(t.net, t.x, t.y);
  const auto rr = ref.relax(0.0, relax_options{1500, 1e-13});
  ASSERT_EQ(rr.n_not_converged, 0);
  EXPECT_EQ(rr.sample_steps, 1500 * 16);
  relax_options o{1500, 1e-13, true};
  o.omega = 1.2;
  frz.set_input(t.net, t.x, t.y);
  const auto rf = frz.relax(0.0, o);
  EXPECT_EQ(rf.n_not_converged, 0);
  EXPECT_LT(rf.sample_steps, rf.steps * 16);  // frozen samples stopped stepping
  double err = 0;
  for (int i = 1; i <= 3; ++i) err = std::max(err, (frz.u()[i] - ref.u()[i]).cwiseAbs().maxCoeff());
  EXPECT_LT(err, 1e-11);
  RecordProperty("freeze_sor_vs_fixed_max_abs", sci(err));

  auto fixed = converged_opts(gep_method::cauchy, 2, 0.1);
  fixed.nudged_steps = 60;
  auto early = fixed;
  early.stop_early = true;
  early.omega = 1.2;
  gep_result re;
  const auto gf = gep_grad(t, fixed), ge = gep_grad(t, early, &re);
  EXPECT_LT(re.free.sample_steps, 600 * 16);
  EXPECT_LT(relative_error(ge, gf), 1e-9);
  // Alternating order (Gauss-Seidel over the layer parity): the same fixed point, in fewer
  // steps to the tolerance.
  vf_state<double> alt;
  alt.set_input(t.net, t.x, t.y);
  relax_options ao{1500, 1e-12, true};
  ao.freeze_converged = false;
  relax_options so = ao;
  ao.order = relax_order::alternating;
  const auto ra = alt.relax(0.0, ao);
  vf_state<double> syn;
  syn.set_input(t.net, t.x, t.y);
  const auto rs = syn.relax(0.0, so);
  EXPECT_EQ(ra.n_not_converged, 0);
  EXPECT_LT(ra.steps, rs.steps);
  double aerr = 0;
  for (int i = 1; i <= 3; ++i) aerr = std::max(aerr, (alt.u()[i] - ref.u()[i]).cwiseAbs().maxCoeff());
  EXPECT_LT(aerr, 1e-10);
  RecordProperty("alternating_steps", std::to_string(ra.steps) + " vs synchronous " + std::to_string(rs.steps));
}

// Column slices on threads: the estimate is the single-thread one to rounding, for every
// method, and the predictions and drop counts are the same.
TEST(GeneralizedEp, ThreadSlicesAgreeWithOneThread) {
  vf_toy t(90.0, {4, 6, 5, 3}, vf_topology::chain, 7, 11);
  for (auto m : {gep_method::cauchy, gep_method::exact, gep_method::online, gep_method::rbp}) {
    auto o = converged_opts(m, 4, 0.2);
    o.free_steps = o.nudged_steps = 80;
    o.online_steps = 320;
    o.homeo_lambda = 0.5;
    gep_result r1, r3;
    const auto g1 = gep_grad(t, o, &r1);
    o.threads = 3;
    const auto g3 = gep_grad(t, o, &r3);
    EXPECT_LT(relative_error(g3, g1), 1e-12) << to_string(m);
    EXPECT_EQ(r3.predictions, r1.predictions) << to_string(m);
    EXPECT_EQ(r3.n_dropped, r1.n_dropped) << to_string(m);
    EXPECT_NEAR(r3.loss, r1.loss, 1e-13) << to_string(m);
  }
}

// States are pre-activations, unbounded: huge finite weights make an update whose sum of
// squares overflows float while every state is finite; the residual is still its length.
TEST(GeneralizedEp, HugeFiniteStatesKeepAFiniteResidual) {
  vf_spec s;
  s.sizes = {4, 5, 3};
  s.n_classes = 3;
  s.seed = 2;
  vector_field_network<float> net(s);
  for (auto& p : net.params()) p = p >= 0 ? 1e25f : -1e25f;
  rng_t rng(9);
  matrix<double> xd, yd;
  test::random_batch(rng, 4, 6, 3, xd, yd);
  vf_state<float> st;
  st.set_input(net, xd.cast<float>(), yd.cast<float>());
  const auto rep = st.relax(0.0f, relax_options{3, 1e-4});
  EXPECT_EQ(rep.n_non_finite, 0);
  EXPECT_TRUE(std::isfinite(rep.max_residual));
  st.reset();
  st.step(0.0f);
  double len = 0;  // the first step's length, from u = 0, in double
  for (int i = 1; i <= 2; ++i) len += st.u()[i].col(0).cast<double>().squaredNorm();
  EXPECT_NEAR(st.residual()(0) / std::sqrt(len), 1.0, 1e-6);
}

// A sample whose states turn non-finite is done: the other samples relax exactly as in a
// batch without it, with fixed steps and with early stopping (vector field and layered).
TEST(GeneralizedEp, ANonFiniteSampleNeitherEndsNorHoldsUpTheOthers) {
  vf_toy t(90.0, {4, 6, 5, 3}, vf_topology::chain, 5, 6);
  matrix<double> xn = t.x, yn = t.y;
  xn(1, 2) = std::numeric_limits<double>::quiet_NaN();
  const std::vector<long> others{0, 1, 3, 4, 5};
  const matrix<double> xo = t.x(Eigen::all, others), yo = t.y(Eigen::all, others);
  for (bool early : {false, true}) {
    relax_options o{400, 1e-12, early};
    vf_state<double> with, without;
    with.set_input(t.net, xn, yn);
    without.set_input(t.net, xo, yo);
    const auto rw = with.relax(0.0, o), ro = without.relax(0.0, o);
    EXPECT_EQ(rw.n_non_finite, 1);
    EXPECT_EQ(ro.n_not_converged, 0);
    EXPECT_EQ(rw.n_not_converged, 1);
    double err = 0;
    for (int i = 1; i <= 3; ++i)
      err = std::max(err, (with.u()[i](Eigen::all, others) - without.u()[i]).cwiseAbs().maxCoeff());
    EXPECT_LT(err, 1e-13) << "stop_early " << early;
  }
  network_spec ls;
  ls.sizes = {4, 6, 5};
  ls.n_readout = 3;
  ls.seed = 4;
  layered_network<double> lnet(ls);
  relax_state<double> lw, lo;
  lw.set_input(lnet, xn, yn);
  lo.set_input(lnet, xo, yo);
  const auto lrw = lw.relax(lnet, 0.0, relax_options{300, 1e-12, true});
  lo.relax(lnet, 0.0, relax_options{300, 1e-12, true});
  EXPECT_EQ(lrw.n_non_finite, 1);
  double lerr = 0;
  for (int j = 0; j < 2; ++j) lerr = std::max(lerr, (lw.h()[j](Eigen::all, others) - lo.h()[j]).cwiseAbs().maxCoeff());
  EXPECT_LT(lerr, 1e-13);
}

// The N-point estimator is the one layered networks use (cauchy_ep over ep_model): on a
// vector field it also starts the points warm around the circle, and its failure policies
// apply. Converged, the warm start reaches the same points, so the same estimate.
TEST(GeneralizedEp, SharedCauchyEstimatorWarmStartAndPolicies) {
  vf_toy t(90.0);
  const auto g = gep_grad(t, converged_opts(gep_method::cauchy, 6, 0.1));
  ep_options o = converged_opts(gep_method::cauchy, 6, 0.1).cauchy_options();
  o.start = ep_start::warm;
  cauchy_ep<double, vector_field_network<double>> warm(o);
  std::vector<double> gw(t.net.n_params());
  const auto r = warm.estimate(t.net, t.x, t.y, gw);
  EXPECT_EQ(r.points.size(), 6u);  // every point in complex arithmetic, none paired
  EXPECT_LT(relative_error(gw, g), 1e-10);
  // Nudged phases far too short to settle: a residual above fail_residual is an error
  // under the error policy, and dropped (counted) under the default one.
  o.start = ep_start::free_state;
  o.nudged = relax_options{1, 1e-13};
  o.fail_residual = 1e-12;
  o.on_failure = nonconvergence_policy::error;
  cauchy_ep<double, vector_field_network<double>> strict(o);
  EXPECT_THROW(strict.estimate(t.net, t.x, t.y, gw), convergence_error);
  o.on_failure = nonconvergence_policy::drop;
  cauchy_ep<double, vector_field_network<double>> lenient(o);
  EXPECT_EQ(lenient.estimate(t.net, t.x, t.y, gw).n_dropped, t.x.cols());
}
