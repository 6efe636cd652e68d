// Subcommand registration for the eqprop CLI (one cmd_<name>.cpp per subcommand).
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "eqprop/train/model_kind.hpp"

namespace eqprop::cli {
void register_info(CLI::App& app);
void register_gradcheck(CLI::App& app);
void register_train(CLI::App& app);  ///< train and eval
void register_data(CLI::App& app);   ///< data list, fetch, verify
void register_plot(CLI::App& app);
void register_sweep(CLI::App& app);  ///< sweep beta / periods / stability
void register_deep(CLI::App& app);   ///< deep train / deep stability
void register_gle(CLI::App& app);    ///< gle operator / lagline / lagnet / train
void register_bench(CLI::App& app);  ///< bench
void register_gep(CLI::App& app);    ///< gep gradcheck / diagnose, and the train alias
/// `parent train`: `eqprop train` with `--set model.kind=<kind>` first among the overrides
/// (and the same flags); it prints the equivalent `eqprop train` line on stderr.
void add_train_alias(CLI::App* parent, const std::string& description, model_kind kind);
/// Exit status set by the command that ran (0 unless it reported a failed check).
int exit_code();
void set_exit_code(int code);
/// Prints "eqprop: <message>" and a newline on stderr. Never throws and never aborts: a
/// closed or full stderr loses the line, and the caller's exit status still reports it.
void report_error(const std::string& message);
}  // namespace eqprop::cli
