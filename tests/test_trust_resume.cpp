// Results depend only on the config, the seed and the thread count: not on where the
// buffers lie in memory (which paths, the working directory, the environment and the
// allocator's history decide), so a run killed at any moment and resumed ends bit for bit
// where an uninterrupted run ends (docs/runs.md, "Reproducibility").
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "eqprop/core/aligned.hpp"
#include "eqprop/learn/generalized_ep.hpp"
#include "eqprop/model/gle_network.hpp"
#include "eqprop/model/vector_field_network.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/optimizer.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace eqprop;

namespace {

// Calls f() while k live heap blocks of assorted sizes shift where the allocations f makes
// land, as a different command line (path strings of other lengths) does in a real run.
template <class F>
void with_heap_shift(int k, F f) {
  std::vector<std::unique_ptr<char[]>> junk;
  for (int i = 0; i < k; ++i) junk.emplace_back(new char[size_t(8 + 16 * (i % 5))]);
  f();
}

bool aligned64(const void* p) { return reinterpret_cast<uintptr_t>(p) % buffer_alignment == 0; }

template <class T>
bool same_bits(std::span<const T> a, std::span<const T> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

}  // namespace

// Every buffer a network or an optimizer allocates for parameters, gradients and optimizer
// state starts on a 64-byte boundary, whatever the heap did before.
TEST(TrustResume, ParameterAndOptimizerBuffersAre64ByteAligned) {
  config cfg(layered_schema());
  cfg.set_override("optimizer.kind=adam");
  const network_spec spec = make_network_spec(cfg, 4, 3);
  vf_spec vs;
  vs.sizes = {4, 7, 5};
  vs.n_classes = 3;
  gle_spec gs;
  gs.n_input = 2;
  gs.layers.push_back(gle_layer(3, activation_kind::tanh, {0.5, 1.0, 0.3}, {0.5, 1.0, 0.3}));
  gs.layers.push_back(gle_layer(2, activation_kind::linear, {1.0, 1.0}, {1.0, 1.0}));
  for (int k = 0; k < 12; ++k)
    with_heap_shift(k, [&] {
      const layered_network<float> lf(spec);
      const layered_network<double> ld(spec);
      const auto lc = ld.cast<std::complex<double>>();
      EXPECT_TRUE(aligned64(lf.params().data())) << "layered float, shift " << k;
      EXPECT_TRUE(aligned64(ld.params().data())) << "layered double, shift " << k;
      EXPECT_TRUE(aligned64(lc.params().data())) << "layered complex, shift " << k;
      const vector_field_network<float> vf(vs);
      EXPECT_TRUE(aligned64(vf.params().data())) << "vector field, shift " << k;
      const gle_network<float> gf(gs);
      EXPECT_TRUE(aligned64(gf.params().data())) << "gle, shift " << k;
      optimizer<float> opt(make_optimizer_options(cfg), lf.layout(), lf.n_layers() + 1);
      EXPECT_TRUE(aligned64(opt.m().data()) && aligned64(opt.v().data())) << "adam moments, shift " << k;
    });
}

// Three training steps (holomorphic EP, Adam) of the default Yin-Yang network give the same
// bits whatever addresses the network's and the optimizer's buffers got.
TEST(TrustResume, TrainingStepsAreBitIdenticalWhereverTheBuffersLie) {
  config cfg(layered_schema());
  cfg.set_override("optimizer.kind=adam");
  cfg.set_override("optimizer.lr=0.01");
  const network_spec spec = make_network_spec(cfg, 4, 3);
  rng_t rng(5);
  matrix<double> xd, yd;
  test::random_batch(rng, 4, 20, 3, xd, yd);
  const matrix<float> x = xd.cast<float>(), y = yd.cast<float>();
  aligned_vector<float> first;
  for (int k = 0; k < 8; ++k)
    with_heap_shift(k, [&] {
      layered_network<float> net(spec);
      optimizer<float> opt(make_optimizer_options(cfg), net.layout(), net.n_layers() + 1);
      auto est = make_estimator<float>(cfg);
      aligned_vector<float> grad(size_t(net.n_params()));
      for (int s = 0; s < 3; ++s) {
        est->estimate(net, x, y, grad);
        opt.step(net.params(), grad, 1.0);
      }
      if (k == 0) first.assign(net.params().begin(), net.params().end());
      else EXPECT_TRUE(same_bits<float>(first, net.params())) << "heap shift " << k;
    });
}

// The generalized-EP estimate (vector-field network) and a GLE learning step with Adam: the
// same bits wherever their buffers lie.
TEST(TrustResume, VectorFieldAndGleStepsAreBitIdenticalWhereverTheBuffersLie) {
  vf_spec vs;
  vs.sizes = {4, 24, 13};
  vs.n_classes = 3;
  vs.angle_deg = 30;
  vs.seed = 2;
  rng_t rng(9);
  matrix<double> xd, yd;
  test::random_batch(rng, 4, 16, 3, xd, yd);
  const matrix<float> x = xd.cast<float>(), y = yd.cast<float>();
  gep_options go;
  go.free_steps = 40;
  go.nudged_steps = 10;
  aligned_vector<float> vf_first, gle_first;

  gle_spec gs;
  gs.n_input = 4;
  gs.layers.push_back(gle_layer(37, activation_kind::tanh, std::vector<double>(37, 0.6), std::vector<double>(37, 0.3)));
  gs.layers.push_back(gle_layer(3, activation_kind::linear, std::vector<double>(3, 1.0), std::vector<double>(3, 1.0)));
  optimizer_options oo;
  oo.kind = optimizer_kind::adam;
  oo.lr = 1e-2;
  for (int k = 0; k < 8; ++k)
    with_heap_shift(k, [&] {
      vector_field_network<float> vf(vs);
      generalized_ep<float> est(go);
      aligned_vector<float> grad(size_t(vf.n_params()));
      est.estimate(vf, x, y, grad);
      optimizer<float> vopt(oo, vf.layout(), vf.n_layers() + 1);
      vopt.step(vf.params(), grad, 1.0);
      if (k == 0) vf_first.assign(vf.params().begin(), vf.params().end());
      else EXPECT_TRUE(same_bits<float>(vf_first, vf.params())) << "vector field, heap shift " << k;

      gle_network<float> g(gs);
      optimizer<float> gopt(oo, g.layout(), g.n_groups());
      aligned_vector<float> gg(g.params().size());
      g.reset_state(x.cols());
      for (int t = 0; t < 5; ++t) {
        g.step(x, &y, 0.1f, gg);
        gopt.step(g.params(), gg, 1.0);
      }
      if (k == 0) gle_first.assign(g.params().begin(), g.params().end());
      else EXPECT_TRUE(same_bits<float>(gle_first, g.params())) << "gle, heap shift " << k;
    });
}

// Adam's update of an entry depends on its values alone: parameters and gradient handed over
// at any offset from a 64-byte boundary, and on 1 or 3 threads, give the same bits.
TEST(TrustResume, AdamUpdateIsTheSameAtEveryOffsetAndThreadCount) {
  const long rows = 301, cols = 219, n = rows * (cols + 1);  // one block of >= 2^16 entries
  const std::vector<param_block> layout{
      {"b0", 0, 5, 1, 0}, {"W0", 0, rows, cols, 5}, {"b1", 0, rows, 1, 5 + rows * cols}};
  const long total = 5 + n;
  rng_t rng(11);
  std::vector<float> p0(static_cast<size_t>(total)), g0(static_cast<size_t>(2 * total));
  for (auto& x : p0) x = float(uniform01(rng) - 0.5);
  for (auto& x : g0) x = float(uniform01(rng) - 0.5);
  std::vector<float> first;
  for (int threads : {1, 3})
    for (long off = 0; off < 16; off += threads == 1 ? 1 : 5) {
      optimizer_options oo;
      oo.kind = optimizer_kind::adam;
      oo.lr = 1e-2;
      oo.weight_decay = 1e-3;
      oo.threads = threads;
      optimizer<float> opt(oo, layout, 1);
      aligned_vector<float> P(static_cast<size_t>(total + 16)), G(static_cast<size_t>(total + 16));
      std::copy(p0.begin(), p0.end(), P.begin() + off);
      const std::span<float> p(P.data() + off, size_t(total));
      for (int s = 0; s < 2; ++s) {
        std::copy(g0.begin() + s * total, g0.begin() + (s + 1) * total, G.begin() + off);
        opt.step(p, std::span<const float>(G.data() + off, size_t(total)), 1.0);
      }
      if (first.empty()) first.assign(p.begin(), p.end());
      else EXPECT_TRUE(same_bits<float>(first, p)) << "offset " << off << " floats, " << threads << " threads";
    }
}

// Optimizer state restored from a checkpoint must fit the optimizer: a moment buffer of
// another size (a crafted or mismatched checkpoint) is a data_error that changes nothing.
TEST(TrustResume, OptimizerRestoreRefusesStateOfAnotherSize) {
  const std::vector<param_block> layout{{"W0", 0, 3, 4, 0}, {"b0", 0, 3, 1, 12}};
  optimizer_options oo;
  oo.kind = optimizer_kind::adam;
  optimizer<double> opt(oo, layout, 1);
  ASSERT_EQ(opt.m().size(), 15u);
  const std::vector<double> good(15, 0.5), short_(14, 0.5), long_(1000, 0.5);
  opt.restore(good, good, 7);
  EXPECT_EQ(opt.m()[3], 0.5);
  EXPECT_EQ(opt.t(), 7);
  for (const auto* bad : {&short_, &long_}) {
    EXPECT_THROW(opt.restore(*bad, good, 8), data_error);
    EXPECT_THROW(opt.restore(good, *bad, 8), data_error);
  }
  EXPECT_THROW(opt.restore(good, good, -1), data_error);
  EXPECT_EQ(opt.t(), 7);
  EXPECT_EQ(opt.m().size(), 15u);
}

// ---------------------------------------------------------------------------------------
// Kill -9 at random moments and resume, from another working directory with paths of other
// lengths, compared bit for bit with an uninterrupted run.

namespace {

std::string cli_path() {
  const char* p = std::getenv("EQPROP_CLI");
  return p ? p : "";
}

// Starts the CLI with args in working directory cwd (output discarded), with the variable
// EQPROP_TEST_PADDING set to `padding` (an environment of another size).
pid_t spawn_cli(const fs::path& cwd, const std::vector<std::string>& args, const std::string& padding) {
  std::vector<std::string> all{cli_path()};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(cwd.c_str()) != 0) _exit(126);
    // stderr kept (the last attempt's) for the failure messages of run_with_kills
    if (!std::freopen("/dev/null", "w", stdout) || !std::freopen("cli-stderr.log", "w", stderr)) _exit(126);
    setenv("EQPROP_TEST_PADDING", padding.c_str(), 1);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

std::string file_text(const fs::path& p) {
  std::ifstream f(p);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Exit status, or 128 + signal.
int wait_for(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs `start` (a fresh run into run_dir) in cwd, SIGKILLs it after a random delay in
// [0.05, 0.6) x max_delay seconds, and continues with `resume` (or `start` again while no
// checkpoint exists) until `kills` kills have happened; then lets it finish. If a run ends
// before the first kill, it starts over with shorter delays. Returns the number of kills
// that hit a running process.
int run_with_kills(const fs::path& cwd, const fs::path& run_dir, const std::vector<std::string>& start,
                   const std::vector<std::string>& resume, int kills, double max_delay, uint64_t seed,
                   const std::string& padding) {
  std::mt19937_64 rng(seed);
  int hits = 0;
  for (int i = 0;; ++i) {
    const bool have_checkpoint = fs::exists(run_dir / "checkpoint.eqck");
    const pid_t pid = spawn_cli(cwd, have_checkpoint ? resume : start, padding);
    if (i >= kills) {
      EXPECT_EQ(wait_for(pid), 0) << "final attempt, its stderr:\n" << file_text(cwd / "cli-stderr.log");
      return hits;
    }
    const double delay = max_delay * (0.05 + 0.55 * double(rng() >> 11) * 0x1.0p-53);
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    kill(pid, SIGKILL);
    const int st = wait_for(pid);
    if (st == 128 + SIGKILL) {
      ++hits;
    } else if (st == 0 && hits == 0 && max_delay > 1e-3) {
      // Finished before the first kill (this run was faster than the timed one): start
      // over with shorter delays, so that at least one kill lands inside the run.
      fs::remove_all(run_dir);
      max_delay /= 4;
      i = -1;
    } else {
      EXPECT_EQ(st, 0) << "attempt " << i << ", its stderr:\n" << file_text(cwd / "cli-stderr.log");
      return hits;  // finished before the kill
    }
  }
}

void expect_same_arrays(const fs::path& a, const fs::path& b) {
  const auto ca = load_checkpoint(a / "checkpoint.eqck"), cb = load_checkpoint(b / "checkpoint.eqck");
  EXPECT_EQ(ca.meta.at("epoch"), cb.meta.at("epoch"));
  ASSERT_EQ(ca.arrays.size(), cb.arrays.size());
  for (const auto& [name, arr] : ca.arrays) {
    ASSERT_TRUE(cb.arrays.count(name)) << name;
    EXPECT_TRUE(arr.bytes == cb.arrays.at(name).bytes) << "checkpoint array " << name << " differs";
  }
}

// A short and a deeply nested working directory under one temporary root.
struct two_places {
  fs::path root, near, far;
  explicit two_places(const std::string& name) {
    root = fs::path(::testing::TempDir()) / ("eqprop_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(root);
    near = root / "a";
    far = root;
    for (int i = 0; i < 6; ++i) far /= std::string(23 + 7 * i, char('b' + i));
    fs::create_directories(near);
    fs::create_directories(far);
  }
  ~two_places() { fs::remove_all(root); }
};

}  // namespace

// Yin-Yang, holomorphic EP, Adam and a cosine schedule, 4 epochs: run once
// without interruption in a short directory; then, from a directory about 200 characters
// deeper, with the run and data directories spelled differently and another environment,
// killed with SIGKILL at seeded random moments and resumed until done. Checkpoint arrays
// (parameters, momentum, step count) and metrics rows must agree bit for bit.
TEST(TrustResume, KilledAtRandomMomentsResumesBitIdentically) {
  if (cli_path().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  two_places dirs("trust_resume");
  const std::vector<std::string> common{"train",    "-q",
                                        "--set",    "data.yin_yang_train=600",
                                        "--set",    "data.yin_yang_test=200",
                                        "--set",    "network.hidden=[40]",
                                        "--set",    "relax.free_steps=20",
                                        "--set",    "relax.nudged_steps=8",
                                        "--set",    "optimizer.kind=adam",
                                        "--set",    "optimizer.lr=0.01",
                                        "--epochs", "4"};
  auto with = [&](std::vector<std::string> extra) {
    auto v = common;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t a = spawn_cli(dirs.near, with({"--data-dir", "d", "--run-dir", "r"}), "");
  ASSERT_EQ(wait_for(a), 0);
  const double t_full = seconds_since(t0);

  const fs::path run_b = dirs.far / "run-of-a-longer-name";
  const std::string data_b = (dirs.far / ".." / dirs.far.filename() / "." / "data").string();
  // --overwrite: a run killed before its first checkpoint is started again in its directory.
  const int hits = run_with_kills(
      dirs.far, run_b, with({"--data-dir", data_b, "--run-dir", run_b.string(), "--overwrite"}),
      {"train", "-q", "--data-dir", data_b, "--resume", run_b.string()}, 6, t_full, 20261206, std::string(3000, 'p'));
  EXPECT_GE(hits, 1) << "no kill hit a running process (uninterrupted run took " << t_full << " s)";
  expect_same_arrays(dirs.near / "r", run_b);
  const auto ra = test::metrics_rows(dirs.near / "r"), rb = test::metrics_rows(run_b);
  ASSERT_EQ(ra.size(), 4u);
  ASSERT_EQ(rb.size(), ra.size());
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(ra[i], rb[i]) << "metrics row " << i;
}

// The same for a GLE network (MNIST-1D, Adam, states carried across batches), more cheaply:
// two kills.
TEST(TrustResume, SlowGleKilledAtRandomMomentsResumesBitIdentically) {
  if (cli_path().empty()) GTEST_SKIP() << "EQPROP_CLI not set";
  const char* env_data = std::getenv("EQPROP_DATA");
  const fs::path data =
      env_data && *env_data ? fs::path(env_data) : fs::path(EQPROP_SOURCE_DIR) / ".." / "shared" / "data";
  if (!fs::exists(data / "mnist-1d" / "gle-360" / "x_train.npy")) GTEST_SKIP() << "no MNIST-1D data";
  two_places dirs("trust_resume_gle");
  const std::vector<std::string> common{"gle",
                                        "train",
                                        "-q",
                                        "--set",
                                        "data.limit_train=150",
                                        "--set",
                                        "data.limit_test=60",
                                        "--set",
                                        "network.depth=2",
                                        "--set",
                                        "run.batch=50",
                                        "--set",
                                        "run.eval_batch=30",
                                        "--set",
                                        "schedule.plateau_patience=0",
                                        "--epochs",
                                        "3"};
  auto with = [&](std::vector<std::string> extra) {
    auto v = common;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t a = spawn_cli(dirs.near, with({"--data-dir", fs::absolute(data).string(), "--run-dir", "r"}), "");
  ASSERT_EQ(wait_for(a), 0);
  const double t_full = seconds_since(t0);

  const fs::path run_b = dirs.far / "gle-run-with-a-longer-name";
  const std::string data_b = (data / "mnist-1d" / ".." / ".").string();
  const int hits = run_with_kills(
      dirs.far, run_b, with({"--data-dir", data_b, "--run-dir", run_b.string(), "--overwrite"}),
      {"gle", "train", "-q", "--data-dir", data_b, "--resume", run_b.string()}, 2, t_full, 7, std::string(5000, 'q'));
  EXPECT_GE(hits, 1) << "no kill hit a running process (uninterrupted run took " << t_full << " s)";
  expect_same_arrays(dirs.near / "r", run_b);
  const auto ra = test::metrics_rows(dirs.near / "r"), rb = test::metrics_rows(run_b);
  ASSERT_EQ(ra.size(), 3u);
  ASSERT_EQ(rb.size(), ra.size());
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(ra[i], rb[i]) << "metrics row " << i;
}
