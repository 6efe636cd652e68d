// Random numbers that are identical on every platform and compiler: std::mt19937_64 is
// fully specified, but the standard distributions are not, so eqprop converts by hand.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>

namespace eqprop {

using rng_t = std::mt19937_64;

/// Uniform in [0, 1) with 53 random bits.
inline double uniform01(rng_t& rng) { return double(rng() >> 11) * 0x1.0p-53; }

/// Standard normal by the Box-Muller transform (one value per call; deterministic).
inline double standard_normal(rng_t& rng) {
  double u1 = uniform01(rng);
  while (u1 <= 0) u1 = uniform01(rng);
  const double u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
}

/// Standard normal truncated to [-2, 2] by rejection (no rescaling).
inline double truncated_normal(rng_t& rng) {
  for (;;) {
    const double z = standard_normal(rng);
    if (z >= -2.0 && z <= 2.0) return z;
  }
}

/// Uniform integer in [0, n) without modulo bias.
inline uint64_t random_index(rng_t& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = rng();
  while (r >= limit);
  return r % n;
}

}  // namespace eqprop
