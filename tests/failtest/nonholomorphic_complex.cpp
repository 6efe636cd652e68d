// Must NOT compile: a non-holomorphic activation applied to complex states.
// Compiled with -DEQPROP_FAILTEST_CONTROL it uses a holomorphic one and must compile,
// which proves the failure comes from the static_assert and not from the set-up.
#include <complex>

#include "eqprop/model/activation.hpp"

int main() {
  const std::complex<double> z(0.3, 0.1);
#ifdef EQPROP_FAILTEST_CONTROL
  return static_cast<int>(eqprop::activate<eqprop::act::holotanh>(z).real());
#else
  return static_cast<int>(eqprop::activate<eqprop::act::half_clamp01>(z).real());
#endif
}
