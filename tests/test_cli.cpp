// End-to-end tests of the eqprop command-line tool (run as a subprocess).
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/trainer.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace {

using run_result = eqprop::test::cli_result;
using eqprop::test::cli;
using eqprop::test::temp_dir;
run_result run(const std::string& args) { return eqprop::test::run_cli(args); }

#define REQUIRE_CLI() \
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set (run through ctest)"

const fs::path shared_data = fs::path(EQPROP_SOURCE_DIR) / ".." / "shared" / "data";

// Runs `common` to the end in dir/a, and in dir/b killed after 30 batches (mid-epoch 2 at
// 20 batches per epoch) then resumed; expects bit-identical final weights. Returns a's output.
std::string kill_resume_and_compare(const fs::path& dir, const std::string& common) {
  auto a = run(common + "--run-dir " + (dir / "a").string());
  EXPECT_EQ(a.status, 0) << a.output;
  auto b = run(common + "--run-dir " + (dir / "b").string() + " --kill-after-batches 30");
  EXPECT_EQ(b.status, 137) << b.output;
  EXPECT_EQ(eqprop::load_checkpoint(dir / "b" / "checkpoint.eqck").meta.at("epoch").get<long>(), 1);
  auto c = run("train -q --resume " + (dir / "b").string());
  EXPECT_EQ(c.status, 0) << c.output;
  const auto pa = eqprop::load_checkpoint(dir / "a" / "checkpoint.eqck").array("params").to_vector<float>();
  const auto pb = eqprop::load_checkpoint(dir / "b" / "checkpoint.eqck").array("params").to_vector<float>();
  EXPECT_EQ(pa.size(), pb.size());
  if (pa.size() == pb.size()) {
    EXPECT_EQ(0, std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)));
  }
  return a.output;
}

}  // namespace

// A run whose checkpoint was written before the activations were renamed (its saved config
// says "sigmoid", meaning logistic(4x-2)) still evaluates to the same numbers and resumes.
TEST(Cli, RunSavedWithOldActivationNameEvaluatesAndResumes) {
  REQUIRE_CLI();
  const auto dir = temp_dir("old_names");
  auto r =
      run("train -q --set data.yin_yang_train=60 --set data.yin_yang_test=40 --set network.hidden=[6] "
          "--set run.batch=20 --set relax.free_steps=20 --set relax.nudged_steps=5 --epochs 1 --run-dir " +
          (dir / "run").string());
  ASSERT_EQ(r.status, 0) << r.output;
  const auto ck_file = dir / "run" / "checkpoint.eqck";
  const auto before = eqprop::evaluate_checkpoint(dir / "run", "");
  ASSERT_EQ(before.n, 40);
  auto ck = eqprop::load_checkpoint(ck_file);
  ASSERT_EQ(ck.meta["config"]["network"]["activation"], "hep_sigmoid");
  ck.meta["config"]["network"]["activation"] = "sigmoid";
  eqprop::save_checkpoint(ck_file, ck);
  const auto after = eqprop::evaluate_checkpoint(dir / "run", "");
  EXPECT_EQ(after.loss, before.loss);
  EXPECT_EQ(after.accuracy, before.accuracy);
  EXPECT_EQ(after.mean_residual, before.mean_residual);
  r = run("train -q --resume " + (dir / "run").string() + " --epochs 2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(eqprop::load_checkpoint(ck_file).meta.at("epoch").get<long>(), 2);
  std::ifstream f(dir / "run" / "config.toml");
  std::stringstream text;
  text << f.rdbuf();
  EXPECT_NE(text.str().find("activation = \"hep_sigmoid\""), std::string::npos) << text.str();
  // A config file with the old name is refused, naming the new one.
  r = run("train --set network.activation=sigmoid --run-dir " + (dir / "new").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("use 'hep_sigmoid' for logistic(4x-2)"), std::string::npos) << r.output;
  fs::remove_all(dir);
}

TEST(Cli, GradcheckJsonReportsExactScaling) {
  REQUIRE_CLI();
  const auto dir = temp_dir("gradcheck");
  const auto json = (dir / "g.json").string();
  auto r =
      run("gradcheck --layers 4,5 --readout 3 --dtype float64 -N 1,2,4 --beta 0.1,0.01 --reference implicit "
          "--free-steps 3000 --nudged-steps 3000 --tol 1e-15 --stop-early --json " +
          json);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("holomorphic EP N=4"), std::string::npos) << r.output;
  std::ifstream f(json);
  const auto doc = nlohmann::json::parse(f);
  const auto& est = doc.at("estimators");
  ASSERT_EQ(est.size(), 6u);  // N = 1, 2, 4 each at |beta| = 0.1 then 0.01
  for (int k = 0; k < 3; ++k) {
    const int N = est[2 * k]["n_points"];
    const double ratio = est[2 * k]["rel_error"].get<double>() / est[2 * k + 1]["rel_error"].get<double>();
    EXPECT_NEAR(std::log10(ratio), double(N), 0.1) << "N=" << N;  // error ~ |beta|^N
  }
  EXPECT_LT(est[5]["rel_error"].get<double>(), 1e-6);
  EXPECT_GT(est[4]["cosine"].get<double>(), 0.999999);
  EXPECT_TRUE(est[4]["per_layer"].contains("layer0"));
  EXPECT_TRUE(est[4]["per_layer"].contains("readout"));
}

TEST(Cli, BadFlagsAndShapesFailWithClearErrors) {
  REQUIRE_CLI();
  auto r = run("gradcheck --layers 4,5 --dtype float16");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("float16"), std::string::npos) << r.output;
  r = run("gradcheck --layers 4,0 --readout 3");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("positive"), std::string::npos) << r.output;
  r = run("gradcheck --layers 4,5 --readout 3 --activation half_clamp01 -N 4");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("not holomorphic"), std::string::npos) << r.output;
  r = run("gradcheck --bogus-flag");
  EXPECT_NE(r.status, 0);
  if (fs::exists(shared_data / "mnist")) {
    r = run("gradcheck --layers 5,5 --readout 10 --dataset mnist --data-dir " + shared_data.string());
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("784"), std::string::npos) << r.output;
  }
}

TEST(Cli, TrainConfigErrors) {
  REQUIRE_CLI();
  const auto dir = temp_dir("cfgerr");
  {
    std::ofstream f(dir / "bad.toml");
    f << "[optimizer]\nlearning_rate = 0.1\n";
  }
  auto r = run("train " + (dir / "bad.toml").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("optimizer.learning_rate"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("optimizer.lr"), std::string::npos) << r.output;  // names the known keys
  r = run("train --set optimizr.lr=0.1 --run-dir " + (dir / "w").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("did you mean"), std::string::npos) << r.output;
  r = run("train --set optimizer.lr=abc --run-dir " + (dir / "x").string());
  EXPECT_EQ(r.status, 2) << r.output;
  r = run("train --set estimator.kind=holografic --run-dir " + (dir / "y").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("holomorphic"), std::string::npos) << r.output;
  {
    std::ofstream f(dir / "syntax.toml");
    f << "[run\nepochs = 3\n";
  }
  r = run("train " + (dir / "syntax.toml").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("syntax.toml"), std::string::npos) << r.output;
}

// eqprop gep: the toy gradient check, a tiny training run with diagnostics, config errors.
TEST(Cli, GepGradcheckAndConfigErrors) {
  REQUIRE_CLI();
  const auto dir = temp_dir("gep");
  auto r = run("gep gradcheck --angle 0 --max-n 4");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("symmetry index 1.0000"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1.000000"), std::string::npos) << r.output;  // cosines with B = W^T
  r = run("gep gradcheck --angle 90 --max-n 2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("homeostatic loss per neuron"), std::string::npos) << r.output;
  const std::string common =
      "gep train --set data.name=yin_yang --set data.limit_train=200 --set data.limit_test=100 "
      "--set network.hidden=[8] --set network.output_size=3 --set relax.free_steps=40 "
      "--set homeostasis.lambda=1 --set diagnostics.samples=20 -q --epochs 1 ";
  r = run(common + "--run-dir " + (dir / "ok").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("final test accuracy"), std::string::npos) << r.output;
  // The alias says which `eqprop train` line it ran.
  EXPECT_NE(r.output.find("note: this is `eqprop train --set model.kind=vector_field --set data.name=yin_yang"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(fs::exists(dir / "ok" / "metrics.csv"));
  r = run("eval " + (dir / "ok").string());
  ASSERT_EQ(r.status, 0) << r.output;
  r = run("gep diagnose " + (dir / "ok").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("cos(EP error, RBP error)"), std::string::npos) << r.output;
  r = run(common + "--set homeostasis.lamda=1");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("did you mean `homeostasis.lambda`"), std::string::npos) << r.output;
  r = run(common + "--set network.topology=ring");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("loop"), std::string::npos) << r.output;
  r = run(common + "--set estimator.kind=bptt");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("implicit"), std::string::npos) << r.output;
  r = run(common + "--set estimator.method=exact");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("estimator.kind"), std::string::npos) << r.output;
}

TEST(Cli, TrainDataErrorsNameTheFile) {
  REQUIRE_CLI();
  const auto dir = temp_dir("dataerr");
  fs::create_directories(dir / "mnist");
  // Missing files.
  auto r = run("train --set data.name=mnist --data-dir " + dir.string() + " --run-dir " + (dir / "r1").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("train-images"), std::string::npos) << r.output;
  // Truncated file: a valid IDX header promising more images than present.
  {
    std::ofstream f(dir / "mnist" / "train-images-idx3-ubyte", std::ios::binary);
    const unsigned char hdr[] = {0, 0, 8, 3, 0, 0, 0xEA, 0x60, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2, 3};
    f.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
  }
  r = run("train --set data.name=mnist --data-dir " + dir.string() + " --run-dir " + (dir / "r2").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("train-images-idx3-ubyte"), std::string::npos) << r.output;
}

// Kill a run mid-epoch and resume it: the final weights equal an uninterrupted run's.
TEST(Cli, ResumeAfterKillEqualsUninterruptedRun) {
  REQUIRE_CLI();
  const auto dir = temp_dir("resume");
  const std::string common =
      "train -q --set data.yin_yang_train=400 --set data.yin_yang_test=200 --set network.hidden=[20] "
      "--set relax.free_steps=20 --set relax.nudged_steps=8 --epochs 3 ";
  kill_resume_and_compare(dir, common);
  // The metrics log of the resumed run has each epoch exactly once.
  std::ifstream log(dir / "b" / "metrics.jsonl");
  std::string line;
  int rows = 0;
  while (std::getline(log, line)) rows += !line.empty();
  EXPECT_EQ(rows, 3);
  auto e = run("eval " + (dir / "b").string());
  EXPECT_EQ(e.status, 0) << e.output;
  EXPECT_NE(e.output.find("test accuracy"), std::string::npos);
}

TEST(Cli, PlotWritesPngLearningCurves) {
  REQUIRE_CLI();
  const auto dir = temp_dir("plot");
  auto t =
      run("train -q --set data.yin_yang_train=200 --set data.yin_yang_test=100 --set network.hidden=[10] "
          "--set relax.free_steps=10 --set relax.nudged_steps=5 --epochs 2 --run-dir " +
          (dir / "r").string());
  ASSERT_EQ(t.status, 0) << t.output;
  const auto png = dir / "curves.png";
  auto p = run("plot " + (dir / "r").string() + " -o " + png.string() + " --title test");
  ASSERT_EQ(p.status, 0) << p.output;
  std::ifstream f(png, std::ios::binary);
  std::string head(8, '\0');
  f.read(head.data(), 8);
  EXPECT_EQ(head, "\x89PNG\r\n\x1a\n");
  EXPECT_GT(fs::file_size(png), 10000u);  // three panels with curves, not an empty canvas
  // Not a run directory: a clear error and a non-zero exit.
  auto bad = run("plot " + dir.string());
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("metrics.csv"), std::string::npos) << bad.output;
}

namespace {
// Rows of a small CSV file (header skipped), split at commas.
std::vector<std::vector<std::string>> read_csv_rows(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  std::getline(f, line);
  while (std::getline(f, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, ',')) cells.push_back(c);
    rows.push_back(cells);
  }
  return rows;
}
}  // namespace

// hEP Fig. 2d on the paper's toy network (6 -> 4 -> 4, readout 4, float32): N = 30 is exact
// at |beta| = 0.5 while classic EP is visibly biased (seed 1: the paper reports ~0.92).
TEST(Cli, SweepBetaToyNetworkWritesDataAndFigure) {
  REQUIRE_CLI();
  const auto dir = temp_dir("sweep_beta");
  auto r = run("sweep beta --seed 1 -N 1,30 --beta 0.1,0.5 --out " + dir.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const auto rows = read_csv_rows(dir / "sweep_beta.csv");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[1][0], "1");
  EXPECT_EQ(std::stod(rows[1][1]), 0.5);
  const double cos_n1 = std::stod(rows[1][3]), cos_n30 = std::stod(rows[3][3]);
  EXPECT_GT(cos_n30, 0.9999);
  EXPECT_GT(cos_n1, 0.90);
  EXPECT_LT(cos_n1, 0.95);
  EXPECT_TRUE(fs::exists(dir / "sweep_beta.json"));
  EXPECT_GT(fs::file_size(dir / "sweep_beta.png"), 10000u);
  auto bad = run("sweep beta --beta lin:1:0.5:3 --out " + dir.string());
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("lin:A:B:COUNT"), std::string::npos) << bad.output;
}

TEST(Cli, SweepPeriodsAndStabilityWriteDataAndFigures) {
  REQUIRE_CLI();
  const auto dir = temp_dir("sweep_periods");
  auto r = run(
      "sweep periods --layers 4,5,4 --readout 3 --init-scale 0.5 --batch 2 --dtype float64 --T1 200 --beta 0.3 -N 8 "
      "--steps-per-point 2,40 --periods 3 --out " +
      dir.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const auto rows = read_csv_rows(dir / "sweep_periods.csv");
  ASSERT_EQ(rows.size(), 6u);                               // 2 values of T2 x 3 periods
  EXPECT_LT(std::stod(rows[0][2]), std::stod(rows[3][2]));  // T2 = 40 beats T2 = 2 after one period
  EXPECT_GT(std::stod(rows[3][2]), 0.999);
  EXPECT_GT(fs::file_size(dir / "sweep_periods.png"), 10000u);
  auto s = run("sweep stability --grid 21 --extent 4 --init-scale 1 --out " + dir.string());
  ASSERT_EQ(s.status, 0) << s.output;
  const auto grid = read_csv_rows(dir / "stability.csv");
  ASSERT_EQ(grid.size(), 21u * 21u);
  // The centre (beta = 0) converges; some far point of the plane does not.
  EXPECT_LT(std::stod(grid[10 * 21 + 10][2]), 1e-10);
  double worst = 0;
  for (const auto& g : grid) worst = std::max(worst, std::stod(g[2]));
  EXPECT_GT(worst, 1e-3);
  EXPECT_GT(fs::file_size(dir / "stability.png"), 10000u);
}

// Continuous hEP and neuron noise train from the config, and a killed noisy run resumes to
// the same weights (the noise stream restarts from the seed at every epoch).
TEST(Cli, NoisyAndContinuousTrainingResumeExactly) {
  REQUIRE_CLI();
  const auto dir = temp_dir("noise_resume");
  const std::string common =
      "train -q --set data.yin_yang_train=400 --set data.yin_yang_test=200 --set network.hidden=[20] "
      "--set relax.free_steps=20 --set relax.nudged_steps=8 --set relax.noise_std=0.02 --set estimator.start=warm "
      "--epochs 3 ";
  const std::string out = kill_resume_and_compare(dir, common);
  EXPECT_NE(out.find("noise=0.02"), std::string::npos) << out;

  auto k =
      run("train -q --estimator continuous --set estimator.beta=0.1 --set relax.nudged_steps=10 --epochs 4 "
          "--set data.yin_yang_train=1000 --set data.yin_yang_test=500 --run-dir " +
          (dir / "k").string());
  ASSERT_EQ(k.status, 0) << k.output;
  const auto pos = k.output.find("final test accuracy: ");
  ASSERT_NE(pos, std::string::npos) << k.output;
  EXPECT_GT(std::stod(k.output.substr(pos + 21)), 80.0) << k.output;  // it learns (chance is 33%)
}

// A run whose relaxations start failing stops with a clear message and exit status 4, and
// the checkpoint of the last good epoch survives and loads.
TEST(Cli, DivergenceStopsAndKeepsLastGoodCheckpoint) {
  REQUIRE_CLI();
  const auto dir = temp_dir("diverge");
  auto r =
      run("train -q --set data.yin_yang_train=1000 --set data.yin_yang_test=200 --epochs 6 --set estimator.beta=0.2 "
          "--set run.max_failed_fraction=0 --set estimator.fail_residual=1e-3 --run-dir " +
          dir.string());
  EXPECT_EQ(r.status, 4) << r.output;
  EXPECT_NE(r.output.find("diverged in epoch 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("last good checkpoint"), std::string::npos) << r.output;
  const auto ck = eqprop::load_checkpoint(dir / "checkpoint.eqck");
  EXPECT_EQ(ck.meta.at("epoch").get<long>(), 1);
  auto e = run("eval " + dir.string());
  EXPECT_EQ(e.status, 0) << e.output;
}

TEST(Cli, BenchRunsNamedWorkloadsAndWritesJson) {
  REQUIRE_CLI();
  const auto dir = temp_dir("bench");
  auto r = run("bench -w gle_lagline -w mlp512_classic --seconds 0.2 --no-peak --json " + (dir / "b.json").string());
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream f(dir / "b.json");
  const auto j = nlohmann::json::parse(f);
  ASSERT_EQ(j.at("workloads").size(), 2u);
  for (const auto& w : j.at("workloads")) {
    EXPECT_GT(w.at("rate").get<double>(), 0) << w.dump();
    // No ratio against a rate remembered from another machine (bench/reference/ measures both sides).
    EXPECT_FALSE(w.contains("reference") || w.contains("speedup")) << w.dump();
  }
  EXPECT_EQ(j.at("workloads")[0].at("name"), "gle_lagline");
  r = run("bench -w nosuch");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("eqprop bench --list"), std::string::npos) << r.output;
  // --to-accuracy names its tasks in --list and refuses unknown ones and bad seeds before running anything.
  r = run("bench --list");
  EXPECT_NE(r.output.find("mnist_mlp512x2"), std::string::npos) << r.output;
  r = run("bench --to-accuracy -w mlp512_classic --out " + (dir / "tta").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("unknown --to-accuracy task 'mlp512_classic'"), std::string::npos) << r.output;
  r = run("bench --to-accuracy -w mnist_mlp512 --seeds x --out " + (dir / "tta").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_FALSE(fs::exists(dir / "tta"));
}

// A mistyped command or flag names the closest known one (exit status 2, a usage error).
TEST(Cli, TyposSuggestTheClosestCommandOrFlag) {
  REQUIRE_CLI();
  auto r = run("trian");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("unknown command 'trian'; did you mean 'train'?"), std::string::npos) << r.output;
  r = run("gep trian");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("unknown command 'trian'; did you mean 'train'?"), std::string::npos) << r.output;
  r = run("train --sede 3");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("did you mean '--seed'?"), std::string::npos) << r.output;
  r = run("deep train --epoch 3");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("did you mean '--epochs'?"), std::string::npos) << r.output;
}

// --seed and --epochs mean the same on every trainer: the config's seed and epoch count.
TEST(Cli, SeedAndEpochsOnEveryTrainer) {
  REQUIRE_CLI();
  for (const std::string cmd : {"train", "gep train", "gle train", "deep train"}) {
    const auto r = run(cmd + " --seed 7 --epochs 3 --print-config");
    ASSERT_EQ(r.status, 0) << cmd << ": " << r.output;
    EXPECT_NE(r.output.find("seed = 7"), std::string::npos) << cmd << ": " << r.output;
    EXPECT_NE(r.output.find("epochs = 3"), std::string::npos) << cmd << ": " << r.output;
  }
}

// --quiet / -q has one meaning, and one help text, on every trainer.
TEST(Cli, QuietHelpIsTheSameOnEveryTrainer) {
  REQUIRE_CLI();
  std::string first;
  for (const std::string cmd : {"train", "gep train", "gle train", "deep train"}) {
    const auto r = run(cmd + " --help");
    ASSERT_EQ(r.status, 0) << r.output;
    const auto at = r.output.find("-q,--quiet");
    ASSERT_NE(at, std::string::npos) << cmd << ": " << r.output;
    const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
    EXPECT_NE(line.find("No progress display"), std::string::npos) << line;
    if (first.empty()) first = line;
    EXPECT_EQ(line, first) << cmd;
  }
}

// Without a terminal every trainer prints plain progress lines (here one per update) that
// fit 80 columns; --quiet drops them and keeps the result lines.
TEST(Cli, PlainProgressLinesFit80Columns) {
  REQUIRE_CLI();
  const auto dir = temp_dir("progress80");
  std::vector<std::string> cmds{
      "train --set data.yin_yang_train=60 --set data.yin_yang_test=20 --set network.hidden=[6] --set run.batch=10 "
      "--set relax.free_steps=10 --set relax.nudged_steps=5 --epochs 1 --run-dir " +
          (dir / "t").string() + " ",
      "gep train --set data.name=yin_yang --set data.limit_train=60 --set data.limit_test=20 --set network.hidden=[6] "
      "--set network.output_size=3 --set relax.free_steps=10 --set run.batch=10 --epochs 1 ",
      "deep train --task xor --one-hot --T1 10 --T2 10 --epochs 5 --run-dir " + (dir / "d").string() + " "};
  ::setenv("EQPROP_PROGRESS_INTERVAL", "0", 1);
  for (const auto& c : cmds) {
    const auto r = run(c);
    const auto q = run(c.back() == ' ' && c.find("--run-dir") != std::string::npos ? c.substr(0, c.size() - 1) + "q -q"
                                                                                   : c + "-q");
    ASSERT_EQ(r.status, 0) << c << ": " << r.output;
    ASSERT_EQ(q.status, 0) << c << ": " << q.output;
    std::istringstream lines(r.output);
    int progress_lines = 0;
    for (std::string line; std::getline(lines, line);) {
      if (line.find(" eta ") == std::string::npos) continue;
      ++progress_lines;
      EXPECT_LE(line.size(), 80u) << c << ": " << line;
    }
    EXPECT_GT(progress_lines, 0) << c << ": " << r.output;
    EXPECT_EQ(q.output.find(" eta "), std::string::npos) << c << ": " << q.output;
    EXPECT_NE(q.output.find("epoch"), std::string::npos) << c << ": " << q.output;  // results stay
  }
  ::unsetenv("EQPROP_PROGRESS_INTERVAL");
  std::filesystem::remove_all(dir);
}
