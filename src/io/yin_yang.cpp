// The Yin-Yang data set (L. Kriener, J. Goeltz, M. A. Petrovici, "The Yin-Yang dataset",
// NICE 2022), generated deterministically from a seed.
#include <cmath>

#include <fmt/format.h>

#include "io_internal.hpp"

namespace eqprop {

namespace {
constexpr double kRBig = 0.5, kRSmall = 0.1;

// Squared distance with an explicit fused multiply-add, so that the result (and hence
// every class decision) is bit-identical whatever the compiler's contraction settings.
double dist2(double x, double y, double cx, double cy) {
  const double dx = x - cx, dy = y - cy;
  return std::fma(dx, dx, dy * dy);
}
}  // namespace

uint64_t uniform_index(std::mt19937_64& rng, uint64_t n) {
  if (n == 0) throw config_error("uniform_index: empty range");
  // Reject the lowest (2^64 mod n) values so that r % n is exactly uniform.
  const uint64_t threshold = (0 - n) % n;
  while (true) {
    const uint64_t r = rng();
    if (r >= threshold) return r % n;
  }
}

int yin_yang_class(double x, double y) {
  // Compared squared: d < r  <=>  d^2 < r^2.
  constexpr double small2 = kRSmall * kRSmall, half2 = 0.25 * kRBig * kRBig;
  const double d_right = dist2(x, y, 1.5 * kRBig, kRBig);  // right dot centre
  const double d_left = dist2(x, y, 0.5 * kRBig, kRBig);   // left dot centre
  if (d_right < small2 || d_left < small2) return 2;       // the two dots
  const bool c1 = d_right <= small2 || (d_left > small2 && d_left <= half2) || (y > kRBig && d_right > half2);
  return c1 ? 1 : 0;
}

dataset generate_yin_yang(long n, uint64_t seed) {
  if (n < 0) throw config_error(fmt::format("yin_yang: the number of samples must be >= 0, got {}", n));
  std::mt19937_64 rng(seed);
  dataset d;
  d.name = "yin_yang";
  d.n_classes = 3;
  d.shape = {1, 1, 4};
  d.x.resize(4, n);
  d.y.resize(static_cast<size_t>(n));
  for (long i = 0; i < n; ++i) {
    const int goal = static_cast<int>(uniform_index(rng, 3));
    double x, y;
    while (true) {
      x = uniform_unit(rng) * 2.0 * kRBig;
      y = uniform_unit(rng) * 2.0 * kRBig;
      if (dist2(x, y, kRBig, kRBig) > kRBig * kRBig) continue;  // outside the big circle
      if (yin_yang_class(x, y) == goal) break;
    }
    d.x(0, i) = static_cast<float>(x);
    d.x(1, i) = static_cast<float>(y);
    d.x(2, i) = static_cast<float>(1.0 - x);
    d.x(3, i) = static_cast<float>(1.0 - y);
    d.y[static_cast<size_t>(i)] = goal;
  }
  return d;
}

}  // namespace eqprop
