// eqprop gle operator | lagline | lagnet | train: Generalized Latent Equilibrium
// (docs/gle.md). GLE/LE are implemented from the papers' equations; the authors' code
// carries a patent notice (docs/gle.md).
#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "flag_checks.hpp"
#include "trainer_flags.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/progress.hpp"
#include "study_util.hpp"

namespace eqprop::cli {
namespace fs = std::filesystem;

namespace {
std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

std::string lagline_csv(const lagline_result& r) {
  std::string s = "t,loss,w1,w2,tau_m1,tau_m2\n";
  for (const auto& row : r.trace)
    s += fmt::format("{},{:.6e},{:.10g},{:.10g},{:.10g},{:.10g}\n", row.t, row.loss, row.w1, row.w2, row.tau1, row.tau2);
  return s;
}
}  // namespace

void register_gle(CLI::App& app) {
  auto* gle = app.add_subcommand("gle", "Generalized Latent Equilibrium: continuous-time neurons learning online (docs/gle.md)");
  gle->require_subcommand(1);

  // ---- operator
  static double op_tm = 1, op_tr = 0.2, op_w = 2, op_dt = 1e-3;
  auto* op = gle->add_subcommand("operator", "Gain and phase of one neuron's forward, GLE-error and adjoint operators");
  using cc = config_constraint;
  const cc time_constant = cc::greater_than(0).at_most(1e6);
  add_checked(op, "--tau-m", op_tm, "membrane time constant", time_constant)->capture_default_str();
  add_checked(op, "--tau-r", op_tr, "prospective time constant", time_constant)->capture_default_str();
  add_checked(op, "--omega", op_w, "angular frequency of the test sine", cc::greater_than(0).at_most(1e6))->capture_default_str();
  add_checked(op, "--dt", op_dt, "Euler step", cc::greater_than(0).at_most(1))->capture_default_str();
  op->callback([] {
    if (2 * 3.141592653589793 / (op_w * op_dt) > 1e7)
      throw config_error(fmt::format("--omega {} with --dt {} needs more than 1e7 Euler steps per period of the test sine; "
                                     "raise --omega or --dt", op_w, op_dt));
    const auto r = gle_operator_response(op_tm, op_tr, op_w, op_dt);
    fmt::print("tau_m = {}, tau_r = {}, omega = {}, dt = {}\n", op_tm, op_tr, op_w, op_dt);
    fmt::print("{:<28} {:>10} {:>10} {:>14} {:>14}\n", "operator", "gain", "phase", "theory gain", "theory phase");
    fmt::print("{:<28} {:>10.4f} {:>10.4f} {:>14.4f} {:>14.4f}\n", "forward D+_tr I-_tm", r.forward_gain,
               r.forward_phase, r.theory_gain, r.theory_phase);
    fmt::print("{:<28} {:>10.4f} {:>10.4f} {:>14.4f} {:>14.4f}\n", "adjoint I+_tm D-_tr (AM)", r.adjoint_gain,
               r.adjoint_phase, r.theory_gain, -r.theory_phase);
    fmt::print("{:<28} {:>10.4f} {:>10.4f} {:>14.4f} {:>14.4f}\n", "GLE error D+_tm I-_tr", r.gle_gain, r.gle_phase,
               1 / r.theory_gain, -r.theory_phase);
  });

  // ---- lagline
  struct lagline_args {
    std::string rule = "gle", out;
    lagline_options o;
    bool compare = false, no_plot = false;
  };
  static lagline_args la;
  auto* ll = gle->add_subcommand("lagline", "Teacher-student chain of two neurons (spec §5.1): learn weights and tau_m");
  ll->add_option("--rule", la.rule, "gle | bp (instantaneous errors) | bptt | adjoint")->capture_default_str();
  add_checked(ll, "--window", la.o.window, "bptt/adjoint window in time units", cc::greater_than(0).at_most(1e4))
      ->capture_default_str();
  add_checked(ll, "--t-train", la.o.t_train, "training time (time units)", cc::greater_than(0).at_most(1e6))
      ->capture_default_str();
  add_checked(ll, "--lr", la.o.lr, "Adam learning rate per step", cc::greater_than(0))->capture_default_str();
  add_checked(ll, "--seed", la.o.seed, "student initialisation and input phases", cc::at_least(0))->capture_default_str();
  ll->add_flag("--compare", la.compare, "run gle, bp and bptt with windows 4, 2, 1 side by side");
  ll->add_option("--out", la.out, "directory for lagline_<rule>.csv traces and lagline.png (default: none)");
  ll->add_flag("--no-plot", la.no_plot, "write the CSV files only");
  ll->callback([] {
    std::vector<std::pair<std::string, lagline_options>> runs;
    if (la.compare) {
      for (const char* r : {"gle", "bp"}) {
        auto o = la.o;
        o.rule = parse_gle_rule(r);
        runs.emplace_back(r, o);
      }
      for (double w : {4.0, 2.0, 1.0}) {
        auto o = la.o;
        o.rule = gle_rule::bptt;
        o.window = w;
        runs.emplace_back(fmt::format("bptt_tw{}", w), o);
      }
    } else {
      auto o = la.o;
      o.rule = parse_gle_rule(la.rule);
      runs.emplace_back(o.rule == gle_rule::bptt || o.rule == gle_rule::adjoint
                            ? fmt::format("{}_tw{}", la.rule, o.window)
                            : la.rule,
                        o);
    }
    fmt::print("teacher w = (1, 2), tau_m = (1, 2); {} time units of training, dt = {}\n", la.o.t_train, la.o.dt);
    fmt::print("{:<12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>8}\n", "model", "final loss", "w1", "w2",
               "tau_m1", "tau_m2", "w rel.err", "tau rel.err", "time");
    std::vector<std::string> csvs;
    for (auto& [name, o] : runs) {
      const auto r = run_lagline(o);
      const auto& last = r.trace.back();
      fmt::print("{:<12} {:>12.3e} {:>10.6f} {:>10.6f} {:>10.6f} {:>10.6f} {:>12.2e} {:>12.2e} {:>7.1f}s\n", name,
                 r.final_loss, last.w1, last.w2, last.tau1, last.tau2, r.w_rel_error, r.tau_rel_error, r.seconds);
      if (!la.out.empty()) {
        fs::create_directories(la.out);
        const auto p = fs::path(la.out) / fmt::format("lagline_{}.csv", name);
        write_text(p, lagline_csv(r));
        csvs.push_back(p.string());
      }
    }
    if (!la.out.empty() && !la.no_plot) {
      std::vector<std::string> args{"gle-lagline"};
      args.insert(args.end(), csvs.begin(), csvs.end());
      args.push_back("-o");
      args.push_back((fs::path(la.out) / "lagline.png").string());
      plot_with_python(args);
    }
  });

  // ---- lagnet
  static lagnet_options na;
  static std::string na_out;
  static bool na_no_plot = false, na_no_train = false;
  auto* ln = gle->add_subcommand("lagnet", "1-2-2-1 network: GLE errors against the adjoint method's lambda (spec §5.2)");
  add_checked(ln, "--window", na.t_window, "comparison window (time units)", cc::greater_than(na.t_tail).at_most(1e5))
      ->capture_default_str();
  ln->add_option("--out", na_out, "directory for lagnet_traces.csv, lagnet_compare.csv and lagnet.png");
  ln->add_flag("--no-train", na_no_train, "only the error comparison");
  ln->add_flag("--no-plot", na_no_plot, "write the CSV files only");
  ln->callback([] {
    na.train = !na_no_train;
    const auto r = run_lagnet(na);
    fmt::print("GLE error e against adjoint lambda, per input frequency (e/lambda; theory for one neuron: phase 0, "
               "gain 1/|H|^2)\n");
    fmt::print("{:<8} {:>6} {:>6} {:>7} {:>10} {:>10} {:>12} {:>8}\n", "neuron", "tau_m", "tau_r", "omega", "gain",
               "phase", "theory gain", "corr");
    std::string csv = "neuron,tau_m,tau_r,omega,gain,phase,theory_gain,correlation\n";
    for (const auto& n : r.neurons)
      for (std::size_t i = 0; i < n.omega.size(); ++i) {
        fmt::print("{:<8} {:>6} {:>6} {:>7} {:>10.4f} {:>10.4f} {:>12.4f} {:>8.4f}\n", n.name, n.tau_m, n.tau_r,
                   n.omega[i], n.gain[i], n.phase[i], n.theory_gain[i], n.correlation);
        csv += fmt::format("{},{},{},{},{:.6g},{:.6g},{:.6g},{:.6g}\n", n.name, n.tau_m, n.tau_r, n.omega[i], n.gain[i],
                           n.phase[i], n.theory_gain[i], n.correlation);
      }
    if (na.train)
      fmt::print("GLE training of hid_1 ({} time units): w[0][0] {:.4f} -> {:.4f} (teacher {}), loss {:.3e} -> {:.3e}\n",
                 na.t_train, 0.5, r.final_w00, r.teacher_w00, r.train_loss.front(), r.train_loss.back());
    if (!na_out.empty()) {
      fs::create_directories(na_out);
      write_text(fs::path(na_out) / "lagnet_compare.csv", csv);
      std::string tr = "t";
      for (const auto& n : r.neurons) tr += fmt::format(",e_{0},lambda_{0}", n.name);
      tr += "\n";
      for (std::size_t j = 0; j < r.t.size(); ++j) {
        tr += fmt::format("{:.4f}", r.t[j]);
        for (std::size_t n = 0; n < r.neurons.size(); ++n) tr += fmt::format(",{:.6e},{:.6e}", r.e[n][j], r.lambda[n][j]);
        tr += "\n";
      }
      write_text(fs::path(na_out) / "lagnet_traces.csv", tr);
      if (na.train) {
        std::string tt = "t,w00,loss\n";
        for (std::size_t j = 0; j < r.train_t.size(); ++j)
          tt += fmt::format("{},{:.8g},{:.6e}\n", r.train_t[j], r.train_w00[j], r.train_loss[j]);
        write_text(fs::path(na_out) / "lagnet_train.csv", tt);
      }
      if (!na_no_plot)
        plot_with_python({"gle-lagnet", (fs::path(na_out) / "lagnet_traces.csv").string(), "-o",
                          (fs::path(na_out) / "lagnet.png").string()});
    }
  });

  // ---- train
  struct train_args {
    std::string config_file, data_dir, run_dir, resume;
    std::vector<std::string> sets;
    long epochs = 0;
    int64_t seed = 0;
    bool quiet = false, print_config = false;
  };
  static train_args ta;
  auto* tr = gle->add_subcommand("train", "Train a GLE network on sequences (default: the 15k MNIST-1D network)");
  tr->add_option("config", ta.config_file, "Config (TOML), e.g. configs/gle_mnist1d_15k.toml")->check(CLI::ExistingFile);
  tr->add_option("--set,-s", ta.sets, "Override a config key, e.g. --set optimizer.lr=1e-3 (repeatable)");
  static CLI::Option* epochs_opt =
      add_checked(tr, "--epochs", ta.epochs, trainer_help::epochs("run.epochs"), cc::closed(1, config_limits::epochs));
  static CLI::Option* seed_opt = add_checked(tr, "--seed", ta.seed, trainer_help::seed("run.seed"), cc::at_least(0));
  tr->add_option("--data-dir", ta.data_dir, trainer_help::data_dir);
  tr->add_option("--run-dir", ta.run_dir, "Run directory (default: run.dir of the config)");
  tr->add_option("--resume", ta.resume,
                 "Continue the run in this directory from its last checkpoint (bit-identical); a config file, --set "
                 "and --epochs change its config (changing data.*, network.*, dynamics.learn_tau_m, optimizer.kind or "
                 "run.seed is refused)")
      ->check(CLI::ExistingDirectory);
  tr->add_flag("--quiet,-q", ta.quiet, trainer_help::quiet);
  tr->add_flag("--print-config", ta.print_config, trainer_help::print_config);
  tr->callback([] {
    // The command line's settings: a config file, then --set, --run-dir, --epochs, --seed.
    config cfg(gle_train_schema());
    if (!ta.config_file.empty()) cfg.load_toml_file(ta.config_file);
    for (const auto& s : ta.sets) cfg.set_override(s);
    if (!ta.run_dir.empty() && !ta.resume.empty())
      throw config_error(fmt::format("--run-dir {} with --resume {}: a resumed run stays in its own directory",
                                     ta.run_dir, ta.resume));
    if (!ta.run_dir.empty()) cfg.set("run.dir", ta.run_dir, "--run-dir");
    if (epochs_opt->count() > 0) cfg.set("run.epochs", int64_t(ta.epochs), "--epochs");
    if (seed_opt->count() > 0) cfg.set("run.seed", ta.seed, "--seed");
    checkpoint resume_ck;
    std::vector<std::string> changes;
    if (!ta.resume.empty()) {
      // The run's saved config with the command line's changes on top (keys that would not
      // fit the checkpoint are refused); the changes go to the log and to config.toml.
      resume_ck = load_checkpoint(fs::path(ta.resume) / "checkpoint.eqck");
      if (resume_ck.meta.value("kind", "") != "gle")
        throw config_error(fmt::format("{} is not a GLE run (use `eqprop train --resume` for EP runs)", ta.resume));
      config run_cfg(gle_train_schema());
      run_cfg.load_saved_json(resume_ck.meta.at("config"), ta.resume + "/checkpoint.eqck");
      cfg.set("run.dir", ta.resume, "--resume");
      changes = run_cfg.apply_resume_changes(cfg);
      cfg = run_cfg;
    }
    if (ta.print_config) {
      fmt::print("{}", cfg.to_toml());
      return;
    }
    for (const auto& c : changes) fmt::print("resume: {}\n", c);
    const fs::path run = cfg.get<std::string>("run.dir");
    create_run_directory(run);
    write_text(run / "config.toml", cfg.to_toml());
    metrics_log log(run, !ta.resume.empty());
    if (!ta.resume.empty()) log.truncate_after_epoch(resume_ck.meta.at("epoch").get<long>());
    progress prog(std::cout, !ta.quiet && progress::stdout_is_terminal());  // --quiet: no progress, epoch lines stay
    const long epochs = cfg.get<long>("run.epochs");
    gle_train_hooks hooks;
    long current_epoch = 1;
    bool begun = false;
    hooks.on_progress = [&](long i, long n, double loss, double acc) {
      if (ta.quiet) return;
      if (!begun) {
        prog.begin_epoch(current_epoch, epochs, n);
        begun = true;
      }
      prog.update(i, [&] {
        return progress::fields{{"loss", fmt::format("{:.4f}", loss)}, {"acc", fmt::format("{:.1f}%", 100 * acc)}};
      });
    };
    hooks.on_epoch = [&](const gle_epoch_report& r) {
      nlohmann::ordered_json row;
      row["epoch"] = r.epoch;
      row["train_loss"] = r.train_loss;
      row["train_acc"] = r.train_acc;
      row["test_loss"] = r.test_loss;
      row["test_acc"] = r.test_acc;
      row["train_readout_loss"] = r.train_readout_loss;
      row["test_readout_loss"] = r.test_readout_loss;
      row["lr"] = r.lr;
      row["seconds"] = r.seconds;
      row["ms_per_step"] = r.ms_per_step;
      log.append(row);
      const auto line = fmt::format("train loss {:.4f} acc {:.2f}% | test loss {:.4f} acc {:.2f}% | lr {:.2e} | "
                                    "{:.3f} ms/step",
                                    r.train_loss, 100 * r.train_acc, r.test_loss, 100 * r.test_acc, r.lr, r.ms_per_step);
      if (begun) {
        prog.end_epoch(line);
      } else {
        fmt::print("epoch {}/{} {}\n", r.epoch, epochs, line);
      }
      begun = false;
      current_epoch = r.epoch + 1;
    };
    g_interrupted = false;
    auto old = std::signal(SIGINT, on_sigint);
    hooks.should_stop = [] { return g_interrupted.load(); };
    // The whole state after every epoch, written atomically (a full disk keeps the previous one).
    // Written only after an epoch whose evaluation was finite (train_gle_sequences throws
    // before on_checkpoint otherwise), so the checkpoint on disk is always a good one.
    long last_good_epoch = ta.resume.empty() ? -1 : resume_ck.meta.at("epoch").get<long>();
    hooks.on_checkpoint = [&](const checkpoint& ck) {
      save_checkpoint(run / "checkpoint.eqck", ck);
      last_good_epoch = ck.meta.at("epoch").get<long>();
    };
    if (!ta.resume.empty()) hooks.resume = &resume_ck;
    long current_start = ta.resume.empty() ? 1 : resume_ck.meta.at("epoch").get<long>() + 1;
    current_epoch = current_start;
    std::vector<float> params;
    std::vector<gle_epoch_report> reports;
    try {
      reports = train_gle_sequences(cfg, resolve_data_dir(ta.data_dir), hooks, &params);
    } catch (const convergence_error& e) {
      std::signal(SIGINT, old);
      if (begun) prog.end_epoch("diverged");  // closes the progress display
      report_error(fmt::format("{}; stopped, {}", e.what(),
                               last_good_epoch >= 0 ? fmt::format("the last good checkpoint ({}, epoch {}) is kept",
                                                                  (run / "checkpoint.eqck").string(), last_good_epoch)
                                                    : std::string("no checkpoint had been written yet")));
      set_exit_code(4);
      return;
    }
    std::signal(SIGINT, old);
    if (g_interrupted) {
      report_error(fmt::format("interrupted; metrics and the last epoch's checkpoint kept in {0} (continue with --resume {0})",
                               run.string()));
      set_exit_code(130);
      return;
    }
    if (!reports.empty())
      fmt::print("final test accuracy {:.2f}% after {} epochs ({:.3f} ms per step); run saved in {}\n",
                 100 * reports.back().test_acc, reports.size(), reports.back().ms_per_step, run.string());
  });
}

}  // namespace eqprop::cli
