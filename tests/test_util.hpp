// Helpers shared by the test files (header-only; the tests are one binary).
#pragma once
#include <cstdint>
#include <vector>

#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/relax.hpp"  // one_hot

namespace eqprop::test {

/// A random float64 batch: x (n_in x batch) uniform in [0, 1), then uniform labels over
/// n_classes as one-hot columns y, both drawn from `rng` in that order.
inline void random_batch(rng_t& rng, long n_in, long batch, int n_classes, matrix<double>& x, matrix<double>& y) {
  x.resize(n_in, batch);
  for (long i = 0; i < x.size(); ++i) x.data()[i] = uniform01(rng);
  std::vector<int32_t> labels(batch);
  for (auto& l : labels) l = int32_t(random_index(rng, uint64_t(n_classes)));
  y = one_hot<double>(labels, n_classes);
}

}  // namespace eqprop::test
