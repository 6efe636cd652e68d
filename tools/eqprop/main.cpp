// eqprop: command-line entry point. Each subcommand lives in its own cmd_<name>.cpp and
// registers itself here; errors a user can cause print one clear line and exit 2.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/build_info.hpp"
#include "eqprop/core/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"eqprop: equilibrium propagation and holomorphic EP, with exact reference gradients"};
  app.set_version_flag("--version", std::string(eqprop::build::version));
  app.require_subcommand(1);
  eqprop::cli::register_info(app);
  eqprop::cli::register_gradcheck(app);
  eqprop::cli::register_train(app);
  eqprop::cli::register_data(app);
  eqprop::cli::register_plot(app);
  eqprop::cli::register_sweep(app);
  eqprop::cli::register_deep(app);  // issue 7
  eqprop::cli::register_gle(app);   // issue 8
  eqprop::cli::register_bench(app);  // issue 9
  eqprop::cli::register_gep(app);    // issue 6
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const eqprop::convergence_error& e) {
    fmt::print(stderr, "eqprop: not converged: {}\n", e.what());
    return 3;
  } catch (const eqprop::error& e) {
    fmt::print(stderr, "eqprop: error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "eqprop: internal error: {}\n", e.what());
    return 70;
  }
  return eqprop::cli::exit_code();
}
