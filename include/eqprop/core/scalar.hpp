// Scalar traits: the four scalars every numeric routine is written once for.
// Parameters are always real (real_t<S>); neuron states may be complex.
#pragma once
#include <complex>
#include <string_view>
#include <type_traits>

#include "eqprop/core/eigen.hpp"

namespace eqprop {

template <class S>
struct scalar_traits;

template <>
struct scalar_traits<float> {
  using real_type = float;
  static constexpr bool is_complex = false;
  static constexpr float eps = 1.1920929e-7f;
  static constexpr float default_tol = 1e-5f;
  static constexpr std::string_view name = "float32";
};
template <>
struct scalar_traits<double> {
  using real_type = double;
  static constexpr bool is_complex = false;
  static constexpr double eps = 2.220446049250313e-16;
  static constexpr double default_tol = 1e-12;
  static constexpr std::string_view name = "float64";
};
template <class R>
struct scalar_traits<std::complex<R>> {
  using real_type = R;
  static constexpr bool is_complex = true;
  static constexpr R eps = scalar_traits<R>::eps;
  static constexpr R default_tol = scalar_traits<R>::default_tol;
  static constexpr std::string_view name =
      std::is_same_v<R, float> ? std::string_view("complex64") : std::string_view("complex128");
};

template <class S>
using real_t = typename scalar_traits<S>::real_type;
template <class S>
inline constexpr bool is_complex_v = scalar_traits<S>::is_complex;
template <class R>
using complex_t = std::complex<real_t<R>>;

/// Real part of a real or complex scalar (identity for reals).
template <class S>
constexpr real_t<S> real_part(const S& x) {
  if constexpr (is_complex_v<S>) return x.real();
  else return x;
}
/// Modulus squared |x|^2 (x^2 for reals). Never used inside holomorphic formulas.
template <class S>
constexpr real_t<S> abs2(const S& x) {
  if constexpr (is_complex_v<S>) return x.real() * x.real() + x.imag() * x.imag();
  else return x * x;
}

// Column-major dense matrices and vectors. A batch of states is a matrix with one
// column per sample (n_neurons x batch).
template <class S>
using matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
template <class S>
using vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;
template <class S>
using row_vector = Eigen::Matrix<S, 1, Eigen::Dynamic>;
template <class S>
using matrix_map = Eigen::Map<matrix<S>>;
template <class S>
using const_matrix_map = Eigen::Map<const matrix<S>>;
template <class S>
using vector_map = Eigen::Map<vector<S>>;
template <class S>
using const_vector_map = Eigen::Map<const vector<S>>;

}  // namespace eqprop
