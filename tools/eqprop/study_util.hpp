// Helpers shared by the study commands (gradcheck, sweep, plot): writing result files and
// drawing figures with matplotlib through scripts/eqprop_plot.py and Debian's python3.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace eqprop::cli {

/// Writes text to path atomically (the previous file survives a failed write).
void write_text(const std::filesystem::path& path, const std::string& text);

/// Runs `python3 scripts/eqprop_plot.py ARGS...` (python from $EQPROP_PYTHON, default
/// /usr/bin/python3; script from $EQPROP_PLOT_SCRIPT, the source tree, or ../scripts next
/// to the binary). Returns true when it succeeded. A failure prints a warning and sets exit
/// code 2, or with optional_figure prints that the figure was skipped and leaves the exit
/// code alone; the data files stay either way.
bool plot_with_python(const std::vector<std::string>& args, bool optional_figure = false);

}  // namespace eqprop::cli
