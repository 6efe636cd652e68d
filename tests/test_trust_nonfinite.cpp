// No number computed from NaN/Inf is ever reported, and every error reaches the user with a
// non-zero exit status: non-finite data, non-finite parameters, empty splits, divergence
// during training, failed writes on stdout/stderr, impossible sizes and run directories.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/learn/deep.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/data_checks.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/trainer.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using eqprop::test::cli;
using eqprop::test::run_cli;
using eqprop::test::temp_dir;
using eqprop::test::write_npy;

namespace {

#define REQUIRE_CLI() \
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set (run through ctest)"

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// An `npy` data set in dir: 4 inputs, 3 classes, n_train / n_test samples; test sample
// `nan_test_sample` (if >= 0) has a NaN in feature 2.
void write_npy_dataset(const fs::path& dir, long n_train, long n_test, long nan_test_sample) {
  fs::create_directories(dir);
  auto split = [&](const std::string& name, long n, long bad) {
    std::vector<float> x(static_cast<std::size_t>(n) * 4);
    std::vector<int64_t> y(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) {
      y[std::size_t(i)] = i % 3;
      for (long f = 0; f < 4; ++f) x[std::size_t(i * 4 + f)] = float((i * 7 + f * 3) % 10) / 10.0f;
    }
    if (bad >= 0) x[std::size_t(bad * 4 + 2)] = std::numeric_limits<float>::quiet_NaN();
    write_npy(dir / ("x_" + name + ".npy"), "<f4", {n, 4}, x.data(), x.size() * sizeof(float));
    write_npy(dir / ("y_" + name + ".npy"), "<i8", {n}, y.data(), y.size() * sizeof(int64_t));
  };
  split("train", n_train, -1);
  split("test", n_test, nan_test_sample);
}

// A 1-epoch layered run on 300 Yin-Yang samples (200 test) in dir, trained in process.
void train_tiny_layered(const fs::path& dir) {
  eqprop::config cfg(eqprop::layered_schema());
  for (const char* s : {"data.yin_yang_train=300", "data.yin_yang_test=200", "network.hidden=[10]", "run.epochs=1"})
    cfg.set_override(s);
  eqprop::train_options opt;
  opt.run_dir = dir;
  std::ostringstream sink;
  opt.out = &sink;
  opt.quiet = true;
  const auto r = eqprop::train(cfg, opt);
  ASSERT_FALSE(r.diverged) << r.message;
  ASSERT_EQ(r.epochs_done, 1);
}

// Replaces every parameter of the checkpoint file with NaN (a float32 run).
void poison_checkpoint(const fs::path& file) {
  auto ck = eqprop::load_checkpoint(file);
  auto p = ck.array("params").to_vector<float>();
  std::fill(p.begin(), p.end(), std::numeric_limits<float>::quiet_NaN());
  ck.arrays["params"] = eqprop::checkpoint_array::from_vector(p);
  eqprop::save_checkpoint(file, ck);
}

}  // namespace

// The check every trainer runs right after loading: the split, the first bad sample and
// feature, and the settings that size an empty split are named.
TEST(TrustNonFinite, DataCheckNamesSplitFirstBadSampleAndFeature) {
  eqprop::dataset d;
  d.name = "toy";
  d.x = eqprop::matrix<float>::Constant(3, 6, 0.5f);
  d.y.assign(6, 0);
  EXPECT_NO_THROW(eqprop::check_split(d, "test", "data.limit_test"));
  d.x(2, 5) = std::numeric_limits<float>::infinity();
  d.x(1, 4) = std::numeric_limits<float>::quiet_NaN();
  try {
    eqprop::check_split(d, "test", "data.limit_test");
    FAIL() << "no error for NaN data";
  } catch (const eqprop::data_error& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, "'toy'") && contains(m, "test sample 4") && contains(m, "feature 1") && contains(m, "nan"))
        << m;
  }
  eqprop::dataset empty;
  empty.name = "toy";
  empty.x.resize(3, 0);
  try {
    eqprop::check_split(empty, "training", "data.limit_train");
    FAIL() << "no error for an empty split";
  } catch (const eqprop::data_error& e) {
    EXPECT_TRUE(contains(e.what(), "training split has no samples") && contains(e.what(), "data.limit_train"))
        << e.what();
  }
}

// An all-NaN layered checkpoint: every test sample is counted as non-finite and wrong, never
// correct (it used to evaluate to 100 %: NaN never compares greater than the true score).
TEST(TrustNonFinite, NanCheckpointEvaluatesToZeroWithNonFiniteCount) {
  const auto dir = temp_dir("nan_ck");
  train_tiny_layered(dir);
  const auto good = eqprop::evaluate_checkpoint(dir, "");
  EXPECT_EQ(good.n, 200);
  EXPECT_EQ(good.n_non_finite, 0);
  EXPECT_TRUE(std::isfinite(good.loss));
  EXPECT_GT(good.accuracy, 0.3);
  poison_checkpoint(dir / "checkpoint.eqck");
  const auto bad = eqprop::evaluate_checkpoint(dir, "");
  EXPECT_EQ(bad.n, 200);
  EXPECT_EQ(bad.n_non_finite, 200);
  EXPECT_EQ(bad.accuracy, 0.0);
  EXPECT_EQ(bad.top5, 0.0);
  EXPECT_TRUE(std::isnan(bad.loss));  // no finite sample to average over

  if (cli().empty()) return;
  const auto r = run_cli("eval " + dir.string());
  EXPECT_EQ(r.status, 4) << r.output;
  EXPECT_TRUE(contains(r.output, "test accuracy 0.00%") && contains(r.output, "200 non-finite")) << r.output;
  EXPECT_TRUE(contains(r.output, "200 of 200 test samples gave non-finite outputs")) << r.output;
  // Resuming training from it stops as diverged at once, without reporting an accuracy.
  const auto t = run_cli("train -q --resume " + dir.string() + " --epochs 2");
  EXPECT_EQ(t.status, 4) << t.output;
  EXPECT_TRUE(contains(t.output, "diverged in epoch 2")) << t.output;
  EXPECT_FALSE(contains(t.output, "final test accuracy")) << t.output;
}

// A GLE checkpoint with NaN parameters: resuming from it stops as diverged (status 4) at the
// first batch; no accuracy is reported and no checkpoint of the NaN network is written.
TEST(TrustNonFinite, GleResumeFromNanCheckpointDiverges) {
  REQUIRE_CLI();
  const auto dir = temp_dir("gle_nan");
  write_npy_dataset(dir / "data", 30, 12, -1);
  const std::string common =
      "gle train -q --set data.name=npy --set network.depth=1 --set run.batch=10 --data-dir " + (dir / "data").string();
  auto r = run_cli(common + " --epochs 1 --run-dir " + (dir / "run").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "final test accuracy")) << r.output;
  poison_checkpoint(dir / "run" / "checkpoint.eqck");
  r = run_cli("gle train -q --resume " + (dir / "run").string() + " --epochs 2 --data-dir " + (dir / "data").string());
  EXPECT_EQ(r.status, 4) << r.output;
  EXPECT_TRUE(contains(r.output, "diverged in epoch 2 batch 1: non-finite states, outputs or loss")) << r.output;
  EXPECT_FALSE(contains(r.output, "final test accuracy") || contains(r.output, "test loss")) << r.output;
  EXPECT_EQ(eqprop::load_checkpoint(dir / "run" / "checkpoint.eqck").meta.at("epoch").get<long>(), 1);
}

// DEEP scores: a NaN output is wrong even where every comparison with it is false (a
// single-output task whose target is 0 used to count it as correct).
TEST(TrustNonFinite, DeepScoreCountsNonFiniteOutputsAsWrong) {
  eqprop::graph_spec g;
  g.n_input = 2;
  g.hidden = {2};
  g.n_output = 1;
  eqprop::rng_t rng(1);
  eqprop::graph_network<double> net(g, rng);
  Eigen::MatrixXd s = Eigen::MatrixXd::Zero(net.size(), 2);
  const Eigen::MatrixXd y = Eigen::MatrixXd::Zero(1, 2);  // both targets 0; sample 1 outputs 0 (correct)
  s(net.size() - 1, 0) = std::numeric_limits<double>::quiet_NaN();
  const auto sc = eqprop::deep_score(net, s, y, false);
  EXPECT_EQ(sc.n_non_finite, 1);
  EXPECT_DOUBLE_EQ(sc.error, 0.5);
  EXPECT_DOUBLE_EQ(sc.mse, 0.0);  // over the finite sample only
  s(net.size() - 1, 1) = std::numeric_limits<double>::infinity();
  const auto all = eqprop::deep_score(net, s, y, false);
  EXPECT_EQ(all.n_non_finite, 2);
  EXPECT_DOUBLE_EQ(all.error, 1.0);
  EXPECT_TRUE(std::isnan(all.mse));
}

// A test split with a NaN is an error naming the split and the sample, before training, in
// every trainer (layered, gep, gle, deep).
TEST(TrustNonFinite, NanTestDataIsAnErrorInEveryTrainer) {
  REQUIRE_CLI();
  const auto dir = temp_dir("nan_data");
  write_npy_dataset(dir / "data", 30, 12, 3);
  const std::string data = " --data-dir " + (dir / "data").string();
  auto expect_error = [&](const std::string& args, const fs::path& run_dir) {
    const auto r = run_cli(args + data);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "test sample 3 (0-based, of 12)") && contains(r.output, "feature 2")) << r.output;
    EXPECT_FALSE(contains(r.output, "accuracy")) << r.output;
    if (!run_dir.empty()) {
      EXPECT_FALSE(fs::exists(run_dir / "checkpoint.eqck"));
    }
  };
  expect_error("train -q --set data.name=npy --set network.hidden=[5] --epochs 1 --run-dir " + (dir / "r1").string(),
               dir / "r1");
  expect_error(
      "gep train -q --set data.name=npy --set network.hidden=[5] --set network.output_size=3 --epochs 1 --run-dir " +
          (dir / "r2").string(),
      dir / "r2");
  expect_error("gle train -q --set data.name=npy --set network.depth=1 --epochs 1 --run-dir " + (dir / "r3").string(),
               dir / "r3");
  expect_error("deep train -q --task npy --train-size 30 --test-size 12 --epochs 1", {});
}

// Zero training or test samples are errors before anything runs (never `-nan%`, exit 0).
TEST(TrustNonFinite, EmptySplitsAreErrors) {
  REQUIRE_CLI();
  const auto dir = temp_dir("empty");
  write_npy_dataset(dir / "data", 30, 12, -1);
  write_npy_dataset(dir / "notest", 30, 0, -1);
  const std::string data = " --data-dir " + (dir / "data").string();
  const std::string notest = " --data-dir " + (dir / "notest").string();
  struct tc {
    std::string args, message, key;  // the error names the empty split, or (a range check) the key
  };
  const std::vector<tc> cases = {
      {"train -q --set data.yin_yang_test=0 --epochs 1", "test split has no samples", "data.yin_yang_test"},
      {"train -q --set data.yin_yang_train=0 --epochs 1", "training split has no samples", "data.yin_yang_train"},
      {"train -q --set data.limit_test=0 --epochs 1", "test split has no samples", "data.limit_test"},
      {"gep train -q --set data.name=npy --set data.limit_test=0 --set network.hidden=[5] --set network.output_size=3 "
       "--epochs 1" +
           data,
       "test split has no samples", "data.limit_test"},
      {"gle train -q --set data.name=npy --set data.limit_train=0 --set network.depth=1 "
       "--epochs 1" +
           data,
       "training split has no samples", "data.limit_train"},
      {"deep train -q --task npy --train-size 30 --test-size 0 --epochs 1" + data, "test split has no samples",
       "data.limit_test"},
      // A data set whose test files hold no samples: the split check itself, in every trainer.
      {"train -q --set data.name=npy --epochs 1" + notest, "test split has no samples", ""},
      {"gep train -q --set data.name=npy --set network.hidden=[5] --set network.output_size=3 --epochs 1" + notest,
       "test split has no samples", ""},
      {"gle train -q --set data.name=npy --set network.depth=1 --epochs 1" + notest, "test split has no samples", ""},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto r = run_cli(c.args + " --run-dir " + (dir / ("r" + std::to_string(i))).string());
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, c.message) || (!c.key.empty() && contains(r.output, c.key))) << c.args << "\n"
                                                                                                << r.output;
    EXPECT_FALSE(contains(r.output, "nan")) << r.output;
    EXPECT_FALSE(fs::exists(dir / ("r" + std::to_string(i)) / "checkpoint.eqck"));
  }
}

// A failed write on stdout is an error (exit 74, a message on stderr), even when the
// command itself succeeded; a closed stdout likewise.
TEST(TrustNonFinite, StdoutWriteFailureExitsNonZero) {
  REQUIRE_CLI();
  auto r = run_cli("info --json", "2>&1 >/dev/full");
  EXPECT_EQ(r.status, 74) << r.output;
  EXPECT_TRUE(contains(r.output, "cannot write to standard output: No space left on device")) << r.output;
  r = run_cli("gradcheck --json -", "2>&1 >/dev/full");
  EXPECT_EQ(r.status, 74) << r.output;
  r = run_cli("info", "2>&1 >&-");
  EXPECT_EQ(r.status, 74) << r.output;
  EXPECT_TRUE(contains(r.output, "cannot write to standard output")) << r.output;
  r = run_cli("info", ">/dev/null 2>&1");
  EXPECT_EQ(r.status, 0) << r.output;
}

// An error reported to a closed or full stderr never aborts (it used to exit 134): the
// exit status still says what happened.
TEST(TrustNonFinite, ClosedOrFullStderrKeepsTheExitStatus) {
  REQUIRE_CLI();
  const auto dir = temp_dir("stderr");
  for (const std::string redirect : {">/dev/null 2>&-", ">/dev/null 2>/dev/full"}) {
    auto r = run_cli("train --set optimizr.lr=0.1 --run-dir " + (dir / "x").string(), redirect);
    EXPECT_EQ(r.status, 2) << redirect;
    r = run_cli("train --set data.yin_yang_test=0 --run-dir " + (dir / "y").string(), redirect);
    EXPECT_EQ(r.status, 2) << redirect;
    r = run_cli("eval " + (dir / "no-such-run").string(), redirect);  // a flag check of the parser
    EXPECT_NE(r.status, 0) << redirect;
    EXPECT_LT(r.status, 128) << redirect;  // not killed by a signal
  }
}

// An impossible size is a clear out-of-memory error, and a run directory that cannot be
// created is an error naming it; neither is an "internal error".
TEST(TrustNonFinite, OutOfMemoryAndUncreatableRunDirAreClearErrors) {
  REQUIRE_CLI();
  // A graph of 64 x 65536 neurons (the largest the schema allows): its 1.8e13-entry weight
  // matrix cannot be allocated.
  std::string hidden = "65536";
  for (int k = 1; k < 64; ++k) hidden += ",65536";
  // Under AddressSanitizer an impossible allocation aborts unless the allocator may return
  // null, as malloc does.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string asan_before = asan ? asan : "";
  ::setenv("ASAN_OPTIONS", (asan_before + (asan_before.empty() ? "" : ":") + "allocator_may_return_null=1").c_str(), 1);
  auto r = run_cli("deep train -q --hidden " + hidden + " --epochs 1 --run-dir " + temp_dir("oom").string() + "/run");
  asan ? ::setenv("ASAN_OPTIONS", asan_before.c_str(), 1) : ::unsetenv("ASAN_OPTIONS");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "error: out of memory")) << r.output;
  EXPECT_FALSE(contains(r.output, "internal error")) << r.output;
  r = run_cli("train -q --epochs 1 --set data.yin_yang_train=30 --set data.yin_yang_test=10 --run-dir /dev/null/run");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "cannot create run directory `/dev/null/run`")) << r.output;
}

// Parameters that overflow to Inf in the last step of epoch 2 (one batch per epoch, float32,
// a learning rate near the largest float): epoch 1 evaluates finitely and is checkpointed;
// epoch 2's evaluation has non-finite outputs, so the run stops as diverged, logs that epoch
// with its count, and the checkpoint it keeps is epoch 1's, whose evaluation is finite.
TEST(TrustNonFinite, NanDuringTrainingStopsAndKeepsAFiniteCheckpoint) {
  REQUIRE_CLI();
  const auto dir = temp_dir("nan_training");
  auto r = run_cli(
      "train -q --set data.yin_yang_train=100 --set data.yin_yang_test=50 --set run.batch=100 "
      "--set network.hidden=[10] --set optimizer.lr=2.5e38 --epochs 4 --run-dir " +
      (dir / "ep").string());
  EXPECT_EQ(r.status, 4) << r.output;
  EXPECT_TRUE(contains(r.output, "diverged in epoch 2: 50 of 50 test samples gave non-finite outputs")) << r.output;
  EXPECT_TRUE(contains(r.output, "last good checkpoint (" + (dir / "ep" / "checkpoint.eqck").string() + ", epoch 1)"))
      << r.output;
  EXPECT_FALSE(contains(r.output, "final test accuracy")) << r.output;
  EXPECT_EQ(eqprop::load_checkpoint(dir / "ep" / "checkpoint.eqck").meta.at("epoch").get<long>(), 1);
  const auto good = eqprop::evaluate_checkpoint(dir / "ep", "");
  EXPECT_EQ(good.n_non_finite, 0);
  EXPECT_TRUE(std::isfinite(good.loss));
  {
    std::ifstream f(dir / "ep" / "metrics.jsonl");
    std::string line, last;
    long rows = 0;
    while (std::getline(f, line)) last = line, ++rows;
    EXPECT_EQ(rows, 2);
    EXPECT_TRUE(contains(last, "\"epoch\":2") && contains(last, "\"test_non_finite\":50")) << last;
  }
  // Generalized EP: the same.
  r = run_cli(
      "gep train -q --set data.name=yin_yang --set data.limit_train=100 --set data.limit_test=50 "
      "--set run.batch=100 --set network.hidden=[8] --set network.output_size=3 --set relax.free_steps=40 "
      "--set diagnostics.samples=0 --set optimizer.lr=2.5e38 --epochs 4 --run-dir " +
      (dir / "gep").string());
  EXPECT_EQ(r.status, 4) << r.output;
  EXPECT_TRUE(contains(r.output, "diverged in epoch 2: 50 of 50 test samples gave non-finite outputs")) << r.output;
  EXPECT_TRUE(contains(r.output, "epoch 1)")) << r.output;
  const auto ck = eqprop::load_checkpoint(dir / "gep" / "checkpoint.eqck");
  EXPECT_EQ(ck.meta.at("epoch").get<long>(), 1);
  for (float v : ck.array("params").to_vector<float>()) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(eqprop::evaluate_checkpoint(dir / "gep", "").n_non_finite, 0);
}
