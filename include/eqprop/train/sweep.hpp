// Seeds × grids of `eqprop train`: every combination of grid values and seeds is an
// ordinary run directory under one sweep directory,
//
//   DIR/<point>/seed-<S>     e.g. DIR/optimizer.lr=0.01,estimator.beta=0.2/seed-0
//   DIR/seed-<S>             without --grid
//   DIR/summary.csv, DIR/summary.md, DIR/sweep.json, DIR/summary.png
//
// This header holds what does not need the command line: parsing --seeds and --grid, the
// plan (every combination's config, validated before anything runs, and the state of its
// directory: new, finished, or to be resumed), the directory names, and the summary over
// the seeds of each grid point. See docs/runs.md, "Seeds and grids".
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eqprop/train/config.hpp"

namespace eqprop {

/// The metrics row keys the summary reads from each run's metrics.jsonl (the layered
/// trainer's names): the one place they are named. sweep.json carries them to the plotter.
struct sweep_columns {
  static constexpr std::string_view epoch = "epoch";
  static constexpr std::string_view test_acc = "test_acc";
  static constexpr std::string_view test_loss = "test_loss";
  static constexpr std::string_view time_s = "time_s";
};

/// Parses --seeds: comma-separated items, each a seed `3` or an inclusive range `0-4`
/// (`0-2,7` is 0, 1, 2, 7), in the order given. Seeds are decimal integers >= 0; an empty
/// item, a range whose end is below its start, a repeated seed or more than 10000 seeds is a
/// config_error quoting the text.
std::vector<uint64_t> parse_seed_list(std::string_view text);

/// One --grid axis: a config key and the values it takes, as text for config::set_override.
struct sweep_axis {
  std::string key;
  std::vector<std::string> values;
};

/// Parses --grid KEY=V1,V2,...: values are split at commas outside brackets and quotes, so
/// an array value keeps its brackets (`network.hidden=[8],[16,16]`). A missing `=`, an empty
/// key or value, or a repeated value is a config_error quoting the text. The key and values
/// are checked against the schema by make_sweep_plan.
sweep_axis parse_grid_axis(std::string_view text);

/// A grid point's (key, value text) pairs, in axis order.
using sweep_values = std::vector<std::pair<std::string, std::string>>;

/// The directory name of a grid point: `key=value` pairs joined by commas, in axis order
/// (`optimizer.lr=0.01,estimator.beta=0.2`). A value character other than letters, digits
/// and `._+-` becomes `_` (`[8,16]` → `_8_16_`), so the name is one safe path component.
/// Empty values (no grid) give "".
std::string sweep_point_dir_name(const sweep_values& values);
/// "seed-<S>".
std::string sweep_seed_dir_name(uint64_t seed);

/// What the sweep does with a combination's directory.
enum class sweep_run_state {
  fresh,     ///< missing or empty: a new run
  restart,   ///< a run killed before its first checkpoint (only run files, no checkpoint): replaced by a new run
  resume,    ///< a checkpoint before the last epoch (or mid-epoch): continued as `eqprop train --resume` does
  finished,  ///< run_finished (trainer.hpp): run.epochs done, or run.target_accuracy reached: skipped
};

struct sweep_run {
  std::size_t point = 0;  ///< index into sweep_plan::points
  uint64_t seed = 0;
  std::filesystem::path dir;
  /// The config the run trains with: the combination's for a new run; for resume and
  /// finished, the run's saved config with the combination's changes applied
  /// (config::apply_resume_changes).
  config cfg;
  sweep_run_state state = sweep_run_state::fresh;
  std::vector<std::string> changes;  ///< resume: the changed keys ("run.epochs: 2 -> 3 (--epochs)")
  long checkpoint_epoch = 0;         ///< resume and finished: the checkpoint's epoch
};

struct sweep_point {
  sweep_values values;
  std::string name;  ///< sweep_point_dir_name(values)
};

struct sweep_plan {
  std::filesystem::path dir;
  std::vector<sweep_axis> axes;
  std::vector<uint64_t> seeds;
  std::vector<sweep_point> points;  ///< the cartesian product of the axes, the last axis varying fastest
  std::vector<sweep_run> runs;      ///< every seed of point 0, then of point 1, ...
};

/// Builds and checks the whole sweep before anything runs, creating nothing. Every
/// combination's config is `base` with each grid value applied by config::set_override
/// (after base's own values: the grid wins) and run.seed set to the seed; a bad key or value
/// throws config_error naming the --grid or --seeds value. Without seeds, the one seed is
/// base's run.seed. Refused with config_error: a grid over run.seed (use --seeds) or run.dir,
/// a key on two axes, two points whose directory names coincide. Each run directory is
/// inspected (sweep_run_state): a checkpoint is loaded and the saved config takes the
/// combination's changes (keys fixed on resume that differ are a config_error naming the
/// run); a non-empty directory without a checkpoint that holds anything but run files
/// (is_run_file) is a config_error naming the directory and the entry.
sweep_plan make_sweep_plan(const config& base, std::vector<sweep_axis> axes, std::vector<uint64_t> seeds,
                           const std::filesystem::path& dir);

/// True when dir holds a checkpoint.eqck of a finished run (run_finished in trainer.hpp:
/// `epochs` epochs done at an epoch's end, or run.target_accuracy reached).
bool sweep_run_finished(const std::filesystem::path& dir, long epochs);

/// Mean and sample standard deviation (n - 1 in the denominator; 0 for one value; both NaN
/// for none).
struct mean_std {
  double mean = 0, std = 0;
};
mean_std mean_and_std(const std::vector<double>& xs);

/// The summary of one grid point over its finished runs.
struct sweep_point_summary {
  sweep_point point;
  std::vector<std::string> runs;  ///< the finished runs' directories relative to the sweep directory
  long n_finished = 0;
  mean_std final_test_acc, best_test_acc, final_test_loss;
  long epochs = 0;          ///< the runs' final epoch (the largest, if they differ)
  double total_time_s = 0;  ///< the sum of time_s over every row of every finished run
};

/// Reads metrics.jsonl of each run directory in `finished` (relative to sweep_dir; rows
/// with an epoch, in order). Final values are from each run's last row, best test accuracy
/// is the largest over its rows. A run without such rows, or whose rows lack a column, is
/// a data_error naming its metrics file and the column.
sweep_point_summary summarize_sweep_point(const std::filesystem::path& sweep_dir, const sweep_point& point,
                                          const std::vector<std::string>& finished);

/// summary.csv: columns `point`, each grid key, n_finished, then mean and std of
/// final_test_acc, best_test_acc and final_test_loss, epochs, total_time_s; one row per
/// point. Statistics of a point without finished runs are empty cells.
std::string sweep_summary_csv(const std::vector<sweep_axis>& axes, const std::vector<sweep_point_summary>& rows);
/// summary.md: the same as a Markdown table (accuracies in %, mean ± std), saying that std is
/// the sample standard deviation.
std::string sweep_summary_markdown(const std::vector<sweep_axis>& axes, const std::vector<uint64_t>& seeds,
                                   const std::vector<sweep_point_summary>& rows);
/// sweep.json: the axes, the seeds, the metric column names (sweep_columns) and each point's
/// name, values and finished runs; what `eqprop plot DIR` reads to draw summary.png.
nlohmann::ordered_json sweep_description(const std::vector<sweep_axis>& axes, const std::vector<uint64_t>& seeds,
                                         const std::vector<sweep_point_summary>& rows);
/// Writes summary.csv, summary.md and sweep.json into dir (each atomically).
void write_sweep_summary(const std::filesystem::path& dir, const std::vector<sweep_axis>& axes,
                         const std::vector<uint64_t>& seeds, const std::vector<sweep_point_summary>& rows);

}  // namespace eqprop
