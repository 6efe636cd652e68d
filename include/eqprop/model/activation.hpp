// The activation functions of every network (EP, generalized EP, GLE), with value and
// derivative, written once for real and complex scalars. Each name means one function
// everywhere:
//   logistic      1/(1+e^{-x})
//   hep_sigmoid   logistic(4x-2), the MLP activation of the hEP / generalized-EP papers
//   holotanh      (alias dsilu) a holomorphic smooth clip(x/2, 0, 1)
//   tanh, relu, linear, softplus = log(1+e^x)
//   clamp01       clamp(x, 0, 1), the hard sigmoid of the LE / GLE code and of the 2021 EP
//                 code's MNIST ConvNet
//   half_clamp01  clamp(x/2, 0, 1), the non-holomorphic control of the hEP papers
// Each is tagged holomorphic or not: a non-holomorphic activation applied to complex
// states is refused at compile time (activate<Act>) or, when the activation is chosen at
// run time, with a config_error (dispatch_activation). The old names 'sigmoid' and
// 'hard_sigmoid' meant different functions in EP and GLE configs and are refused with a
// message naming the new ones (renamed_activation_message).
#pragma once
#include <cmath>
#include <complex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eqprop/core/error.hpp"
#include "eqprop/core/scalar.hpp"

namespace eqprop {

enum class activation_kind { hep_sigmoid, logistic, holotanh, tanh, half_clamp01, clamp01, relu, linear, softplus };

/// Overflow-safe logistic 1/(1+e^{-z}) for real and complex z: uses e^{z}/(1+e^{z}) when
/// Re z < 0, so complex64 never overflows for large negative real parts.
template <class S>
inline S logistic(const S& z) {
  if (real_part(z) >= 0) return S(1) / (S(1) + std::exp(-z));
  const S e = std::exp(z);
  return e / (S(1) + e);
}

namespace act {
/// logistic(4x - 2): the MLP activation of the hEP papers (range (0, 1)).
struct hep_sigmoid {
  static constexpr bool holomorphic = true;
  static constexpr std::string_view name = "hep_sigmoid";
  template <class S>
  static S value(const S& x) {
    return eqprop::logistic(S(4) * x - S(2));
  }
  template <class S>
  static S deriv(const S& x) {
    const S s = eqprop::logistic(S(4) * x - S(2));
    return S(4) * s * (S(1) - s);
  }
};
/// 1/(1 + e^{-x}).
struct logistic {
  static constexpr bool holomorphic = true;
  static constexpr std::string_view name = "logistic";
  template <class S>
  static S value(const S& x) {
    return eqprop::logistic(x);
  }
  template <class S>
  static S deriv(const S& x) {
    const S s = eqprop::logistic(x);
    return s * (S(1) - s);
  }
};
/// holotanh (a.k.a. dsilu): f(z) = z/2 * logistic(z) + (1 - z/2) * logistic(z - 2), a
/// holomorphic smooth version of clip(z/2, 0, 1). Used by the hEP ConvNets.
struct holotanh {
  static constexpr bool holomorphic = true;
  static constexpr std::string_view name = "holotanh";
  template <class S>
  static S value(const S& z) {
    const S h = S(0.5) * z;
    return h * eqprop::logistic(z) + (S(1) - h) * eqprop::logistic(z - S(2));
  }
  template <class S>
  static S deriv(const S& z) {
    const S a = eqprop::logistic(z), c = eqprop::logistic(z - S(2));
    const S h = S(0.5) * z;
    return S(0.5) * a + h * a * (S(1) - a) - S(0.5) * c + (S(1) - h) * c * (S(1) - c);
  }
};
struct tanh {
  static constexpr bool holomorphic = true;
  static constexpr std::string_view name = "tanh";
  template <class S>
  static S value(const S& x) {
    return std::tanh(x);
  }
  template <class S>
  static S deriv(const S& x) {
    const S t = std::tanh(x);
    return S(1) - t * t;
  }
};
/// clamp(x/2, 0, 1): the hEP papers' non-holomorphic control (real states only).
struct half_clamp01 {
  static constexpr bool holomorphic = false;
  static constexpr std::string_view name = "half_clamp01";
  template <class S>
  static S value(const S& x) {
    return x <= S(0) ? S(0) : (x >= S(2) ? S(1) : S(0.5) * x);
  }
  template <class S>
  static S deriv(const S& x) {
    return (x > S(0) && x < S(2)) ? S(0.5) : S(0);
  }
};
/// clamp(x, 0, 1): the hard sigmoid of the LE / GLE code (real states only).
struct clamp01 {
  static constexpr bool holomorphic = false;
  static constexpr std::string_view name = "clamp01";
  template <class S>
  static S value(const S& x) {
    return x <= S(0) ? S(0) : (x >= S(1) ? S(1) : x);
  }
  template <class S>
  static S deriv(const S& x) {
    return (x > S(0) && x < S(1)) ? S(1) : S(0);
  }
};
/// max(0, x) (real states only). In EP networks: the feed-forward backprop baselines only.
struct relu {
  static constexpr bool holomorphic = false;
  static constexpr std::string_view name = "relu";
  template <class S>
  static S value(const S& x) {
    return x > S(0) ? x : S(0);
  }
  template <class S>
  static S deriv(const S& x) {
    return x > S(0) ? S(1) : S(0);
  }
};
struct linear {
  static constexpr bool holomorphic = true;
  static constexpr std::string_view name = "linear";
  template <class S>
  static S value(const S& x) {
    return x;
  }
  template <class S>
  static S deriv(const S&) {
    return S(1);
  }
};
/// log(1 + e^x), derivative logistic(x). Holomorphic: log(1 + e^z) is analytic in the strip
/// |Im z| < pi around the real axis (1 + e^z is never zero or negative real there), the
/// same domain as logistic, whose poles lie on the strip's edges; the complex branch below
/// is that continuation, written overflow-safe for either sign of Re z.
struct softplus {
  static constexpr bool holomorphic = true;
  static constexpr std::string_view name = "softplus";
  template <class S>
  static S value(const S& x) {
    if constexpr (is_complex_v<S>) {
      return real_part(x) >= 0 ? x + std::log(S(1) + std::exp(-x)) : std::log(S(1) + std::exp(x));
    } else {
      return (x > S(0) ? x : S(0)) + std::log1p(std::exp(-std::abs(x)));
    }
  }
  template <class S>
  static S deriv(const S& x) {
    return eqprop::logistic(x);
  }
};
}  // namespace act

/// Compile-time checked application of an activation to one scalar.
template <class Act, class S>
inline S activate(const S& x) {
  static_assert(Act::holomorphic || !is_complex_v<S>,
                "NON_HOLOMORPHIC_ACTIVATION_WITH_COMPLEX_STATES: holomorphic EP needs a holomorphic "
                "activation (hep_sigmoid, holotanh, tanh); clamps and relu are for real states only");
  return Act::value(x);
}

bool is_holomorphic(activation_kind k);
std::string_view to_string(activation_kind k);
/// Parses any name of the table (and the alias "dsilu" for holotanh). The old names
/// "sigmoid" and "hard_sigmoid" are a config_error naming their replacements in EP and
/// GLE configs; any other unknown name is a config_error listing the known ones.
activation_kind parse_activation(std::string_view name);
/// Every name parse_activation accepts, without aliases, in enum order.
std::vector<std::string> activation_names();

/// The activations a layered or vector-field EP network takes, i.e. those
/// dispatch_activation instantiates: hep_sigmoid, holotanh, tanh, half_clamp01, clamp01, relu.
bool is_ep_activation(activation_kind k);
/// Throws config_error naming the EP activations unless is_ep_activation(k).
void require_ep_activation(activation_kind k);

/// The configs that used an old activation name: 'sigmoid' and 'hard_sigmoid' meant
/// logistic(4x-2) and clamp(x/2, 0, 1) in EP and generalized-EP configs, but 1/(1+e^-x) and
/// clamp(x, 0, 1) in GLE configs.
enum class activation_family { ep, gle };
/// What the old name `old_name` ("sigmoid" or "hard_sigmoid") meant in configs of `family`;
/// nullopt for any other name.
std::optional<activation_kind> renamed_activation(std::string_view old_name, activation_family family);
/// The error for an old name: "activation 'sigmoid' was renamed: use ...", naming the
/// replacement for `family`, or both replacements when the family is not known.
std::string renamed_activation_message(std::string_view old_name, std::optional<activation_family> family = {});

/// Calls f(Act{}) with the activation type for kind, for the EP activations
/// (is_ep_activation); any other kind is a config_error. For complex S and a
/// non-holomorphic activation it throws config_error instead (never instantiating it).
template <class S, class F>
decltype(auto) dispatch_activation(activation_kind kind, F&& f) {
  switch (kind) {
    case activation_kind::hep_sigmoid:
      return f(act::hep_sigmoid{});
    case activation_kind::holotanh:
      return f(act::holotanh{});
    case activation_kind::tanh:
      return f(act::tanh{});
    case activation_kind::half_clamp01:
    case activation_kind::clamp01:
    case activation_kind::relu:
      if constexpr (is_complex_v<S>) {
        throw config_error(std::string("activation '") + std::string(to_string(kind)) +
                           "' is not holomorphic and cannot be used with complex states "
                           "(holomorphic EP with N > 2, continuous-time hEP); use 'hep_sigmoid', 'holotanh' or 'tanh', "
                           "or an estimator with real states only (N = 1 or N = 2)");
      } else {
        if (kind == activation_kind::relu) return f(act::relu{});
        if (kind == activation_kind::clamp01) return f(act::clamp01{});
        return f(act::half_clamp01{});
      }
    case activation_kind::logistic:
    case activation_kind::linear:
    case activation_kind::softplus:
      break;
  }
  require_ep_activation(kind);
  throw internal_error("dispatch_activation: unknown activation kind");
}

/// r = phi(u) and d = phi'(u) element-wise for any activation of the table (real R:
/// float or double), vectorised where Eigen has the function (GLE's per-step application).
template <class R>
void apply_activation(activation_kind kind, const matrix<R>& u, matrix<R>& r, matrix<R>& d);

}  // namespace eqprop
