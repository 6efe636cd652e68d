// Exception taxonomy. The library never aborts: every failure a user can cause is an
// eqprop::error (or a subclass carrying data); internal_error means a library bug.
#pragma once
#include <stdexcept>
#include <string>

namespace eqprop {

/// Any error a user can cause: bad configuration, bad data, bad shapes.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A configuration value or flag is invalid (unknown key, out-of-range value...).
class config_error : public error {
 public:
  using error::error;
};

/// Array shapes do not match what a routine expects.
class shape_error : public error {
 public:
  using error::error;
};

/// A data file is missing, truncated or corrupt. The message names the file.
class data_error : public error {
 public:
  using error::error;
};

/// The dynamics did not reach a fixed point where one was required.
class convergence_error : public error {
 public:
  convergence_error(const std::string& what, double residual, long iterations)
      : error(what), residual(residual), iterations(iterations) {}
  double residual;
  long iterations;
};

/// A violated internal invariant: a bug in eqprop, never the user's fault.
class internal_error : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace eqprop
