// Run infrastructure: configs, atomic files, checkpoints, metrics logs, progress display.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <zlib.h>

#include "eqprop/core/atomic_file.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/config.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/progress.hpp"
#include "eqprop/train/vf_experiment.hpp"

namespace fs = std::filesystem;
using namespace eqprop;

namespace {

// A fresh directory under the system temp dir, removed with everything in it.
struct temp_dir {
  fs::path path;
  temp_dir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("eqprop_run_infra_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool has_temp_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

// Runs body in a forked child; returns its exit code (128 + signal if it was killed).
int run_in_child(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 99;
    try {
      rc = body();
    } catch (...) {
      rc = 98;
    }
    ::_exit(rc);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// In a child process: make files larger than `limit` bytes impossible to write (write(2)
// fails with EFBIG, as on a full disk).
void limit_file_size(rlim_t limit) {
  std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl {};
  ::getrlimit(RLIMIT_FSIZE, &rl);
  rl.rlim_cur = limit;
  ::setrlimit(RLIMIT_FSIZE, &rl);
}

template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

config_schema test_schema() {
  config_schema s;
  s.add("seed", int64_t{0}, "random seed")
      .add("network.layers", std::vector<int64_t>{784, 500, 10}, "layer sizes, input first")
      .add("network.activation", std::string("clamp01"), "neuron nonlinearity")
      .add("estimator.kind", std::string("symmetric"), "gradient estimator")
      .add("estimator.beta", 0.5, "nudging strength")
      .add("estimator.holo.n_points", int64_t{2}, "points on the circle")
      .add("optimizer.lr", 0.01, "learning rate")
      .add("optimizer.lr_per_layer", std::vector<double>{}, config_constraint::any().allow_nonfinite(),
           "per-layer learning rates")  // floats are finite unless declared: this one round-trips -inf
      .add("optimizer.momentum", 0.9, "momentum")
      .add("train.epochs", int64_t{10}, "epochs")
      .add("train.verbose", false, "print more")
      .add("data.names", std::vector<std::string>{"mnist"}, "datasets");
  return s;
}

}  // namespace

// =========================================================================================
// Config

TEST(Config, DefaultsAndTypedAccess) {
  config c(test_schema());
  EXPECT_EQ(c.get<int64_t>("seed"), 0);
  EXPECT_EQ(c.get<int>("train.epochs"), 10);
  EXPECT_DOUBLE_EQ(c.get<double>("optimizer.lr"), 0.01);
  EXPECT_FLOAT_EQ(c.get<float>("estimator.beta"), 0.5f);
  EXPECT_EQ(c.get<std::string>("estimator.kind"), "symmetric");
  EXPECT_EQ(c.get<std::vector<int64_t>>("network.layers"), (std::vector<int64_t>{784, 500, 10}));
  EXPECT_EQ(c.get<std::vector<int>>("network.layers"), (std::vector<int>{784, 500, 10}));
  EXPECT_EQ(c.get<std::vector<std::string>>("data.names"), (std::vector<std::string>{"mnist"}));
  EXPECT_FALSE(c.get<bool>("train.verbose"));
  EXPECT_FALSE(c.is_set_by_user("optimizer.lr"));
  EXPECT_EQ(c.source_of("optimizer.lr"), "default");
}

TEST(Config, WrongTypeOrUnknownKeyInGetThrows) {
  config c(test_schema());
  EXPECT_THROW(c.get<std::string>("optimizer.lr"), config_error);
  EXPECT_THROW(c.get<int64_t>("optimizer.lr"), config_error);
  EXPECT_THROW(c.get<double>("seed"), config_error);
  EXPECT_THROW(c.get<bool>("seed"), config_error);
  EXPECT_THROW(c.get<double>("optimizer.lrr"), config_error);
  c.set_override("seed=-1");
  EXPECT_THROW(c.get<uint32_t>("seed"), config_error);
  c.set_override("seed=300");
  EXPECT_THROW(c.get<int8_t>("seed"), config_error);
  EXPECT_EQ(c.get<int16_t>("seed"), 300);
  const std::string msg = error_message([&] { c.get<std::string>("optimizer.lr"); });
  EXPECT_NE(msg.find("optimizer.lr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("float"), std::string::npos) << msg;
}

TEST(Config, LoadsTomlTablesDottedKeysAndLaterFilesWin) {
  temp_dir dir;
  spit(dir / "a.toml",
       "seed = 7\n"
       "[network]\n"
       "layers = [784, 256, 10]\n"
       "[optimizer]\n"
       "lr = 0.05\n"
       "momentum = 0\n"  // integer accepted where a float is expected
       "[estimator]\n"
       "holo.n_points = 4\n"
       "kind = \"holo\"\n");
  spit(dir / "b.toml", "optimizer.lr = 0.2\ndata = { names = [\"mnist\", \"cifar10\"] }\n");
  config c(test_schema());
  c.load_toml_file(dir / "a.toml");
  EXPECT_EQ(c.get<int64_t>("seed"), 7);
  EXPECT_EQ(c.get<std::vector<int64_t>>("network.layers"), (std::vector<int64_t>{784, 256, 10}));
  EXPECT_DOUBLE_EQ(c.get<double>("optimizer.lr"), 0.05);
  EXPECT_DOUBLE_EQ(c.get<double>("optimizer.momentum"), 0.0);
  EXPECT_EQ(c.get<int64_t>("estimator.holo.n_points"), 4);
  EXPECT_EQ(c.get<std::string>("estimator.kind"), "holo");
  EXPECT_TRUE(c.is_set_by_user("optimizer.lr"));
  EXPECT_TRUE(c.is_set_by_user("optimizer.momentum"));
  EXPECT_FALSE(c.is_set_by_user("estimator.beta"));
  EXPECT_NE(c.source_of("optimizer.lr").find("a.toml:5"), std::string::npos) << c.source_of("optimizer.lr");

  c.load_toml_file(dir / "b.toml");
  EXPECT_DOUBLE_EQ(c.get<double>("optimizer.lr"), 0.2);
  EXPECT_EQ(c.get<std::vector<std::string>>("data.names"), (std::vector<std::string>{"mnist", "cifar10"}));
  EXPECT_EQ(c.get<int64_t>("seed"), 7);  // untouched by b.toml

  c.set_override("optimizer.lr=0.3");  // overrides win over files
  EXPECT_DOUBLE_EQ(c.get<double>("optimizer.lr"), 0.3);
}

TEST(Config, UnknownKeyNamesSourceAndSuggests) {
  config c(test_schema());
  std::string msg = error_message([&] { c.load_toml_string("seed = 1\n[optimizer]\nlrr = 0.1\n", "run.toml"); });
  EXPECT_NE(msg.find("optimizer.lrr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("run.toml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean `optimizer.lr`?"), std::string::npos) << msg;
  EXPECT_EQ(c.get<int64_t>("seed"), 0) << "a rejected file must change nothing";

  // Suggestions by last component: a key put in the wrong section.
  msg = error_message([&] { c.load_toml_string("lr = 0.1\n", "x.toml"); });
  EXPECT_NE(msg.find("did you mean `optimizer.lr`?"), std::string::npos) << msg;
  msg = error_message([&] { c.load_toml_string("[network]\nmomentum = 0.1\n", "x.toml"); });
  EXPECT_NE(msg.find("did you mean `optimizer.momentum`?"), std::string::npos) << msg;

  msg = error_message([&] { c.set_override("optimizer.momentun=0.5"); });
  EXPECT_NE(msg.find("optimizer.momentun"), std::string::npos) << msg;
  EXPECT_NE(msg.find("override"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean `optimizer.momentum`?"), std::string::npos) << msg;

  // Nothing close: the keys of the section are listed instead.
  msg = error_message([&] { c.set_override("optimizer.zzzzzzzz=1"); });
  EXPECT_NE(msg.find("unknown config key `optimizer.zzzzzzzz`"), std::string::npos) << msg;
  EXPECT_NE(msg.find("optimizer.momentum"), std::string::npos) << msg;

  // A section given a value, and a value used as a section.
  msg = error_message([&] { c.load_toml_string("optimizer = 3\n", "x.toml"); });
  EXPECT_NE(msg.find("section"), std::string::npos) << msg;
  msg = error_message([&] { c.load_toml_string("[optimizer.lr]\nx = 1\n", "x.toml"); });
  EXPECT_NE(msg.find("is a value, not a table"), std::string::npos) << msg;
  EXPECT_THROW(c.load_toml_string("[[network]]\nlayers = [1]\n", "x.toml"), config_error);
}

TEST(Config, WrongTypeNamesKeyExpectedTypeAndValue) {
  config c(test_schema());
  std::string msg = error_message([&] { c.load_toml_string("[optimizer]\nlr = \"fast\"\n", "t.toml"); });
  EXPECT_NE(msg.find("optimizer.lr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("float"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fast"), std::string::npos) << msg;
  EXPECT_NE(msg.find("t.toml:2"), std::string::npos) << msg;
  // Floats are not accepted for integers, nor mixed arrays for integer arrays.
  EXPECT_THROW(c.load_toml_string("seed = 1.5\n", "t.toml"), config_error);
  EXPECT_THROW(c.load_toml_string("seed = 1.0\n", "t.toml"), config_error);
  EXPECT_THROW(c.load_toml_string("network.layers = [784, 2.5]\n", "t.toml"), config_error);
  EXPECT_THROW(c.load_toml_string("network.layers = 784\n", "t.toml"), config_error);
  EXPECT_THROW(c.load_toml_string("train.verbose = 1\n", "t.toml"), config_error);
  EXPECT_THROW(c.load_toml_string("estimator.kind = 3\n", "t.toml"), config_error);
  // Integers in a float array are fine, and an empty array fits any array type.
  c.load_toml_string("optimizer.lr_per_layer = [1, 0.5]\nnetwork.layers = []\n", "t.toml");
  EXPECT_EQ(c.get<std::vector<double>>("optimizer.lr_per_layer"), (std::vector<double>{1.0, 0.5}));
  EXPECT_TRUE(c.get<std::vector<int64_t>>("network.layers").empty());
}

TEST(Config, ParseErrorsAndMissingFiles) {
  config c(test_schema());
  std::string msg = error_message([&] { c.load_toml_string("seed = 1\nseed = = 2\n", "broken.toml"); });
  EXPECT_NE(msg.find("broken.toml:2:"), std::string::npos) << msg;
  EXPECT_THROW(c.load_toml_string("[optimizer\n", "b.toml"), config_error);
  temp_dir dir;
  msg = error_message([&] { c.load_toml_file(dir / "missing.toml"); });
  EXPECT_NE(msg.find("missing.toml"), std::string::npos) << msg;
  EXPECT_THROW(c.load_toml_file(dir / "missing.toml"), config_error);
}

TEST(Config, OverridesParseTomlValuesAndBareWords) {
  config c(test_schema());
  c.set_override("optimizer.lr=0.05");
  c.set_override("network.layers=[784,256,10]");
  c.set_override("estimator.kind=holo");
  c.set_override("network.activation = \"tanh x\"");
  c.set_override("train.verbose=true");
  c.set_override("estimator.beta=1");  // integer for a float
  c.set_override("data.names=mnist,fashion_mnist");
  c.set_override("optimizer.lr_per_layer=0.1, 0.2");
  EXPECT_DOUBLE_EQ(c.get<double>("optimizer.lr"), 0.05);
  EXPECT_EQ(c.get<std::vector<int64_t>>("network.layers"), (std::vector<int64_t>{784, 256, 10}));
  EXPECT_EQ(c.get<std::string>("estimator.kind"), "holo");
  EXPECT_EQ(c.get<std::string>("network.activation"), "tanh x");
  EXPECT_TRUE(c.get<bool>("train.verbose"));
  EXPECT_DOUBLE_EQ(c.get<double>("estimator.beta"), 1.0);
  EXPECT_EQ(c.get<std::vector<std::string>>("data.names"), (std::vector<std::string>{"mnist", "fashion_mnist"}));
  EXPECT_EQ(c.get<std::vector<double>>("optimizer.lr_per_layer"), (std::vector<double>{0.1, 0.2}));
  EXPECT_TRUE(c.is_set_by_user("estimator.kind"));
  EXPECT_EQ(c.source_of("estimator.kind"), "override `estimator.kind=holo`");

  c.set_override("network.layers=5");
  EXPECT_EQ(c.get<std::vector<int64_t>>("network.layers"), (std::vector<int64_t>{5}));
  c.set_override("data.names=[\"a b\", c]");
  EXPECT_EQ(c.get<std::vector<std::string>>("data.names"), (std::vector<std::string>{"a b", "c"}));
  c.set_override("estimator.kind=");
  EXPECT_EQ(c.get<std::string>("estimator.kind"), "");

  std::string msg = error_message([&] { c.set_override("optimizer.lr=abc"); });
  EXPECT_NE(msg.find("optimizer.lr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("float"), std::string::npos) << msg;
  EXPECT_NE(msg.find("abc"), std::string::npos) << msg;
  EXPECT_THROW(c.set_override("seed=1.5"), config_error);
  EXPECT_THROW(c.set_override("train.verbose=yes"), config_error);
  EXPECT_THROW(c.set_override("network.layers=[1,a]"), config_error);
  EXPECT_THROW(c.set_override("seed=1\nother=2"), config_error);
  EXPECT_THROW(c.set_override("no_equals_sign"), config_error);
  EXPECT_THROW(c.set_override("=3"), config_error);
  EXPECT_DOUBLE_EQ(c.get<double>("optimizer.lr"), 0.05) << "failed overrides change nothing";
}

TEST(Config, ToTomlRoundTripsEveryValue) {
  config c(test_schema());
  c.set_override("optimizer.lr=1e-20");
  c.set_override("estimator.beta=3");
  c.set_override("optimizer.momentum=0.1");
  c.set_override("optimizer.lr_per_layer=[0.5, 2, -inf]");
  c.set("network.activation", std::string("quote\" back\\slash\nnewline\ttab \x01 \xc3\xa9"));
  c.set("data.names", std::vector<std::string>{"a", "b,c", ""});
  c.set("seed", int64_t{std::numeric_limits<int64_t>::min()});
  const std::string toml = c.to_toml();
  EXPECT_NE(toml.find("[optimizer]\n"), std::string::npos) << toml;
  EXPECT_NE(toml.find("# learning rate\nlr = 1e-20\n"), std::string::npos) << toml;
  EXPECT_NE(toml.find("beta = 3.0\n"), std::string::npos) << toml;
  EXPECT_LT(toml.find("seed = "), toml.find("[network]")) << "top-level keys come before any table";

  config back(test_schema());
  back.load_toml_string(toml, "resolved.toml");
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(back.to_toml(), toml);
  const config_schema schema = test_schema();
  for (const auto& k : schema.keys()) EXPECT_TRUE(back.is_set_by_user(k.key)) << k.key;
  EXPECT_EQ(back.get<std::string>("network.activation"), c.get<std::string>("network.activation"));
  EXPECT_EQ(back.get<double>("optimizer.momentum"), 0.1);
}

TEST(Config, ToJsonIsNestedAndLoadsBack) {
  config c(test_schema());
  c.set_override("optimizer.lr=0.25");
  c.set_override("estimator.holo.n_points=6");
  const nlohmann::json j = c.to_json();
  EXPECT_DOUBLE_EQ(j["optimizer"]["lr"].get<double>(), 0.25);
  EXPECT_EQ(j["estimator"]["holo"]["n_points"].get<int>(), 6);
  EXPECT_EQ(j["network"]["layers"], nlohmann::json({784, 500, 10}));
  EXPECT_EQ(j["seed"].get<int>(), 0);

  // Through text, as a run's saved config would be read back.
  config back(test_schema());
  back.load_json(nlohmann::json::parse(j.dump()), "config.json");
  EXPECT_EQ(back.to_json(), j);
  back.load_json({{"optimizer.momentum", 0}}, "dotted");
  EXPECT_DOUBLE_EQ(back.get<double>("optimizer.momentum"), 0.0);
  std::string msg = error_message([&] { back.load_json({{"optimizer", {{"lr", "x"}}}}, "saved.json"); });
  EXPECT_NE(msg.find("optimizer.lr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("saved.json"), std::string::npos) << msg;
  msg = error_message([&] { back.load_json({{"optimizer", {{"lrr", 1}}}}, "saved.json"); });
  EXPECT_NE(msg.find("did you mean `optimizer.lr`?"), std::string::npos) << msg;
}

TEST(Config, SchemaRejectsMalformedAndConflictingKeys) {
  config_schema s;
  s.add("a.b", int64_t{1}, "");
  EXPECT_THROW(s.add("a.b", int64_t{2}, ""), config_error);
  EXPECT_THROW(s.add("a", int64_t{2}, ""), config_error);
  EXPECT_THROW(s.add("a.b.c", int64_t{2}, ""), config_error);
  EXPECT_THROW(s.add("", int64_t{2}, ""), config_error);
  EXPECT_THROW(s.add("x..y", int64_t{2}, ""), config_error);
  EXPECT_THROW(s.add("x y", int64_t{2}, ""), config_error);
  EXPECT_THROW(s.add("x.", int64_t{2}, ""), config_error);
  s.add("a.bc", 1.0, "").add("a-b_c.D9", true, "");
  EXPECT_EQ(s.keys().size(), 3u);
  ASSERT_NE(s.find("a.bc"), nullptr);
  EXPECT_EQ(s.find("a.bc")->default_value.index(), 2u);
  EXPECT_EQ(s.find("nope"), nullptr);
}

TEST(Config, RetiredActivationNamesAndKeysAreErrorsNamingTheNewOnes) {
  const auto npos = std::string::npos;
  config ep(layered_schema());
  std::string e = error_message([&] { ep.set_override("network.activation=sigmoid"); });
  EXPECT_NE(e.find("activation 'sigmoid' was renamed: use 'hep_sigmoid' for logistic(4x-2)"), npos) << e;
  EXPECT_EQ(e.find("'logistic'"), npos) << e;  // the EP schema names what EP configs meant
  e = error_message([&] { ep.load_toml_string("[network]\nactivation = \"hard_sigmoid\"\n", "old.toml"); });
  EXPECT_NE(e.find("use 'half_clamp01' for clamp(x/2, 0, 1)"), npos) << e;
  EXPECT_NE(e.find("old.toml:2"), npos) << e;
  EXPECT_EQ(ep.get<std::string>("network.activation"), "hep_sigmoid");  // the default, unchanged
  EXPECT_NE(error_message([&] {
              ep.load_json({{"network", {{"activation", "sigmoid"}}}}, "dict");
            }).find("hep_sigmoid"),
            npos);
  ep.set_override("network.output=layer");  // the EP key keeps its meaning
  EXPECT_EQ(ep.get<std::string>("network.output"), "layer");

  config gle(gle_schema());
  e = error_message([&] { gle.set("network.first_activation", std::string("sigmoid"), "python"); });
  EXPECT_NE(e.find("use 'logistic' for 1/(1+e^-x)"), npos) << e;
  EXPECT_EQ(e.find("hep_sigmoid"), npos) << e;
  e = error_message([&] { gle.set_override("network.activation=hard_sigmoid"); });
  EXPECT_NE(e.find("use 'clamp01' for clamp(x, 0, 1)"), npos) << e;
  gle.set_override("network.activation=clamp01");
  EXPECT_EQ(gle_spec_from_config(gle, 1, 10).layers[1].phi, activation_kind::clamp01);

  config gep(vector_field_schema());
  e = error_message([&] { gep.set_override("network.output=3"); });
  EXPECT_NE(e.find("config key `network.output` was renamed: use `network.output_size`"), npos) << e;
  e = error_message([&] { gep.set_override("network.activation=sigmoid"); });
  EXPECT_NE(e.find("hep_sigmoid"), npos) << e;
  gep.set_override("network.output_size=3");
  EXPECT_EQ(gep.get<int>("network.output_size"), 3);
}

TEST(Config, SavedRunConfigsAreReadWithWhatOldNamesMeant) {
  config ep(layered_schema());
  ep.load_saved_json({{"network", {{"activation", "sigmoid"}, {"output", "layer"}}}}, "ck");
  EXPECT_EQ(ep.get<std::string>("network.activation"), "hep_sigmoid");
  EXPECT_EQ(ep.get<std::string>("network.output"), "layer");
  config ep2(layered_schema());
  ep2.load_saved_json({{"network", {{"activation", "hard_sigmoid"}}}}, "ck");
  EXPECT_EQ(ep2.get<std::string>("network.activation"), "half_clamp01");

  config gep(vector_field_schema());
  gep.load_saved_json({{"network", {{"activation", "sigmoid"}, {"output", 7}}}}, "ck");
  EXPECT_EQ(gep.get<std::string>("network.activation"), "hep_sigmoid");
  EXPECT_EQ(gep.get<int>("network.output_size"), 7);

  // GLE: the GLE meanings, and runs saved before network.initial_state started at rest.
  // GLE runs saved with the train.* section read as the run.* keys every trainer uses.
  config gle_old(gle_schema());
  gle_old.load_saved_json({{"train", {{"epochs", 7}, {"test_batch", 50}, {"seed", 3}, {"threads", 2}}}}, "ck");
  EXPECT_EQ(gle_old.get<int>("run.epochs"), 7);
  EXPECT_EQ(gle_old.get<int>("run.eval_batch"), 50);
  EXPECT_EQ(gle_old.get<int>("run.seed"), 3);
  EXPECT_EQ(gle_old.get<int>("dynamics.threads"), 2);
  EXPECT_THROW(gle_old.set_override("train.epochs=3"), config_error);

  config gle(gle_schema());
  gle.load_saved_json({{"network", {{"activation", "sigmoid"}, {"first_activation", "hard_sigmoid"}}}}, "ck");
  EXPECT_EQ(gle.get<std::string>("network.activation"), "logistic");
  EXPECT_EQ(gle.get<std::string>("network.first_activation"), "clamp01");
  EXPECT_EQ(gle.get<std::string>("network.initial_state"), "rest");
  config gle_new(gle_schema());
  gle_new.load_saved_json({{"network", {{"initial_state", "zero"}}}}, "ck");
  EXPECT_EQ(gle_new.get<std::string>("network.initial_state"), "zero");
  EXPECT_EQ(config(gle_schema()).get<std::string>("network.initial_state"), "zero");  // the default
}

TEST(Config, SchemaRefusesBadRenames) {
  config_schema s;
  s.add("a.kind", std::string("x"), config_constraint::one_of({"x", "y"}), "kind").add("a.n", int64_t(1), "n");
  EXPECT_THROW(s.renamed_value("a.n", "old", "x", "m"), config_error);     // not a string key
  EXPECT_THROW(s.renamed_value("a.kind", "old", "z", "m"), config_error);  // replacement not allowed
  EXPECT_THROW(s.renamed_key("a.n", "a.kind"), config_error);              // old key still declared
  EXPECT_THROW(s.renamed_key("a.m", "a.size"), config_error);              // new key undeclared
  EXPECT_THROW(s.saved_default("a.kind", std::string("z")), config_error);
  EXPECT_THROW(s.saved_default("a.kind", int64_t(1)), config_error);
}

TEST(Config, SuggestClosest) {
  const std::vector<std::string> datasets = {"mnist", "fashion_mnist", "cifar10", "cifar100", "kmnist"};
  EXPECT_EQ(suggest_closest("mnsit", datasets), "mnist");
  EXPECT_EQ(suggest_closest("MNIST", datasets), "mnist");
  EXPECT_EQ(suggest_closest("cifar", datasets), "cifar10");
  EXPECT_EQ(suggest_closest("fashionmnist", datasets), "fashion_mnist");
  EXPECT_EQ(suggest_closest("imagenet", datasets), "");
  EXPECT_EQ(suggest_closest("x", {}), "");
  const std::vector<std::string> keys = test_schema().key_names();
  EXPECT_EQ(suggest_closest("optimiser.lr", keys), "optimizer.lr");
  EXPECT_EQ(suggest_closest("lr", keys), "optimizer.lr");
  EXPECT_EQ(suggest_closest("trian.epochs", keys), "train.epochs");
  EXPECT_EQ(suggest_closest("estimator.holo.npoints", keys), "estimator.holo.n_points");
}

TEST(Config, FormatsValuesAsToml) {
  EXPECT_EQ(format_config_value(1.0), "1.0");
  EXPECT_EQ(format_config_value(0.1), "0.1");
  EXPECT_EQ(format_config_value(-2.5e-30), "-2.5e-30");
  EXPECT_EQ(format_config_value(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(format_config_value(std::nan("")), "nan");
  EXPECT_EQ(format_config_value(int64_t{-3}), "-3");
  EXPECT_EQ(format_config_value(true), "true");
  EXPECT_EQ(format_config_value(std::string("a\"b")), "\"a\\\"b\"");
  EXPECT_EQ(format_config_value(std::vector<int64_t>{1, 2}), "[1, 2]");
  EXPECT_EQ(format_config_value(std::vector<double>{}), "[]");
  EXPECT_EQ(config_type_name(std::vector<std::string>{}), "string array");
}

// =========================================================================================
// Atomic files

TEST(AtomicFile, WritesAndReplaces) {
  temp_dir dir;
  const fs::path p = dir / "f.bin";
  write_file_atomic(p, "first");
  EXPECT_EQ(read_file(p), "first");
  write_file_atomic(p, std::string("second\0with nul", 15));
  EXPECT_EQ(read_file(p), std::string("second\0with nul", 15));
  write_file_atomic(p, [](const atomic_chunk_writer& w) {
    for (int i = 0; i < 1000; ++i) w("0123456789");
    w(std::string(3 << 20, 'x'));  // larger than the internal buffer
    w("end");
  });
  const std::string got = read_file(p);
  ASSERT_EQ(got.size(), 10000u + (3u << 20) + 3u);
  EXPECT_EQ(got.substr(0, 20), "01234567890123456789");
  EXPECT_EQ(got.substr(got.size() - 4), "xend");
  EXPECT_FALSE(has_temp_files(dir.path));
}

TEST(AtomicFile, FailingProducerLeavesPreviousContent) {
  temp_dir dir;
  const fs::path p = dir / "f.txt";
  write_file_atomic(p, "previous");
  EXPECT_THROW(write_file_atomic(p,
                                 [](const atomic_chunk_writer& w) {
                                   w(std::string(2 << 20, 'y'));
                                   throw std::runtime_error("producer failed");
                                 }),
               std::runtime_error);
  EXPECT_EQ(read_file(p), "previous");
  EXPECT_FALSE(has_temp_files(dir.path));
}

TEST(AtomicFile, ErrorsNameThePath) {
  temp_dir dir;
  const fs::path p = dir / "no_such_dir" / "f.txt";
  const std::string msg = error_message([&] { write_file_atomic(p, "x"); });
  EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  EXPECT_THROW(write_file_atomic(p, "x"), eqprop::error);
  EXPECT_THROW(read_file(dir / "missing"), data_error);
  EXPECT_THROW(read_file(dir.path), data_error);
}

TEST(AtomicFile, FullDiskLeavesPreviousFileAndNoTemp) {
  temp_dir dir;
  const fs::path p = dir / "state.txt";
  write_file_atomic(p, "previous content");
  for (bool streaming : {false, true}) {
    const int rc = run_in_child([&] {
      limit_file_size(64 << 10);
      try {
        if (streaming) {
          write_file_atomic(p, [](const atomic_chunk_writer& w) {
            for (int i = 0; i < 100000; ++i) w("some bytes ");
          });
        } else {
          write_file_atomic(p, std::string(1 << 20, 'z'));
        }
      } catch (const eqprop::error& e) {
        const std::string msg = e.what();
        if (msg.find(p.string()) == std::string::npos || msg.find("File too large") == std::string::npos) {
          std::fprintf(stderr, "unexpected message: %s\n", e.what());
          return 2;
        }
        return 0;
      }
      return 1;  // the write should have failed
    });
    EXPECT_EQ(rc, 0) << "streaming=" << streaming;
    EXPECT_EQ(read_file(p), "previous content");
    EXPECT_FALSE(has_temp_files(dir.path));
  }
}

// =========================================================================================
// Checkpoints

namespace {

checkpoint sample_checkpoint() {
  checkpoint ck;
  ck.meta = {{"epoch", 3}, {"step", 1234}, {"note", "snowman \xe2\x98\x83"}, {"config", test_schema().keys().size()}};
  ck.arrays["f32"] = checkpoint_array::from_vector(std::vector<float>{1.5f, -2.0f, 3.25f});
  ck.arrays["f64"] = checkpoint_array::from_vector(std::vector<double>{1e-300, -0.0, 2.0, 3.0, 4.0, 5.0}, {2, 3});
  ck.arrays["i64"] = checkpoint_array::from_vector(std::vector<int64_t>{INT64_MIN, -1, 0, INT64_MAX});
  ck.arrays["u8"] = checkpoint_array::from_vector(std::vector<uint8_t>{0, 1, 255, 7, 9});
  ck.arrays["empty"] = checkpoint_array::from_vector(std::vector<float>{}, {0, 4});
  ck.arrays["scalar"] = checkpoint_array::from_scalar(42.0);
  return ck;
}

}  // namespace

TEST(Checkpoint, RoundTripsEveryDtype) {
  temp_dir dir;
  const fs::path p = dir / "ck.eqck";
  checkpoint ck = sample_checkpoint();
  matrix<float> w(3, 2);
  w << 1, 2, 3, 4, 5, 6;
  vector<double> b(4);
  b << 0.5, -1, 1e10, 7;
  ck.arrays["w"] = checkpoint_array::from_eigen(w);
  ck.arrays["b"] = checkpoint_array::from_eigen(b);
  config c(test_schema());
  c.set_override("optimizer.lr=0.125");
  ck.meta["config"] = c.to_json();
  save_checkpoint(p, ck);

  const checkpoint back = load_checkpoint(p);
  EXPECT_EQ(back.meta, ck.meta);
  ASSERT_EQ(back.arrays.size(), ck.arrays.size());
  for (const auto& [name, a] : ck.arrays) {
    const checkpoint_array& r = back.array(name);
    EXPECT_EQ(r.dtype, a.dtype) << name;
    EXPECT_EQ(r.shape, a.shape) << name;
    EXPECT_EQ(r.bytes, a.bytes) << name;
  }
  EXPECT_EQ(back.array("f32").to_vector<float>(), (std::vector<float>{1.5f, -2.0f, 3.25f}));
  EXPECT_EQ(back.array("i64").to_vector<int64_t>(), (std::vector<int64_t>{INT64_MIN, -1, 0, INT64_MAX}));
  EXPECT_EQ(back.array("u8").to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 255, 7, 9}));
  EXPECT_EQ(back.array("scalar").to_scalar<double>(), 42.0);
  EXPECT_TRUE(back.array("empty").to_vector<float>().empty());
  EXPECT_EQ(back.array("w").shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(back.array("w").to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6})) << "row-major";
  EXPECT_EQ(back.array("w").to_matrix<float>(), w);
  EXPECT_EQ(back.array("b").shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(back.array("b").to_eigen_vector<double>(), b);
  const matrix<double> f64 = back.array("f64").to_matrix<double>();
  EXPECT_EQ(f64(1, 0), 3.0);
  EXPECT_EQ(f64(0, 2), 2.0);
  EXPECT_TRUE(std::signbit(f64(0, 1)));

  config restored(test_schema());
  restored.load_json(back.meta["config"], "checkpoint");
  EXPECT_EQ(restored.get<double>("optimizer.lr"), 0.125);
  EXPECT_FALSE(has_temp_files(dir.path));
}

TEST(Checkpoint, TypedAccessChecksDtypeAndShape) {
  const checkpoint ck = sample_checkpoint();
  EXPECT_THROW(ck.array("f64").to_vector<float>(), data_error);
  EXPECT_THROW(ck.array("f32").to_vector<double>(), data_error);
  EXPECT_THROW(ck.array("f32").to_scalar<float>(), data_error);
  EXPECT_THROW(ck.array("f64").to_eigen_vector<double>(), data_error);
  EXPECT_THROW(ck.array("missing"), data_error);
  EXPECT_THROW(checkpoint_array::from_vector(std::vector<float>{1, 2, 3}, {2, 2}), shape_error);
  checkpoint bad;
  bad.arrays["x"] = checkpoint_array::from_vector(std::vector<float>{1, 2});
  bad.arrays["x"].shape = {3};
  temp_dir dir;
  EXPECT_THROW(save_checkpoint(dir / "bad", bad), shape_error);
  EXPECT_FALSE(fs::exists(dir / "bad"));
}

TEST(Checkpoint, FileLayoutMatchesTheDocumentedFormat) {
  temp_dir dir;
  const fs::path p = dir / "ck";
  save_checkpoint(p, sample_checkpoint());
  const std::string f = slurp(p);
  ASSERT_GT(f.size(), 24u);
  EXPECT_EQ(f.substr(0, 8), "EQPROPCK");
  uint32_t version = 0;
  uint64_t hlen = 0;
  std::memcpy(&version, f.data() + 8, 4);
  std::memcpy(&hlen, f.data() + 12, 8);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ((20 + hlen) % 8, 0u);
  const auto header = nlohmann::json::parse(f.substr(20, hlen));
  const std::size_t data_start = 20 + hlen;
  EXPECT_EQ(data_start + header["data_length"].get<std::size_t>() + 4, f.size());
  bool saw_u8 = false;
  for (const auto& e : header["arrays"]) {
    EXPECT_EQ(e["offset"].get<std::size_t>() % 8, 0u);
    if (e["name"] == "u8") {
      saw_u8 = true;
      EXPECT_EQ(e["dtype"], "u8");
      EXPECT_EQ(e["length"], 5);
      EXPECT_EQ(f.substr(data_start + e["offset"].get<std::size_t>(), 5), std::string("\x00\x01\xff\x07\x09", 5));
    }
  }
  EXPECT_TRUE(saw_u8);
  EXPECT_EQ(header["meta"]["step"], 1234);
  uint32_t stored = 0;
  std::memcpy(&stored, f.data() + f.size() - 4, 4);
  EXPECT_EQ(stored, static_cast<uint32_t>(::crc32(0, reinterpret_cast<const Bytef*>(f.data()), f.size() - 4)));
}

TEST(Checkpoint, TruncatedFilesAreDataErrors) {
  temp_dir dir;
  const fs::path good = dir / "good.ck";
  save_checkpoint(good, sample_checkpoint());
  const std::string f = slurp(good);
  for (std::size_t len : {std::size_t(0), std::size_t(5), std::size_t(8), std::size_t(19), std::size_t(23),
                          std::size_t(60), f.size() / 2, f.size() - 9, f.size() - 1}) {
    const fs::path p = dir / ("trunc_" + std::to_string(len) + ".ck");
    spit(p, f.substr(0, len));
    const std::string msg = error_message([&] { load_checkpoint(p); });
    EXPECT_THROW(load_checkpoint(p), data_error) << len;
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
    if (len >= 8) {
      EXPECT_NE(msg.find("truncated"), std::string::npos) << len << ": " << msg;
    }
  }
  // Trailing garbage is an error too.
  const fs::path p = dir / "longer.ck";
  spit(p, f + "x");
  EXPECT_THROW(load_checkpoint(p), data_error);
}

TEST(Checkpoint, EveryFlippedByteIsDetected) {
  temp_dir dir;
  checkpoint ck;
  ck.meta = {{"epoch", 1}};
  ck.arrays["a"] = checkpoint_array::from_vector(std::vector<float>{1, 2, 3});
  ck.arrays["b"] = checkpoint_array::from_vector(std::vector<uint8_t>{4, 5});
  const fs::path good = dir / "good.ck";
  save_checkpoint(good, ck);
  const std::string f = slurp(good);
  const fs::path p = dir / "flipped.ck";
  for (std::size_t i = 0; i < f.size(); ++i) {
    std::string g = f;
    g[i] = static_cast<char>(g[i] ^ 0x10);
    spit(p, g);
    const std::string msg = error_message([&] { load_checkpoint(p); });
    EXPECT_THROW(load_checkpoint(p), data_error) << "byte " << i;
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
  }
  // A flip in the data section is reported as a CRC mismatch.
  std::string g = f;
  g[f.size() - 8] ^= 1;
  spit(p, g);
  const std::string msg = error_message([&] { load_checkpoint(p); });
  EXPECT_NE(msg.find("CRC"), std::string::npos) << msg;
}

TEST(Checkpoint, WrongMagicAndMissingFile) {
  temp_dir dir;
  const fs::path good = dir / "good.ck";
  save_checkpoint(good, sample_checkpoint());
  std::string f = slurp(good);
  f.replace(0, 8, "NOTACKPT");
  const fs::path p = dir / "wrong_magic.ck";
  spit(p, f);
  std::string msg = error_message([&] { load_checkpoint(p); });
  EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("magic"), std::string::npos) << msg;
  EXPECT_THROW(load_checkpoint(p), data_error);
  spit(p, "a = 1\n[toml]\nnot = \"a checkpoint\"\n");
  EXPECT_THROW(load_checkpoint(p), data_error);
  msg = error_message([&] { load_checkpoint(dir / "missing.ck"); });
  EXPECT_NE(msg.find("missing.ck"), std::string::npos) << msg;
  EXPECT_THROW(load_checkpoint(dir / "missing.ck"), data_error);
}

TEST(Checkpoint, FullDiskKeepsPreviousCheckpointLoadable) {
  temp_dir dir;
  const fs::path p = dir / "latest.ck";
  const checkpoint previous = sample_checkpoint();
  save_checkpoint(p, previous);
  const std::string before = slurp(p);

  const int rc = run_in_child([&] {
    limit_file_size(32 << 10);  // room for the old checkpoint, not for the new one
    checkpoint big = sample_checkpoint();
    big.meta["epoch"] = 4;
    big.arrays["w"] = checkpoint_array::from_vector(std::vector<double>(200000, 1.0));
    try {
      save_checkpoint(p, big);
    } catch (const eqprop::error& e) {
      const std::string msg = e.what();
      if (msg.find(p.string()) == std::string::npos || msg.find("File too large") == std::string::npos) {
        std::fprintf(stderr, "unexpected message: %s\n", e.what());
        return 2;
      }
      return 0;
    }
    return 1;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(slurp(p), before);
  const checkpoint back = load_checkpoint(p);
  EXPECT_EQ(back.meta["epoch"], 3);
  EXPECT_EQ(back.arrays.size(), previous.arrays.size());
  EXPECT_FALSE(has_temp_files(dir.path));
}

TEST(Checkpoint, RngStateRoundTrips) {
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 1000; ++i) rng();
  checkpoint ck;
  ck.meta["rng"] = rng_state_to_string(rng);
  temp_dir dir;
  save_checkpoint(dir / "ck", ck);
  const checkpoint back = load_checkpoint(dir / "ck");
  std::mt19937_64 restored;
  rng_state_from_string(restored, back.meta["rng"].get<std::string>());
  EXPECT_EQ(restored, rng);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(restored(), rng());
  EXPECT_THROW(rng_state_from_string(restored, "1 2 3"), data_error);
  EXPECT_THROW(rng_state_from_string(restored, "not a state"), data_error);
  EXPECT_THROW(rng_state_from_string(restored, rng_state_to_string(rng) + " 7"), data_error);
}

// =========================================================================================
// Metrics log

TEST(MetricsLog, WritesJsonlAndCsvFlushedAfterEveryRow) {
  temp_dir dir;
  metrics_log log(dir / "run", false);
  log.append({{"epoch", 1}, {"train_loss", 0.5}, {"split", "a,b \"q\""}});
  // Flushed: visible to a reader while the log is still open.
  EXPECT_EQ(slurp(dir / "run" / "metrics.jsonl"), "{\"epoch\":1,\"train_loss\":0.5,\"split\":\"a,b \\\"q\\\"\"}\n");
  EXPECT_EQ(slurp(dir / "run" / "metrics.csv"), "epoch,train_loss,split\n1,0.5,\"a,b \"\"q\"\"\"\n");
  log.append({{"epoch", 2}, {"train_loss", std::nan("")}});  // split missing
  log.append({{"train_loss", 0.25}, {"epoch", 3}, {"split", "x"}, {"ok", true}});
  EXPECT_EQ(slurp(dir / "run" / "metrics.csv"),
            "epoch,train_loss,split,ok\n"
            "1,0.5,\"a,b \"\"q\"\"\",\n"
            "2,nan,,\n"
            "3,0.25,x,true\n");
  const std::string jsonl = slurp(dir / "run" / "metrics.jsonl");
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 3);
  EXPECT_NE(jsonl.find("{\"train_loss\":0.25,\"epoch\":3,\"split\":\"x\",\"ok\":true}\n"), std::string::npos);
  EXPECT_EQ(log.rows().size(), 3u);
  EXPECT_THROW(log.append(nlohmann::ordered_json::array({1, 2})), eqprop::error);
  EXPECT_FALSE(has_temp_files(dir / "run"));
}

TEST(MetricsLog, ResumeKeepsRowsAndTruncatesAfterEpoch) {
  temp_dir dir;
  {
    metrics_log log(dir.path, false);
    for (int e = 1; e <= 5; ++e) log.append({{"epoch", e}, {"loss", 1.0 / e}});
    log.append({{"event", "interrupted"}});
  }
  metrics_log log(dir.path, true);
  EXPECT_EQ(log.rows().size(), 6u);
  log.truncate_after_epoch(3);  // resuming from the checkpoint of epoch 3
  log.append({{"epoch", 4}, {"loss", 0.3}});
  const std::string csv = slurp(dir / "metrics.csv");
  EXPECT_EQ(csv,
            "epoch,loss,event\n"
            "1,1.0,\n"
            "2,0.5,\n"
            "3,0.3333333333333333,\n"
            ",,interrupted\n"
            "4,0.3,\n");
  const std::string jsonl = slurp(dir / "metrics.jsonl");
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 5);
  EXPECT_EQ(jsonl.find("\"epoch\":5"), std::string::npos);
}

TEST(MetricsLog, ResumeDropsPartialLastLineAndRejectsCorruption) {
  temp_dir dir;
  spit(dir / "metrics.jsonl", "{\"epoch\":1,\"acc\":0.5}\n{\"epoch\":2,\"acc\":0.7}\n{\"epoch\":3,\"ac");
  {
    metrics_log log(dir.path, true);
    EXPECT_EQ(log.rows().size(), 2u);
    log.append({{"epoch", 3}, {"acc", 0.8}});
  }
  EXPECT_EQ(slurp(dir / "metrics.jsonl"),
            "{\"epoch\":1,\"acc\":0.5}\n{\"epoch\":2,\"acc\":0.7}\n{\"epoch\":3,\"acc\":0.8}\n");
  EXPECT_EQ(slurp(dir / "metrics.csv"), "epoch,acc\n1,0.5\n2,0.7\n3,0.8\n");

  spit(dir / "metrics.jsonl", "{\"epoch\":1}\ngarbage\n{\"epoch\":2}\n");
  const std::string msg = error_message([&] { metrics_log log(dir.path, true); });
  EXPECT_NE(msg.find("metrics.jsonl:2"), std::string::npos) << msg;
  EXPECT_THROW(metrics_log(dir.path, true), data_error);
}

TEST(MetricsLog, WithoutResumeStartsFresh) {
  temp_dir dir;
  {
    metrics_log log(dir.path, false);
    log.append({{"epoch", 1}});
  }
  metrics_log log(dir.path, false);
  EXPECT_TRUE(log.rows().empty());
  EXPECT_EQ(slurp(dir / "metrics.jsonl"), "");
  EXPECT_EQ(slurp(dir / "metrics.csv"), "");
  metrics_log resumed_empty(dir / "new_run", true);  // resume with nothing to resume
  EXPECT_TRUE(resumed_empty.rows().empty());
}

// =========================================================================================
// Progress

TEST(Progress, TerminalRewritesOneLine) {
  std::ostringstream os;
  {
    progress p(os, true, 0.0);
    p.set_width(0);
    p.begin_epoch(2, 5, 10);
    p.update(3, {{"loss", "0.500"}, {"", "1234 samples/s"}});
    const std::string s = os.str();
    EXPECT_EQ(s.front(), '\r');
    EXPECT_NE(s.find("\x1b[K"), std::string::npos);
    EXPECT_NE(s.find("epoch 2/5 ["), std::string::npos) << s;
    EXPECT_NE(s.find("] 3/10 loss=0.500 1234 samples/s elapsed 0:00 eta 0:00"), std::string::npos) << s;
    EXPECT_EQ(s.find('\n'), std::string::npos);
    p.update(10, {{"loss", "0.400"}});
    p.end_epoch("loss=0.400 acc=91.0%");
    const std::string t = os.str();
    EXPECT_EQ(std::count(t.begin(), t.end(), '\n'), 1);
    EXPECT_NE(t.find("\repoch 2/5 loss=0.400 acc=91.0% [0:00]\x1b[K\n"), std::string::npos) << t;
    EXPECT_NE(t.find("[========================] 10/10"), std::string::npos) << t;
  }
  EXPECT_EQ(os.str().back(), '\n');
}

TEST(Progress, TerminalIsRateLimitedButShowsTheLastBatch) {
  std::ostringstream os;
  progress p(os, true, 1e9);
  p.set_width(0);
  p.begin_epoch(1, 1, 100);
  int built = 0;
  for (long b = 1; b <= 100; ++b)
    p.update(b, [&] {
      ++built;
      return progress::fields{{"b", std::to_string(b)}};
    });
  const std::string s = os.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\r'), 2) << s;  // the first and the last batch
  EXPECT_EQ(built, 2);
  EXPECT_NE(s.find("100/100 b=100"), std::string::npos) << s;
  // The destructor ends the open status line.
}

TEST(Progress, PlainLinesWhenNotATerminal) {
  std::ostringstream os;
  {
    progress p(os, false, 0.1, 0.0);  // a line for every update
    p.begin_epoch(1, 3, 4);
    p.update(2, {{"loss", "1.5"}});
    p.end_epoch("loss=1.2");
  }
  const std::string s = os.str();
  EXPECT_EQ(s.find('\r'), std::string::npos);
  EXPECT_EQ(s.find('\x1b'), std::string::npos);
  EXPECT_EQ(s,
            "epoch 1/3 batch 2/4 (50%) loss=1.5 elapsed 0:00 eta 0:00\n"
            "epoch 1/3 loss=1.2 [0:00]\n");
}

TEST(Progress, NotATerminalWithLongIntervalPrintsOnlySummaries) {
  std::ostringstream os;
  progress p(os, false);
  for (long e = 1; e <= 3; ++e) {
    p.begin_epoch(e, 3, 50);
    for (long b = 1; b <= 50; ++b) p.update(b, {{"loss", "1"}});
    p.end_epoch("done");
  }
  EXPECT_EQ(os.str(), "epoch 1/3 done [0:00]\nepoch 2/3 done [0:00]\nepoch 3/3 done [0:00]\n");
}

TEST(Progress, MessagesAndWidth) {
  std::ostringstream os;
  progress p(os, true, 0.0);
  p.set_width(30);
  p.begin_epoch(1, 2, 10);
  p.update(5, {{"loss", "0.123456789"}});
  std::string s = os.str();
  ASSERT_EQ(s.substr(s.size() - 3), "\x1b[K");
  EXPECT_EQ(s.size(), 1u + 29u + 3u) << "status line cut to the terminal width";
  os.str("");
  p.message("saved checkpoint");
  s = os.str();
  EXPECT_EQ(s.substr(0, 21), "\r\x1b[Ksaved checkpoint\n");
  EXPECT_EQ(s.substr(21, 12), "\repoch 1/2 [") << "status line redrawn: " << s;
  p.end_epoch("");
  std::ostringstream plain;
  progress q(plain, false);
  q.message("hello");
  EXPECT_EQ(plain.str(), "hello\n");
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(progress::format_duration(0), "0:00");
  EXPECT_EQ(progress::format_duration(65.4), "1:05");
  EXPECT_EQ(progress::format_duration(3600 * 2 + 61), "2:01:01");
  EXPECT_EQ(progress::format_duration(std::nan("")), "--:--");
  EXPECT_EQ(progress::format_duration(-1), "--:--");
}
