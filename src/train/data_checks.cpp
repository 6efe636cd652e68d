#include "eqprop/train/data_checks.hpp"

#include <cmath>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"

namespace eqprop {

void check_split(const dataset& d, std::string_view split_name, std::string_view limit_hint) {
  if (d.size() == 0 || d.x.cols() == 0)
    throw data_error(
        fmt::format("data set '{}': the {} split has no samples (check {}); nothing to train or evaluate on", d.name,
                    split_name, limit_hint));
  if (d.x.allFinite()) return;
  for (long j = 0; j < d.x.cols(); ++j)
    for (long i = 0; i < d.x.rows(); ++i)
      if (!std::isfinite(d.x(i, j)))
        throw data_error(
            fmt::format("data set '{}': {} sample {} (0-based, of {}) has a non-finite input value ({} at "
                        "feature {}); NaN or infinite inputs cannot be trained or evaluated on",
                        d.name, split_name, j, d.x.cols(), d.x(i, j), i));
}

void check_splits(const dataset_split& s, std::string_view train_hint, std::string_view test_hint) {
  check_split(s.train, "training", train_hint);
  check_split(s.test, "test", test_hint);
}

}  // namespace eqprop
