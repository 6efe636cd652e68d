// Help texts of the flags that every trainer (train, gep train, gle train, deep train)
// shares: one wording and one meaning everywhere (docs/cli.md).
#pragma once
#include <string>

namespace eqprop::cli::trainer_help {

/// --quiet / -q: the progress display goes, the results stay.
inline constexpr const char* quiet =
    "No progress display (no status line, no periodic progress lines); the per-epoch and final result lines "
    "still print";
inline constexpr const char* print_config = "Print the resolved config and exit";
inline constexpr const char* data_dir = "Data directory (default: $EQPROP_DATA, then ./data)";
/// --seed N / --epochs N on a trainer whose config has the key `key`.
inline std::string seed(const std::string& key) { return "Seed; shortcut for --set " + key + "=N"; }
inline std::string epochs(const std::string& key) { return "Epochs; shortcut for --set " + key + "=N"; }

}  // namespace eqprop::cli::trainer_help
