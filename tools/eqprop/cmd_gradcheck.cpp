// eqprop gradcheck: compares gradient estimators with an exact reference on one batch.
#include <cmath>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "eqprop/core/build_info.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/cauchy_ep.hpp"
#include "eqprop/learn/reference.hpp"

namespace eqprop::cli {
namespace {

struct gradcheck_args {
  std::vector<int> layers{4, 5};
  int readout = 3;
  std::string output = "readout";
  std::string activation = "sigmoid";
  double init_scale = 0.5;
  uint64_t seed = 0;
  long batch = 2;
  std::string dtype = "float64";
  long free_steps = 100, nudged_steps = 100;
  double tol = 0;
  bool stop_early = false;
  std::vector<int> n_points{1, 2, 4};
  std::vector<double> betas{0.1};
  std::string start = "free";
  std::string reference = "bptt";
  long reference_steps = 0;
  std::string dataset;
  std::string data_dir;
  std::string json_path;
  double min_cosine = -2;
};

// The batch: random inputs in [0, 1) and random labels from the seed, or the first
// samples of a dataset (test split) when --dataset is given.
void make_batch(const gradcheck_args& a, const network_spec& spec, matrix<double>& x, matrix<double>& y) {
  const int n_out = spec.n_output();
  if (!a.dataset.empty()) {
    dataset_options dopt;
    dopt.seed = a.seed;
    auto split = load_dataset(a.dataset, resolve_data_dir(a.data_dir), dopt);
    const auto& d = split.test;
    if (d.dim() != spec.sizes[0])
      throw shape_error(fmt::format("dataset '{}' has {} inputs but --layers starts with {}", a.dataset, d.dim(), spec.sizes[0]));
    if (d.size() < a.batch) throw shape_error("dataset test split is smaller than the batch");
    x = d.x.leftCols(a.batch).cast<double>();
    std::vector<int32_t> labels(d.y.begin(), d.y.begin() + a.batch);
    if (spec.output == output_kind::layer && n_out != d.n_classes)
      throw shape_error(fmt::format("output layer has {} units but the dataset has {} classes", n_out, d.n_classes));
    y = one_hot<double>(labels, n_out);
    return;
  }
  rng_t rng(a.seed ^ 0x9e3779b97f4a7c15ull);
  x.resize(spec.sizes[0], a.batch);
  for (long i = 0; i < x.size(); ++i) x.data()[i] = uniform01(rng);
  std::vector<int32_t> labels(a.batch);
  for (auto& l : labels) l = static_cast<int32_t>(random_index(rng, n_out));
  y = one_hot<double>(labels, n_out);
}

std::string fmt_report(const relax_report& r) {
  return fmt::format("{:.2e}{}", r.max_residual, r.n_not_converged ? fmt::format(" ({} nc)", r.n_not_converged) : "");
}

template <class R>
void run(const gradcheck_args& a) {
  network_spec spec;
  spec.sizes = a.layers;
  spec.output = parse_output(a.output);
  spec.n_readout = spec.output == output_kind::readout ? a.readout : 0;
  spec.activation = parse_activation(a.activation);
  spec.init_scale = a.init_scale;
  spec.seed = a.seed;
  if (a.batch < 1) throw config_error("--batch must be >= 1");
  layered_network<R> net(spec);
  layered_network<double> net64 = net.template cast<double>();

  matrix<double> x64, y64;
  make_batch(a, spec, x64, y64);
  const matrix<R> x = x64.cast<R>(), y = y64.cast<R>();

  relax_options free{a.free_steps, a.tol, a.stop_early};
  relax_options nudged{a.nudged_steps, a.tol, a.stop_early};

  // Exact reference, always in float64 on the same (cast) parameters.
  std::vector<double> ref(net64.n_params());
  std::string ref_name;
  double ref_residual = NAN;
  {
    const long T = a.reference_steps > 0 ? a.reference_steps : a.free_steps;
    relax_options ro{std::max<long>(T, 1), a.tol > 0 ? a.tol : 1e-12, true};
    if (a.reference == "bptt") {
      bptt_gradient<double> g(T);
      auto r = g.estimate(net64, x64, y64, ref);
      ref_name = g.name();
      ref_residual = r.free.max_residual;
    } else if (a.reference == "implicit") {
      implicit_gradient<double> g(ro);
      auto r = g.estimate(net64, x64, y64, ref);
      ref_name = g.name();
      ref_residual = r.free.max_residual;
    } else if (a.reference == "fd") {
      ref = finite_difference_gradient(net64, x64, y64, ro);
      ref_name = "central finite differences";
    } else if (a.reference == "complex-step") {
      ref = complex_step_gradient(net64, x64, y64, ro);
      ref_name = "complex-step differences";
    } else {
      throw config_error(fmt::format("unknown --reference '{}': expected bptt, implicit, fd or complex-step", a.reference));
    }
  }

  const auto groups = param_group_names(spec);
  nlohmann::ordered_json doc;
  doc["build"] = build_info_json();
  doc["network"] = {{"layers", a.layers}, {"readout", spec.n_readout}, {"output", a.output},
                    {"activation", a.activation}, {"init_scale", a.init_scale}, {"seed", a.seed},
                    {"batch", a.batch}, {"dtype", a.dtype}, {"n_params", net.n_params()}};
  doc["relax"] = {{"free_steps", a.free_steps}, {"nudged_steps", a.nudged_steps}, {"tol", a.tol}, {"stop_early", a.stop_early}};
  doc["reference"] = {{"name", ref_name}, {"dtype", "float64"}};

  fmt::print("{}\n", build_info_line());
  fmt::print("network {} -> {}, activation {}, {} parameters, batch {}, {}\n", fmt::join(a.layers, "-"),
             spec.output == output_kind::readout ? fmt::format("readout {}", spec.n_readout) : std::string("output layer"),
             a.activation, net.n_params(), a.batch, a.dtype);
  fmt::print("reference: {} (float64)\n\n", ref_name);
  std::string head = fmt::format("{:<36} {:>3} {:>8} {:>10} {:>12}", "estimator", "N", "|beta|", "rel_error", "cosine");
  for (const auto& g : groups) head += fmt::format(" {:>11}", "cos " + g);
  head += fmt::format(" {:>14} {:>16}", "free residual", "max nudged res.");
  fmt::print("{}\n{}\n", head, std::string(head.size(), '-'));

  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  double worst_cos = 2;
  bool any_nc = false;
  for (int N : a.n_points) {
    for (double beta : a.betas) {
      ep_options o;
      o.n_points = N;
      o.beta = beta;
      o.free = free;
      o.nudged = nudged;
      o.start = a.start == "warm" ? ep_start::warm : ep_start::free_state;
      o.on_failure = nonconvergence_policy::keep;
      cauchy_ep<R> est(o);
      std::vector<R> g(net.n_params());
      auto res = est.estimate(net, x, y, g);
      std::vector<double> gd(g.begin(), g.end());
      const double rel = relative_error(gd, ref), cos = cosine(gd, ref);
      const auto rel_l = per_group_rel_error(net.layout(), gd, ref);
      const auto cos_l = per_group_cosine(net.layout(), gd, ref);
      relax_report worst_pt;
      for (const auto& p : res.points) {
        if (!(p.max_residual <= worst_pt.max_residual)) worst_pt.max_residual = p.max_residual;
        worst_pt.n_not_converged += p.n_not_converged;
      }
      any_nc = any_nc || res.free.n_not_converged || worst_pt.n_not_converged;
      worst_cos = std::min(worst_cos, cos);
      std::string line = fmt::format("{:<36} {:>3} {:>8.4g} {:>10.3e} {:>12.8f}", est.name(), N, beta, rel, cos);
      for (double c : cos_l) line += fmt::format(" {:>11.6f}", c);
      line += fmt::format(" {:>14} {:>16}", fmt_report(res.free), fmt_report(worst_pt));
      fmt::print("{}\n", line);

      nlohmann::ordered_json row;
      row["estimator"] = est.name();
      row["n_points"] = N;
      row["beta"] = beta;
      row["start"] = a.start;
      row["rel_error"] = rel;
      row["cosine"] = cos;
      nlohmann::ordered_json per;
      for (size_t i = 0; i < groups.size(); ++i) per[groups[i]] = {{"rel_error", rel_l[i]}, {"cosine", cos_l[i]}};
      row["per_layer"] = per;
      row["free_residual"] = res.free.max_residual;
      row["free_not_converged"] = res.free.n_not_converged;
      nlohmann::ordered_json pts = nlohmann::ordered_json::array();
      for (const auto& p : res.points)
        pts.push_back({{"max_residual", p.max_residual}, {"not_converged", p.n_not_converged}, {"steps", p.steps}});
      row["points"] = pts;
      rows.push_back(row);
    }
  }
  doc["free_residual"] = ref_residual;
  doc["estimators"] = rows;
  if (any_nc)
    fmt::print("\nwarning: some relaxations did not converge to tol (marked 'nc'); their estimates are not exact.\n");
  if (!a.json_path.empty()) {
    if (a.json_path == "-") {
      std::cout << doc.dump(2) << "\n";
    } else {
      std::ofstream f(a.json_path);
      if (!f) throw error(fmt::format("cannot write '{}'", a.json_path));
      f << doc.dump(2) << "\n";
      if (!f) throw error(fmt::format("failed writing '{}'", a.json_path));
    }
  }
  if (worst_cos < a.min_cosine) {
    fmt::print(stderr, "eqprop: gradcheck failed: cosine {:.6f} below --min-cosine {}\n", worst_cos, a.min_cosine);
    set_exit_code(1);
  }
}

}  // namespace

void register_gradcheck(CLI::App& app) {
  static gradcheck_args a;
  auto* cmd = app.add_subcommand("gradcheck", "Compare EP / holomorphic EP estimators with an exact reference gradient");
  cmd->add_option("--layers", a.layers, "Input size then hidden layer sizes, e.g. 784,256,256")->delimiter(',')->capture_default_str();
  cmd->add_option("--readout", a.readout, "Classes of the softmax readout (output = readout)")->capture_default_str();
  cmd->add_option("--output", a.output, "readout (softmax + cross-entropy) or layer (last layer is the output, squared error)")
      ->check(CLI::IsMember({"readout", "layer"}))->capture_default_str();
  cmd->add_option("--activation", a.activation, "sigmoid | holotanh | tanh | hard_sigmoid")
      ->check(CLI::IsMember({"sigmoid", "holotanh", "dsilu", "tanh", "hard_sigmoid"}))->capture_default_str();
  cmd->add_option("--init-scale", a.init_scale, "Weight init std (0: 1/sqrt(fan_in))")->capture_default_str();
  cmd->add_option("--seed", a.seed, "Seed for weights and the random batch")->capture_default_str();
  cmd->add_option("--batch", a.batch, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", a.dtype, "float32 or float64 (the reference is always float64)")
      ->check(CLI::IsMember({"float32", "float64"}))->capture_default_str();
  cmd->add_option("--free-steps,--T1", a.free_steps, "Free-phase steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--nudged-steps,--T2", a.nudged_steps, "Steps per nudged point")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--tol", a.tol, "Residual tolerance (0: 1e-5 float32, 1e-12 float64)")->capture_default_str();
  cmd->add_flag("--stop-early", a.stop_early, "Stop each relaxation once every sample is below tol");
  cmd->add_option("--n-points,-N", a.n_points, "List of N (1 = classic EP, 2 = symmetric, >2 holomorphic)")->delimiter(',')->capture_default_str();
  cmd->add_option("--beta", a.betas, "List of |beta|")->delimiter(',')->capture_default_str();
  cmd->add_option("--start", a.start, "free (each point from the free state) or warm (around the circle)")
      ->check(CLI::IsMember({"free", "warm"}))->capture_default_str();
  cmd->add_option("--reference", a.reference, "bptt | implicit | fd | complex-step")
      ->check(CLI::IsMember({"bptt", "implicit", "fd", "complex-step"}))->capture_default_str();
  cmd->add_option("--reference-steps", a.reference_steps, "Steps of the reference (0: the free-phase steps)")->capture_default_str();
  cmd->add_option("--dataset", a.dataset, "Take the batch from this dataset's test split instead of random inputs");
  cmd->add_option("--data-dir", a.data_dir, "Data directory (default: $EQPROP_DATA, then ./data)");
  cmd->add_option("--json", a.json_path, "Also write the results as one JSON document to this file ('-' for stdout)");
  cmd->add_option("--min-cosine", a.min_cosine, "Exit with status 1 if any estimator's cosine is below this");
  cmd->callback([] {
    if (a.dtype == "float32") run<float>(a);
    else run<double>(a);
  });
}

}  // namespace eqprop::cli
