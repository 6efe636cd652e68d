// Activations applied to n contiguous values at once, vectorized where it pays: the same
// values as the scalar functions of activation.hpp, to rounding.
#pragma once
#include <type_traits>

#include "eqprop/core/scalar.hpp"
#include "eqprop/model/activation.hpp"

namespace eqprop {

/// out = logistic(z) for n values (out may alias z), with Eigen's vectorized exp (and sin,
/// cos for complex z) and the branches of eqprop::logistic as selects, so that it equals
/// the scalar function to rounding: t = -z when Re z >= 0 (else z), E = e^t (|E| <= 1),
/// q = 1/(1+E); logistic(z) = q when Re z >= 0, E q otherwise.
template <class S>
inline void logistic_n(const S* z, S* out, long n, vector<real_t<S>>* buf) {
  using real = real_t<S>;
  for (int k = 0; k < 4; ++k)
    if (buf[k].size() < n) buf[k].resize(n);  // grow only: layers of different sizes share it
  real *tr = buf[0].data(), *ti = buf[1].data();
  using arr = Eigen::Array<real, Eigen::Dynamic, 1>;
  Eigen::Map<arr> a0(buf[0].data(), n), a1(buf[1].data(), n), a2(buf[2].data(), n), a3(buf[3].data(), n);
  if constexpr (!is_complex_v<S>) {
    for (long i = 0; i < n; ++i) tr[i] = -std::abs(z[i]);
    a1 = a0.exp();
    for (long i = 0; i < n; ++i) {
      const real e = ti[i], q = real(1) / (real(1) + e);
      out[i] = z[i] >= real(0) ? q : e * q;
    }
  } else {
    const real* zr = reinterpret_cast<const real*>(z);
    for (long i = 0; i < n; ++i) {
      const real a = zr[2 * i], b = zr[2 * i + 1];
      tr[i] = -std::abs(a);
      ti[i] = a >= real(0) ? -b : b;
    }
    a2 = a1.cos();
    a3 = a1.sin();
    a0 = a0.exp();
    const real *m = buf[0].data(), *c = buf[2].data(), *s = buf[3].data();
    real* o = reinterpret_cast<real*>(out);
    for (long i = 0; i < n; ++i) {
      const bool pos = zr[2 * i] >= real(0);
      const real er = m[i] * c[i], ei = m[i] * s[i];
      const real dr = real(1) + er, inv = real(1) / (dr * dr + ei * ei);
      const real qr = dr * inv, qi = -ei * inv;
      o[2 * i] = pos ? qr : er * qr - ei * qi;
      o[2 * i + 1] = pos ? qi : er * qi + ei * qr;
    }
  }
}

/// out = Act(in) for n values (out may alias in): hep_sigmoid and logistic through
/// logistic_n, the others per value. buf: four scratch vectors, grown as needed.
template <class Act, class S>
inline void activate_n(const S* in, S* out, long n, vector<real_t<S>>* buf) {
  if constexpr (std::is_same_v<Act, act::hep_sigmoid>) {
    for (long i = 0; i < n; ++i) out[i] = S(4) * in[i] - S(2);
    logistic_n(out, out, n, buf);
  } else if constexpr (std::is_same_v<Act, act::logistic>) {
    logistic_n(in, out, n, buf);
  } else {
    for (long i = 0; i < n; ++i) out[i] = activate<Act>(in[i]);
  }
}

}  // namespace eqprop
