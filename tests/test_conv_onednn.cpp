// The oneDNN convolution kernels (conv_backend::onednn) against the im2col path, in float32:
// each operation on small odd shapes, the blocked weights after the parameters change, and
// whole relaxations of a small ConvNet.
#include <algorithm>
#include <complex>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/conv_ops.hpp"
#include "eqprop/dynamics/relax.hpp"

using namespace eqprop;

namespace {

using C = std::complex<float>;

template <class T>
matrix<T> random_matrix(long r, long c, uint64_t seed) {
  rng_t rng(seed);
  matrix<T> m(r, c);
  for (long i = 0; i < m.size(); ++i) {
    const float re = float(2 * uniform01(rng) - 1);
    if constexpr (is_complex_v<T>) m.data()[i] = T(re, float(2 * uniform01(rng) - 1));
    else m.data()[i] = re;
  }
  return m;
}

template <class T>
double rel(const matrix<T>& a, const matrix<T>& b) {
  return double((a - b).norm() / b.norm());
}

// Sets the conv backend for its lifetime (the setting is process-wide).
struct backend_guard {
  const conv_backend before = conv_backend_in_use();
  explicit backend_guard(conv_backend b) { set_conv_backend(b); }
  ~backend_guard() { set_conv_backend(before); }
};

// A conv layer on HWC states (not the planar network input).
connection_geometry geom(int cin, int h, int w, int k, bool same, int cout) {
  network_spec s;
  s.input_shape = {cin, h, w};
  s.conv = {{cout, k, same, pool_kind::none}};
  auto g = s.geometry(0);
  g.planar_input = false;
  return g;
}

// The three operations of one geometry and batch, through the backend in use.
template <class T>
struct conv_results {
  matrix<T> z, dl, dl_acc;
  matrix<float> gW;
  conv_results(const connection_geometry& g, const matrix<float>& W, const matrix<T>& l, const matrix<T>& dz,
               const matrix<T>& acc, T coef) {
    const const_matrix_map<float> Wm(W.data(), W.rows(), W.cols());
    matrix<T> col;
    conv_forward<T, float>(g, Wm, l, col, z);
    gW = matrix<float>::Constant(W.rows(), W.cols(), 0.5f);
    conv_weight_grad<T, float>(g, dz, l, col, coef, matrix_map<float>(gW.data(), gW.rows(), gW.cols()));
    conv_transpose<T, float>(g, Wm, dz, col, dl, false);
    dl_acc = acc;
    conv_transpose<T, float>(g, Wm, dz, col, dl_acc, true);
  }
};

template <class T>
void expect_backends_agree(const connection_geometry& g, long B, uint64_t seed) {
  const matrix<float> W = random_matrix<float>(g.cout, g.patch(), seed);
  const matrix<T> l = random_matrix<T>(g.in_size(), B, seed + 1), dz = random_matrix<T>(g.conv_size(), B, seed + 2),
                  acc = random_matrix<T>(g.in_size(), B, seed + 3);
  T coef(-0.7f);
  if constexpr (is_complex_v<T>) coef = T(-0.7f, 0.4f);
  const auto ref = [&] {
    backend_guard b(conv_backend::im2col);
    return conv_results<T>(g, W, l, dz, acc, coef);
  }();
  const backend_guard b(conv_backend::onednn);
  const std::string where = ::testing::PrintToString(std::vector<int>{g.cin, g.h, g.w, g.k, g.pad, g.cout, int(B)});
  const auto ops = conv_onednn_serves(g, is_complex_v<T> ? 2 * B : B);
  ASSERT_TRUE(ops.forward && ops.weight_grad) << where;
  if (g.ho == g.h) {
    EXPECT_TRUE(ops.transpose) << where;  // (VALID: the im2col path, faster)
  }
  const conv_results<T> got(g, W, l, dz, acc, coef);
  EXPECT_LT(rel(got.z, ref.z), 1e-6) << where;
  EXPECT_LT(rel(got.gW, ref.gW), 1e-6) << where;
  EXPECT_LT(rel(got.dl, ref.dl), 1e-6) << where;
  EXPECT_LT(rel(got.dl_acc, ref.dl_acc), 1e-6) << where;
}

// A float32 ConvNet with channels that are not multiples of 8: 3 x 12 x 12 input, conv 5
// (3x3 SAME) + max pool -> 6x6x5, conv 5 (3x3 SAME) -> 6x6x5, dense 6, readout 3. (With as
// many inputs as outputs, the blocked weights of the second conv and of its transpose have
// the same shape.)
struct small_net {
  layered_network<float> net;
  matrix<float> x, y;
  explicit small_net(long B) {
    network_spec s;
    s.input_shape = {3, 12, 12};
    s.conv = {{5, 3, true, pool_kind::max}, {5, 3, true, pool_kind::none}};
    s.sizes = s.conv_sizes();
    s.sizes.push_back(6);
    s.n_readout = 3;
    s.activation = activation_kind::hep_sigmoid;
    s.init_scale = 0.5;
    s.seed = 3;
    net = layered_network<float>(s);
    x = random_matrix<float>(s.sizes[0], B, 5).cwiseAbs();
    rng_t rng(6);
    std::vector<int32_t> labels(size_t(B), 0);
    for (auto& lb : labels) lb = int32_t(random_index(rng, 3));
    y = one_hot<float>(labels, 3);
  }
  // The states after 40 fixed nudged steps from zero.
  std::vector<matrix<float>> relaxed() const {
    relax_state<float> st;
    st.set_input(net, x, y);
    relax_options o;
    o.max_steps = 40;
    st.relax(net, 0.5f, o);
    return st.h();
  }
};

double worst_layer(const std::vector<matrix<float>>& a, const std::vector<matrix<float>>& b) {
  double w = 0;
  for (size_t j = 0; j < a.size(); ++j) w = std::max(w, rel(a[j], b[j]));
  return w;
}

}  // namespace

// Each operation (forward, transpose overwriting and accumulating, weight gradient) equals
// the im2col path to float rounding: kernels 3 and 5, SAME and VALID, channels that are not
// multiples of 8 (few and many: either activation layout), batches 1 and 7, real and
// complex states. (oneDNN has no fast kernel for a planar input with HWC outputs: the
// network input's convolution takes the im2col path, as do images below 16 pixels.)
TEST(ConvOnednn, OperationsEqualTheIm2colPath) {
  if (!conv_onednn_serves(geom(3, 7, 6, 3, true, 5), 1).forward) GTEST_SKIP() << "eqprop was built without oneDNN";
  uint64_t seed = 10;
  for (long B : {1L, 7L}) {
    for (int k : {3, 5})
      for (bool same : {true, false}) {
        expect_backends_agree<float>(geom(3, 9, 8, k, same, 5), B, seed += 4);
        expect_backends_agree<float>(geom(10, 9, 8, k, same, 13), B, seed += 4);
        expect_backends_agree<C>(geom(6, 9, 9, k, same, 11), B, seed += 4);
      }
    // 128 channels or more: activations in oneDNN's blocked layout on AVX2.
    for (bool same : {true, false}) {
      expect_backends_agree<float>(geom(129, 6, 6, 3, same, 130), B, seed += 4);
      expect_backends_agree<C>(geom(129, 6, 6, 3, same, 130), B, seed += 4);
    }
  }
}

// The blocked copies of the weights follow the parameters: after W changes in place (same
// address), outside any scope and in a new scope, and between two relaxations of a network
// whose parameters were changed through params().
TEST(ConvOnednn, BlockedWeightsAreRefreshedAfterTheParametersChange) {
  const auto g = geom(6, 7, 7, 3, true, 11);
  if (!conv_onednn_serves(g, 4).transpose) GTEST_SKIP() << "eqprop was built without oneDNN";
  // W changes by copies into its buffer (its address stays).
  const matrix<float> W1 = random_matrix<float>(g.cout, g.patch(), 1), W2 = random_matrix<float>(g.cout, g.patch(), 2);
  matrix<float> W = W1;
  const const_matrix_map<float> Wm(W.data(), W.rows(), W.cols());
  const matrix<float> l = random_matrix<float>(g.in_size(), 4, 3), dz = random_matrix<float>(g.conv_size(), 4, 4);
  auto both = [&](matrix<float>& z, matrix<float>& dl) {
    matrix<float> col;
    conv_forward<float, float>(g, Wm, l, col, z);
    conv_transpose<float, float>(g, Wm, dz, col, dl, false);
  };
  matrix<float> z_ref, dl_ref, z, dl;
  {
    const backend_guard b(conv_backend::im2col);
    W = W2;
    both(z_ref, dl_ref);
    W = W1;
  }
  {
    const conv_weights_unchanged scope;
    both(z, dl);  // blocked copies of the first W
    EXPECT_GT(rel(z, z_ref), 0.1);
  }
  W = W2;  // outside a scope: the next call reorders again
  both(z, dl);
  EXPECT_LT(rel(z, z_ref), 1e-6);
  EXPECT_LT(rel(dl, dl_ref), 1e-6);
  W = W1;
  {
    const conv_weights_unchanged scope;
    both(z, dl);
    both(z, dl);  // from the copies made in this scope
  }
  W = W2;
  {
    const conv_weights_unchanged scope;  // a new scope: copies of the W of now
    both(z, dl);
    EXPECT_LT(rel(z, z_ref), 1e-6);
    EXPECT_LT(rel(dl, dl_ref), 1e-6);
  }

  // Relaxations: the second one, after the parameters changed in place, equals the im2col
  // relaxation with the new parameters.
  small_net s(5);
  const auto ops = conv_onednn_serves(s.net.geometry(1), 5);  // (the planar input layer takes im2col)
  ASSERT_TRUE(ops.forward && ops.transpose);
  const std::vector<float> p1(s.net.params().begin(), s.net.params().end());
  const auto first = s.relaxed();
  for (auto& p : s.net.params()) p *= -1.3f;
  const auto second = s.relaxed();
  std::vector<matrix<float>> ref_first, ref_second;
  {
    const backend_guard b(conv_backend::im2col);
    ref_second = s.relaxed();
    std::copy(p1.begin(), p1.end(), s.net.params().begin());
    ref_first = s.relaxed();
  }
  EXPECT_LT(worst_layer(first, ref_first), 1e-5);
  EXPECT_LT(worst_layer(second, ref_second), 1e-5);
  EXPECT_GT(worst_layer(second, ref_first), 1e-2);  // the change matters
}
