// "Did you mean" suggestions for unknown names (config keys, datasets, estimators).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace eqprop {

/// The closest candidate to `name` by edit distance (case-insensitive), or "" when none is
/// close enough to be a plausible typo. For dotted names the last components are compared
/// too, so "lr" or "network.lr" suggest "optimizer.lr".
std::string suggest_closest(std::string_view name, const std::vector<std::string>& candidates);

}  // namespace eqprop
