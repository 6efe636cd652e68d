// Eigen, as every eqprop file includes it: include this header instead of <Eigen/...>.
//
// GCC 12's AVX-512 intrinsics (<immintrin.h>, which Eigen includes when AVX-512 is enabled)
// pass a self-initialised variable as the ignored merge operand of masked builtins, and GCC
// then reports "may be used uninitialized" at every inlined call (GCC bug 105593, fixed in
// GCC 13). Those diagnostics are switched off for that header only, before anything else
// includes it; warnings in eqprop's own code stay on.
#pragma once
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12 && defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
#include <Eigen/Dense>
#include <Eigen/SparseCore>
