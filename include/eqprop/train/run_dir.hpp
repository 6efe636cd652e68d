// The run directory shared by the trainers: creating a new one without destroying work,
// recording which data a run read (directory and SHA-256 of every file) so that a resumed or
// evaluated run finds and checks the same data, and stopping a run cleanly on SIGINT/SIGTERM.
// See docs/runs.md, "Run directories".
#pragma once
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace eqprop {

/// The files a run writes in its directory (config.toml, build.json, data.json,
/// metrics.jsonl, metrics.csv, checkpoint.eqck).
const std::vector<std::string>& run_file_names();

/// True for a run file name (run_file_names) or the temporary of an atomic write of one
/// (`NAME.tmp.PID`, PID in decimal digits).
bool is_run_file(const std::string& name);

/// A new run directory's default: runs/NAME-YYYYmmdd-HHMMSS (local time), with -2, -3...
/// appended while that path exists.
std::filesystem::path default_run_dir(const std::string& name);

/// `s` quoted for a POSIX shell when it holds anything but [A-Za-z0-9_./=+-] (or is
/// empty), for the commands the trainers print ("Resume with: eqprop train --resume DIR").
std::string shell_quote(const std::string& s);

/// Prepares the directory of a new run. A missing or empty directory is created. A
/// non-empty one is refused (config_error naming it and the ways out: --resume, --overwrite,
/// another --run-dir) unless overwrite. With overwrite the directory must look like a run
/// directory: it holds config.toml or only temporaries (a run killed while writing its first
/// file), and every entry is a run file (run_file_names) or the temporary of an atomic write
/// of one (`<name>.tmp.<pid>`); those files are removed (the
/// directory itself and nothing else is touched). Anything else is refused, naming the
/// first entry that is not a run file. Throws eqprop::error when the directory cannot be
/// created.
void prepare_new_run_directory(const std::filesystem::path& dir, bool overwrite);

/// The data a run read: its resolved data directory (absolute) and the SHA-256 of every
/// file read, in reading order, by path relative to that directory. Generated data sets
/// (yin_yang) read no files.
struct data_record {
  std::string dir;
  std::vector<std::pair<std::string, std::string>> files;  ///< (relative path, sha256 hex)

  nlohmann::json to_json() const;
  /// Throws data_error (naming `source`) when j is not a record written by to_json.
  static data_record from_json(const nlohmann::json& j, const std::string& source);
};

/// Records data_dir (made absolute) and hashes `files` (paths as the loader opened them).
data_record record_data(const std::filesystem::path& data_dir, const std::vector<std::filesystem::path>& files);

/// How the data directory of a resumed or evaluated run was chosen.
enum class data_dir_source { config, flag, recorded, default_dir };

/// The data directory of a saved run: the config's data.dir when set, else the --data-dir
/// flag when set, else the recorded directory when the run read files, else
/// resolve_data_dir (EQPROP_DATA, then ./data). When the recorded directory is chosen but no
/// longer exists, throws data_error saying so and how to pass --data-dir.
std::pair<std::filesystem::path, data_dir_source> saved_run_data_dir(const std::string& config_dir,
                                                                     const std::string& flag_dir,
                                                                     const data_record* recorded);

/// Compares the files read now with the recorded ones (same count, same SHA-256 in
/// order). A difference throws data_error naming the file, both checksums, the directory
/// and how it was chosen, and how to pass --data-dir with the data the run was trained on.
void check_data_record(const data_record& recorded, const data_record& now, data_dir_source how);

/// Routes SIGINT and SIGTERM, for the rest of the process, to a thread of their own that
/// computes nothing: blocks both in the calling thread (so in every thread it starts from then
/// on) and starts a thread that only waits, with both unblocked. Their handlers
/// (stop_signal_guard's) or default action (ending the process) then run there. Why: the kernel
/// pushes a handler's frame below the stack pointer of the thread it interrupts, and oneDNN
/// 2.x's JIT GEMM kernels point the stack pointer into the heap while they run, so a signal
/// landing on a thread inside one corrupts the heap (fixed in later oneDNN releases).
/// Call it first in main, before any other thread exists; later calls do nothing. Children
/// inherit the blocked mask: a child that is not eqprop should get an empty mask at exec.
/// A test or tool that signals itself must use kill(getpid(), ...), not raise(): raise()
/// targets the calling thread, where the signals are blocked.
void confine_stop_signals();

/// While alive, SIGINT and SIGTERM request a clean stop instead of killing the process:
/// the first one sets requested() (the trainer finishes its batch, writes a checkpoint and
/// returns); a second one ends the process at once (exit status 130). The previous
/// handlers are restored on destruction. One guard at a time per process.
class stop_signal_guard {
 public:
  stop_signal_guard();
  ~stop_signal_guard();
  stop_signal_guard(const stop_signal_guard&) = delete;
  stop_signal_guard& operator=(const stop_signal_guard&) = delete;
  /// True once a signal arrived since this guard was created.
  static bool requested();
};

}  // namespace eqprop
