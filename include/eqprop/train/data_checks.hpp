// Checks every trainer applies to a data set right after loading it, before anything
// runs: each split it uses holds at least one sample, and every input value is finite.
// A failure is a data_error naming the data set, the split and the first bad sample, so
// that no accuracy or loss is ever computed from an empty split or from NaN/Inf inputs.
#pragma once
#include <string_view>

#include "eqprop/io/dataset.hpp"

namespace eqprop {

/// Throws data_error if `d` has no samples (the message names `limit_hint`, the settings
/// that size the split, e.g. "data.limit_test") or if any input value is NaN or infinite
/// (the message names the first such sample's index in the split and its feature).
void check_split(const dataset& d, std::string_view split_name, std::string_view limit_hint);

/// check_split on the training and the test split. The hints name the settings that size
/// each split in the caller's config (e.g. "data.limit_train / data.yin_yang_train").
void check_splits(const dataset_split& s, std::string_view train_hint, std::string_view test_hint);

}  // namespace eqprop
