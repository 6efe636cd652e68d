// Activation functions with value and derivative, written once for real and complex
// scalars. Each is tagged holomorphic or not: a non-holomorphic activation applied to
// complex states is refused at compile time (activate<Act>) or, when the activation is
// chosen at run time, with a config_error (dispatch_activation).
#pragma once
#include <cmath>
#include <complex>
#include <string>
#include <string_view>
#include <vector>

#include "eqprop/core/error.hpp"
#include "eqprop/core/scalar.hpp"

namespace eqprop {

enum class activation_kind { sigmoid, holotanh, tanh, hard_sigmoid, relu };

/// Overflow-safe logistic 1/(1+e^{-z}) for real and complex z: uses e^{z}/(1+e^{z}) when
/// Re z < 0, so complex64 never overflows for large negative real parts.
template <class S>
inline S logistic(const S& z) {
  if (real_part(z) >= 0) return S(1) / (S(1) + std::exp(-z));
  const S e = std::exp(z);
  return e / (S(1) + e);
}

namespace act {
/// sigma(x) = logistic(4x - 2): the MLP activation of the hEP papers (range (0, 1)).
struct sigmoid {
  static constexpr bool holomorphic = true;
  static constexpr std::string_view name = "sigmoid";
  template <class S>
  static S value(const S& x) { return logistic(S(4) * x - S(2)); }
  template <class S>
  static S deriv(const S& x) {
    const S s = logistic(S(4) * x - S(2));
    return S(4) * s * (S(1) - s);
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
    return h * logistic(z) + (S(1) - h) * logistic(z - S(2));
  }
  template <class S>
  static S deriv(const S& z) {
    const S a = logistic(z), c = logistic(z - S(2));
    const S h = S(0.5) * z;
    return S(0.5) * a + h * a * (S(1) - a) - S(0.5) * c + (S(1) - h) * c * (S(1) - c);
  }
};
struct tanh {
  static constexpr bool holomorphic = true;
  static constexpr std::string_view name = "tanh";
  template <class S>
  static S value(const S& x) { return std::tanh(x); }
  template <class S>
  static S deriv(const S& x) {
    const S t = std::tanh(x);
    return S(1) - t * t;
  }
};
/// hard sigmoid clip(x/2, 0, 1): the non-holomorphic control (real states only).
struct hard_sigmoid {
  static constexpr bool holomorphic = false;
  static constexpr std::string_view name = "hard_sigmoid";
  template <class S>
  static S value(const S& x) { return x <= S(0) ? S(0) : (x >= S(2) ? S(1) : S(0.5) * x); }
  template <class S>
  static S deriv(const S& x) { return (x > S(0) && x < S(2)) ? S(0.5) : S(0); }
};
/// max(0, x): the feed-forward backprop baselines only (real states; not an EP activation).
struct relu {
  static constexpr bool holomorphic = false;
  static constexpr std::string_view name = "relu";
  template <class S>
  static S value(const S& x) { return x > S(0) ? x : S(0); }
  template <class S>
  static S deriv(const S& x) { return x > S(0) ? S(1) : S(0); }
};
}  // namespace act

/// Compile-time checked application of an activation to one scalar.
template <class Act, class S>
inline S activate(const S& x) {
  static_assert(Act::holomorphic || !is_complex_v<S>,
                "NON_HOLOMORPHIC_ACTIVATION_WITH_COMPLEX_STATES: holomorphic EP needs a holomorphic "
                "activation (sigmoid, holotanh, tanh); hard_sigmoid is for real states only");
  return Act::value(x);
}

bool is_holomorphic(activation_kind k);
std::string_view to_string(activation_kind k);
/// Parses "sigmoid" | "holotanh" (alias "dsilu") | "tanh" | "hard_sigmoid" | "relu"; config_error otherwise.
activation_kind parse_activation(std::string_view name);
std::vector<std::string> activation_names();

/// Calls f(Act{}) with the activation type for kind. For complex S and a
/// non-holomorphic activation it throws config_error instead (never instantiating it).
template <class S, class F>
decltype(auto) dispatch_activation(activation_kind kind, F&& f) {
  switch (kind) {
    case activation_kind::sigmoid: return f(act::sigmoid{});
    case activation_kind::holotanh: return f(act::holotanh{});
    case activation_kind::tanh: return f(act::tanh{});
    case activation_kind::hard_sigmoid:
    case activation_kind::relu:
      if constexpr (is_complex_v<S>) {
        throw config_error(
            std::string("activation '") + std::string(kind == activation_kind::relu ? "relu" : "hard_sigmoid") +
            "' is not holomorphic and cannot be used with complex states "
            "(holomorphic EP with N > 2, continuous-time hEP); use 'sigmoid', 'holotanh' or 'tanh', "
            "or an estimator with real states only (N = 1 or N = 2)");
      } else {
        if (kind == activation_kind::relu) return f(act::relu{});
        return f(act::hard_sigmoid{});
      }
  }
  throw internal_error("dispatch_activation: unknown activation kind");
}

}  // namespace eqprop
