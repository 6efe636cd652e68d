// Runs that never lose work (docs/runs.md, "Run directories"): a new run refuses to write
// over an existing one unless told to, a config error leaves nothing behind, a run records
// the data it read so that resuming and evaluating need no --data-dir (and refuse other
// data), and an interrupted or mid-epoch checkpoint resumes bit-identically. Tiny Yin-Yang
// and .npy data sets keep all of these together well under a few seconds.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/core/error.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/run_dir.hpp"
#include "eqprop/train/trainer.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace eqprop;
using eqprop::test::cli;
using eqprop::test::error_of;
using eqprop::test::run_cli;
using eqprop::test::temp_dir;
using eqprop::test::write_npy;

namespace {

// 2 epochs of 10 batches of 20 samples; noise in the nudged phases exercises the noise
// stream's restore.
const std::vector<std::string> tiny_sets{"data.yin_yang_train=200", "data.yin_yang_test=40", "network.hidden=[10]",
                                         "relax.free_steps=10",     "relax.nudged_steps=4",  "relax.noise_std=0.01",
                                         "optimizer.kind=adam",     "optimizer.lr=0.01",     "run.epochs=2"};

config tiny_config(const std::vector<std::string>& extra = {}) {
  config cfg(layered_schema());
  for (const auto& s : tiny_sets) cfg.set_override(s);
  for (const auto& s : extra) cfg.set_override(s);
  return cfg;
}

std::string cli_sets(const std::vector<std::string>& extra = {}) {
  std::string s = "train -q";
  for (const auto& k : tiny_sets) s += " --set " + k;
  for (const auto& k : extra) s += " --set " + k;
  return s;
}

train_result run(const config& cfg, const fs::path& dir, bool resume = false, std::string data_dir = "") {
  std::ostringstream sink;
  train_options o;
  o.run_dir = dir;
  o.resume = resume;
  o.out = &sink;
  o.data_dir = std::move(data_dir);
  return train(cfg, o);
}

void expect_same_checkpoints(const fs::path& a, const fs::path& b) {
  const auto ca = load_checkpoint(a / "checkpoint.eqck"), cb = load_checkpoint(b / "checkpoint.eqck");
  EXPECT_EQ(ca.meta.at("epoch"), cb.meta.at("epoch"));
  EXPECT_EQ(ca.meta.at("batch"), cb.meta.at("batch"));
  ASSERT_EQ(ca.arrays.size(), cb.arrays.size());
  for (const auto& [name, arr] : ca.arrays) {
    ASSERT_TRUE(cb.arrays.count(name)) << name;
    EXPECT_TRUE(arr.bytes == cb.arrays.at(name).bytes) << "checkpoint array " << name << " differs";
  }
}

// A 'npy' data set in dir: 4 inputs, 3 classes, n_train / n_test samples (labels shifted
// by `shift` to make another data set of the same shape).
void write_npy_dataset(const fs::path& dir, long n_train, long n_test, int shift = 0) {
  fs::create_directories(dir);
  for (auto [stem, n] : {std::pair<const char*, long>{"train", n_train}, {"test", n_test}}) {
    std::vector<float> x(size_t(n * 4));
    std::vector<int64_t> y(static_cast<size_t>(n));
    for (long i = 0; i < n; ++i) {
      y[size_t(i)] = (i + shift) % 3;
      for (int j = 0; j < 4; ++j)
        x[size_t(i * 4 + j)] = float((i * 7 + j * 3) % 11) / 11.f + 0.3f * float(y[size_t(i)] == j);
    }
    write_npy(dir / (std::string("x_") + stem + ".npy"), "<f4", {n, 4}, x.data(), x.size() * 4);
    write_npy(dir / (std::string("y_") + stem + ".npy"), "<i8", {n}, y.data(), y.size() * 8);
  }
}

// Sets an environment variable for the life of the object.
struct scoped_env {
  std::string name, old;
  bool had;
  scoped_env(const char* n, const std::string& v) : name(n) {
    const char* o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    setenv(n, v.c_str(), 1);
  }
  ~scoped_env() { had ? setenv(name.c_str(), old.c_str(), 1) : unsetenv(name.c_str()); }
};

}  // namespace

TEST(RunSafety, ExistingRunDirectoryIsRefusedUnlessOverwrite) {
  const fs::path root = temp_dir("run_safety_overwrite");
  const auto cfg = tiny_config({"run.epochs=1", "data.yin_yang_train=40"});
  ASSERT_FALSE(run(cfg, root / "r").diverged);
  const auto msg = error_of<config_error>([&] { run(cfg, root / "r"); });
  EXPECT_NE(msg.find("--resume"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--overwrite"), std::string::npos) << msg;

  std::ostringstream sink;
  train_options o;
  o.run_dir = root / "r";
  o.out = &sink;
  o.overwrite = true;
  EXPECT_FALSE(train(cfg, o).diverged);
  EXPECT_TRUE(fs::exists(root / "r" / "checkpoint.eqck"));

  // A directory holding anything a run does not write is never cleared.
  std::ofstream(root / "r" / "notes.txt") << "mine";
  EXPECT_NE(error_of<config_error>([&] { train(cfg, o); }).find("notes.txt"), std::string::npos);
  EXPECT_TRUE(fs::exists(root / "r" / "notes.txt"));
  fs::create_directories(root / "other");
  std::ofstream(root / "other" / "x") << "x";
  o.run_dir = root / "other";
  EXPECT_NE(error_of<config_error>([&] { train(cfg, o); }).find("does not look like"), std::string::npos);
  EXPECT_TRUE(fs::exists(root / "other" / "x"));
  // A run killed while writing its first file left only that write's temporary: cleared.
  fs::create_directories(root / "killed");
  std::ofstream(root / "killed" / "config.toml.tmp.4242") << "partial";
  o.run_dir = root / "killed";
  EXPECT_FALSE(train(cfg, o).diverged);
  EXPECT_FALSE(fs::exists(root / "killed" / "config.toml.tmp.4242"));
  // An empty directory is fine.
  fs::create_directories(root / "empty");
  EXPECT_FALSE(run(cfg, root / "empty").diverged);
  fs::remove_all(root);
}

TEST(RunSafety, ConfigErrorLeavesNoRunDirectory) {
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  const fs::path root = temp_dir("run_safety_config");
  for (const std::string bad : {"run.batch=0", "no.such_key=1", "relax.omega=3", "estimator.kind=nope"}) {
    const auto r = run_cli(cli_sets({bad}) + " --run-dir " + (root / "r").string());
    EXPECT_NE(r.status, 0) << bad;
    EXPECT_FALSE(fs::exists(root / "r")) << bad << ": " << r.output;
  }
  fs::remove_all(root);
}

// Mid-epoch checkpoints (run.checkpoint_every_batches) and a stop requested mid-epoch
// resume to the same final parameters, optimizer state and metrics as an uninterrupted run.
TEST(RunSafety, MidEpochCheckpointResumesBitIdentically) {
  const fs::path root = temp_dir("run_safety_mid");
  const auto cfg = tiny_config();
  ASSERT_FALSE(run(cfg, root / "a").diverged);

  // Stop before batch 4 of epoch 1, then (resumed: 6 batches left in epoch 1) before batch 7
  // of epoch 2.
  for (int stop_at : {4, 6 + 7}) {
    std::ostringstream sink;
    train_options o;
    o.run_dir = root / "b";
    o.out = &sink;
    o.resume = fs::exists(root / "b");
    int polls = 0;
    o.should_stop = [&] { return ++polls > stop_at; };
    const auto r = train(cfg, o);
    ASSERT_TRUE(r.interrupted) << r.message;
    EXPECT_NE(r.message.find("eqprop train --resume"), std::string::npos) << r.message;
    EXPECT_GT(load_checkpoint(root / "b" / "checkpoint.eqck").meta.at("batch").get<long>(), 0);
  }
  ASSERT_FALSE(run(cfg, root / "b", true).diverged);
  expect_same_checkpoints(root / "a", root / "b");

  // Periodic mid-epoch checkpoints do not change the result either.
  const auto every3 = tiny_config({"run.checkpoint_every_batches=3"});
  ASSERT_FALSE(run(every3, root / "c").diverged);
  expect_same_checkpoints(root / "a", root / "c");
  fs::remove_all(root);
}

namespace {

// Runs `eqprop train` on the tiny config with `extra` (and `flags`), expects it to stop with
// `status` leaving a checkpoint after `batch` batches of epoch 1, resumes it with the
// command line `train -q --resume RUN`, and compares with an uninterrupted run. Returns the
// stopped run's output.
std::string expect_stopped_run_resumes(const std::string& name, const std::vector<std::string>& extra,
                                       const std::string& flags, int status, long batch) {
  const fs::path root = temp_dir(name);
  EXPECT_EQ(run_cli(cli_sets() + " --run-dir " + (root / "a").string()).status, 0);
  const auto k = run_cli(cli_sets(extra) + " " + flags + " --run-dir " + (root / "b").string());
  EXPECT_EQ(k.status, status) << k.output;
  const auto ck = load_checkpoint(root / "b" / "checkpoint.eqck");
  EXPECT_EQ(ck.meta.at("epoch"), 0);
  EXPECT_EQ(ck.meta.at("batch"), batch);
  const auto r = run_cli("train -q --resume " + (root / "b").string());
  EXPECT_EQ(r.status, 0) << r.output;
  expect_same_checkpoints(root / "a", root / "b");
  fs::remove_all(root);
  return k.output;
}

}  // namespace

// A run killed after batch 5 resumes from the mid-epoch checkpoint of batch 3.
TEST(RunSafety, KilledRunResumesFromMidEpochCheckpoint) {
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  expect_stopped_run_resumes("run_safety_kill", {"run.checkpoint_every_batches=3"}, "--kill-after-batches 5", 137, 3);
}

// SIGINT (raised inside the process after batch 5 by the --interrupt-after-batches test
// hook, so the moment is deterministic): the batch finishes, a checkpoint is written, the
// message gives the command to resume, and the resumed run ends like an uninterrupted one.
TEST(RunSafety, SigintWritesAResumableCheckpoint) {
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  const auto out = expect_stopped_run_resumes("run_safety_sigint", {}, "--interrupt-after-batches 5", 130, 5);
  EXPECT_NE(out.find("Resume with: eqprop train --resume "), std::string::npos) << out;
}

// A run on files records their directory and checksums: resume and eval find the data
// without --data-dir (whatever $EQPROP_DATA says), and refuse changed or missing data.
TEST(RunSafety, ResumeAndEvalUseTheRecordedDataAndCheckIt) {
  const fs::path root = temp_dir("run_safety_data");
  write_npy_dataset(root / "data", 60, 20);
  const auto cfg = tiny_config({"data.name=npy", "run.batch=10"});
  std::ostringstream sink;
  train_options o;
  o.run_dir = root / "r";
  o.out = &sink;
  o.data_dir = (root / "data").string();
  int polls = 0;
  o.should_stop = [&] { return ++polls > 4; };
  ASSERT_TRUE(train(cfg, o).interrupted);
  EXPECT_TRUE(fs::exists(root / "r" / "data.json"));

  scoped_env env("EQPROP_DATA", (root / "nowhere").string());
  ASSERT_FALSE(run(cfg, root / "r", true).diverged);
  EXPECT_GT(evaluate_checkpoint(root / "r", "").n, 0);

  // Other data under an explicit --data-dir: refused, naming the file and the fix.
  write_npy_dataset(root / "other", 60, 20, 1);
  auto msg = error_of<data_error>([&] { evaluate_checkpoint(root / "r", (root / "other").string()); });
  EXPECT_NE(msg.find("SHA-256"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--data-dir"), std::string::npos) << msg;
  // The same data elsewhere is accepted.
  fs::copy(root / "data", root / "copy");
  EXPECT_GT(evaluate_checkpoint(root / "r", (root / "copy").string()).n, 0);
  // The recorded directory gone: the error says so and how to pass --data-dir.
  fs::remove_all(root / "data");
  msg = error_of<data_error>([&] { evaluate_checkpoint(root / "r", ""); });
  EXPECT_NE(msg.find("no longer exists"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--data-dir"), std::string::npos) << msg;
  // Changed files in the recorded directory.
  fs::rename(root / "other", root / "data");
  msg = error_of<data_error>([&] { evaluate_checkpoint(root / "r", ""); });
  EXPECT_NE(msg.find("SHA-256"), std::string::npos) << msg;
  fs::remove_all(root);
}

// The CLI: a second run into a finished run's directory is refused (status 2, naming the
// ways out) and leaves it as it was; --overwrite replaces it.
TEST(RunSafety, CliRefusesAFinishedRunUnlessOverwrite) {
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  const fs::path root = temp_dir("run_safety_cli_overwrite");
  const std::string dir = (root / "r").string();
  ASSERT_EQ(run_cli(cli_sets() + " --run-dir " + dir).status, 0);
  const auto before = load_checkpoint(root / "r" / "checkpoint.eqck").arrays.at("params").bytes;
  const auto refused = run_cli(cli_sets({"run.seed=5"}) + " --run-dir " + dir);
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("--overwrite"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("--resume"), std::string::npos) << refused.output;
  EXPECT_TRUE(load_checkpoint(root / "r" / "checkpoint.eqck").arrays.at("params").bytes == before);
  const auto replaced = run_cli(cli_sets({"run.seed=5"}) + " --overwrite --run-dir " + dir);
  EXPECT_EQ(replaced.status, 0) << replaced.output;
  EXPECT_FALSE(load_checkpoint(root / "r" / "checkpoint.eqck").arrays.at("params").bytes == before);
  fs::remove_all(root);
}

// A second SIGINT while the first one's batch is still running ends the process at once
// (status 130, saying so) without writing a checkpoint.
TEST(RunSafety, SecondSigintStopsAtOnce) {
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  const fs::path root = temp_dir("run_safety_second_sigint");
  // One batch of 2000 samples with 100000 free steps: far longer than the test waits.
  const std::string cmd = cli() + " train -q --set data.yin_yang_train=2000 --set run.batch=2000 " +
                          "--set relax.free_steps=100000 --set relax.nudged_steps=4 --run-dir " + (root / "r").string();
  FILE* f = popen(("sh -c '" + cmd +
                   " & p=$!; sleep 1; kill -INT $p; sleep 0.2; kill -INT $p; wait $p; "
                   "echo status=$?' 2>&1")
                      .c_str(),
                  "r");
  ASSERT_NE(f, nullptr);
  std::string r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, f)) r.append(buf, n);
  pclose(f);
  EXPECT_NE(r.find("status=130"), std::string::npos) << r;
  EXPECT_NE(r.find("second interrupt"), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(root / "r" / "checkpoint.eqck"));
  fs::remove_all(root);
}

namespace {
std::atomic<pid_t> g_handler_tid{0};
extern "C" void record_handler_thread(int) { g_handler_tid = ::gettid(); }

// The body of StopSignalsRunOnAThreadOfTheirOwn, in a process of its own: 0 when every SIGINT
// sent to the process ran its handler on neither the main thread nor a thread started after
// confine_stop_signals (both compute in eqprop: oneDNN kernels run there).
int stop_signals_confined() {
  confine_stop_signals();
  struct sigaction sa {};
  sa.sa_handler = record_handler_thread;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  std::atomic<pid_t> worker{0};
  std::atomic<bool> stop{false}, worker_blocks{false};
  std::thread w([&] {
    sigset_t m;
    pthread_sigmask(SIG_BLOCK, nullptr, &m);
    worker_blocks = sigismember(&m, SIGINT) == 1 && sigismember(&m, SIGTERM) == 1;
    worker = ::gettid();
    volatile double x = 0;
    while (!stop) x = x + 1;  // busy, like a relaxation
  });
  while (worker == 0) std::this_thread::yield();
  int bad = worker_blocks ? 0 : 1;
  for (int i = 0; i < 20 && bad == 0; ++i) {
    g_handler_tid = 0;
    ::kill(::getpid(), SIGINT);
    for (int t = 0; t < 5000 && g_handler_tid == 0; ++t) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const pid_t h = g_handler_tid;
    if (h == 0 || h == ::gettid() || h == worker) bad = 2;
  }
  stop = true;
  w.join();
  return bad;
}
}  // namespace

// After confine_stop_signals (the CLI's first step), SIGINT and SIGTERM are blocked in the
// main thread and in the threads it starts, and their handler runs on a thread of its own:
// a signal frame pushed onto a thread inside a oneDNN 2.x JIT GEMM kernel corrupts the heap
// (an interrupted training run then aborted in about one of three tries).
TEST(RunSafety, StopSignalsRunOnAThreadOfTheirOwn) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(stop_signals_confined()), ::testing::ExitedWithCode(0), "");
}
