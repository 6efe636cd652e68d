// Convolutional vector-field networks (spec generalized-ep.md §1.3): forward convs with
// softmax pooling, feedback convs applied as the VJP of the pooled convolution, against
// exact references in float64.
#include <cmath>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/learn/generalized_ep.hpp"
#include "eqprop/learn/reference.hpp"
#include "test_util.hpp"

using namespace eqprop;

namespace {

std::string sci(double v) { return fmt::format("{:.3e}", v); }

// 2x8x8 input -> conv 3 (3x3 SAME, softmax pool) 3x4x4 -> conv 4 (3x3 SAME, softmax pool)
// 4x2x2 -> dense 5 -> readout 3. Edges: three forward, feedback 2 -> 1 (a conv kernel
// with pooling: state-dependent) and 3 -> 2 (dense).
struct conv_toy {
  vector_field_network<double> net;
  matrix<double> x, y;
  explicit conv_toy(double angle, long batch = 3, uint64_t seed = 5, const char* pool = "softmax",
                    activation_kind act = activation_kind::hep_sigmoid) {
    vf_spec s;
    s.input_shape = {2, 8, 8};
    s.conv = make_conv_layers({3, 4}, {3}, {"same"}, {pool});
    s.sizes = s.layered_spec().conv_sizes();
    s.sizes.push_back(5);
    s.n_classes = 3;
    s.angle_deg = angle;
    s.activation = act;
    s.init_scale = 0.5;
    s.seed = seed;
    net = vector_field_network<double>(s);
    rng_t rng(seed + 100);
    test::random_batch(rng, s.sizes[0], batch, 3, x, y);
  }
};

gep_options converged(gep_method m, int N = 2, double beta = 0.1) {
  gep_options o;
  o.method = m;
  o.n_points = N;
  o.beta = beta;
  o.free_steps = 400;
  o.nudged_steps = 400;
  o.rbp_steps = 400;
  o.tol = 1e-13;
  return o;
}

std::vector<double> grad_of(const conv_toy& t, const gep_options& o, gep_result* res = nullptr) {
  generalized_ep<double> est(o);
  std::vector<double> g(t.net.n_params());
  const auto r = est.estimate(t.net, t.x, t.y, g);
  if (res) *res = r;
  return g;
}

// The state relaxed to its free fixed point.
vf_state<double> free_state(const conv_toy& t) {
  vf_state<double> st;
  st.set_input(t.net, t.x, t.y);
  const auto rep = st.relax(0.0, relax_options{1000, 1e-14});
  EXPECT_EQ(rep.n_not_converged, 0);
  return st;
}

std::vector<matrix<double>> random_layers(const vector_field_network<double>& net, long cols, rng_t& rng) {
  std::vector<matrix<double>> v(net.n_layers() + 1);
  for (int i = 1; i <= net.n_layers(); ++i) {
    v[i].resize(net.size(i), cols);
    for (long k = 0; k < v[i].size(); ++k) v[i].data()[k] = standard_normal(rng);
  }
  return v;
}

double dot(const std::vector<matrix<double>>& a, const std::vector<matrix<double>>& b) {
  double s = 0;
  for (size_t i = 1; i < a.size(); ++i) s += a[i].cwiseProduct(b[i]).sum();
  return s;
}

// The field's coupling C(r) at given activities: one step from r with beta = 0 gives
// u = drive + C(r).
std::vector<matrix<double>> coupling_at(const conv_toy& t, const std::vector<matrix<double>>& r) {
  vf_state<double> st, zero;
  st.set_input(t.net, t.x, t.y);
  st.set_activities(r);
  st.step(0.0);
  zero.set_input(t.net, t.x, t.y);
  auto z = r;
  for (size_t i = 1; i < z.size(); ++i) z[i].setZero();
  zero.set_activities(z);
  zero.step(0.0);  // drive + C(0): C(0) = 0 for forward terms; feedback terms vanish at r_src = 0
  std::vector<matrix<double>> out(r.size());
  for (size_t i = 1; i < r.size(); ++i) out[i] = st.u()[i] - zero.u()[i];
  return out;
}

}  // namespace

// The linearisation: coupling_jvp against central differences of C(r) (this includes the
// pooling Hessian of the feedback conv), and coupling_vjp is its exact transpose.
TEST(GeneralizedEpConv, CouplingJacobianMatchesFiniteDifferences) {
  conv_toy t(90.0);
  auto st = free_state(t);
  rng_t rng(1);
  auto v = random_layers(t.net, t.x.cols(), rng), a = random_layers(t.net, t.x.cols(), rng);
  std::vector<matrix<double>> r(t.net.n_layers() + 1), jv, jta;
  for (int i = 1; i <= t.net.n_layers(); ++i) r[i] = st.r()[i];
  st.coupling_jvp(v, jv);
  st.coupling_vjp(a, jta);
  const double h = 1e-5;
  auto rp = r, rm = r;
  for (size_t i = 1; i < r.size(); ++i) {
    rp[i] += h * v[i];
    rm[i] -= h * v[i];
  }
  const auto cp = coupling_at(t, rp), cm = coupling_at(t, rm);
  double num = 0, den = 0;
  for (size_t i = 1; i < r.size(); ++i) {
    num += ((cp[i] - cm[i]) / (2 * h) - jv[i]).squaredNorm();
    den += jv[i].squaredNorm();
  }
  EXPECT_LT(std::sqrt(num / den), 1e-8);
  const double lhs = dot(a, jv), rhs = dot(jta, v);
  EXPECT_NEAR(lhs, rhs, 1e-12 * std::abs(lhs));
  RecordProperty("jvp_vs_fd", sci(std::sqrt(num / den)));
}

// RBP is the exact gradient of the loss at the fixed point for any feedback kernel.
TEST(GeneralizedEpConv, RbpMatchesFiniteDifferences) {
  conv_toy t(90.0);
  gep_result res;
  const auto g = grad_of(t, converged(gep_method::rbp), &res);
  EXPECT_LT(res.free.max_residual, 1e-12);
  auto loss = [&] {
    vf_state<double> st;
    st.set_input(t.net, t.x, t.y);
    st.relax(0.0, relax_options{1000, 1e-14});
    vector<double> l;
    st.loss_per_sample(l);
    return l.mean();
  };
  // Every parameter of the two conv edges with pooling and of the dense edges, a stride
  // through the rest (the whole vector takes a few seconds more).
  std::vector<double> gs, fd;
  const double h = 1e-6;
  for (long i = 0; i < t.net.n_params(); i += 3) {
    const double p0 = t.net.params()[i];
    t.net.params()[i] = p0 + h;
    const double lp = loss();
    t.net.params()[i] = p0 - h;
    const double lm = loss();
    t.net.params()[i] = p0;
    fd.push_back((lp - lm) / (2 * h));
    gs.push_back(g[i]);
  }
  EXPECT_LT(relative_error(gs, fd), 1e-7);
  RecordProperty("rbp_vs_fd", sci(relative_error(gs, fd)));
}

// With B = W (kernels copied) the network is the energy-based ConvNet: the exact
// derivative (N = 0) mapped onto the tied parameters is that network's implicit gradient.
TEST(GeneralizedEpConv, TiedKernelsEqualEnergyConvNetGradient) {
  conv_toy t(0.0);
  t.net.tie_feedback();
  const auto g = grad_of(t, converged(gep_method::exact));
  layered_network<double> lnet(t.net.spec().layered_spec());
  const int K = t.net.n_layers();
  for (int j = 0; j < K; ++j) {  // forward edge j: j -> j+1
    lnet.W(j) = t.net.M(j);
    lnet.b(j) = t.net.b(j);
  }
  lnet.W_out() = t.net.W_ro();
  lnet.b_out() = t.net.b_ro();
  std::vector<double> ref(lnet.n_params()), mapped(lnet.n_params(), 0.0);
  implicit_gradient<double>(relax_options{5000, 1e-15, true}).estimate(lnet, t.x, t.y, ref);
  const std::span<double> gs(const_cast<double*>(g.data()), g.size()), ms(mapped);
  const auto& L = lnet.layout();
  for (int j = 0; j < K; ++j) {
    matrix<double> gw = block_view(gs, t.net.weight_block(j));
    for (int e = 0; e < t.net.n_edges(); ++e) {
      if (t.net.edges()[e].forward || t.net.reciprocal(e) != j) continue;
      if (t.net.is_conv_edge(e)) gw += block_view(gs, t.net.weight_block(e));
      else gw += block_view(gs, t.net.weight_block(e)).transpose();
    }
    block_view(ms, L[2 * j]) = gw;
    block_view(ms, L[2 * j + 1]) = block_view(gs, t.net.layout()[t.net.bias_block_index(j)]);
  }
  const auto& lay = t.net.layout();
  block_view(ms, L[2 * K]) = block_view(gs, lay[lay.size() - 2]);
  block_view(ms, L[2 * K + 1]) = block_view(gs, lay[lay.size() - 1]);
  EXPECT_LT(relative_error(mapped, ref), 1e-9);
  // And it equals RBP, since the Jacobian is then symmetric.
  const auto gr = grad_of(t, converged(gep_method::rbp));
  EXPECT_LT(relative_error(g, gr), 1e-9);
  RecordProperty("tied_exact_vs_implicit", sci(relative_error(mapped, ref)));
}

// The Cauchy estimate converges to the exact derivative geometrically in N (holomorphic
// activation and pooling), while with random feedback the error against RBP stays flat.
TEST(GeneralizedEpConv, CauchyConvergesToExactAndAsymmetryBiasIsFlat) {
  conv_toy t(90.0, 3, 5, "softmax", activation_kind::holotanh);
  const auto g0 = grad_of(t, converged(gep_method::exact));
  const auto gr = grad_of(t, converged(gep_method::rbp));
  const double e2 = relative_error(grad_of(t, converged(gep_method::cauchy, 2, 0.1)), g0);
  const double e4 = relative_error(grad_of(t, converged(gep_method::cauchy, 4, 0.1)), g0);
  const double e8 = relative_error(grad_of(t, converged(gep_method::cauchy, 8, 0.1)), g0);
  EXPECT_LT(e4, 0.05 * e2);
  EXPECT_LT(e8, 1e-7);
  const double bias0 = relative_error(g0, gr);
  EXPECT_GT(bias0, 0.05);
  for (int N : {2, 4, 8})
    EXPECT_NEAR(relative_error(grad_of(t, converged(gep_method::cauchy, N, 0.1)), gr), bias0, 0.02 * bias0) << N;
  RecordProperty("cauchy_vs_exact_N2_4_8", fmt::format("{} {} {}", sci(e2), sci(e4), sci(e8)));
  RecordProperty("asymmetry_bias", sci(bias0));
}

// Homeostasis at a state: the probe estimate of E[|J e|^2 - e^T J^2 e] matches 2|A|^2/n
// of the explicit per-sample Jacobian, and its weight gradient (complex-step mixed
// derivatives) matches central differences of the same fixed-probe loss.
TEST(GeneralizedEpConv, HomeostasisAtStateMatchesExplicitJacobian) {
  conv_toy t(90.0, 2);
  auto st = free_state(t);
  const int K = t.net.n_layers();
  const long n = t.net.spec().n_states();
  // Explicit J = dC/dr - I per sample, column by column through coupling_jvp.
  double exact = 0;
  for (long b = 0; b < t.x.cols(); ++b) {
    conv_toy one = t;
    one.x = t.x.col(b);
    one.y = t.y.col(b);
    vf_state<double> s1;
    s1.set_input(one.net, one.x, one.y);
    std::vector<matrix<double>> r(K + 1), e(K + 1), out;
    for (int i = 1; i <= K; ++i) r[i] = st.r()[i].col(b);
    s1.set_activities(r);
    matrix<double> J(n, n);
    long col = 0;
    for (int i = 1; i <= K; ++i)
      for (long k = 0; k < t.net.size(i); ++k, ++col) {
        for (int l = 1; l <= K; ++l) e[l].setZero(t.net.size(l), 1);
        e[i](k, 0) = 1;
        s1.coupling_jvp(e, out);
        long row = 0;
        for (int l = 1; l <= K; ++l) {
          J.block(row, col, t.net.size(l), 1) = out[l];
          row += t.net.size(l);
        }
      }
    J -= matrix<double>::Identity(n, n);
    exact += 2 * (0.5 * (J - J.transpose())).squaredNorm() / double(n);
  }
  exact /= double(t.x.cols());
  rng_t rng(3);
  const double mc = homeostatic_loss_at(t.net, st, 20000, rng);
  EXPECT_NEAR(mc / exact, 1.0, 0.05);
  rng_t rng2(4);
  const auto js = jacobian_stats_at(t.net, st, 20000, rng2);
  EXPECT_NEAR(js.homeo / exact, 1.0, 0.05);
  EXPECT_GT(js.symmetry_index, 0.3);
  EXPECT_LT(js.symmetry_index, 0.95);
  RecordProperty("homeo_probe_vs_explicit", fmt::format("{} vs {}", sci(mc), sci(exact)));

  std::vector<double> g(t.net.n_params(), 0.0);
  {
    rng_t r(11);
    homeostatic_loss_at(t.net, st, 3, r, std::span<double>(g));
  }
  std::vector<double> fd(t.net.n_params());
  const double h = 1e-5;
  for (long i = 0; i < t.net.n_params(); ++i) {
    const double p0 = t.net.params()[i];
    auto loss = [&] {
      rng_t r(11);
      return homeostatic_loss_at(t.net, st, 3, r);
    };
    t.net.params()[i] = p0 + h;
    const double lp = loss();
    t.net.params()[i] = p0 - h;
    const double lm = loss();
    t.net.params()[i] = p0;
    fd[i] = (lp - lm) / (2 * h);
  }
  EXPECT_LT(relative_error(g, fd), 1e-7);
  RecordProperty("homeo_grad_vs_fd", sci(relative_error(g, fd)));
  // Tied kernels: the Jacobian is symmetric and the loss vanishes.
  conv_toy tied(0.0, 2);
  tied.net.tie_feedback();
  auto sts = free_state(tied);
  rng_t r3(5);
  EXPECT_LT(homeostatic_loss_at(tied.net, sts, 5, r3), 1e-12);  // rounding (random feedback: ~1)
}

// Training-facing checks: diagnostics run on ConvNets (probe estimates), the dense-only
// paths refuse with a clear message, and non-chain topologies are refused.
TEST(GeneralizedEpConv, DiagnosticsAndRefusals) {
  conv_toy t(90.0);
  const auto d = gep_diagnose(t.net, t.x, t.y, converged(gep_method::exact), false);
  EXPECT_EQ(d.layer_cosine.size(), 3u);
  EXPECT_GT(d.symmetry_index, 0.3);
  EXPECT_LT(d.symmetry_index, 0.95);
  EXPECT_NEAR(d.angle_deg, 90.0, 30.0);
  conv_toy s(0.0);
  EXPECT_NEAR(feedback_angle_deg(s.net), 0.0, 1e-5);
  EXPECT_THROW(coupling_matrix(t.net), config_error);
  auto o = converged(gep_method::rbp);
  o.rbp_dense = true;
  std::vector<double> g(t.net.n_params());
  EXPECT_THROW(generalized_ep<double>(o).estimate(t.net, t.x, t.y, g), config_error);
  vf_spec bad = t.net.spec();
  bad.topology = vf_topology::loop;
  EXPECT_THROW(vector_field_network<double>{bad}, config_error);
  // Homeostasis inside the estimator (lambda > 0) adds its gradient.
  auto oh = converged(gep_method::exact);
  oh.homeo_lambda = 1;
  std::vector<double> g1(t.net.n_params()), g0(t.net.n_params());
  const auto r1 = generalized_ep<double>(oh).estimate(t.net, t.x, t.y, g1);
  generalized_ep<double>(converged(gep_method::exact)).estimate(t.net, t.x, t.y, g0);
  EXPECT_GT(r1.homeo_loss, 0);
  EXPECT_GT(relative_error(g1, g0), 1e-3);
}

// The driver on a ConvNet vector field: freezing compacts the pooled conv caches with the
// states, so an early-stopped, frozen free phase gives the fixed-step estimate; column slices on threads give the
// one-thread estimate to rounding.
TEST(GeneralizedEpConv, FreezingAndThreadSlicesKeepTheEstimate) {
  conv_toy t(90.0, 9, 11);
  auto fixed = converged(gep_method::cauchy, 2, 0.1);
  fixed.nudged_steps = 120;
  auto early = fixed;
  early.stop_early = true;
  gep_result rf, re;
  const auto gf = grad_of(t, fixed, &rf), ge = grad_of(t, early, &re);
  EXPECT_EQ(re.free.n_not_converged, rf.free.n_not_converged);  // the slow ones ran all T1 steps
  EXPECT_LT(re.free.sample_steps, re.free.steps * 9);           // the others froze
  EXPECT_LT(relative_error(ge, gf), 1e-9);
  RecordProperty("early_vs_fixed", sci(relative_error(ge, gf)));
  auto threaded = fixed;
  threaded.threads = 2;
  gep_result rt;
  const auto gt = grad_of(t, threaded, &rt);
  EXPECT_LT(relative_error(gt, gf), 1e-12);
  EXPECT_EQ(rt.predictions, rf.predictions);
}
