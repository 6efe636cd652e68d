// eqprop gep gradcheck / diagnose / train: generalized EP on vector-field networks with
// untied feedback weights, and Jacobian homeostasis (docs/generalized-ep.md).
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/relax.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/generalized_ep.hpp"
#include "eqprop/train/trainer.hpp"
#include "eqprop/train/vf_experiment.hpp"
#include "flag_checks.hpp"
#include "trainer_flags.hpp"

namespace eqprop::cli {
namespace fs = std::filesystem;

namespace {

std::vector<int> parse_sizes(const std::string& s) {
  std::vector<int> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    const auto c = s.find(',', pos);
    try {
      v.push_back(std::stoi(s.substr(pos, c == std::string::npos ? std::string::npos : c - pos)));
    } catch (...) {
      throw config_error("--sizes expects comma-separated integers like 4,5,3, got `" + s + "`");
    }
    if (const std::string why =
            config_constraint::closed(1, config_limits::layer_size).number_violation(v.back(), true);
        !why.empty())
      throw config_error(fmt::format("--sizes: {} is out of range: every size {}", v.back(), why));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  return v;
}

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (a[i] - b[i]) * (a[i] - b[i]);
    n += b[i] * b[i];
  }
  return std::sqrt(d / n);
}

void print_diag(const gep_diagnostics& d) {
  fmt::print("Jacobian symmetry index |S|/(|S|+|A|): {:.4f}\n", d.symmetry_index);
  fmt::print("angle(W, B^T): {}\n", std::isfinite(d.angle_deg) ? fmt::format("{:.2f} deg", d.angle_deg)
                                                               : std::string("n/a (no reciprocal pair)"));
  fmt::print("homeostatic loss 2|A|^2/n: {:.6g}\n", d.homeo_exact);
  for (size_t i = 0; i < d.layer_cosine.size(); ++i)
    fmt::print("layer {}: cos(EP error, RBP error) = {:.4f}\n", i + 1, d.layer_cosine[i]);
  fmt::print("gradient: cos(EP, RBP) = {:.4f}, relative error {:.4f}\n", d.grad_cosine, d.grad_rel_error);
  fmt::print("free phases not converged: {}; samples dropped: EP {}, RBP {}\n", d.n_free_not_converged, d.n_dropped_ep,
             d.n_dropped_rbp);
}

}  // namespace

void register_gep(CLI::App& app) {
  auto* gep = app.add_subcommand(
      "gep", "Generalized EP without weight symmetry, and Jacobian homeostasis (docs/generalized-ep.md)");
  gep->require_subcommand(1);

  // --- gradcheck
  struct gc_args {
    std::string sizes = "4,5,3";
    double angle = 90, beta = 0.2, init_scale = 0;
    int max_n = 6, batch = 8, probes = 20000;
    long T1 = 400, T2 = 400;
    uint64_t seed = 1;
  };
  static gc_args g;
  auto* gc = gep->add_subcommand("gradcheck",
                                 "Float64 toy network: EP gradient vs recurrent backprop for N = 0 (exact), 1..max-n; "
                                 "homeostatic loss Monte-Carlo vs exact");
  gc->add_option("--sizes", g.sizes, "Layer sizes input,hidden...,out (a readout with out classes follows)")
      ->capture_default_str();
  using cc = config_constraint;
  namespace lim = config_limits;
  add_checked(gc, "--angle", g.angle, "Initial feedback rotation in degrees (0: B = W^T exactly, 90: random)",
              cc::closed(-360, 360))
      ->capture_default_str();
  add_checked(gc, "--beta", g.beta, "|beta|", cc::greater_than(0))->capture_default_str();
  add_checked(gc, "--max-n", g.max_n, "Largest N", cc::closed(1, 64))->capture_default_str();
  add_checked(gc, "--batch", g.batch, "Random samples", cc::closed(1, lim::batch))->capture_default_str();
  add_checked(gc, "--T1", g.T1, "Free steps", cc::closed(1, lim::steps))->capture_default_str();
  add_checked(gc, "--T2", g.T2, "Nudged steps", cc::closed(1, lim::steps))->capture_default_str();
  add_checked(gc, "--probes", g.probes, "Homeostasis probes", cc::closed(1, 1e7))->capture_default_str();
  add_checked(gc, "--init-scale", g.init_scale, "Weight std (0: 1/sqrt(fan_in))", cc::at_least(0))
      ->capture_default_str();
  add_checked(gc, "--seed", g.seed, "Seed", cc::at_least(0))->capture_default_str();
  gc->callback([] {
    vf_spec s;
    s.sizes = parse_sizes(g.sizes);
    s.n_classes = s.sizes.back();
    s.angle_deg = g.angle;
    s.init_scale = g.init_scale;
    s.seed = g.seed;
    vector_field_network<double> net(s);
    if (g.angle == 0) net.tie_feedback();
    rng_t rng(g.seed + 1000);
    matrix<double> x(s.sizes[0], g.batch);
    for (long i = 0; i < x.size(); ++i) x.data()[i] = uniform01(rng);
    std::vector<int32_t> lab(g.batch);
    for (auto& l : lab) l = int32_t(random_index(rng, uint64_t(s.n_classes)));
    const matrix<double> y = one_hot<double>(lab, s.n_classes);
    gep_options o;
    o.free_steps = g.T1;
    o.nudged_steps = g.T2;
    o.beta = g.beta;
    o.tol = 1e-12;
    o.method = gep_method::rbp;
    o.rbp_dense = true;
    std::vector<double> ref(net.n_params()), est(net.n_params());
    generalized_ep<double> rbp(o);
    const auto rr = rbp.estimate(net, x, y, ref);
    fmt::print("{} network [{}], angle {} deg, |beta| = {}, {} samples; reference: {}\n", "float64", g.sizes, g.angle,
               g.beta, g.batch, rbp.name());
    fmt::print("free phase: max residual {:.2e}, {} of {} not converged to 1e-12\n", rr.free.max_residual,
               rr.free.n_not_converged, g.batch);
    fmt::print("symmetry index {:.4f}, angle(W, B^T) {:.2f} deg\n", jacobian_symmetry_index(net),
               feedback_angle_deg(net));
    fmt::print("{:>4}  {:>12}  {:>10}\n", "N", "rel. error", "cosine");
    for (int N = 0; N <= g.max_n; ++N) {
      gep_options e = o;
      e.method = N == 0 ? gep_method::exact : gep_method::cauchy;
      e.n_points = std::max(N, 1);
      generalized_ep<double> ep(e);
      ep.estimate(net, x, y, est);
      double dot = 0, na = 0, nb = 0;
      for (size_t i = 0; i < est.size(); ++i) dot += est[i] * ref[i], na += est[i] * est[i], nb += ref[i] * ref[i];
      fmt::print("{:>4}  {:>12.4e}  {:>10.6f}\n", N, rel_err(est, ref), dot / std::sqrt(na * nb));
    }
    rng_t prng(g.seed + 2000);
    std::vector<double> gm(net.n_params(), 0.0), ge(net.n_params(), 0.0);
    const double mc = homeostatic_loss_mc(net, g.probes, prng, std::span<double>(gm));
    const double ex = homeostatic_loss_exact(net, std::span<double>(ge));
    if (ex > 0)
      fmt::print(
          "homeostatic loss per neuron: Monte-Carlo ({} probes) {:.6g}, exact 2|A|^2/n {:.6g} (ratio {:.4f}); "
          "gradient relative difference {:.3e}\n",
          g.probes, mc, ex, mc / ex, rel_err(gm, ge));
    else
      fmt::print("homeostatic loss per neuron: Monte-Carlo ({} probes) {:.3g}, exact 2|A|^2/n 0 (symmetric Jacobian)\n",
                 g.probes, mc);
  });

  // --- diagnose
  static std::string dg_target, dg_data_dir;
  static long dg_samples = 50;
  static std::vector<std::string> dg_sets;
  auto* dg = gep->add_subcommand("diagnose",
                                 "Symmetry index, angle, per-layer cos(EP, RBP) of a trained run directory "
                                 "or of a config's network at initialisation");
  dg->add_option("target", dg_target, "Run directory of a vector_field run (`eqprop train`), or config file")
      ->required()
      ->check(CLI::ExistingPath);
  add_checked(dg, "--samples", dg_samples, "Training samples used", cc::closed(1, lim::samples))->capture_default_str();
  dg->add_option("--set,-s", dg_sets, "Override a config key (estimator settings of the comparison)");
  dg->add_option("--data-dir", dg_data_dir, "Data directory (default: $EQPROP_DATA, then ./data)");
  dg->callback([] {
    config cfg(vector_field_schema());
    vector_field_network<double> net;
    if (fs::is_directory(dg_target)) {
      const saved_run run = load_saved_run(dg_target, dg_data_dir);
      net = saved_network<vector_field_network<double>>(run);
      cfg = run.cfg;
      for (const auto& s : dg_sets) cfg.set_override(s);
    } else {
      std::vector<std::string> sets{"model.kind=vector_field"};
      sets.insert(sets.end(), dg_sets.begin(), dg_sets.end());
      cfg = load_training_config({dg_target}, sets);
      if (cfg.get<std::string>("model.kind") != "vector_field")
        throw config_error(fmt::format("{}: gep diagnose needs a vector_field config", dg_target));
    }
    const auto split = gep_load_data(cfg, dg_data_dir, dg_samples, 1);
    if (!fs::is_directory(dg_target))
      net =
          vector_field_network<double>(make_vf_spec(cfg, split.train.dim(), split.train.n_classes, split.train.shape));
    const matrix<double> x = split.train.x.cast<double>();
    const matrix<double> y = one_hot<double>(split.train.y, split.train.n_classes);
    const auto o = make_gep_options(cfg);
    fmt::print("{} samples; EP estimator: {}\n", x.cols(), generalized_ep<double>(o).name());
    print_diag(gep_diagnose(net, x, y, o, cfg.get<bool>("diagnostics.rbp_dense")));
    // Free-phase non-convergence: how many samples end in a period-2 cycle of the
    // synchronous update (|u_T - u_{T-2}| small while |u_T - u_{T-1}| is not).
    vf_state<double> st;
    st.set_input(net, x, y);
    st.relax(0.0, relax_options{std::max<long>(o.free_steps - 2, 0), o.tol});
    const auto u2 = st.u();
    st.relax(0.0, relax_options{2, o.tol});
    long nc = 0, cyc = 0;
    for (long b = 0; b < x.cols(); ++b) {
      if (!(st.residual()(b) > o.tol)) continue;
      ++nc;
      double d2 = 0;
      for (size_t i = 1; i < u2.size(); ++i) d2 += (st.u()[i].col(b) - u2[i].col(b)).squaredNorm();
      if (std::sqrt(d2) <= o.tol) ++cyc;
    }
    fmt::print("free phase after T1 = {} steps: {} of {} samples above tol {:.0e}, {} of them in a period-2 cycle\n",
               o.free_steps, nc, x.cols(), o.tol, cyc);
  });

  add_train_alias(gep, "Train a vector-field network with generalized EP: `eqprop train --set model.kind=vector_field`",
                  model_kind::vector_field);
}

}  // namespace eqprop::cli
