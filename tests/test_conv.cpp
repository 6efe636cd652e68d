// ConvNets inside the energy: kernels, pooling derivatives, exact references and
// the holomorphic estimator on small float64 ConvNets.
#include <cmath>
#include <complex>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/conv_ops.hpp"
#include "eqprop/learn/cauchy_ep.hpp"
#include "eqprop/learn/reference.hpp"

using namespace eqprop;

namespace {

matrix<double> random_matrix(long r, long c, uint64_t seed, double lo = -1, double hi = 1) {
  rng_t rng(seed);
  matrix<double> m(r, c);
  for (long i = 0; i < m.size(); ++i) m.data()[i] = lo + (hi - lo) * uniform01(rng);
  return m;
}

double dot(const matrix<double>& a, const matrix<double>& b) { return (a.array() * b.array()).sum(); }

connection_geometry conv_geom(int cin, int h, int w, int k, bool same, int cout, pool_kind pool, bool planar = false,
                              double temp = 1) {
  network_spec s;
  s.input_shape = {cin, h, w};
  s.conv = {{cout, k, same, pool}};
  s.pool_temperature = temp;
  auto g = s.geometry(0);
  g.planar_input = planar;
  return g;
}

// A small ConvNet: 2 x 8 x 8 input, conv 3 (3x3 SAME) + pool -> 4x4x3, conv 4 (3x3 VALID)
// -> 2x2 + pool -> 1x1x4, optional dense layers, softmax readout 3.
struct small_convnet {
  layered_network<double> net;
  matrix<double> x, y;
  small_convnet(pool_kind pool, activation_kind act, uint64_t seed = 1, long batch = 2, double scale = 0.6,
                std::vector<int> dense = {}) {
    network_spec s;
    s.input_shape = {2, 8, 8};
    s.conv = {{3, 3, true, pool}, {4, 3, false, pool}};
    s.sizes = s.conv_sizes();
    for (int d : dense) s.sizes.push_back(d);
    s.n_readout = 3;
    s.activation = act;
    s.init_scale = scale;
    s.seed = seed;
    net = layered_network<double>(s);
    x = random_matrix(s.sizes[0], batch, seed + 7, 0, 1);
    rng_t rng(seed + 11);
    std::vector<int32_t> labels(batch);
    for (auto& l : labels) l = int32_t(random_index(rng, 3));
    y = one_hot<double>(labels, 3);
  }
};

const relax_options converged{20000, 1e-15, true};

}  // namespace

TEST(ConvGeometry, VggSizesAndParameterCounts) {
  // VGG-4 (hep.md §6.2) on 32x32x3: 16x16x128, 8x8x256, 4x4x512, VALID 2x2 -> pool 1x1x512.
  network_spec s;
  s.input_shape = {3, 32, 32};
  s.conv = make_conv_layers({128, 256, 512, 512}, {3}, {"same", "same", "same", "valid"}, {"softmax"});
  EXPECT_EQ(s.conv_sizes(), (std::vector<int>{3072, 16 * 16 * 128, 8 * 8 * 256, 4 * 4 * 512, 512}));
  s.sizes = s.conv_sizes();
  s.n_readout = 10;
  EXPECT_EQ(param_layout(s).back().offset + param_layout(s).back().size(),
            (27 * 128 + 128) + (1152 * 256 + 256) + (2304 * 512 + 512) + (4608 * 512 + 512) + (512 * 10 + 10));
  // VGG-6 (§6.3): 16x16x128, 16x16x128, 8x8x256, 6x6x256, 3x3x512, 1x1x512.
  s.conv = make_conv_layers({128, 128, 256, 256, 512, 512}, {3}, {"same", "same", "same", "valid", "same", "valid"},
                            {"softmax", "none", "softmax", "none", "softmax", "none"});
  EXPECT_EQ(s.conv_sizes(), (std::vector<int>{3072, 32768, 32768, 16384, 9216, 4608, 512}));
  // Clear errors.
  EXPECT_THROW(make_conv_layers({4, 4}, {3, 3, 3}, {"same"}, {"softmax"}), config_error);
  EXPECT_THROW(make_conv_layers({4}, {3}, {"full"}, {"softmax"}), config_error);
  EXPECT_THROW(make_conv_layers({4}, {3}, {"same"}, {"median"}), config_error);
  s.conv = make_conv_layers({4}, {2}, {"same"}, {"none"});
  EXPECT_THROW(s.conv_sizes(), config_error);  // even kernel with SAME
  s.input_shape = {1, 2, 2};
  s.conv = make_conv_layers({4}, {3}, {"valid"}, {"none"});
  EXPECT_THROW(s.conv_sizes(), config_error);  // does not fit
  s.input_shape = {3, 8, 8};
  s.conv = make_conv_layers({4}, {3}, {"same"}, {"softmax"});
  s.sizes = {192, 64};  // wrong conv size (4x4x4 = 64 is right: check a wrong one)
  s.sizes = {192, 65};
  EXPECT_THROW(s.validate(), config_error);
}

TEST(ConvOps, ForwardMatchesDirectConvolutionOnPlanarInput) {
  const auto g = conv_geom(2, 5, 4, 3, true, 3, pool_kind::none, true);
  const matrix<double> W = random_matrix(g.cout, g.patch(), 1);
  const matrix<double> x = random_matrix(g.in_size(), 2, 2);
  matrix<double> col, z;
  conv_forward<double, double>(g, const_matrix_map<double>(W.data(), W.rows(), W.cols()), x, col, z);
  double worst = 0;
  for (long b = 0; b < 2; ++b)
    for (int co = 0; co < g.cout; ++co)
      for (int y = 0; y < g.ho; ++y)
        for (int xo = 0; xo < g.wo; ++xo) {
          double acc = 0;
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx)
              for (int ci = 0; ci < g.cin; ++ci) {
                const int yi = y + ky - 1, xi = xo + kx - 1;
                if (yi < 0 || yi >= g.h || xi < 0 || xi >= g.w) continue;
                acc += W(co, ci + g.cin * (kx + 3 * ky)) * x(ci * g.h * g.w + yi * g.w + xi, b);
              }
          worst = std::max(worst, std::abs(acc - z(co + g.cout * (xo + g.wo * y), b)));
        }
  EXPECT_LT(worst, 1e-14);
}

TEST(ConvOps, TransposeIsTheExactAdjoint) {
  for (bool same : {true, false}) {
    const auto g = conv_geom(3, 6, 5, 3, same, 4, pool_kind::none);
    const matrix<double> W = random_matrix(g.cout, g.patch(), 3);
    const const_matrix_map<double> Wm(W.data(), W.rows(), W.cols());
    const matrix<double> l = random_matrix(g.in_size(), 3, 4), dz = random_matrix(g.conv_size(), 3, 5);
    matrix<double> col, z, dl;
    conv_forward<double, double>(g, Wm, l, col, z);
    conv_transpose<double, double>(g, Wm, dz, col, dl, false);
    EXPECT_NEAR(dot(z, dz), dot(l, dl), 1e-12 * std::abs(dot(z, dz))) << "same=" << same;
    // Weight gradient of <dz, conv(l)> is linear in W: <gW, W> = <dz, z>.
    matrix<double> gW = matrix<double>::Zero(W.rows(), W.cols());
    conv_weight_grad<double, double>(g, dz, l, col, 1.0, matrix_map<double>(gW.data(), gW.rows(), gW.cols()));
    EXPECT_NEAR(dot(gW, W), dot(dz, z), 1e-12 * std::abs(dot(dz, z)));
  }
}

TEST(ConvOps, PoolingDerivativesMatchFiniteDifferences) {
  for (auto pool : {pool_kind::softmax, pool_kind::avg, pool_kind::max})
    for (double temp : {1.0, 10.0}) {
      const auto g = conv_geom(2, 5, 5, 3, false, 3, pool, false, temp);  // 3x3 -> pooled 1x1 (row/col 3 left out)
      const long B = 2;
      const matrix<double> z = random_matrix(g.conv_size(), B, 6, -2, 2), v = random_matrix(g.conv_size(), B, 7);
      const matrix<double> u = random_matrix(g.out_size(), B, 8);
      matrix<double> jv, jtu, hv, p1, p0;
      pool_jvp(g, z, v, jv);
      pool_vjp(g, z, u, jtu);
      pool_hvp(g, z, u, v, hv);
      EXPECT_NEAR(dot(jv, u), dot(v, jtu), 1e-12) << to_string(pool);
      const double h = 1e-6;
      pool_forward(g, matrix<double>(z + h * v), p1);
      pool_forward(g, matrix<double>(z - h * v), p0);
      EXPECT_LT(((p1 - p0) / (2 * h) - jv).cwiseAbs().maxCoeff(), 1e-8) << to_string(pool);
      matrix<double> a1, a0;
      pool_vjp(g, matrix<double>(z + h * v), u, a1);
      pool_vjp(g, matrix<double>(z - h * v), u, a0);
      EXPECT_LT(((a1 - a0) / (2 * h) - hv).cwiseAbs().maxCoeff(), 1e-8) << to_string(pool);
      if (pool == pool_kind::softmax) {
        EXPECT_GT(hv.cwiseAbs().maxCoeff(), 1e-3);  // curvature is really there
      }
    }
}

TEST(ConvOps, SoftmaxPoolIsHolomorphic) {
  // Cauchy-Riemann: the complex derivative along i v equals i times the one along v.
  const auto g = conv_geom(2, 4, 4, 3, true, 2, pool_kind::softmax);
  using cd = std::complex<double>;
  const matrix<cd> z =
      random_matrix(g.conv_size(), 1, 9).cast<cd>() + cd(0, 0.3) * random_matrix(g.conv_size(), 1, 10).cast<cd>();
  const matrix<cd> v = random_matrix(g.conv_size(), 1, 11).cast<cd>();
  matrix<cd> jv, p1, p0, q1, q0;
  pool_jvp(g, z, v, jv);
  const double h = 1e-6;
  pool_forward(g, matrix<cd>(z + cd(h) * v), p1);
  pool_forward(g, matrix<cd>(z - cd(h) * v), p0);
  pool_forward(g, matrix<cd>(z + cd(0, h) * v), q1);
  pool_forward(g, matrix<cd>(z - cd(0, h) * v), q0);
  EXPECT_LT(((p1 - p0) / cd(2 * h) - jv).cwiseAbs().maxCoeff(), 1e-8);
  EXPECT_LT(((q1 - q0) / cd(0, 2 * h) - jv).cwiseAbs().maxCoeff(), 1e-8);
}

TEST(ConvReference, BpttMatchesComplexStepThroughSoftmaxPooling) {
  // The T-step loss differentiated by hand (including the pooling curvature in the
  // top-down term) against complex-step differences, for every parameter.
  for (auto pool : {pool_kind::softmax, pool_kind::avg}) {
    small_convnet c(pool, activation_kind::holotanh, 2, 2, 0.6, {5});
    const long T = 12;
    std::vector<double> g(c.net.n_params());
    bptt_gradient<double> bp(T);
    bp.estimate(c.net, c.x, c.y, g);
    const auto cs = complex_step_gradient_steps(c.net, c.x, c.y, T);
    EXPECT_LT(relative_error(g, cs), 1e-11) << to_string(pool);
  }
}

TEST(ConvReference, ImplicitMatchesBpttAndComplexStepAtTheFixedPoint) {
  small_convnet c(pool_kind::softmax, activation_kind::holotanh, 3);
  std::vector<double> imp(c.net.n_params()), bp(c.net.n_params());
  implicit_gradient<double> ig(converged);
  ig.estimate(c.net, c.x, c.y, imp);
  EXPECT_EQ(ig.last_solver(), adjoint_solver::iterative);
  bptt_gradient<double>(400).estimate(c.net, c.x, c.y, bp);
  EXPECT_LT(relative_error(bp, imp), 1e-9);
  const auto cs = complex_step_gradient(c.net, c.x, c.y, converged);
  EXPECT_LT(relative_error(cs, imp), 1e-9);
  EXPECT_THROW((implicit_gradient<double>(converged, adjoint_solver::dense).estimate(c.net, c.x, c.y, imp)),
               config_error);
}

namespace {
double hep_error(const small_convnet& c, const std::vector<double>& ref, int N, double beta) {
  ep_options o;
  o.n_points = N;
  o.beta = beta;
  o.free = converged;
  o.nudged = converged;
  cauchy_ep<double> est(o);
  std::vector<double> g(c.net.n_params());
  est.estimate(c.net, c.x, c.y, g);
  return relative_error(g, ref);
}
}  // namespace

TEST(ConvEstimator, HolomorphicEpIsExactOnSoftmaxPooledConvNet) {
  // N = 4 at |beta| = 0.1 within 1e-5 of the exact gradient, falling like |beta|^N.
  small_convnet c(pool_kind::softmax, activation_kind::holotanh, 4);
  std::vector<double> ref(c.net.n_params());
  implicit_gradient<double>(converged).estimate(c.net, c.x, c.y, ref);
  const double e1 = hep_error(c, ref, 1, 0.1), e2 = hep_error(c, ref, 2, 0.1), e4 = hep_error(c, ref, 4, 0.1);
  const double e8 = hep_error(c, ref, 8, 0.1);
  RecordProperty("rel_error_N1", std::to_string(e1));
  RecordProperty("rel_error_N4", std::to_string(e4));
  EXPECT_LE(e4, 1e-5);
  EXPECT_LT(e2, e1);
  EXPECT_LT(e4, e2);
  EXPECT_LT(e8, 1e-8);
  // Scaling order of N = 2: error(|beta|) ~ |beta|^2.
  const double slope = std::log(hep_error(c, ref, 2, 0.2) / hep_error(c, ref, 2, 0.05)) / std::log(4.0);
  EXPECT_NEAR(slope, 2.0, 0.1);
}

TEST(ConvEstimator, MaxPoolingIsNotMadeExactByMorePoints) {
  // The non-holomorphic control: the same net (seed 1) with max pooling, |beta| = 1.
  // Softmax pooling: N = 4 / 16 / 32 give 7.6e-3 / 2.8e-8 / 1.6e-13. Max pooling: 8.5e-2 /
  // 2.4e-2 / 2.6e-2: once the nudges move argmaxes, more points do not help. (At small
  // |beta| no argmax moves and max pooling is locally linear, hence exact too.)
  const relax_options tight{20000, 1e-12, true};
  auto err = [&](pool_kind pool, int N) {
    small_convnet c(pool, activation_kind::holotanh, 1);
    std::vector<double> ref(c.net.n_params());
    implicit_gradient<double>(tight).estimate(c.net, c.x, c.y, ref);
    ep_options o;
    o.n_points = N;
    o.beta = 1.0;
    o.free = tight;
    o.nudged = tight;
    cauchy_ep<double> est(o);
    std::vector<double> g(c.net.n_params());
    est.estimate(c.net, c.x, c.y, g);
    return relative_error(g, ref);
  };
  const double soft32 = err(pool_kind::softmax, 32), max16 = err(pool_kind::max, 16), max32 = err(pool_kind::max, 32);
  RecordProperty("maxpool_rel_error_N32", std::to_string(max32));
  EXPECT_LT(soft32, 1e-10);
  EXPECT_GT(max16, 1e-2);
  EXPECT_GT(max32, 0.5 * max16);
}

TEST(ConvBaseline, FeedforwardBackpropMatchesFiniteDifferences) {
  for (auto pool : {pool_kind::softmax, pool_kind::max}) {
    small_convnet c(pool, activation_kind::tanh, 5, 3, 0.6, {6});
    network_spec s = c.net.spec();
    s.feedforward = true;
    layered_network<double> ff(s);
    std::vector<double> g(ff.n_params());
    feedforward_backprop<double> bp;
    const auto r = bp.estimate(ff, c.x, c.y, g);
    EXPECT_TRUE(r.free.converged());
    const auto fd = finite_difference_gradient_steps(ff, c.x, c.y, 1, 1e-3, fd_stencil::central4);
    EXPECT_LT(relative_error(g, fd), 1e-8) << to_string(pool);
    // The recurrent network refuses the feed-forward estimator.
    EXPECT_THROW(bp.estimate(c.net, c.x, c.y, g), config_error);
  }
}

// conv_forward and conv_transpose process a large layer's batch in chunks of samples (so that
// the patch matrix stays cache-sized): here 147 k patch entries per sample, 7 samples per
// chunk, a batch of 10 in two unequal chunks. Both must equal the whole-batch im2col product
// (and the transpose stay the exact adjoint), for real and complex states.
TEST(ConvOps, ChunkedBatchEqualsWholeBatchProduct) {
  const auto g = conv_geom(16, 32, 32, 3, true, 8, pool_kind::none);
  ASSERT_GT(g.patch() * g.ho * g.wo * 10, 1L << 20);  // chunking is on
  const matrix<double> W = random_matrix(g.cout, g.patch(), 7);
  const const_matrix_map<double> Wm(W.data(), W.rows(), W.cols());
  const matrix<double> l = random_matrix(g.in_size(), 10, 8), dz = random_matrix(g.conv_size(), 10, 9);
  matrix<double> col, z, dl, whole_col;
  conv_forward<double, double>(g, Wm, l, col, z);
  im2col(g, l, whole_col);
  const matrix<double> zw = W * whole_col;
  EXPECT_LT((z - Eigen::Map<const matrix<double>>(zw.data(), g.conv_size(), 10)).cwiseAbs().maxCoeff(), 1e-12);
  conv_transpose<double, double>(g, Wm, dz, col, dl, false);
  matrix<double> dlw = matrix<double>::Zero(g.in_size(), 10);
  const matrix<double> cw = W.transpose() * Eigen::Map<const matrix<double>>(dz.data(), g.cout, long(g.ho) * g.wo * 10);
  col2im_add(g, cw, dlw);
  EXPECT_LT((dl - dlw).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_NEAR(dot(z, dz), dot(l, dl), 1e-11 * std::abs(dot(z, dz)));
  using C = std::complex<double>;
  const matrix<C> lc = l.cast<C>() + C(0, 1) * random_matrix(g.in_size(), 10, 10).cast<C>();
  matrix<C> colc, zc;
  conv_forward<C, double>(g, Wm, lc, colc, zc);
  matrix<double> zr, zi;
  conv_forward<double, double>(g, Wm, matrix<double>(lc.real()), col, zr);
  conv_forward<double, double>(g, Wm, matrix<double>(lc.imag()), col, zi);
  EXPECT_LT((zc.real() - zr).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LT((zc.imag() - zi).cwiseAbs().maxCoeff(), 1e-12);
}

// relax.order = alternating on pooled conv layers: the even layers' top-down terms use the
// pre-pooling conv outputs z of the odd layers, which the previous alternating step left
// current. The same fixed point as synchronous steps (softmax and max pooling), in fewer
// steps; with per-sample freezing (z compacted with the states); and after the states were
// replaced from outside (z recomputed: one step equals the step of a fresh state).
TEST(ConvRelax, AlternatingOrderOnPooledLayersSameFixedPoint) {
  auto max_diff = [](const auto& a, const auto& b) {
    double m = 0;
    for (size_t j = 0; j < a.size(); ++j) m = std::max(m, double((a[j] - b[j]).cwiseAbs().maxCoeff()));
    return m;
  };
  for (auto pool : {pool_kind::softmax, pool_kind::max}) {
    const small_convnet c(pool, activation_kind::hep_sigmoid, 3, 5, 0.6, {6});  // layer 1: conv + pool (odd)
    ASSERT_NE(c.net.geometry(1).pool, pool_kind::none);
    relax_options sync{5000, 1e-13, true}, alt = sync;
    alt.order = relax_order::alternating;
    alt.freeze_converged = sync.freeze_converged = false;
    relax_state<double> s, a;
    s.set_input(c.net, c.x, c.y);
    a.set_input(c.net, c.x, c.y);
    const auto rs = s.relax(c.net, 0.5, sync), ra = a.relax(c.net, 0.5, alt);
    ASSERT_TRUE(rs.converged() && ra.converged()) << to_string(pool);
    EXPECT_LT(max_diff(s.h(), a.h()), 1e-11) << to_string(pool);
    EXPECT_LT(ra.steps, rs.steps) << to_string(pool);
    std::printf("%s pooling: alternating %ld steps, synchronous %ld\n", std::string(to_string(pool)).c_str(), ra.steps,
                rs.steps);

    // Freezing: samples stop at tol 1e-9 and the rest compact; each frozen sample is within
    // tol-scale distance of the fixed point and the order of columns is kept.
    relax_options frz = alt;
    frz.tol = 1e-9;
    frz.freeze_converged = true;
    relax_state<double> f;
    f.set_input(c.net, c.x, c.y);
    const auto rf = f.relax(c.net, 0.5, frz);
    ASSERT_TRUE(rf.converged());
    EXPECT_LT(rf.sample_steps, rf.steps * c.x.cols());  // some samples did freeze
    EXPECT_LT(max_diff(f.h(), a.h()), 1e-7) << to_string(pool);

    // States replaced from outside between alternating steps: the step recomputes z.
    relax_state<double> p, q;
    p.set_input(c.net, c.x, c.y);
    for (int t = 0; t < 3; ++t) p.step(c.net, 0.0, 0, nullptr, 1, relax_order::alternating);
    p.copy_states_from(s);
    q.set_input(c.net, c.x, c.y);
    q.copy_states_from(s);
    q.h()[0].array() += 0.01;  // through the writable accessor
    p.h()[0].array() += 0.01;
    p.step(c.net, 0.2, 0, nullptr, 1, relax_order::alternating);
    q.step(c.net, 0.2, 0, nullptr, 1, relax_order::alternating);
    EXPECT_LT(max_diff(p.h(), q.h()), 1e-15) << to_string(pool);
  }
}
