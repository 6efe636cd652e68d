// Core numerics: activations, relaxation, parameters, optimisers.
#include <array>
#include <cmath>
#include <complex>
#include <functional>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/matmul.hpp"
#include "eqprop/dynamics/relax.hpp"
#include "eqprop/model/activation.hpp"
#include "eqprop/train/optimizer.hpp"
#include "test_util.hpp"

using namespace eqprop;
using cd = std::complex<double>;
using cf = std::complex<float>;

namespace {
std::string error_text(const std::function<void()>& f) { return test::error_of<config_error>(f); }

/// Calls f(Act{}) with the functor of the table whose name is to_string(k).
template <class F>
void with_activation(activation_kind k, F&& f) {
  int found = 0;
  auto try_one = [&](auto a) {
    if (decltype(a)::name == to_string(k)) ++found, f(a);
  };
  std::apply([&](auto... a) { (try_one(a), ...); },
             std::tuple<act::hep_sigmoid, act::logistic, act::holotanh, act::tanh, act::half_clamp01, act::clamp01,
                        act::relu, act::linear, act::softplus>{});
  EXPECT_EQ(found, 1) << to_string(k);
}
}  // namespace

template <class Act>
void check_derivative(const char* name) {
  // Complex-step derivative of the real function vs the analytic derivative, and the
  // holomorphic derivative at complex points vs a complex central difference.
  for (double x : {-3.0, -0.7, 0.0, 0.4, 0.5, 1.3, 2.7}) {
    if constexpr (Act::holomorphic) {
      const double h = 1e-30;
      const double cs = Act::value(cd(x, h)).imag() / h;
      EXPECT_NEAR(Act::deriv(x), cs, 1e-12 * (1 + std::abs(cs))) << name << " x=" << x;
      const cd z(x, 0.3), dz(1e-6, 0);
      const cd fd = (Act::value(z + dz) - Act::value(z - dz)) / (2.0 * dz);
      EXPECT_LT(std::abs(Act::deriv(z) - fd), 1e-8) << name << " z=" << z;
    } else {
      if (std::abs(x) < 1e-3 || std::abs(x - 2) < 1e-3) continue;  // kinks
      const double h = 1e-6;
      EXPECT_NEAR(Act::deriv(x), (Act::value(x + h) - Act::value(x - h)) / (2 * h), 1e-8) << name << " x=" << x;
    }
  }
}

TEST(Activation, DerivativesMatchDifferences) {
  check_derivative<act::hep_sigmoid>("hep_sigmoid");
  check_derivative<act::logistic>("logistic");
  check_derivative<act::holotanh>("holotanh");
  check_derivative<act::tanh>("tanh");
  check_derivative<act::half_clamp01>("half_clamp01");
  check_derivative<act::clamp01>("clamp01");
  check_derivative<act::relu>("relu");
  check_derivative<act::linear>("linear");
  check_derivative<act::softplus>("softplus");
}

TEST(Activation, EachNameIsOneFunction) {
  EXPECT_NEAR(act::hep_sigmoid::value(0.5), 0.5, 1e-15);
  EXPECT_NEAR(act::hep_sigmoid::value(0.0), 1.0 / (1.0 + std::exp(2.0)), 1e-15);
  EXPECT_NEAR(act::logistic::value(0.0), 0.5, 1e-15);
  EXPECT_NEAR(act::logistic::value(0.5), 1.0 / (1.0 + std::exp(-0.5)), 1e-15);
  // holotanh approximates clip(z/2, 0, 1) away from the corners.
  EXPECT_NEAR(act::holotanh::value(-10.0), 0.0, 1e-3);
  EXPECT_NEAR(act::holotanh::value(12.0), 1.0, 1e-3);
  EXPECT_NEAR(act::holotanh::value(1.0), 0.5, 1e-12);
  EXPECT_EQ(act::half_clamp01::value(3.0), 1.0);
  EXPECT_EQ(act::half_clamp01::value(1.0), 0.5);
  EXPECT_EQ(act::half_clamp01::value(-1.0), 0.0);
  EXPECT_EQ(act::clamp01::value(1.0), 1.0);
  EXPECT_EQ(act::clamp01::value(0.25), 0.25);
  EXPECT_EQ(act::clamp01::value(-1.0), 0.0);
  EXPECT_NEAR(act::softplus::value(0.0), std::log(2.0), 1e-15);
  EXPECT_NEAR(act::softplus::value(-40.0), std::exp(-40.0), 1e-30);
  EXPECT_NEAR(act::softplus::value(40.0), 40.0, 1e-12);
  EXPECT_NEAR(act::softplus::value(cd(1.0, 0.2)).imag(), std::log(1.0 + std::exp(cd(1.0, 0.2))).imag(), 1e-14);
  EXPECT_EQ(act::linear::value(-2.5), -2.5);
  // The holomorphic flags, and every name round-trips through the parser.
  for (const std::string& name : activation_names()) {
    const activation_kind k = parse_activation(name);
    EXPECT_EQ(to_string(k), name);
    const bool holo = name == "hep_sigmoid" || name == "logistic" || name == "holotanh" || name == "tanh" ||
                      name == "linear" || name == "softplus";
    EXPECT_EQ(is_holomorphic(k), holo) << name;
  }
  EXPECT_EQ(activation_names().size(), 9u);
}

// GLE's vectorised application computes the same functions as the scalar table.
template <class R>
void check_apply_activation(double tol) {
  matrix<R> u(3, 7), r, d;
  for (long i = 0; i < u.size(); ++i) u.data()[i] = R(-3.1 + 0.3 * double(i));
  for (const std::string& name : activation_names()) {
    const activation_kind k = parse_activation(name);
    apply_activation<R>(k, u, r, d);
    ASSERT_EQ(r.rows(), 3);
    ASSERT_EQ(d.cols(), 7);
    double worst = 0;
    with_activation(k, [&](auto a) {
      using Act = decltype(a);
      for (long i = 0; i < u.size(); ++i) {
        worst = std::max(worst, double(std::abs(r.data()[i] - Act::value(u.data()[i]))));
        worst = std::max(worst, double(std::abs(d.data()[i] - Act::deriv(u.data()[i]))));
      }
    });
    EXPECT_LT(worst, tol) << name;
  }
}

TEST(Activation, VectorisedApplicationMatchesScalarTable) {
  check_apply_activation<double>(1e-14);
  check_apply_activation<float>(1e-6);
}

TEST(Activation, ComplexLogisticIsOverflowSafe) {
  for (float re : {-200.f, -90.f, 90.f, 200.f}) {
    const cf v = logistic(cf(re, 0.3f));
    EXPECT_TRUE(std::isfinite(v.real()) && std::isfinite(v.imag())) << re;
    EXPECT_NEAR(std::abs(v), re > 0 ? 1.0f : 0.0f, 1e-6f);
  }
  const cf s = act::hep_sigmoid::value(cf(-100.f, 1.f)), d = act::hep_sigmoid::deriv(cf(-100.f, 1.f));
  EXPECT_TRUE(std::isfinite(s.real()) && std::isfinite(d.real()) && std::isfinite(d.imag()));
}

TEST(Activation, ParseAndRuntimeRefusal) {
  EXPECT_EQ(parse_activation("dsilu"), activation_kind::holotanh);
  EXPECT_EQ(parse_activation("softplus"), activation_kind::softplus);
  EXPECT_EQ(parse_activation("relu"), activation_kind::relu);
  EXPECT_NE(error_text([] { parse_activation("softplux"); }).find("did you mean 'softplus'"), std::string::npos);
  EXPECT_FALSE(is_holomorphic(activation_kind::relu));
  EXPECT_THROW(dispatch_activation<cd>(activation_kind::relu, [](auto) { return 0; }), config_error);
  EXPECT_FALSE(is_holomorphic(activation_kind::half_clamp01));
  EXPECT_TRUE(is_holomorphic(activation_kind::holotanh));
  EXPECT_THROW(dispatch_activation<cd>(activation_kind::half_clamp01, [](auto) { return 0; }), config_error);
  EXPECT_EQ(
      dispatch_activation<double>(activation_kind::half_clamp01, [](auto a) { return int(decltype(a)::holomorphic); }),
      0);
  // EP networks take the EP activations only, with a message naming them.
  for (auto k : {activation_kind::logistic, activation_kind::linear, activation_kind::softplus}) {
    EXPECT_FALSE(is_ep_activation(k));
    const std::string e = error_text([&] { dispatch_activation<double>(k, [](auto) { return 0; }); });
    EXPECT_NE(e.find("not available in EP networks; use hep_sigmoid, holotanh, tanh, half_clamp01, clamp01 or relu"),
              std::string::npos)
        << e;
  }
  network_spec s;
  s.sizes = {3, 4};
  s.n_readout = 2;
  s.activation = activation_kind::softplus;
  EXPECT_NE(error_text([&] { s.validate(); }).find("'softplus' is not available in EP networks"), std::string::npos);
}

TEST(Activation, OldNamesAreErrorsNamingTheNewOnes) {
  const std::string sig = error_text([] { parse_activation("sigmoid"); });
  EXPECT_EQ(sig,
            "activation 'sigmoid' was renamed: use 'hep_sigmoid' for logistic(4x-2) (what EP configs meant) or "
            "'logistic' for 1/(1+e^-x) (what GLE configs meant)");
  const std::string hard = error_text([] { parse_activation("hard_sigmoid"); });
  EXPECT_NE(hard.find("'half_clamp01' for clamp(x/2, 0, 1) (what EP configs meant)"), std::string::npos) << hard;
  EXPECT_NE(hard.find("'clamp01' for clamp(x, 0, 1) (what GLE configs meant)"), std::string::npos) << hard;
  EXPECT_NE(error_text([] { parse_activation("hardsigmoid"); }).find("half_clamp01"), std::string::npos);
  EXPECT_EQ(renamed_activation("sigmoid", activation_family::ep), activation_kind::hep_sigmoid);
  EXPECT_EQ(renamed_activation("sigmoid", activation_family::gle), activation_kind::logistic);
  EXPECT_EQ(renamed_activation("hard_sigmoid", activation_family::ep), activation_kind::half_clamp01);
  EXPECT_EQ(renamed_activation("hard_sigmoid", activation_family::gle), activation_kind::clamp01);
  EXPECT_FALSE(renamed_activation("tanh", activation_family::ep).has_value());
  EXPECT_EQ(renamed_activation_message("sigmoid", activation_family::gle),
            "activation 'sigmoid' was renamed: use 'logistic' for 1/(1+e^-x)");
}

namespace {
network_spec small_spec(output_kind out = output_kind::readout) {
  network_spec s;
  s.sizes = {3, 6, 4};
  s.n_readout = out == output_kind::readout ? 2 : 0;
  s.output = out;
  s.init_scale = 0.4;
  s.seed = 11;
  return s;
}
}  // namespace

// The float32 products (oneDNN where built with it, else Eigen) against a float64 product, in
// every mode the relaxation uses (W or W^T, overwrite or accumulate), at shapes on both sides of
// the size where oneDNN takes over; bfloat16 products are within bfloat16's rounding and not
// silently float32.
TEST(MatMul, Float32AndBfloat16MatchFloat64Product) {
  for (const auto [m, k, n] : {std::array<long, 3>{10, 37, 3}, {512, 512, 50}, {300, 700, 9}}) {
    for (bool transpose : {false, true}) {
      for (bool accumulate : {false, true}) {
        const long rows = transpose ? k : m, cols = transpose ? m : k;  // W's shape
        const matrix<float> W = matrix<float>::Random(rows, cols), X = matrix<float>::Random(k, n),
                            Y0 = matrix<float>::Random(m, n);
        const Eigen::MatrixXd Wd = W.cast<double>(), opW = transpose ? Eigen::MatrixXd(Wd.transpose()) : Wd;
        const Eigen::MatrixXd ref = opW * X.cast<double>() + (accumulate ? 1.0 : 0.0) * Y0.cast<double>();
        const const_matrix_map<float> Wm(W.data(), rows, cols);
        matrix<float> Y = Y0;
        matmul<float, float>(Wm, transpose, X.data(), n, Y.data(), accumulate);
        const double err = (Y.cast<double>() - ref).norm() / ref.norm();
        EXPECT_LT(err, 1e-6) << m << "x" << k << "x" << n << " transpose " << transpose << " acc " << accumulate;
        if (!bfloat16_available()) continue;
        Y = Y0;
        matmul<float, float>(Wm, transpose, X.data(), n, Y.data(), accumulate, matmul_precision::bfloat16);
        const double err16 = (Y.cast<double>() - ref).norm() / ref.norm();
        EXPECT_LT(err16, 1e-2) << m << "x" << k << "x" << n;
        EXPECT_GT(err16, 1e-4) << "bfloat16 requested but the product looks float32";
      }
    }
  }
  // Double and complex products ignore the precision and go through Eigen exactly.
  const Eigen::MatrixXd Wd = Eigen::MatrixXd::Random(6, 5), Xd = Eigen::MatrixXd::Random(5, 4);
  Eigen::MatrixXd Yd(6, 4);
  matmul<double, double>(const_matrix_map<double>(Wd.data(), 6, 5), false, Xd.data(), 4, Yd.data(), false,
                         matmul_precision::bfloat16);
  EXPECT_LT((Yd - Wd * Xd).norm(), 1e-14);
}

// Real weights times complex states (oneDNN over the stacked real and imaginary parts where
// built with it and the product is large enough, else Eigen's mixed product) against Eigen's
// mixed product, in every mode, on both sides of the size where the stacked path takes over
// (n 1, odd sizes, a 10-wide W, columns in blocks with a tail). float: within float rounding;
// double: always Eigen's.
template <class R>
void check_real_times_complex(double tol) {
  using C = std::complex<R>;
  for (const auto [m, k, n] : {std::array<long, 3>{256, 256, 1},
                               {256, 256, 40},
                               {256, 784, 3},
                               {33, 65, 7},
                               {301, 129, 9},
                               {64, 256, 5},
                               {10, 256, 40},
                               {7, 5, 1},
                               {32, 144, 300}}) {
    for (bool transpose : {false, true}) {
      for (bool accumulate : {false, true}) {
        const long rows = transpose ? k : m, cols = transpose ? m : k;
        const matrix<R> W = matrix<R>::Random(rows, cols);
        const matrix<C> X = matrix<C>::Random(k, n), Y0 = matrix<C>::Random(m, n);
        const const_matrix_map<R> Wm(W.data(), rows, cols);
        matrix<C> ref = accumulate ? Y0 : matrix<C>(matrix<C>::Zero(m, n));
        if (transpose) ref.noalias() += Wm.transpose() * X;
        else ref.noalias() += Wm * X;
        matrix<C> Y = Y0;
        matmul<C, R>(Wm, transpose, X.data(), n, Y.data(), accumulate);
        const double err = double((Y - ref).norm() / ref.norm());
        EXPECT_LT(err, tol) << m << "x" << k << "x" << n << " transpose " << transpose << " acc " << accumulate;
      }
    }
  }
}

TEST(MatMul, RealTimesComplexMatchesEigenMixedProduct) {
  check_real_times_complex<float>(1e-6);
  check_real_times_complex<double>(1e-14);
}

TEST(Network, LayoutAndInit) {
  layered_network<double> net(small_spec());
  const auto& lay = net.layout();
  ASSERT_EQ(lay.size(), 6u);
  EXPECT_EQ(lay[0].name, "W0");
  EXPECT_EQ(lay[0].rows, 6);
  EXPECT_EQ(lay[0].cols, 3);
  EXPECT_EQ(lay[4].name, "Wout");
  EXPECT_EQ(net.n_params(), 6 * 3 + 6 + 4 * 6 + 4 + 2 * 4 + 2);
  // Biases zero, weights truncated normal within 2 std.
  for (long i = 0; i < net.b(0).size(); ++i) EXPECT_EQ(net.b(0)(i), 0.0);
  double mx = 0;
  for (long i = 0; i < net.W(1).size(); ++i) mx = std::max(mx, std::abs(net.W(1).data()[i]));
  EXPECT_LE(mx, 0.8 + 1e-12);
  EXPECT_GT(mx, 0.05);
  // Same seed, same weights.
  layered_network<double> net2(small_spec());
  EXPECT_TRUE(std::equal(net.params().begin(), net.params().end(), net2.params().begin()));
  network_spec bad = small_spec();
  bad.sizes = {3};
  EXPECT_THROW(layered_network<double>{bad}, config_error);
  bad = small_spec();
  bad.n_readout = 0;
  EXPECT_THROW(layered_network<double>{bad}, config_error);
}

// PyTorch's default init: weights and biases U(-a, a), a = 1/sqrt(fan_in) (std a/sqrt(3)),
// and init_scale as the weights' std.
TEST(Network, KaimingUniformInit) {
  network_spec s = small_spec();
  s.sizes = {200, 300, 5};
  s.n_readout = 2;
  s.init = weight_init::kaiming_uniform;
  s.init_scale = 0;  // the default a
  const layered_network<double> net(s);
  const double a = 1 / std::sqrt(200.0);
  const auto W = net.W(0);
  const auto b = net.b(0);
  EXPECT_LE(W.cwiseAbs().maxCoeff(), a);
  EXPECT_GT(W.cwiseAbs().maxCoeff(), 0.99 * a);
  EXPECT_NEAR(W.mean(), 0, 0.01 * a);
  const double sd = std::sqrt(W.squaredNorm() / double(W.size()));
  EXPECT_NEAR(sd, a / std::sqrt(3.0), 0.01 * a);  // 60000 draws: the std of sd is about 0.2 % of a
  EXPECT_LE(b.cwiseAbs().maxCoeff(), a);
  EXPECT_GT(b.cwiseAbs().maxCoeff(), 0.8 * a);                      // biases are drawn too
  EXPECT_LE(net.b(1).cwiseAbs().maxCoeff(), 1 / std::sqrt(300.0));  // fan-in of layer 1
  s.init_scale = 0.1;
  const layered_network<double> scaled(s);
  EXPECT_NEAR(std::sqrt(scaled.W(0).squaredNorm() / double(W.size())), 0.1, 0.002);
  EXPECT_LE(scaled.W(0).cwiseAbs().maxCoeff(), 0.1 * std::sqrt(3.0));
  EXPECT_EQ(parse_weight_init("kaiming_uniform"), weight_init::kaiming_uniform);
  EXPECT_THROW(parse_weight_init("uniform"), config_error);
}

TEST(Relax, ConvergesAndReportsResidual) {
  layered_network<double> net(small_spec());
  matrix<double> x = matrix<double>::Constant(3, 2, 0.5);
  matrix<double> y = one_hot<double>(std::vector<int32_t>{0, 1}, 2);
  relax_state<double> st;
  st.set_input(net, x, y);
  auto rep = st.relax(net, 0.0, relax_options{2000, 1e-13, true});
  EXPECT_TRUE(rep.converged());
  EXPECT_LE(rep.max_residual, 1e-13);
  EXPECT_LT(rep.steps, 2000);
  // It is a fixed point: h = sigma(pre(h)).
  const double r = st.step(net, 0.0);
  EXPECT_LE(r, 1e-13);
  // Too few steps: reported as not converged, not hidden.
  st.reset();
  rep = st.relax(net, 0.0, relax_options{2, 1e-13, false});
  EXPECT_FALSE(rep.converged());
  EXPECT_EQ(rep.n_not_converged, 2);
}

TEST(Relax, ShapeErrors) {
  layered_network<double> net(small_spec());
  relax_state<double> st;
  EXPECT_THROW(st.set_input(net, matrix<double>::Zero(4, 2), matrix<double>::Zero(2, 2)), shape_error);
  EXPECT_THROW(st.set_input(net, matrix<double>::Zero(3, 2), matrix<double>::Zero(3, 2)), shape_error);
  EXPECT_THROW(one_hot<double>(std::vector<int32_t>{0, 5}, 3), shape_error);
  std::vector<double> g(3);
  st.set_input(net, matrix<double>::Zero(3, 2), matrix<double>::Zero(2, 2));
  vector<double> w = vector<double>::Constant(2, 0.5);
  EXPECT_THROW(st.add_dF_dtheta(net, 0.0, 1.0, w, g), shape_error);
}

TEST(Relax, ComplexStatesWithRealNudgeStayReal) {
  layered_network<double> net(small_spec(output_kind::layer));
  matrix<double> x = matrix<double>::Constant(3, 1, 0.2);
  matrix<double> y = matrix<double>::Constant(4, 1, 0.7);
  relax_state<double> r;
  relax_state<cd> c;
  r.set_input(net, x, y);
  c.set_input(net, x, y);
  r.relax(net, 0.3, relax_options{50});
  c.relax(net, cd(0.3, 0), relax_options{50});
  for (size_t j = 0; j < r.h().size(); ++j) {
    EXPECT_LT((c.h()[j].real() - r.h()[j]).norm(), 1e-14);
    EXPECT_LT(c.h()[j].imag().norm(), 1e-300);
  }
}

TEST(Optimizer, SgdMomentumAndDecay) {
  layered_network<double> net(small_spec());
  const int G = 3;
  std::vector<double> p(net.n_params(), 1.0), g(net.n_params(), 0.5);
  optimizer_options o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.weight_decay = 0.01;
  optimizer<double> sgd(o, net.layout(), G);
  sgd.step(p, g, 1.0);  // m = 0.5 + 0.01 = 0.51; p = 1 - 0.051
  EXPECT_NEAR(p[0], 1 - 0.1 * 0.51, 1e-15);
  sgd.step(p, g, 1.0);  // m = 0.9*0.51 + 0.5 + 0.01*p
  const double p1 = 1 - 0.051, m2 = 0.9 * 0.51 + 0.5 + 0.01 * p1;
  EXPECT_NEAR(p[0], p1 - 0.1 * m2, 1e-15);
  // Decoupled: p = (1 - lr wd) p - lr m, m from the raw gradient.
  o.decoupled_wd = true;
  optimizer<double> dec(o, net.layout(), G);
  std::vector<double> q(net.n_params(), 1.0);
  dec.step(q, g, 0.5);
  EXPECT_NEAR(q[0], (1 - 0.05 * 0.01) * 1.0 - 0.05 * 0.5, 1e-15);
  // Per-layer learning rates: the readout group gets its own.
  o = {};
  o.lr_per_group = {0.1, 0.2, 0.3};
  optimizer<double> pl(o, net.layout(), G);
  std::vector<double> r(net.n_params(), 0.0);
  pl.step(r, g, 1.0);
  EXPECT_NEAR(r[net.layout()[0].offset], -0.05, 1e-15);
  EXPECT_NEAR(r[net.layout()[4].offset], -0.15, 1e-15);
  o.lr_per_group = {0.1};
  EXPECT_THROW(optimizer<double>(o, net.layout(), G), config_error);
  // Output = layer: the empty readout blocks lie outside the per-layer groups.
  const auto spec = small_spec(output_kind::layer);
  layered_network<double> no_readout(spec);
  ASSERT_EQ(param_group_names(spec).size(), 2u);
  o.lr_per_group = {0.1, 0.2};
  o.wd_per_group = {0.0, 0.5};
  optimizer<double> lay(o, no_readout.layout(), 2);
  std::vector<double> s(no_readout.n_params(), 1.0), gs(no_readout.n_params(), 0.5);
  lay.step(s, gs, 1.0);
  EXPECT_NEAR(s[no_readout.layout()[0].offset], 1 - 0.1 * 0.5, 1e-15);
  EXPECT_NEAR(s[no_readout.layout()[2].offset], 1 - 0.2 * (0.5 + 0.5), 1e-15);
}

TEST(Optimizer, AdamFirstStepIsLrTimesSign) {
  layered_network<double> net(small_spec());
  optimizer_options o;
  o.kind = optimizer_kind::adam;
  o.lr = 0.01;
  optimizer<double> adam(o, net.layout(), 3);
  std::vector<double> p(net.n_params(), 0.0), g(net.n_params());
  for (size_t i = 0; i < g.size(); ++i) g[i] = (i % 2 ? 1.0 : -3.0);
  adam.step(p, g, 1.0);
  EXPECT_NEAR(p[0], 0.01, 1e-9);
  EXPECT_NEAR(p[1], -0.01, 1e-9);
}

TEST(Optimizer, CosineSchedule) {
  schedule_options s;
  s.kind = schedule_kind::cosine;
  s.min_factor = 1e-7;
  EXPECT_DOUBLE_EQ(s.factor(0, 0, 10, 90), 1.0);
  EXPECT_NEAR(s.factor(45, 0, 10, 90), 0.5 + 0.5e-7, 1e-12);
  EXPECT_NEAR(s.factor(90, 0, 10, 90), 1e-7, 1e-15);
  s.per_step = true;
  EXPECT_LT(s.factor(0, 5, 10, 90), 1.0);
  s.kind = schedule_kind::constant;
  EXPECT_EQ(s.factor(30, 3, 10, 90), 1.0);
}

// optimizer_options.threads: Adam/AdamW on a large block in chunks on 2 threads gives the
// 1-thread update (elementwise; checked to be bit-identical here) over several steps.
TEST(Optimizer, AdamThreadsGiveTheSameUpdate) {
  const std::vector<param_block> lay{{"W0", 0, 300, 301, 0}, {"b0", 0, 300, 1, 300 * 301}};
  const long n = 300 * 302;
  for (auto kind : {optimizer_kind::adam, optimizer_kind::adamw}) {
    optimizer_options o;
    o.kind = kind;
    o.lr = 1e-3;
    o.weight_decay = 0.01;
    std::vector<float> p1(n), p2, g(n);
    rng_t rng(5);
    for (long i = 0; i < n; ++i) p1[i] = float(uniform01(rng)) - 0.5f;
    p2 = p1;
    optimizer<float> one(o, lay, 1);
    o.threads = 2;
    optimizer<float> two(o, lay, 1);
    for (int t = 0; t < 3; ++t) {
      for (long i = 0; i < n; ++i) g[i] = float(uniform01(rng)) - 0.5f;
      one.step(p1, g, 1.0);
      two.step(p2, g, 1.0);
    }
    EXPECT_EQ(p1, p2);
  }
}

// The vectorized sigmoid of relax_state::step equals the scalar activation to rounding, on
// both branches of the overflow-safe logistic (large positive and negative real parts) and
// for real and complex states.
template <class S>
void check_step_sigmoid(double tol) {
  network_spec s;
  s.sizes = {6, 40, 30};
  s.n_readout = 4;
  s.activation = activation_kind::hep_sigmoid;
  s.init_scale = 8.0;  // pre-activations far into both tails
  s.seed = 3;
  layered_network<real_t<S>> net(s);
  rng_t rng(4);
  matrix<real_t<S>> x(6, 5), y = matrix<real_t<S>>::Zero(4, 5);
  for (long i = 0; i < x.size(); ++i) x.data()[i] = real_t<S>(uniform01(rng));
  for (long b = 0; b < 5; ++b) y(b % 4, b) = 1;
  relax_state<S, real_t<S>> st;
  st.set_input(net, x, y);
  for (auto& h : st.h())
    for (long i = 0; i < h.size(); ++i) {
      h.data()[i] = S(real_t<S>(uniform01(rng)));
      if constexpr (is_complex_v<S>) h.data()[i] += S(0, real_t<S>(uniform01(rng) - 0.5));
    }
  st.step(net, S(real_t<S>(0.3)));
  double worst = 0, lo = 1e300, hi = -1e300;
  for (size_t j = 0; j < st.h().size(); ++j)
    for (long i = 0; i < st.h()[j].size(); ++i) {
      const S p = st.pre()[j].data()[i], ref = act::hep_sigmoid::value(p);
      worst = std::max(worst, double(std::abs(st.h()[j].data()[i] - ref) / std::max(std::abs(ref), real_t<S>(1e-30))));
      lo = std::min(lo, double(real_part(p)));
      hi = std::max(hi, double(real_part(p)));
    }
  EXPECT_LT(worst, tol);
  EXPECT_LT(lo, -5.0);  // both branches were exercised
  EXPECT_GT(hi, 5.0);
}

TEST(Activation, VectorizedStepSigmoidMatchesScalar) {
  check_step_sigmoid<float>(1e-5);
  check_step_sigmoid<double>(1e-13);
  check_step_sigmoid<std::complex<float>>(1e-5);
  check_step_sigmoid<std::complex<double>>(1e-13);
}
