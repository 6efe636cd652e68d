// One trainer for every model kind: each kind (layered dense and conv, vector field dense
// and conv, DEEP graphs on XOR and on Yin-Yang with persistent pruning, GLE on sequences
// with the plateau schedule) trains 2 epochs from one config, a run stopped mid-epoch
// resumes to the same checkpoint bytes as an uninterrupted run, `eval` of the run gives
// the trainer's final test accuracy, and `plot` draws it. Tiny data keeps the whole table
// to a few seconds.
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/graph_experiment.hpp"
#include "eqprop/train/model_kind.hpp"
#include "eqprop/train/trainer.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace eqprop;
using eqprop::test::cli;
using eqprop::test::metrics_rows;
using eqprop::test::run_cli;
using eqprop::test::temp_dir;
using eqprop::test::write_npy;

namespace {

// 3-class 1x6x6 images (a bright square whose position is the class) as an `npy` data set.
void write_image_dataset(const fs::path& dir, long n_train, long n_test) {
  fs::create_directories(dir);
  for (auto [stem, n] : {std::pair<const char*, long>{"train", n_train}, {"test", n_test}}) {
    std::vector<float> x(static_cast<size_t>(n * 36));
    std::vector<int64_t> y(static_cast<size_t>(n));
    for (long i = 0; i < n; ++i) {
      const int c = int(i % 3);
      y[size_t(i)] = c;
      for (int p = 0; p < 36; ++p) x[size_t(i * 36 + p)] = float((i * 13 + p * 7) % 17) / 34.f;
      for (int r = 0; r < 2; ++r)
        for (int q = 0; q < 2; ++q) x[size_t(i * 36 + (1 + r) * 6 + 2 * c + q)] += 1.f;
    }
    write_npy(dir / (std::string("x_") + stem + ".npy"), "<f4", {n, 1, 6, 6}, x.data(), x.size() * 4);
    write_npy(dir / (std::string("y_") + stem + ".npy"), "<i8", {n}, y.data(), y.size() * 8);
  }
}

// 3-class sequences of 24 steps (a bump whose time is the class) as an `npy` data set.
void write_sequence_dataset(const fs::path& dir, long n_train, long n_test) {
  fs::create_directories(dir);
  constexpr long T = 24;
  for (auto [stem, n] : {std::pair<const char*, long>{"train", n_train}, {"test", n_test}}) {
    std::vector<float> x(static_cast<size_t>(n * T));
    std::vector<int64_t> y(static_cast<size_t>(n));
    for (long i = 0; i < n; ++i) {
      const int c = int(i % 3);
      y[size_t(i)] = c;
      for (long t = 0; t < T; ++t) x[size_t(i * T + t)] = float((i * 5 + t * 3) % 7) / 14.f + (t / 8 == c ? 1.f : 0.f);
    }
    write_npy(dir / (std::string("x_") + stem + ".npy"), "<f4", {n, T}, x.data(), x.size() * 4);
    write_npy(dir / (std::string("y_") + stem + ".npy"), "<i8", {n}, y.data(), y.size() * 8);
  }
}

struct kind_case {
  const char* name;
  std::vector<std::string> sets;
  const char* data;  ///< the written data set it trains on (a subdirectory), or nullptr: built-in data
};

const std::vector<kind_case>& cases() {
  static const std::vector<kind_case> c{
      {"layered_dense",
       {"model.kind=layered", "data.yin_yang_train=60", "data.yin_yang_test=30", "network.hidden=[6]",
        "relax.free_steps=10", "relax.nudged_steps=4", "relax.noise_std=0.01", "optimizer.kind=adam",
        "optimizer.lr=0.01", "run.batch=10"},
       nullptr},
      {"layered_conv",
       {"model.kind=layered", "data.name=npy", "network.conv=[2]", "network.hidden=[]", "relax.free_steps=6",
        "relax.nudged_steps=3", "run.batch=10", "optimizer.lr=0.05"},
       "images"},
      {"vector_field_dense",
       {"model.kind=vector_field", "data.name=yin_yang", "data.yin_yang_train=60", "data.yin_yang_test=30",
        "network.hidden=[6]", "network.output_size=3", "relax.free_steps=20", "relax.nudged_steps=5",
        "homeostasis.lambda=1", "homeostasis.probes=2", "diagnostics.samples=5", "run.batch=10", "optimizer.kind=adam",
        "optimizer.lr=0.01"},
       nullptr},
      {"vector_field_conv",
       {"model.kind=vector_field", "data.name=npy", "network.conv=[2]", "network.hidden=[]", "network.output_size=3",
        "relax.free_steps=6", "relax.nudged_steps=3", "homeostasis.lambda=1", "homeostasis.probes=1",
        "diagnostics.samples=2", "estimator.fail_residual=1e30", "run.batch=10"},
       "images"},
      {"graph_xor",
       {"model.kind=graph", "data.name=xor", "network.one_hot=true", "relax.free_steps=30", "relax.nudged_steps=30",
        "run.batch=1", "optimizer.lr=2"},
       nullptr},
      {"graph_yin_yang",
       {"model.kind=graph", "data.name=yin_yang", "data.yin_yang_train=40", "data.yin_yang_test=20",
        "network.one_hot=true", "network.hidden=[5]", "dynamics.leak=3", "relax.free_steps=30", "relax.nudged_steps=30",
        "estimator.kind=endpoint", "estimator.beta=0.5", "optimizer.lr=0.3", "prune.enabled=true",
        "prune.persistent=true", "prune.tol=0.05", "run.batch=10"},
       nullptr},
      {"gle_sequences",
       {"model.kind=gle", "data.name=npy", "network.width=6", "network.depth=1",
        R"(network.tau_groups="3:0.6:0.2, 3:1.0:1.0")", "network.output_tau=0.6", "run.batch=10", "run.eval_batch=7",
        "optimizer.lr=0.01", "schedule.plateau_patience=0"},
       "sequences"},
  };
  return c;
}

config case_config(const kind_case& k) {
  std::vector<std::string> sets = k.sets;
  sets.push_back("run.epochs=2");
  return load_training_config({}, sets);
}

train_result run(const config& cfg, const fs::path& dir, const std::string& data_dir, bool resume,
                 std::function<bool()> stop = {}) {
  std::ostringstream sink;
  train_options o;
  o.run_dir = dir;
  o.resume = resume;
  o.out = &sink;
  o.data_dir = data_dir;
  o.should_stop = std::move(stop);
  auto r = train(cfg, o);
  if (r.diverged) ADD_FAILURE() << r.message << "\n" << sink.str();
  return r;
}

}  // namespace

TEST(ModelKinds, EveryKindTrainsResumesBitIdenticallyAndEvaluates) {
  const fs::path root = temp_dir("model_kinds");
  write_image_dataset(root / "images", 30, 12);
  write_sequence_dataset(root / "sequences", 30, 12);
  std::string runs;
  for (const auto& k : cases()) {
    SCOPED_TRACE(k.name);
    const config cfg = case_config(k);
    EXPECT_EQ(cfg.get<std::string>("model.kind"), k.sets[0].substr(11));
    const std::string data = k.data ? (root / k.data).string() : std::string();
    const fs::path a = root / k.name / "a", b = root / k.name / "b";
    const auto full = run(cfg, a, data, false);
    ASSERT_EQ(full.epochs_done, 2);

    // Stopped in epoch 1 after batch 2, resumed: the same parameters and optimizer state.
    int polls = 0;
    const auto stopped = run(cfg, b, data, false, [&] { return ++polls > 2; });
    ASSERT_TRUE(stopped.interrupted);
    EXPECT_EQ(load_checkpoint(b / "checkpoint.eqck").meta.at("batch").get<long>(), 2);
    ASSERT_EQ(run(cfg, b, "", true).epochs_done, 2);  // the recorded data directory
    const auto ca = load_checkpoint(a / "checkpoint.eqck"), cb = load_checkpoint(b / "checkpoint.eqck");
    ASSERT_EQ(ca.arrays.size(), cb.arrays.size());
    for (const auto& [name, arr] : ca.arrays) EXPECT_TRUE(arr.bytes == cb.arrays.at(name).bytes) << name;
    // ... and the same metrics rows (but for the timing columns).
    const auto ra = metrics_rows(a), rb = metrics_rows(b);
    ASSERT_EQ(ra.size(), rb.size());
    for (std::size_t r = 0; r < ra.size(); ++r) EXPECT_EQ(ra[r], rb[r]) << "metrics row " << r;

    // eval: the run's final test accuracy and loss, without --data-dir.
    const auto ev = evaluate_checkpoint(a, "");
    EXPECT_EQ(ev.accuracy, full.test_accuracy);
    EXPECT_EQ(ev.loss, full.test_loss);
    EXPECT_EQ(ev.n_non_finite, 0);

    runs += " " + a.string();
  }
  // plot: every kind's run in one figure (through the CLI and matplotlib, when both are there).
  if (!cli().empty()) {
    const auto p = run_cli("plot" + runs + " -o " + (root / "kinds.png").string());
    if (p.output.find("matplotlib") == std::string::npos) {
      EXPECT_EQ(p.status, 0) << p.output;
      EXPECT_TRUE(fs::exists(root / "kinds.png")) << p.output;
    }
  }
  fs::remove_all(root);
}

// The kind comes from the config's model.kind; each kind refuses the other's keys, and the
// saved run's kind is kept on resume.
TEST(ModelKinds, TheKindPicksTheSchema) {
  EXPECT_EQ(load_training_config({}, {}).get<std::string>("model.kind"), "layered");
  const config vf = load_training_config({}, {"model.kind=vector_field"});
  EXPECT_EQ(vf.get<std::string>("data.name"), "fashion_mnist");
  EXPECT_NE(vf.schema().find("homeostasis.lambda"), nullptr);
  EXPECT_EQ(load_training_config({}, {}).schema().find("homeostasis.lambda"), nullptr);
  EXPECT_THROW(load_training_config({}, {"homeostasis.lambda=1"}), config_error);
  const std::string msg = test::error_of<config_error>([] { load_training_config({}, {"model.kind=vectorfield"}); });
  EXPECT_NE(msg.find("did you mean 'vector_field'"), std::string::npos) << msg;
  EXPECT_EQ(saved_model_kind(vf.to_json()), model_kind::vector_field);
  EXPECT_EQ(saved_model_kind(nlohmann::json::object()), model_kind::layered);  // runs from before kinds
  EXPECT_TRUE(vf.schema().is_fixed_on_resume("model.kind"));
  // A graph network has one output for two classes unless network.one_hot; more classes need it.
  const config g = load_training_config({}, {"model.kind=graph"});
  EXPECT_EQ(g.get<std::string>("data.name"), "xor");
  EXPECT_EQ(graph_outputs(g, 2), 1);
  EXPECT_THROW(graph_outputs(g, 3), config_error);
  // GLE keeps its defaults (the 15k MNIST-1D network, seed 12, the plateau schedule on);
  // the plateau schedule is off by default for the other kinds.
  const config gle = load_training_config({}, {"model.kind=gle"});
  EXPECT_EQ(gle.get<std::string>("data.name"), "mnist1d_gle");
  EXPECT_EQ(gle.get<long>("run.seed"), 12);
  EXPECT_EQ(gle.get<long>("schedule.plateau_patience"), 2);
  EXPECT_EQ(gle.get<std::string>("optimizer.kind"), "adam");
  EXPECT_EQ(load_training_config({}, {}).get<long>("schedule.plateau_patience"), -1);
  EXPECT_THROW(load_training_config({}, {"model.kind=gle", "relax.free_steps=3"}), config_error);
  EXPECT_THROW(load_training_config({}, {"schedule.plateau_on=test_readout"}), config_error);  // a GLE metric
  EXPECT_TRUE(gle.schema().is_fixed_on_resume("dynamics.learn_tau_m"));
  // The reciprocal nudge needs the vector_field rule and unclipped dynamics.
  const config rn = load_training_config({}, {"model.kind=graph", "estimator.reciprocal_nudge=true"});
  EXPECT_THROW(deep_learning_from_config(rn), config_error);
}

// A checkpoint of a trainer outside `eqprop train` (deep train, gle train before it became
// an alias) gets an error that names it, not a config error about keys it never had.
TEST(ModelKinds, EvalNamesTheTrainerOfOtherCheckpoints) {
  const fs::path root = temp_dir("model_kinds_other");
  checkpoint ck;
  ck.meta["kind"] = "gle";
  ck.meta["config"] = {{"dynamics", {{"dt", 0.1}}}};
  ck.arrays["params"] = checkpoint_array::from_vector(std::vector<float>{1.f});
  save_checkpoint(root / "checkpoint.eqck", ck);
  const auto msg = test::error_of<data_error>([&] { evaluate_checkpoint(root, ""); });
  EXPECT_NE(msg.find("`eqprop gle train`"), std::string::npos) << msg;
  fs::remove_all(root);
}
