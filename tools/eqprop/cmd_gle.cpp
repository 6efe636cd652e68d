// eqprop gle operator | lagline | lagnet | train: Generalized Latent Equilibrium
// (docs/gle.md); `gle train` is `eqprop train --set model.kind=gle`. GLE/LE are
// implemented from the papers' equations; the authors' code carries a patent notice
// (docs/gle.md).
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "flag_checks.hpp"
#include "study_util.hpp"

namespace eqprop::cli {
namespace fs = std::filesystem;

namespace {
std::string lagline_csv(const lagline_result& r) {
  std::string s = "t,loss,w1,w2,tau_m1,tau_m2\n";
  for (const auto& row : r.trace)
    s +=
        fmt::format("{},{:.6e},{:.10g},{:.10g},{:.10g},{:.10g}\n", row.t, row.loss, row.w1, row.w2, row.tau1, row.tau2);
  return s;
}
}  // namespace

void register_gle(CLI::App& app) {
  auto* gle = app.add_subcommand(
      "gle", "Generalized Latent Equilibrium: continuous-time neurons learning online (docs/gle.md)");
  gle->require_subcommand(1);

  // ---- operator
  static double op_tm = 1, op_tr = 0.2, op_w = 2, op_dt = 1e-3;
  auto* op = gle->add_subcommand("operator", "Gain and phase of one neuron's forward, GLE-error and adjoint operators");
  using cc = config_constraint;
  const cc time_constant = cc::greater_than(0).at_most(1e6);
  add_checked(op, "--tau-m", op_tm, "Membrane time constant", time_constant)->capture_default_str();
  add_checked(op, "--tau-r", op_tr, "Prospective time constant", time_constant)->capture_default_str();
  add_checked(op, "--omega", op_w, "Angular frequency of the test sine", cc::greater_than(0).at_most(1e6))
      ->capture_default_str();
  add_checked(op, "--dt", op_dt, "Euler step", cc::greater_than(0).at_most(1))->capture_default_str();
  op->callback([] {
    if (2 * 3.141592653589793 / (op_w * op_dt) > 1e7)
      throw config_error(
          fmt::format("--omega {} with --dt {} needs more than 1e7 Euler steps per period of the test sine; "
                      "raise --omega or --dt",
                      op_w, op_dt));
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
  auto* ll = gle->add_subcommand(
      "lagline", "Teacher-student chain of two neurons (the GLE paper's LagLine): learn weights and tau_m");
  ll->add_option("--rule", la.rule, "Learning rule: gle, bp (instantaneous errors), bptt or adjoint")
      ->capture_default_str();
  add_checked(ll, "--window", la.o.window, "BPTT/adjoint window in time units", cc::greater_than(0).at_most(1e4))
      ->capture_default_str();
  add_checked(ll, "--t-train", la.o.t_train, "Training time (time units)", cc::greater_than(0).at_most(1e6))
      ->capture_default_str();
  add_checked(ll, "--lr", la.o.lr, "Adam learning rate per step", cc::greater_than(0))->capture_default_str();
  add_checked(ll, "--seed", la.o.seed, "Student initialisation and input phases", cc::at_least(0))
      ->capture_default_str();
  ll->add_flag("--compare", la.compare, "Run gle, bp and bptt with windows 4, 2, 1 side by side");
  ll->add_option("--out", la.out, "Directory for lagline_<rule>.csv traces and lagline.png (default: none)");
  ll->add_flag("--no-plot", la.no_plot, "Write the CSV files only");
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
      runs.emplace_back(
          o.rule == gle_rule::bptt || o.rule == gle_rule::adjoint ? fmt::format("{}_tw{}", la.rule, o.window) : la.rule,
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
  auto* ln = gle->add_subcommand(
      "lagnet", "1-2-2-1 network (the GLE paper's LagNet): GLE errors against the adjoint method's lambda");
  add_checked(ln, "--window", na.t_window, "Comparison window (time units)", cc::greater_than(na.t_tail).at_most(1e5))
      ->capture_default_str();
  ln->add_option("--out", na_out, "Directory for lagnet_traces.csv, lagnet_compare.csv and lagnet.png");
  ln->add_flag("--no-train", na_no_train, "Only the error comparison");
  ln->add_flag("--no-plot", na_no_plot, "Write the CSV files only");
  ln->callback([] {
    na.train = !na_no_train;
    const auto r = run_lagnet(na);
    fmt::print(
        "GLE error e against adjoint lambda, per input frequency (e/lambda; theory for one neuron: phase 0, "
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
      fmt::print(
          "GLE training of hid_1 ({} time units): w[0][0] {:.4f} -> {:.4f} (teacher {}), loss {:.3e} -> {:.3e}\n",
          na.t_train, 0.5, r.final_w00, r.teacher_w00, r.train_loss.front(), r.train_loss.back());
    if (!na_out.empty()) {
      fs::create_directories(na_out);
      write_text(fs::path(na_out) / "lagnet_compare.csv", csv);
      std::string tr = "t";
      for (const auto& n : r.neurons) tr += fmt::format(",e_{0},lambda_{0}", n.name);
      tr += "\n";
      for (std::size_t j = 0; j < r.t.size(); ++j) {
        tr += fmt::format("{:.4f}", r.t[j]);
        for (std::size_t n = 0; n < r.neurons.size(); ++n)
          tr += fmt::format(",{:.6e},{:.6e}", r.e[n][j], r.lambda[n][j]);
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

  add_train_alias(gle,
                  "Train a GLE network on sequences (default: the 15k MNIST-1D network): `eqprop train --set "
                  "model.kind=gle`",
                  model_kind::gle);
}

}  // namespace eqprop::cli
