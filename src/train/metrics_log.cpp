// Metrics log: metrics.jsonl + metrics.csv, flushed after every row.
#include "eqprop/train/metrics_log.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <system_error>

#include <fmt/format.h>

#include "eqprop/core/atomic_file.hpp"

namespace eqprop {

namespace {

std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string csv_cell(const nlohmann::ordered_json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return csv_escape(v.get<std::string>());
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
    return dump(v);
  }
  if (v.is_number() || v.is_boolean()) return dump(v);
  return csv_escape(dump(v));  // arrays and objects: their JSON text
}

}  // namespace

std::string csv_escape(const std::string& s) {
  const bool quote =
      s.find_first_of(",\"\r\n") != std::string::npos || (!s.empty() && (s.front() == ' ' || s.back() == ' '));
  if (!quote) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

void create_run_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!ec && !std::filesystem::is_directory(dir)) ec = std::make_error_code(std::errc::not_a_directory);
  if (ec) throw error(fmt::format("cannot create run directory `{}`: {}", dir.string(), ec.message()));
}

std::vector<nlohmann::ordered_json> read_metrics_rows(const std::filesystem::path& jsonl_path) {
  std::vector<nlohmann::ordered_json> rows;
  if (!std::filesystem::exists(jsonl_path)) return rows;
  const std::string text = read_file(jsonl_path);
  std::size_t start = 0;
  long line_no = 0;
  while (start < text.size()) {
    const std::size_t nl = text.find('\n', start);
    const bool last = nl == std::string::npos;
    std::string_view line(text.data() + start, (last ? text.size() : nl) - start);
    start = last ? text.size() : nl + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty()) continue;
    nlohmann::ordered_json row;
    bool ok = true;
    try {
      row = nlohmann::ordered_json::parse(line);
    } catch (const nlohmann::ordered_json::exception&) {
      ok = false;
    }
    const bool is_last_line = text.find_first_not_of(" \r\n", start) == std::string::npos;
    if (!ok || !row.is_object()) {
      if (is_last_line) break;  // a row cut short by a crash: drop it
      throw data_error(fmt::format("{}:{}: corrupt metrics row", jsonl_path.string(), line_no));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

metrics_log::metrics_log(std::filesystem::path run_dir, bool resume)
    : jsonl_path_(run_dir / "metrics.jsonl"), csv_path_(run_dir / "metrics.csv") {
  create_run_directory(run_dir);

  if (resume) {
    rows_ = read_metrics_rows(jsonl_path_);
    for (const auto& row : rows_) add_columns(row);
  }
  rewrite_all();
}

metrics_log::~metrics_log() { close_files(); }

void metrics_log::close_files() {
  if (jsonl_) std::fclose(jsonl_);
  if (csv_) std::fclose(csv_);
  jsonl_ = csv_ = nullptr;
}

void metrics_log::open_for_append() {
  close_files();
  jsonl_ = std::fopen(jsonl_path_.c_str(), "ab");
  if (!jsonl_)
    throw error(fmt::format("cannot open `{}`: {}", jsonl_path_.string(), std::generic_category().message(errno)));
  csv_ = std::fopen(csv_path_.c_str(), "ab");
  if (!csv_)
    throw error(fmt::format("cannot open `{}`: {}", csv_path_.string(), std::generic_category().message(errno)));
}

bool metrics_log::add_columns(const nlohmann::ordered_json& row) {
  bool added = false;
  for (auto it = row.begin(); it != row.end(); ++it) {
    if (std::find(columns_.begin(), columns_.end(), it.key()) == columns_.end()) {
      columns_.push_back(it.key());
      added = true;
    }
  }
  return added;
}

std::string metrics_log::csv_line(const nlohmann::ordered_json& row) const {
  std::string out;
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    if (i) out += ',';
    auto it = row.find(columns_[i]);
    if (it != row.end()) out += csv_cell(*it);
  }
  return out + "\n";
}

void metrics_log::rewrite_all() {
  close_files();
  std::string jsonl, csv;
  for (const auto& r : rows_) jsonl += dump(r) + "\n";
  if (!columns_.empty()) {
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (i) csv += ',';
      csv += csv_escape(columns_[i]);
    }
    csv += "\n";
    for (const auto& r : rows_) csv += csv_line(r);
  }
  write_file_atomic(jsonl_path_, jsonl);
  write_file_atomic(csv_path_, csv);
  open_for_append();
}

void metrics_log::write_and_flush(std::FILE* f, const std::filesystem::path& p, const std::string& text) {
  if (std::fwrite(text.data(), 1, text.size(), f) != text.size() || std::fflush(f) != 0)
    throw error(fmt::format("cannot write `{}`: {}", p.string(), std::generic_category().message(errno)));
}

void metrics_log::append(const nlohmann::ordered_json& row) {
  if (!row.is_object()) throw error(fmt::format("metrics row must be a JSON object, got {}", dump(row)));
  const bool new_columns = add_columns(row);
  rows_.push_back(row);
  write_and_flush(jsonl_, jsonl_path_, dump(row) + "\n");
  if (new_columns) {
    rewrite_all();  // the CSV header changes; jsonl is rewritten with identical content
  } else if (!columns_.empty()) {
    write_and_flush(csv_, csv_path_, csv_line(row));
  }
}

void metrics_log::truncate_after_epoch(long epoch) {
  std::erase_if(rows_, [epoch](const nlohmann::ordered_json& r) {
    auto it = r.find("epoch");
    return it != r.end() && it->is_number() && it->get<double>() > static_cast<double>(epoch);
  });
  columns_.clear();
  for (const auto& r : rows_) add_columns(r);
  rewrite_all();
}

}  // namespace eqprop
