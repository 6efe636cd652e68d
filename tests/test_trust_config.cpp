// Every config value is checked against its declared range: a table-driven test over every
// key of every schema, the defaults, the assignment paths (files, overrides, set(), saved
// run configs), resuming with changes, and the command-line flags of every subcommand.
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/config.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "eqprop/train/vf_experiment.hpp"

#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace eqprop;

namespace {

struct named_schema {
  const char* name;
  const config_schema& schema;
};

std::vector<named_schema> all_schemas() {
  return {{"experiment", layered_schema()}, {"gep", vector_field_schema()}, {"gle", gle_schema()}};
}

bool is_int_key(const config_value& v) { return v.index() == 1 || v.index() == 4; }
bool is_float_key(const config_value& v) { return v.index() == 2 || v.index() == 5; }
bool is_array(const config_value& v) { return v.index() >= 4; }

// A number the constraint accepts (to fill arrays whose size is out of range).
double valid_number(const config_constraint& c, bool integer) {
  const double lo = c.lo, hi = c.hi;
  for (double v : {lo, lo + 1, std::isfinite(hi) ? (lo + hi) / 2 : lo + 1, 1.0, 0.0, hi, 0.5})
    if (std::isfinite(v) && (!integer || v == std::trunc(v)) && c.number_violation(v, integer).empty()) return v;
  ADD_FAILURE() << "no valid number found";
  return 0;
}

// Out-of-range numbers derived from the constraint: below a closed lower end, at an open
// one, likewise above, and NaN/inf for floats that must be finite.
std::vector<double> bad_numbers(const config_constraint& c, bool integer) {
  std::vector<double> out;
  auto add = [&](double v) {
    if (std::find(c.special.begin(), c.special.end(), v) == c.special.end()) out.push_back(v);
  };
  if (std::isfinite(c.lo)) add(c.lo_open ? c.lo : integer ? c.lo - 1 : std::nextafter(c.lo, -INFINITY));
  if (std::isfinite(c.hi)) add(c.hi_open ? c.hi : integer ? c.hi + 1 : std::nextafter(c.hi, INFINITY));
  if (!integer && !c.nonfinite) {
    out.push_back(std::numeric_limits<double>::quiet_NaN());
    out.push_back(std::numeric_limits<double>::infinity());
    out.push_back(-std::numeric_limits<double>::infinity());
  }
  return out;
}

config_value scalar_value(double v, bool integer) {
  return integer ? config_value(static_cast<int64_t>(v)) : config_value(v);
}

config_value array_of(const std::vector<double>& v, bool integer) {
  if (integer) return std::vector<int64_t>(v.begin(), v.end());
  return v;
}

// Every out-of-range value of a key, with the text its error message must contain.
struct bad_case {
  config_value value;
  std::vector<std::string> expect;  // besides the key name
};

std::string bound_text(double b) {
  if (b == std::trunc(b) && std::fabs(b) < 1e15) return std::to_string(static_cast<int64_t>(b));
  return fmt::format("{}", b);
}

std::vector<bad_case> bad_cases(const config_key& k) {
  const config_constraint& c = k.allowed;
  const config_value& d = k.default_value;
  std::vector<bad_case> out;
  std::vector<std::string> bounds;
  if (std::isfinite(c.lo)) bounds.push_back(bound_text(c.lo));
  if (std::isfinite(c.hi)) bounds.push_back(bound_text(c.hi));
  if (is_int_key(d) || is_float_key(d)) {
    const bool integer = is_int_key(d);
    for (double v : bad_numbers(c, integer)) {
      std::vector<std::string> expect = bounds;
      if (!std::isfinite(v) && bounds.empty()) expect.push_back("finite");
      if (!is_array(d)) {
        out.push_back({scalar_value(v, integer), expect});
      } else {
        const double ok = valid_number(c, integer);
        std::vector<double> arr(std::max<std::size_t>(c.min_size, 1), ok);
        if (arr.size() > c.max_size) continue;
        arr.back() = v;
        expect.push_back(fmt::format("element {}", arr.size() - 1));
        out.push_back({array_of(arr, integer), expect});
      }
    }
  }
  if ((d.index() == 3 || d.index() == 6) && !c.choices.empty()) {
    std::vector<std::string> expect{"one of"};
    for (const auto& ch : c.choices) expect.push_back(ch);
    if (d.index() == 3) out.push_back({std::string("no-such-choice"), expect});
    else if (c.max_size >= 1) out.push_back({std::vector<std::string>{"no-such-choice"}, expect});
  }
  if (is_array(d)) {
    // One element too many (of valid elements), and one too few.
    auto filled = [&](std::size_t n) -> config_value {
      if (d.index() == 6) return std::vector<std::string>(n, c.choices.empty() ? "x" : c.choices.front());
      return array_of(std::vector<double>(n, valid_number(c, d.index() == 4)), d.index() == 4);
    };
    if (c.max_size <= 100000) out.push_back({filled(c.max_size + 1), {fmt::format("{} elements", c.max_size + 1)}});
    if (c.min_size > 0) out.push_back({filled(c.min_size - 1), {fmt::format("{} element", c.min_size - 1)}});
  }
  return out;
}

void expect_rejected(const std::function<void()>& assign, const std::string& key, const bad_case& b,
                     const std::string& path) {
  try {
    assign();
    ADD_FAILURE() << path << ": " << key << " = " << format_config_value(b.value) << " was accepted";
  } catch (const config_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("`" + key + "`"), std::string::npos) << path << ": " << msg;
    for (const auto& s : b.expect)
      EXPECT_NE(msg.find(s), std::string::npos) << path << ": `" << s << "` not in: " << msg;
  }
}

}  // namespace

TEST(TrustConfig, EveryDefaultSatisfiesItsConstraint) {
  for (const auto& [name, schema] : all_schemas())
    for (const auto& k : schema.keys()) EXPECT_EQ(k.allowed.violation(k.default_value), "") << name << " " << k.key;
}

TEST(TrustConfig, EveryNumericKeyHasARangeAndEveryDocIsGenerated) {
  // Every integer key declares at least one bound; to_toml writes the allowed values of
  // every key that declares a range, choices or sizes under its doc.
  for (const auto& [name, schema] : all_schemas()) {
    config cfg(schema);
    const std::string toml = cfg.to_toml();
    for (const auto& k : schema.keys()) {
      if (is_int_key(k.default_value)) {
        EXPECT_TRUE(std::isfinite(k.allowed.lo) || std::isfinite(k.allowed.hi)) << name << " " << k.key;
      }
      const config_constraint& c = k.allowed;
      const bool declared = std::isfinite(c.lo) || std::isfinite(c.hi) || !c.choices.empty() || c.min_size > 0 ||
                            c.max_size != std::numeric_limits<std::size_t>::max();
      const std::string allowed = c.describe(k.default_value);
      if (declared) {
        EXPECT_NE(toml.find("# allowed: " + allowed), std::string::npos) << name << " " << k.key;
      }
    }
  }
  config e(layered_schema());
  EXPECT_NE(e.to_toml().find("# allowed: a float in (0, 2)\nomega = 1.0"), std::string::npos);
}

TEST(TrustConfig, SchemaRejectsADefaultOutsideItsOwnRange) {
  config_schema s;
  try {
    s.add("a.b", -1.0, config_constraint::at_least(0), "doc");
    FAIL() << "accepted";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("a.b"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(">= 0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(s.add("c", std::string("x"), config_constraint::one_of({"y", "z"}), ""), config_error);
  EXPECT_THROW(s.add("d", std::vector<int64_t>{1, 2, 3}, config_constraint::any().sizes(0, 2), ""), config_error);
  EXPECT_THROW(s.fixed_on_resume({"no.such"}), config_error);
  EXPECT_NO_THROW(s.add("e", int64_t(-1), config_constraint::at_least(1).or_value(-1), ""));
}

// The table: every key of every schema, every out-of-range value derived from its
// constraint, through set(), an override and a TOML document. The value stays unchanged.
TEST(TrustConfig, EveryKeyRefusesEveryOutOfRangeValueOnEveryPath) {
  long n_cases = 0;
  for (const auto& [name, schema] : all_schemas()) {
    config cfg(schema);
    for (const auto& k : schema.keys()) {
      for (const bad_case& b : bad_cases(k)) {
        ++n_cases;
        const std::string text = format_config_value(b.value);
        expect_rejected([&] { cfg.set(k.key, b.value, "table"); }, k.key, b, "set");
        expect_rejected([&] { cfg.set_override(k.key + "=" + text); }, k.key, b, "override");
        expect_rejected([&] { cfg.load_toml_string(k.key + " = " + text + "\n", "table.toml"); }, k.key, b, "toml");
        EXPECT_EQ(cfg.value(k.key), k.default_value) << name << " " << k.key << ": a rejected value changed the key";
      }
    }
  }
  RecordProperty("cases", static_cast<int>(n_cases));
  EXPECT_GT(n_cases, 250);  // the schemas have ~150 keys; most have two or more bad values
}

TEST(TrustConfig, IssueExamplesNameKeyRangeAndSource) {
  config cfg(layered_schema());
  auto msg_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const config_error& e) {
      return e.what();
    }
    return "(accepted)";
  };
  std::string m = msg_of([&] { cfg.set_override("schedule.min_factor=-0.5"); });
  EXPECT_NE(m.find("`schedule.min_factor` = -0.5"), std::string::npos) << m;
  EXPECT_NE(m.find("in [0, 1]"), std::string::npos) << m;
  EXPECT_NE(m.find("override `schedule.min_factor=-0.5`"), std::string::npos) << m;
  for (const char* epochs : {"-5", "0"}) {
    m = msg_of(
        [&] { cfg.load_toml_string(fmt::format("[optimizer]\nlr = 0.5\n[run]\nepochs = {}\n", epochs), "run.toml"); });
    EXPECT_NE(m.find(fmt::format("`run.epochs` = {}", epochs)), std::string::npos) << m;
    EXPECT_NE(m.find("an integer in [1, 1000000]"), std::string::npos) << m;
    EXPECT_NE(m.find("run.toml:4:10"), std::string::npos) << m;
    EXPECT_DOUBLE_EQ(cfg.get<double>("optimizer.lr"), 0.1) << "a rejected file changes nothing";
  }
  m = msg_of([&] { cfg.set_override("relax.tol=-1e-6"); });
  EXPECT_NE(m.find(">= 0"), std::string::npos) << m;
  m = msg_of([&] { cfg.set_override("relax.free_steps=0"); });
  EXPECT_NE(m.find("relax.free_steps"), std::string::npos) << m;
  m = msg_of([&] { cfg.set_override("relax.omega=2"); });
  EXPECT_NE(m.find("a float in (0, 2)"), std::string::npos) << m;
  m = msg_of([&] { cfg.set_override("estimator.beta=nan"); });
  EXPECT_NE(m.find("a float > 0"), std::string::npos) << m;
  m = msg_of([&] { cfg.set_override("estimator.kind=holografic"); });
  EXPECT_NE(m.find("`estimator.kind` = \"holografic\" is not allowed: must be one of classic, symmetric, holomorphic"),
            std::string::npos)
      << m;
  m = msg_of([&] { cfg.set_override("optimizer.kind=adamm"); });
  EXPECT_NE(m.find("(did you mean `adam`?)"), std::string::npos) << m;
  m = msg_of([&] { cfg.set_override("network.hidden=120,0"); });
  EXPECT_NE(m.find("element 1 (0) must be an integer in [1, 65536]"), std::string::npos) << m;
  m = msg_of([&] { cfg.set_override("network.hidden=4000000000"); });
  EXPECT_NE(m.find("network.hidden"), std::string::npos) << m;
  m = msg_of([&] { cfg.set_override("data.limit_train=0"); });
  EXPECT_NE(m.find("or -1"), std::string::npos) << m;
  EXPECT_NO_THROW(cfg.set_override("data.limit_train=-1"));
  EXPECT_NO_THROW(cfg.set_override("data.limit_train=7"));

  config gle(gle_schema());
  m = msg_of([&] { gle.set_override("network.lag_bank_tau=[0.2]"); });
  EXPECT_NE(m.find("exactly 2 elements"), std::string::npos) << m;
  m = msg_of([&] { gle.set_override("run.seed=-3"); });
  EXPECT_NE(m.find("`run.seed` = -3"), std::string::npos) << m;
}

TEST(TrustConfig, SavedRunConfigsAreCheckedToo) {
  config cfg(layered_schema());
  nlohmann::json j = cfg.to_json();
  j["run"]["batch"] = 0;
  try {
    cfg.load_json(j, "runs/x/checkpoint.eqck");
    FAIL() << "accepted";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("`run.batch` = 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("runs/x/checkpoint.eqck"), std::string::npos) << e.what();
  }
  j = cfg.to_json();
  j["optimizer"]["lr"] = nullptr;  // JSON's NaN
  EXPECT_THROW(cfg.load_json(j, "ck"), config_error);
  EXPECT_EQ(cfg.get<int64_t>("run.batch"), 20);
}

TEST(TrustConfig, ResumeAppliesChangesAndRefusesFixedKeys) {
  config run(layered_schema());
  run.set_override("run.epochs=3");
  config req(layered_schema());
  req.set_override("run.epochs=5");
  req.set_override("optimizer.lr=0.05");
  req.set_override("run.seed=0");          // equal to the run's: not a change
  req.set_override("network.hidden=120");  // likewise
  const auto lines = run.apply_resume_changes(req);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "optimizer.lr: 0.1 -> 0.05 (override `optimizer.lr=0.05`)");
  EXPECT_EQ(lines[1], "run.epochs: 3 -> 5 (override `run.epochs=5`)");
  EXPECT_EQ(run.get<int>("run.epochs"), 5);

  config bad(layered_schema());
  bad.set_override("run.epochs=9");
  bad.set_override("network.hidden=64");
  bad.set_override("data.name=mnist");
  try {
    run.apply_resume_changes(bad);
    FAIL() << "accepted";
  } catch (const config_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("`network.hidden` (the run has [120]"), std::string::npos) << m;
    EXPECT_NE(m.find("`data.name`"), std::string::npos) << m;
  }
  EXPECT_EQ(run.get<int>("run.epochs"), 5) << "a refused resume changes nothing";

  for (const auto& [name, schema] : all_schemas()) {
    if (schema.fixed_on_resume().empty()) continue;
    for (const char* k : {"network.dtype", "run.seed", "optimizer.kind"})
      if (schema.find(k)) {
        EXPECT_TRUE(schema.is_fixed_on_resume(k)) << name << " " << k;
      }
    EXPECT_FALSE(schema.is_fixed_on_resume("optimizer.lr")) << name;
  }
}

// ---------------------------------------------------------------------------------------
// Command-line flags (subprocess): out-of-range values fail at parse time with exit 2.

using eqprop::test::cli;
using eqprop::test::run_cli;
using eqprop::test::temp_dir;

#define REQUIRE_CLI() \
  if (cli().empty()) GTEST_SKIP() << "EQPROP_CLI not set (run through ctest)"

TEST(TrustCli, OutOfRangeFlagsOfEverySubcommandExitTwoNamingFlagAndRange) {
  REQUIRE_CLI();
  struct bad_flag {
    const char* args;
    const char* expect;
  };
  const bad_flag cases[] = {
      {"train --epochs=-5", "--epochs = -5 is out of range: must be an integer in [1, 1000000]"},
      {"train --epochs 0", "--epochs = 0 is out of range"},
      {"train --set schedule.min_factor=-0.5",
       "`schedule.min_factor` = -0.5 is out of range: must be a float in [0, 1]"},
      {"train --set run.epochs=-5", "`run.epochs` = -5"},
      {"gradcheck --tol -1", "--tol = -1 is out of range: must be a float >= 0"},
      {"gradcheck --free-steps 0", "--free-steps = 0"},
      {"gradcheck --seed -1", "--seed = -1"},
      {"gradcheck --omega nan", "--omega = nan is out of range: must be a float in (0, 2)"},
      {"gradcheck -N 0", "--n-points = 0"},
      {"gradcheck --beta inf", "not a finite positive number"},
      {"sweep beta --batch 0", "--batch = 0"},
      {"sweep periods --periods 0", "--periods = 0"},
      {"sweep stability --grid 1", "--grid = 1"},
      {"gep gradcheck --beta 0", "--beta = 0 is out of range: must be a float > 0"},
      {"gep gradcheck --T1 0", "--T1 = 0"},
      {"gep gradcheck --sizes 4,0,3", "--sizes: 0 is out of range"},
      {"gep train --epochs -5", "--epochs = -5"},
      {"deep train --T1 0", "`relax.free_steps` = 0 is out of range"},
      {"deep train --seeds 0", "--seeds = 0"},
      {"deep train --dt nan", "`dynamics.dt` = nan is out of range"},
      {"deep train --stop-tol -1", "`relax.tol` = -1.0 is out of range"},
      {"gle operator --dt nan", "--dt = nan"},
      {"gle operator --omega 1e-9", "needs more than 1e7 Euler steps"},
      {"gle lagline --t-train nan", "--t-train = nan"},
      {"gle lagline --seed -1", "--seed = -1"},
      {"gle lagnet --window -1", "--window = -1"},
      {"gle train --epochs 0", "--epochs = 0"},
      {"bench --seconds nan", "--seconds = nan"},
      {"bench --threads 0", "--threads = 0"},
  };
  for (const auto& c : cases) {
    const auto r = run_cli(c.args);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
  }
}

TEST(TrustCli, SetWithResumeAppliesChangesAndRefusesFixedKeys) {
  REQUIRE_CLI();
  const auto dir = temp_dir("resume");
  const std::string run_dir = (dir / "r").string();
  const std::string tiny =
      "train -q --set data.yin_yang_train=40 --set data.yin_yang_test=20 --set network.hidden=8 "
      "--set relax.free_steps=10 --set relax.nudged_steps=5 ";
  auto r = run_cli(tiny + "--epochs 1 --run-dir " + run_dir);
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cli("train -q --resume " + run_dir + " --epochs 2 --set optimizer.lr=0.05");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("resume: optimizer.lr: 0.1 -> 0.05 (override `optimizer.lr=0.05`)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("resume: run.epochs: 1 -> 2 (--epochs)"), std::string::npos) << r.output;
  const auto ck = load_checkpoint(fs::path(run_dir) / "checkpoint.eqck");
  EXPECT_EQ(ck.meta.at("epoch").get<long>(), 2);
  EXPECT_DOUBLE_EQ(ck.meta.at("config").at("optimizer").at("lr").get<double>(), 0.05);
  std::ifstream f(fs::path(run_dir) / "config.toml");
  const std::string toml((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(toml.find("lr = 0.05"), std::string::npos) << toml;

  r = run_cli("train -q --resume " + run_dir + " --epochs 3 --set network.hidden=9");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("cannot change `network.hidden` (the run has [8]"), std::string::npos) << r.output;
  EXPECT_EQ(load_checkpoint(fs::path(run_dir) / "checkpoint.eqck").meta.at("epoch").get<long>(), 2);
  r = run_cli("train -q --resume " + run_dir + " --run-dir " + (dir / "elsewhere").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("a resumed run stays in its own directory"), std::string::npos) << r.output;
  r = run_cli("train -q --resume " + run_dir + " --dtype float64");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("`network.dtype`"), std::string::npos) << r.output;
}
