// Range checks of numeric command-line flags, with the same rules and wording as config
// keys (config_constraint). A value outside the range is a config_error (exit status 2):
// "--epochs = -5 is out of range: must be an integer >= 1". NaN and infinities are refused
// by float flags. Checks run while the command line (or a deep --config file) is parsed,
// before the command does anything.
#pragma once
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "eqprop/core/error.hpp"
#include "eqprop/train/config.hpp"

namespace eqprop::cli {

/// Adds the range check `allowed` to a numeric option (each element of a list option).
/// `integer` selects the wording ("an integer >= 1") and should match the option's type.
inline CLI::Option* limit(CLI::Option* opt, const config_constraint& allowed, bool integer) {
  const std::string name = opt->get_name();
  // Shown in --help after the type ("INT:in [1, 64]"): the rule without "an integer" / "a float".
  std::string shown = allowed.describe(integer ? config_value(int64_t(0)) : config_value(0.0));
  for (const char* article : {"an integer ", "a float ", "a "})
    if (shown.rfind(article, 0) == 0) shown.erase(0, std::string(article).size());
  opt->check(CLI::Validator(
      [allowed, integer, name](std::string& text) -> std::string {
        const char* begin = text.c_str();
        char* end = nullptr;
        const double v = std::strtod(begin, &end);
        if (end == begin || *end != '\0') return {};  // not a number: the option's conversion reports it
        if (std::string why = allowed.number_violation(v, integer); !why.empty())
          throw config_error(fmt::format("{} = {} is out of range: {}", name, text, why));
        return {};
      },
      shown));
  return opt;
}

/// add_option with a range check; the wording follows T (integer or float).
template <class T>
CLI::Option* add_checked(CLI::App* app, const std::string& name, T& var, const std::string& description,
                         const config_constraint& allowed) {
  return limit(app->add_option(name, var, description), allowed, std::is_integral_v<T>);
}
template <class T>
CLI::Option* add_checked(CLI::App* app, const std::string& name, std::vector<T>& var, const std::string& description,
                         const config_constraint& allowed) {
  return limit(app->add_option(name, var, description), allowed, std::is_integral_v<T>);
}

}  // namespace eqprop::cli
