// Seeds × grids of `eqprop train` (docs/runs.md, "Seeds and grids"): parsing --seeds and
// --grid, directory names, the plan (validated before anything is created; the state of each
// run directory), the summary statistics on hand-written metrics, and the command line end
// to end on tiny Yin-Yang runs (run, rerun skips, Ctrl-C and continue, bad grid values).
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/sweep.hpp"
#include "eqprop/train/trainer.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace eqprop;
using eqprop::test::cli, eqprop::test::error_of, eqprop::test::run_cli, eqprop::test::temp_dir;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

config base_config() {
  config cfg(layered_schema());
  cfg.set_override("run.epochs=2");
  return cfg;
}

// A checkpoint holding only what make_sweep_plan reads: the epoch, batch and config (with
// run.seed = seed).
void write_fake_checkpoint(const fs::path& dir, config cfg, uint64_t seed, long epoch, long batch) {
  fs::create_directories(dir);
  cfg.set("run.seed", int64_t(seed));
  checkpoint ck;
  ck.meta = {{"epoch", epoch}, {"batch", batch}, {"config", cfg.to_json()}};
  save_checkpoint(dir / "checkpoint.eqck", ck);
}

}  // namespace

TEST(Sweep, ParsesSeedLists) {
  EXPECT_EQ(parse_seed_list("0-4"), (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(parse_seed_list("3"), (std::vector<uint64_t>{3}));
  EXPECT_EQ(parse_seed_list("0,2,5"), (std::vector<uint64_t>{0, 2, 5}));
  EXPECT_EQ(parse_seed_list("7,0-2"), (std::vector<uint64_t>{7, 0, 1, 2}));
  for (const char* bad : {"", "a", "4-2", "1,1", "0-2,1", "-1", "0-", "1,,2", "1.5", "0-20000"}) {
    const auto msg = error_of<config_error>([&] { parse_seed_list(bad); });
    EXPECT_TRUE(contains(msg, "--seeds")) << bad << ": " << msg;
  }
  EXPECT_TRUE(contains(error_of<config_error>([] { parse_seed_list("4-2"); }), "2-4"));
  EXPECT_TRUE(contains(error_of<config_error>([] { parse_seed_list("1,1"); }), "twice"));
}

TEST(Sweep, ParsesGridAxes) {
  const auto a = parse_grid_axis("optimizer.lr=0.01,0.02");
  EXPECT_EQ(a.key, "optimizer.lr");
  EXPECT_EQ(a.values, (std::vector<std::string>{"0.01", "0.02"}));
  const auto h = parse_grid_axis("network.hidden=[8],[16,16]");
  EXPECT_EQ(h.values, (std::vector<std::string>{"[8]", "[16,16]"}));
  const auto s = parse_grid_axis("estimator.kind=\"a,b\",holomorphic");
  EXPECT_EQ(s.values, (std::vector<std::string>{"\"a,b\"", "holomorphic"}));
  for (const char* bad : {"optimizer.lr", "=0.1", "optimizer.lr=", "optimizer.lr=0.1,,0.2", "optimizer.lr=0.1,0.1"}) {
    const auto msg = error_of<config_error>([&] { parse_grid_axis(bad); });
    EXPECT_TRUE(contains(msg, "--grid")) << bad << ": " << msg;
  }
}

TEST(Sweep, DirectoryNamesAreReadableAndSafe) {
  EXPECT_EQ(sweep_point_dir_name({{"optimizer.lr", "0.01"}, {"estimator.beta", "0.2"}}),
            "optimizer.lr=0.01,estimator.beta=0.2");
  EXPECT_EQ(sweep_point_dir_name({{"network.hidden", "[8,16]"}}), "network.hidden=_8_16_");
  EXPECT_EQ(sweep_point_dir_name({{"estimator.kind", "a/b c"}}), "estimator.kind=a_b_c");
  EXPECT_EQ(sweep_point_dir_name({}), "");
  EXPECT_EQ(sweep_seed_dir_name(3), "seed-3");
}

TEST(Sweep, PlanHasEveryCombinationAndCreatesNothing) {
  const fs::path root = temp_dir("sweep_plan") / "s";
  const auto plan = make_sweep_plan(
      base_config(), {parse_grid_axis("optimizer.lr=0.01,0.02"), parse_grid_axis("estimator.beta=0.2,0.4")}, {0, 1},
      root);
  ASSERT_EQ(plan.points.size(), 4u);
  ASSERT_EQ(plan.runs.size(), 8u);
  EXPECT_EQ(plan.points[1].name, "optimizer.lr=0.01,estimator.beta=0.4");  // last axis fastest
  EXPECT_EQ(plan.runs[3].dir, root / "optimizer.lr=0.01,estimator.beta=0.4" / "seed-1");
  EXPECT_EQ(plan.runs[3].cfg.get<double>("estimator.beta"), 0.4);
  EXPECT_EQ(plan.runs[3].cfg.get<uint64_t>("run.seed"), 1u);
  EXPECT_EQ(plan.runs[7].cfg.get<double>("optimizer.lr"), 0.02);
  for (const auto& r : plan.runs) EXPECT_EQ(r.state, sweep_run_state::fresh);
  EXPECT_FALSE(fs::exists(root));

  // Without --grid: DIR/seed-S; without --seeds: the config's run.seed.
  auto cfg = base_config();
  cfg.set_override("run.seed=9");
  const auto seeds_only = make_sweep_plan(cfg, {}, {}, root);
  ASSERT_EQ(seeds_only.runs.size(), 1u);
  EXPECT_EQ(seeds_only.runs[0].dir, root / "seed-9");
}

TEST(Sweep, BadGridIsAConfigErrorBeforeAnything) {
  const fs::path root = temp_dir("sweep_bad") / "s";
  auto plan_of = [&](const char* grid) { return make_sweep_plan(base_config(), {parse_grid_axis(grid)}, {0}, root); };
  auto msg = error_of<config_error>([&] { plan_of("optimizer.lrr=0.1"); });
  EXPECT_TRUE(contains(msg, "--grid optimizer.lrr=0.1") && contains(msg, "optimizer.lr")) << msg;
  msg = error_of<config_error>([&] { plan_of("optimizer.lr=0.1,-1"); });
  EXPECT_TRUE(contains(msg, "out of range")) << msg;
  msg = error_of<config_error>([&] { plan_of("run.seed=1,2"); });
  EXPECT_TRUE(contains(msg, "--seeds")) << msg;
  msg = error_of<config_error>([&] {
    make_sweep_plan(base_config(), {parse_grid_axis("optimizer.lr=0.1"), parse_grid_axis("optimizer.lr=0.2")}, {0},
                    root);
  });
  EXPECT_TRUE(contains(msg, "twice")) << msg;
  msg = error_of<config_error>([&] { plan_of("estimator.kind=a/b,a_b"); });
  EXPECT_TRUE(contains(msg, "same directory name") || contains(msg, "estimator.kind")) << msg;
  EXPECT_FALSE(fs::exists(root));
}

TEST(Sweep, PlanReadsTheStateOfEachRunDirectory) {
  const fs::path root = temp_dir("sweep_state");
  const auto cfg = base_config();
  write_fake_checkpoint(root / "seed-0", cfg, 0, 2, 0);        // finished
  write_fake_checkpoint(root / "seed-1", cfg, 1, 1, 0);        // an epoch short
  write_fake_checkpoint(root / "seed-2", cfg, 2, 1, 3);        // mid-epoch
  write_text(root / "seed-3" / "config.toml", cfg.to_toml());  // killed before its first checkpoint
  fs::create_directories(root / "seed-4");                     // empty
  auto plan = make_sweep_plan(cfg, {}, {0, 1, 2, 3, 4, 5}, root);
  const std::vector<sweep_run_state> want{sweep_run_state::finished, sweep_run_state::resume, sweep_run_state::resume,
                                          sweep_run_state::restart,  sweep_run_state::fresh,  sweep_run_state::fresh};
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(plan.runs[i].state, want[i]) << i;
  EXPECT_EQ(plan.runs[1].checkpoint_epoch, 1);

  // More epochs on the command line: the finished run becomes one to resume, with the change.
  auto more = cfg;
  more.set("run.epochs", int64_t(3), "--epochs");
  plan = make_sweep_plan(more, {}, {0}, root);
  EXPECT_EQ(plan.runs[0].state, sweep_run_state::resume);
  ASSERT_EQ(plan.runs[0].changes.size(), 1u);
  EXPECT_TRUE(contains(plan.runs[0].changes[0], "run.epochs")) << plan.runs[0].changes[0];

  // A key fixed on resume that differs, and a directory holding something else, are refused.
  auto other_net = cfg;
  other_net.set_override("network.hidden=[7]");
  auto msg = error_of<config_error>([&] { make_sweep_plan(other_net, {}, {0}, root); });
  EXPECT_TRUE(contains(msg, (root / "seed-0").string()) && contains(msg, "network.hidden")) << msg;
  write_text(root / "seed-6" / "notes.txt", "mine");
  msg = error_of<config_error>([&] { make_sweep_plan(cfg, {}, {6}, root); });
  EXPECT_TRUE(contains(msg, "notes.txt") && contains(msg, (root / "seed-6").string())) << msg;
}

// run.target_accuracy: the run stops after the first evaluated epoch that reaches it, its
// checkpoint says so, and a sweep counts it as finished (skipped, not resumed).
TEST(Sweep, TargetAccuracyStopsTheRunAndFinishesIt) {
  const fs::path root = temp_dir("sweep_target");
  config cfg = load_training_config({}, {"data.yin_yang_train=100", "data.yin_yang_test=50", "network.hidden=[6]",
                                         "run.epochs=4", "run.batch=20", "run.target_accuracy=0.01"});
  std::ostringstream sink;
  train_options o;
  o.run_dir = root / "seed-0";
  o.out = &sink;
  const train_result r = train(cfg, o);
  ASSERT_FALSE(r.diverged) << r.message << sink.str();
  EXPECT_TRUE(r.reached_target) << sink.str();
  EXPECT_EQ(r.epochs_done, 1);
  EXPECT_TRUE(contains(r.message, "run.target_accuracy")) << r.message;
  const auto ck = load_checkpoint(o.run_dir / "checkpoint.eqck");
  EXPECT_EQ(ck.meta.at("epoch").get<long>(), 1);
  EXPECT_TRUE(run_finished(ck, 4));
  const auto rows = read_metrics_rows(o.run_dir / "metrics.jsonl");
  ASSERT_EQ(rows.back().at("epoch").get<long>(), 1);
  EXPECT_GT(rows.back().at("train_time_s").get<double>(), 0);
  EXPECT_LE(rows.back().at("train_time_s").get<double>(), rows.back().at("time_s").get<double>());
  EXPECT_EQ(make_sweep_plan(cfg, {}, {0}, root).runs[0].state, sweep_run_state::finished);
  // Without the target the same checkpoint is 3 epochs short.
  checkpoint plain = ck;
  plain.meta.erase("reached_target");
  EXPECT_FALSE(run_finished(plain, 4));
  EXPECT_TRUE(run_finished(plain, 1));
}

TEST(Sweep, MeanAndSampleStd) {
  const auto m = mean_and_std({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(m.mean, 2.5);
  EXPECT_DOUBLE_EQ(m.std, std::sqrt(5.0 / 3.0));
  EXPECT_EQ(mean_and_std({0.7}).std, 0.0);
  EXPECT_TRUE(std::isnan(mean_and_std({}).mean));
}

TEST(Sweep, SummaryFromHandWrittenMetrics) {
  const fs::path root = temp_dir("sweep_summary");
  // Seed 0: best 0.8 at epoch 2, final 0.7; seed 1: best = final 0.9, epoch 2 not evaluated.
  // Rows without an epoch (none here but a stray one) are ignored.
  write_text(root / "p" / "seed-0" / "metrics.jsonl",
             "{\"epoch\":1,\"test_loss\":0.5,\"test_acc\":0.6,\"time_s\":1.5}\n"
             "{\"epoch\":2,\"test_loss\":0.4,\"test_acc\":0.8,\"time_s\":2}\n"
             "{\"note\":\"no epoch\"}\n"
             "{\"epoch\":3,\"test_loss\":0.3,\"test_acc\":0.7,\"time_s\":2.5}\n");
  write_text(root / "p" / "seed-1" / "metrics.jsonl",
             "{\"epoch\":1,\"test_loss\":0.6,\"test_acc\":0.5,\"time_s\":1}\n"
             "{\"epoch\":2,\"train_loss\":0.45,\"time_s\":1}\n"  // not evaluated (run.eval_every)
             "{\"epoch\":3,\"test_loss\":0.1,\"test_acc\":0.9,\"time_s\":1}\n");
  const sweep_point point{{{"optimizer.lr", "0.01"}}, "optimizer.lr=0.01"};
  const auto s = summarize_sweep_point(root, point, {"p/seed-0", "p/seed-1"});
  EXPECT_EQ(s.n_finished, 2);
  EXPECT_DOUBLE_EQ(s.final_test_acc.mean, 0.8);
  EXPECT_NEAR(s.final_test_acc.std, std::sqrt(0.02), 1e-12);
  EXPECT_DOUBLE_EQ(s.best_test_acc.mean, 0.85);
  EXPECT_NEAR(s.best_test_acc.std, std::sqrt(0.005), 1e-12);
  EXPECT_DOUBLE_EQ(s.final_test_loss.mean, 0.2);
  EXPECT_NEAR(s.final_test_loss.std, std::sqrt(0.02), 1e-12);
  EXPECT_EQ(s.epochs, 3);
  EXPECT_DOUBLE_EQ(s.total_time_s, 9.0);

  const sweep_point empty_point{{{"optimizer.lr", "0.02"}}, "optimizer.lr=0.02"};
  const auto none = summarize_sweep_point(root, empty_point, {});
  const std::vector<sweep_axis> axes{{"optimizer.lr", {"0.01", "0.02"}}};
  const auto csv = sweep_summary_csv(axes, {s, none});
  EXPECT_EQ(csv,
            "point,optimizer.lr,n_finished,final_test_acc_mean,final_test_acc_std,best_test_acc_mean,best_test_acc_std,"
            "final_test_loss_mean,final_test_loss_std,epochs,total_time_s\n"
            "optimizer.lr=0.01,0.01,2,0.8,0.141421,0.85,0.0707107,0.2,0.141421,3,9\n"
            "optimizer.lr=0.02,0.02,0,,,,,,,,\n");
  const auto md = sweep_summary_markdown(axes, {0, 1}, {s, none});
  EXPECT_TRUE(contains(md, "sample standard deviation")) << md;
  EXPECT_TRUE(contains(md, "| 0.01 | 2 | 80.00 ± 14.14 | 85.00 ± 7.07 | 0.2000 ± 0.1414 | 3 | 9.0 |")) << md;

  // A metrics file that lacks a column is an error naming the file and the column.
  write_text(root / "q" / "seed-0" / "metrics.jsonl", "{\"epoch\":1,\"test_acc\":0.5,\"time_s\":1}\n");
  const auto msg = error_of<data_error>([&] { summarize_sweep_point(root, point, {"q/seed-0"}); });
  EXPECT_TRUE(contains(msg, "metrics.jsonl") && contains(msg, "test_loss")) << msg;
}

// The command line end to end: 2 learning rates x 3 seeds of a tiny Yin-Yang network.
TEST(SweepCli, RunsSkipsOnRerunAndWritesTheSummary) {
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  const fs::path root = temp_dir("sweep_cli");
  const std::string dir = (root / "s").string();
  const std::string cmd =
      "train -q --set run.epochs=3 --set run.eval_every=2 --set data.yin_yang_train=200 --set data.yin_yang_test=100 "
      "--set network.hidden=[8] --set relax.free_steps=10 --set relax.nudged_steps=4 --seeds 0-2 --grid "
      "optimizer.lr=0.01,0.02 --run-dir " +
      dir;
  const auto first = run_cli(cmd);
  ASSERT_EQ(first.status, 0) << first.output;
  // run.eval_every = 2: epoch 1 logs training metrics only, epoch 2 and the last are evaluated.
  const auto rows = read_metrics_rows(fs::path(dir) / "optimizer.lr=0.01" / "seed-0" / "metrics.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_FALSE(rows[0].contains("test_acc"));
  EXPECT_TRUE(rows[0].contains("train_acc"));
  EXPECT_TRUE(rows[1].contains("test_acc") && rows[2].contains("test_acc"));
  const auto csv = read_file(fs::path(dir) / "summary.csv");
  std::vector<std::string> lines;
  std::istringstream in(csv);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u) << csv;
  EXPECT_TRUE(lines[1].starts_with("optimizer.lr=0.01,0.01,3,")) << lines[1];
  EXPECT_TRUE(lines[2].starts_with("optimizer.lr=0.02,0.02,3,")) << lines[2];
  EXPECT_TRUE(fs::exists(fs::path(dir) / "summary.md"));
  if (std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") == 0) {
    EXPECT_GT(fs::file_size(fs::path(dir) / "summary.png"), 0u) << first.output;
  }

  const fs::path metrics = fs::path(dir) / "optimizer.lr=0.02" / "seed-1" / "metrics.jsonl";
  const auto before = read_file(metrics);
  const auto when = fs::last_write_time(metrics);
  const auto again = run_cli(cmd);
  ASSERT_EQ(again.status, 0) << again.output;
  long skipped = 0;
  for (std::size_t p = again.output.find("skipped"); p != std::string::npos; p = again.output.find("skipped", p + 1))
    ++skipped;
  EXPECT_EQ(skipped, 6) << again.output;
  EXPECT_FALSE(contains(again.output, "epoch 1/3")) << again.output;
  EXPECT_EQ(read_file(metrics), before);
  EXPECT_EQ(fs::last_write_time(metrics), when);
  EXPECT_EQ(read_file(fs::path(dir) / "summary.csv"), csv);

  // Without a Python to draw with, the sweep still succeeds and says the figure was skipped.
  const char* had = std::getenv("EQPROP_PYTHON");
  const std::string saved = had ? had : "";
  setenv("EQPROP_PYTHON", "/nonexistent/python3", 1);
  const auto no_python = run_cli(cmd);
  had ? setenv("EQPROP_PYTHON", saved.c_str(), 1) : unsetenv("EQPROP_PYTHON");
  EXPECT_EQ(no_python.status, 0) << no_python.output;
  EXPECT_TRUE(contains(no_python.output, "figure skipped")) << no_python.output;
}

// --jobs 2 runs the same plan two runs at a time, each in its own process with its lines in
// <run dir>.log: the summary equals the sequential sweep's (but for the wall time), and a
// rerun skips every run. --jobs without a sweep is refused.
TEST(SweepCli, JobsRunTwoAtATimeWithTheSameResults) {
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  const fs::path root = temp_dir("sweep_jobs");
  const std::string cmd =
      "train -q --set run.epochs=2 --set data.yin_yang_train=200 --set data.yin_yang_test=100 --set network.hidden=[8] "
      "--set relax.free_steps=10 --set relax.nudged_steps=4 --seeds 0-2 --grid optimizer.lr=0.01,0.02 --run-dir ";
  const auto one = run_cli(cmd + (root / "one").string());
  ASSERT_EQ(one.status, 0) << one.output;
  const auto two = run_cli(cmd + (root / "two").string() + " --jobs 2");
  ASSERT_EQ(two.status, 0) << two.output;
  EXPECT_TRUE(contains(two.output, "2 at a time")) << two.output;
  EXPECT_TRUE(fs::exists(root / "two" / "optimizer.lr=0.02" / "seed-1.log")) << two.output;
  // Every column but the last (total_time_s) agrees.
  auto without_time = [](const std::string& csv) {
    std::string out;
    std::istringstream in(csv);
    for (std::string line; std::getline(in, line);) out += line.substr(0, line.rfind(',')) + "\n";
    return out;
  };
  EXPECT_EQ(without_time(read_file(root / "two" / "summary.csv")),
            without_time(read_file(root / "one" / "summary.csv")));
  const auto again = run_cli(cmd + (root / "two").string() + " --jobs 2");
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_TRUE(contains(again.output, "(6 finished, 0 to resume, 0 new)")) << again.output;
  const auto alone = run_cli("train --jobs 2 --print-config");
  EXPECT_EQ(alone.status, 2) << alone.output;
  EXPECT_TRUE(contains(alone.output, "--jobs 2 without --seeds or --grid")) << alone.output;
  fs::remove_all(root);
}

TEST(SweepCli, InterruptStopsTheSweepAndTheSameCommandContinues) {
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  const fs::path root = temp_dir("sweep_cli_int");
  const std::string dir = (root / "s").string();
  const std::string cmd =
      "train -q --set run.epochs=1 --set data.yin_yang_train=200 --set data.yin_yang_test=40 "
      "--set network.hidden=[8] --set relax.free_steps=10 --set relax.nudged_steps=4 --seeds 0,1 "
      "--run-dir " +
      dir;
  const auto stopped = run_cli(cmd + " --interrupt-after-batches 3");
  ASSERT_EQ(stopped.status, 130) << stopped.output;
  EXPECT_TRUE(contains(stopped.output, "sweep interrupted in run 1 of 2")) << stopped.output;
  const auto pos = stopped.output.find("with: ");
  ASSERT_NE(pos, std::string::npos) << stopped.output;
  std::string cont = stopped.output.substr(pos + 6);
  cont = cont.substr(0, cont.find('\n'));
  EXPECT_FALSE(contains(cont, "interrupt-after-batches")) << cont;
  EXPECT_FALSE(fs::exists(fs::path(dir) / "seed-1"));
  // The printed command, as printed (the binary path first), continues it.
  const std::string args = cont.substr(cont.find(" train "));
  const auto resumed = run_cli(args);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "resuming")) << resumed.output;
  EXPECT_TRUE(contains(read_file(fs::path(dir) / "summary.csv"), ",2,")) << read_file(fs::path(dir) / "summary.csv");
}

TEST(SweepCli, BadGridValueLeavesNoDirectory) {
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  const fs::path root = temp_dir("sweep_cli_bad");
  const auto r = run_cli("train --seeds 0-1 --grid optimizer.lr=0.01,-3 --run-dir " + (root / "s").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--grid optimizer.lr=0.01,-3") && contains(r.output, "out of range")) << r.output;
  EXPECT_FALSE(fs::exists(root / "s"));
  const auto seed_and_seeds = run_cli("train --seed 1 --seeds 0-1 --run-dir " + (root / "s").string());
  EXPECT_EQ(seed_and_seeds.status, 2) << seed_and_seeds.output;
  EXPECT_FALSE(fs::exists(root / "s"));
}
