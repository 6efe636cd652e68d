// Seeds × grids of `eqprop train`: parsing, the plan, directory names and the summary.
#include "eqprop/train/sweep.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <set>
#include <system_error>

#include <fmt/format.h>

#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/run_dir.hpp"
#include "eqprop/train/trainer.hpp"

namespace eqprop {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t max_seeds = 10000;
constexpr const char* checkpoint_file = "checkpoint.eqck";

uint64_t parse_seed(std::string_view s, std::string_view whole) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    throw config_error(
        fmt::format("--seeds {}: `{}` is not a seed (a whole number >= 0); write e.g. --seeds 0-4, "
                    "--seeds 3 or --seeds 0,2,5",
                    whole, s));
  return v;
}

// Splits at commas outside [] {} and quotes.
std::vector<std::string> split_top_level(std::string_view s) {
  std::vector<std::string> parts;
  std::string cur;
  int depth = 0;
  char quote = 0;
  for (char c : s) {
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    } else if (c == ',' && depth == 0) {
      parts.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur += c;
  }
  parts.push_back(std::move(cur));
  return parts;
}

std::string grid_flag(const sweep_axis& a) { return fmt::format("--grid {}={}", a.key, fmt::join(a.values, ",")); }

// The effective config of a run directory that holds a checkpoint, and its state.
void inspect_checkpoint(sweep_run& r) {
  const fs::path ck_file = r.dir / checkpoint_file;
  const auto ck = load_checkpoint(ck_file);
  config saved(r.cfg.schema());
  saved.load_saved_json(ck.meta.at("config"), ck_file.string());
  try {
    r.changes = saved.apply_resume_changes(r.cfg);
  } catch (const config_error& e) {
    throw config_error(
        fmt::format("sweep run `{}` was started with another config: {}; give the sweep another "
                    "--run-dir, or move that run away",
                    r.dir.string(), e.what()));
  }
  r.cfg = saved;
  r.checkpoint_epoch = ck.meta.at("epoch").get<long>();
  r.state = run_finished(ck, r.cfg.get<long>("run.epochs")) ? sweep_run_state::finished : sweep_run_state::resume;
}

void inspect_directory(sweep_run& r) {
  std::error_code ec;
  if (!fs::exists(r.dir, ec)) return;  // fresh
  if (!fs::is_directory(r.dir, ec))
    throw config_error(
        fmt::format("sweep: `{}` exists and is not a directory; move it away or give the sweep another "
                    "--run-dir",
                    r.dir.string()));
  if (fs::is_empty(r.dir, ec)) return;
  if (fs::exists(r.dir / checkpoint_file, ec)) return inspect_checkpoint(r);
  for (const auto& e : fs::directory_iterator(r.dir)) {
    const std::string name = e.path().filename().string();
    if (!is_run_file(name) || !e.is_regular_file())
      throw config_error(
          fmt::format("sweep: `{}` holds `{}`, which is not a file an eqprop run writes, and no "
                      "checkpoint: it is not a run of this sweep; move it away or give the sweep "
                      "another --run-dir",
                      r.dir.string(), name));
  }
  r.state = sweep_run_state::restart;  // killed before its first checkpoint
}

double number_of(const nlohmann::ordered_json& row, std::string_view col, const fs::path& file) {
  const auto it = row.find(std::string(col));
  if (it == row.end())
    throw data_error(fmt::format("{}: a row has no `{}` column; the sweep summary needs it", file.string(), col));
  if (it->is_null()) return std::numeric_limits<double>::quiet_NaN();  // a non-finite value, logged as null
  if (!it->is_number())
    throw data_error(fmt::format("{}: column `{}` holds {}, not a number", file.string(), col, it->dump()));
  return it->get<double>();
}

std::string cell(double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string(); }

}  // namespace

std::vector<uint64_t> parse_seed_list(std::string_view text) {
  std::vector<uint64_t> seeds;
  std::set<uint64_t> seen;
  for (const auto& item : split_top_level(text)) {
    if (item.empty())
      throw config_error(fmt::format("--seeds {}: an empty item; separate seeds and ranges by single commas", text));
    if (item[0] == '-') throw config_error(fmt::format("--seeds {}: `{}`: seeds are whole numbers >= 0", text, item));
    const auto dash = item.find('-');
    uint64_t lo = 0, hi = 0;
    if (dash == std::string::npos) {
      lo = hi = parse_seed(item, text);
    } else {
      lo = parse_seed(std::string_view(item).substr(0, dash), text);
      hi = parse_seed(std::string_view(item).substr(dash + 1), text);
      if (hi < lo)
        throw config_error(
            fmt::format("--seeds {}: the range `{}` ends below its start; write {}-{}", text, item, hi, lo));
    }
    if (hi - lo >= max_seeds || seeds.size() + (hi - lo + 1) > max_seeds)
      throw config_error(fmt::format("--seeds {}: more than {} seeds", text, max_seeds));
    for (uint64_t s = lo;; ++s) {
      if (!seen.insert(s).second) throw config_error(fmt::format("--seeds {}: seed {} is given twice", text, s));
      seeds.push_back(s);
      if (s == hi) break;
    }
  }
  return seeds;
}

sweep_axis parse_grid_axis(std::string_view text) {
  const auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0)
    throw config_error(fmt::format("--grid {}: expected KEY=V1,V2,... (e.g. --grid optimizer.lr=0.01,0.02)", text));
  sweep_axis a;
  a.key = std::string(text.substr(0, eq));
  while (!a.key.empty() && std::isspace(static_cast<unsigned char>(a.key.back()))) a.key.pop_back();
  std::set<std::string> seen;
  for (auto& v : split_top_level(text.substr(eq + 1))) {
    if (v.empty()) throw config_error(fmt::format("--grid {}: an empty value; separate values by single commas", text));
    if (!seen.insert(v).second) throw config_error(fmt::format("--grid {}: the value `{}` is given twice", text, v));
    a.values.push_back(std::move(v));
  }
  return a;
}

std::string sweep_point_dir_name(const sweep_values& values) {
  std::string name;
  for (const auto& [key, value] : values) {
    if (!name.empty()) name += ',';
    name += key + '=';
    for (char c : value)
      name += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' || c == '-' ? c : '_';
  }
  return name;
}

std::string sweep_seed_dir_name(uint64_t seed) { return fmt::format("seed-{}", seed); }

sweep_plan make_sweep_plan(const config& base, std::vector<sweep_axis> axes, std::vector<uint64_t> seeds,
                           const fs::path& dir) {
  sweep_plan plan;
  plan.dir = dir;
  std::set<std::string> keys;
  for (const auto& a : axes) {
    if (a.key == "run.seed")
      throw config_error(fmt::format("{}: give the seeds with --seeds (e.g. --seeds 0-4), not --grid", grid_flag(a)));
    if (a.key == "run.dir")
      throw config_error(
          fmt::format("{}: the sweep chooses each run's directory; give the sweep's with --run-dir", grid_flag(a)));
    if (!keys.insert(a.key).second)
      throw config_error(fmt::format("--grid {}: the key is given twice; list all its values in one --grid", a.key));
  }
  if (seeds.empty()) seeds.push_back(base.get<uint64_t>("run.seed"));
  // The cartesian product, last axis fastest; every value checked by the schema.
  std::vector<std::pair<sweep_values, config>> points{{{}, base}};
  for (const auto& a : axes) {
    std::vector<std::pair<sweep_values, config>> next;
    for (const auto& [values, cfg] : points)
      for (const auto& v : a.values) {
        config c = cfg;
        try {
          c.set_override(a.key + "=" + v);
        } catch (const config_error& e) {
          throw config_error(fmt::format("{}: {}", grid_flag(a), e.what()));
        }
        auto vals = values;
        vals.emplace_back(a.key, v);
        next.emplace_back(std::move(vals), std::move(c));
      }
    points = std::move(next);
  }
  std::set<std::string> names;
  for (const auto& [values, cfg] : points) {
    sweep_point p{values, sweep_point_dir_name(values)};
    if (!names.insert(p.name).second)
      throw config_error(
          fmt::format("sweep: two grid points have the directory name `{}` (characters other than "
                      "letters, digits and ._+- become _); give the values differently",
                      p.name));
    if (p.name.size() > 200)
      throw config_error(
          fmt::format("sweep: the directory name of a grid point is longer than 200 characters "
                      "(`{}`); use fewer or shorter --grid values",
                      p.name));
    for (uint64_t s : seeds) {
      config c = cfg;
      c.set("run.seed", int64_t(s), "--seeds");  // range-checked like --seed
      sweep_run r{.point = plan.points.size(),
                  .seed = s,
                  .dir = (p.name.empty() ? dir : dir / p.name) / sweep_seed_dir_name(s),
                  .cfg = std::move(c),
                  .state = sweep_run_state::fresh,
                  .changes = {},
                  .checkpoint_epoch = 0};
      inspect_directory(r);
      plan.runs.push_back(std::move(r));
    }
    plan.points.push_back(std::move(p));
  }
  plan.axes = std::move(axes);
  plan.seeds = std::move(seeds);
  return plan;
}

bool sweep_run_finished(const fs::path& dir, long epochs) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / checkpoint_file, ec)) return false;
  return run_finished(load_checkpoint(dir / checkpoint_file), epochs);
}

mean_std mean_and_std(const std::vector<double>& xs) {
  if (xs.empty()) return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
  double sum = 0;
  for (double x : xs) sum += x;
  const double mean = sum / double(xs.size());
  if (xs.size() == 1) return {mean, 0};
  double ss = 0;
  for (double x : xs) ss += (x - mean) * (x - mean);
  return {mean, std::sqrt(ss / double(xs.size() - 1))};
}

sweep_point_summary summarize_sweep_point(const fs::path& sweep_dir, const sweep_point& point,
                                          const std::vector<std::string>& finished) {
  sweep_point_summary s;
  s.point = point;
  s.runs = finished;
  std::vector<double> final_acc, best_acc, final_loss;
  for (const auto& run : finished) {
    const fs::path file = sweep_dir / run / "metrics.jsonl";
    double best = -std::numeric_limits<double>::infinity(), last_acc = 0, last_loss = 0;
    long last_epoch = -1;
    for (const auto& row : read_metrics_rows(file)) {
      if (!row.contains(std::string(sweep_columns::epoch))) continue;
      s.total_time_s += number_of(row, sweep_columns::time_s, file);
      if (!row.contains(std::string(sweep_columns::test_acc))) continue;  // an epoch run.eval_every did not evaluate
      last_epoch = long(number_of(row, sweep_columns::epoch, file));
      last_acc = number_of(row, sweep_columns::test_acc, file);
      last_loss = number_of(row, sweep_columns::test_loss, file);
      best = std::max(best, last_acc);
    }
    if (last_epoch < 0)
      throw data_error(
          fmt::format("{}: no row with `{}` and `{}` columns; the sweep summary needs the finished "
                      "run's evaluated epochs",
                      file.string(), sweep_columns::epoch, sweep_columns::test_acc));
    final_acc.push_back(last_acc);
    best_acc.push_back(best);
    final_loss.push_back(last_loss);
    s.epochs = std::max(s.epochs, last_epoch);
  }
  s.n_finished = long(finished.size());
  s.final_test_acc = mean_and_std(final_acc);
  s.best_test_acc = mean_and_std(best_acc);
  s.final_test_loss = mean_and_std(final_loss);
  return s;
}

std::string sweep_summary_csv(const std::vector<sweep_axis>& axes, const std::vector<sweep_point_summary>& rows) {
  std::string out = "point";
  for (const auto& a : axes) out.append(",").append(csv_escape(a.key));
  out +=
      ",n_finished,final_test_acc_mean,final_test_acc_std,best_test_acc_mean,best_test_acc_std,"
      "final_test_loss_mean,final_test_loss_std,epochs,total_time_s\n";
  for (const auto& r : rows) {
    out += csv_escape(r.point.name);
    for (const auto& kv : r.point.values) out.append(",").append(csv_escape(kv.second));
    const bool any = r.n_finished > 0;
    out += fmt::format(",{},{},{},{},{},{},{},{},{}\n", r.n_finished, cell(r.final_test_acc.mean),
                       cell(r.final_test_acc.std), cell(r.best_test_acc.mean), cell(r.best_test_acc.std),
                       cell(r.final_test_loss.mean), cell(r.final_test_loss.std), any ? fmt::to_string(r.epochs) : "",
                       any ? cell(r.total_time_s) : "");
  }
  return out;
}

std::string sweep_summary_markdown(const std::vector<sweep_axis>& axes, const std::vector<uint64_t>& seeds,
                                   const std::vector<sweep_point_summary>& rows) {
  auto pct = [](const mean_std& m) {
    return std::isfinite(m.mean) ? fmt::format("{:.2f} ± {:.2f}", 100 * m.mean, 100 * m.std) : std::string("n/a");
  };
  std::string out = "# Sweep summary\n\n";
  out += fmt::format(
      "Seeds: {}. Each row is one grid point; mean ± std over its finished runs, where std is the "
      "sample standard deviation (n - 1 in the denominator; 0 for a single run). Accuracies in %; "
      "wall time is the sum of the runs' `{}`.\n\n",
      fmt::join(seeds, ", "), sweep_columns::time_s);
  std::string head = "|", rule = "|";
  for (const auto& a : axes) head += fmt::format(" `{}` |", a.key), rule += "---|";
  head += " n | final test acc | best test acc | final test loss | epochs | wall time (s) |\n";
  rule += "---|---|---|---|---|---|\n";
  out += head + rule;
  for (const auto& r : rows) {
    out += "|";
    for (const auto& kv : r.point.values) out += fmt::format(" {} |", kv.second);
    const bool any = r.n_finished > 0;
    out += fmt::format(" {} | {} | {} | {} | {} | {} |\n", r.n_finished, pct(r.final_test_acc), pct(r.best_test_acc),
                       std::isfinite(r.final_test_loss.mean)
                           ? fmt::format("{:.4f} ± {:.4f}", r.final_test_loss.mean, r.final_test_loss.std)
                           : std::string("n/a"),
                       any ? fmt::to_string(r.epochs) : "n/a", any ? fmt::format("{:.1f}", r.total_time_s) : "n/a");
  }
  return out;
}

nlohmann::ordered_json sweep_description(const std::vector<sweep_axis>& axes, const std::vector<uint64_t>& seeds,
                                         const std::vector<sweep_point_summary>& rows) {
  nlohmann::ordered_json j;
  j["axes"] = nlohmann::ordered_json::array();
  for (const auto& a : axes) j["axes"].push_back({{"key", a.key}, {"values", a.values}});
  j["seeds"] = seeds;
  j["columns"] = {{"epoch", sweep_columns::epoch},
                  {"test_acc", sweep_columns::test_acc},
                  {"test_loss", sweep_columns::test_loss},
                  {"time_s", sweep_columns::time_s}};
  j["points"] = nlohmann::ordered_json::array();
  for (const auto& r : rows) {
    nlohmann::ordered_json values = nlohmann::ordered_json::object();
    for (const auto& [k, v] : r.point.values) values[k] = v;
    j["points"].push_back({{"name", r.point.name}, {"values", values}, {"runs", r.runs}});
  }
  return j;
}

void write_sweep_summary(const fs::path& dir, const std::vector<sweep_axis>& axes, const std::vector<uint64_t>& seeds,
                         const std::vector<sweep_point_summary>& rows) {
  write_file_atomic(dir / "summary.csv", sweep_summary_csv(axes, rows));
  write_file_atomic(dir / "summary.md", sweep_summary_markdown(axes, seeds, rows));
  write_file_atomic(dir / "sweep.json", sweep_description(axes, seeds, rows).dump(2) + "\n");
}

}  // namespace eqprop
