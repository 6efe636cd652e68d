#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/core/build_info.hpp"

namespace eqprop::cli {

namespace {
int g_exit_code = 0;
}
int exit_code() { return g_exit_code; }
void set_exit_code(int code) { g_exit_code = code; }

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print version, build and machine information");
  static bool json = false;
  cmd->add_flag("--json", json, "Print as JSON");
  cmd->callback([] {
    if (json) fmt::print("{}\n", build_info_json().dump(2));
    else fmt::print("{}\n", build_info_line());
  });
}

}  // namespace eqprop::cli
