// Metrics log of a run: one row (a JSON object) per append, written to
//   <run_dir>/metrics.jsonl  one JSON object per line, keys in insertion order
//   <run_dir>/metrics.csv    the same rows as CSV
// Both files are flushed after every row, so a crashed or killed run keeps every row it
// logged. CSV columns are the keys of the first row, in order; a key first seen in a later
// row becomes a new last column (the CSV is then rewritten with it); missing values are
// empty cells.
#pragma once
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eqprop/core/error.hpp"

namespace eqprop {

/// Creates a run directory and its parents (an existing one is fine). A failure (no
/// permission, a file in the way, a full or read-only disk) is an eqprop::error naming
/// the directory and the reason.
void create_run_directory(const std::filesystem::path& dir);

/// One CSV cell holding `s` (RFC 4180): quoted when it holds a comma, a quote or a line
/// break, or starts or ends with a space; quotes inside are doubled.
std::string csv_escape(const std::string& s);

/// The rows of a metrics.jsonl file, in order; a missing file has none. A last line cut
/// short by a crash is dropped; any other line that is not a JSON object is a data_error
/// naming the file and line. Reads only (metrics_log(dir, true) reads the same way).
std::vector<nlohmann::ordered_json> read_metrics_rows(const std::filesystem::path& jsonl_path);

class metrics_log {
 public:
  /// Opens the log in run_dir (created if needed). resume = false starts empty logs
  /// (existing metrics files are replaced); resume = true keeps the rows already in
  /// metrics.jsonl (a partial last line left by a crash is dropped) and regenerates
  /// metrics.csv from them. Throws data_error if metrics.jsonl is corrupt before its last
  /// line, eqprop::error on I/O failure.
  metrics_log(std::filesystem::path run_dir, bool resume);
  ~metrics_log();
  metrics_log(const metrics_log&) = delete;
  metrics_log& operator=(const metrics_log&) = delete;

  /// Appends one row (must be a JSON object; nlohmann::json converts, but only an
  /// ordered_json keeps its key order) to both files and flushes them.
  void append(const nlohmann::ordered_json& row);

  /// Drops the rows whose numeric "epoch" is greater than `epoch` (rows without one are
  /// kept) and rewrites both files atomically. Called when resuming from the checkpoint of
  /// epoch `epoch`, so rows logged after that checkpoint are not duplicated.
  void truncate_after_epoch(long epoch);

  /// Every row logged so far (including rows kept on resume).
  const std::vector<nlohmann::ordered_json>& rows() const { return rows_; }
  /// The CSV columns.
  const std::vector<std::string>& columns() const { return columns_; }
  const std::filesystem::path& jsonl_path() const { return jsonl_path_; }
  const std::filesystem::path& csv_path() const { return csv_path_; }

 private:
  void rewrite_all();
  void open_for_append();
  void close_files();
  bool add_columns(const nlohmann::ordered_json& row);
  std::string csv_line(const nlohmann::ordered_json& row) const;
  void write_and_flush(std::FILE* f, const std::filesystem::path& p, const std::string& text);

  std::filesystem::path jsonl_path_, csv_path_;
  std::vector<nlohmann::ordered_json> rows_;
  std::vector<std::string> columns_;
  std::FILE* jsonl_ = nullptr;
  std::FILE* csv_ = nullptr;
};

}  // namespace eqprop
