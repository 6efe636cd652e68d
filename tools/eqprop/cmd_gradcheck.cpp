// eqprop gradcheck and eqprop sweep (beta | periods | stability): gradient studies on one
// batch against an exact float64 reference.
#include <cmath>
#include <cstdio>
#include <filesystem>
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
#include "eqprop/core/matmul.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/cauchy_ep.hpp"
#include "eqprop/learn/continuous_hep.hpp"
#include "eqprop/learn/reference.hpp"
#include "flag_checks.hpp"
#include "study_util.hpp"

namespace eqprop::cli {
namespace {

struct gradcheck_args {
  std::vector<int> layers{4, 5};
  int readout = 3;
  std::string output = "readout";
  std::string activation = "hep_sigmoid";
  double init_scale = 0.5;
  uint64_t seed = 0;
  long batch = 2;
  std::string dtype = "float64";
  long free_steps = 100, nudged_steps = 100;
  double tol = 0;
  bool stop_early = false;
  std::string order = "synchronous";
  double omega = 1;
  std::vector<int> n_points{1, 2, 4};
  std::vector<std::string> betas{"0.1"};
  std::string start = "free";
  std::string reference = "bptt";
  long reference_steps = 0;
  std::string dataset;
  std::string data_dir;
  std::string json_path;
  double min_cosine = -2;
  double noise_std = 0;  // neuron noise in the nudged phases (and the reference is noiseless)
  uint64_t noise_seed = 0;
  std::string out_dir;  // sweep beta: writes sweep_beta.{json,csv,png} here
  // ConvNets: --conv channels (then --dense hidden sizes), on --input-shape images.
  std::vector<int> conv, conv_kernel{3}, input_shape, dense;
  std::vector<std::string> conv_padding{"same"}, conv_pool{"softmax"};
  double pool_temperature = 1;
};

// |beta| list: explicit values, or "lin:A:B:COUNT" / "log:A:B:COUNT" ranges.
std::vector<double> parse_betas(const std::vector<std::string>& specs) {
  std::vector<double> out;
  for (const auto& s : specs) {
    if (s.rfind("lin:", 0) == 0 || s.rfind("log:", 0) == 0) {
      double a = 0, b = 0;
      int n = 0;
      if (std::sscanf(s.c_str() + 4, "%lf:%lf:%d", &a, &b, &n) != 3 || n < 1 || n > 10000 || !(a > 0) || !(b >= a) ||
          !std::isfinite(b))
        throw config_error(fmt::format(
            "--beta '{}': expected lin:A:B:COUNT or log:A:B:COUNT with finite 0 < A <= B and COUNT in [1, 10000]", s));
      for (int i = 0; i < n; ++i) {
        const double f = n == 1 ? 0.0 : double(i) / (n - 1);
        out.push_back(s[1] == 'i' ? a + f * (b - a) : a * std::pow(b / a, f));
      }
    } else {
      std::size_t used = 0;
      double v = 0;
      try {
        v = std::stod(s, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != s.size() || !(v > 0) || !std::isfinite(v))
        throw config_error(fmt::format("--beta '{}': not a finite positive number or range", s));
      out.push_back(v);
    }
  }
  return out;
}

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
      throw shape_error(
          fmt::format("dataset '{}' has {} inputs but --layers starts with {}", a.dataset, d.dim(), spec.sizes[0]));
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

// The network, batch and float64 exact reference every study command starts from.
template <class R>
struct study {
  network_spec spec;
  layered_network<R> net;
  layered_network<double> net64;
  matrix<double> x64, y64;
  matrix<R> x, y;
  std::vector<double> ref;
  std::string ref_name;
  double ref_residual = NAN;
};

/// "4-5" for an MLP; "2x8x8 | conv3 same softmax-pool | conv4 valid softmax-pool | 16" for a ConvNet.
std::string describe_layers(const network_spec& spec) {
  if (spec.conv.empty()) return fmt::format("{}", fmt::join(spec.sizes, "-"));
  std::string s = fmt::format("{}x{}x{}", spec.input_shape[0], spec.input_shape[1], spec.input_shape[2]);
  for (const auto& c : spec.conv) {
    s += fmt::format(" | conv{} {}x{} {}", c.channels, c.kernel, c.kernel, c.same ? "same" : "valid");
    if (c.pool != pool_kind::none) s += fmt::format(" {}-pool", to_string(c.pool));
  }
  for (std::size_t j = spec.conv.size() + 1; j < spec.sizes.size(); ++j) s += fmt::format(" | {}", spec.sizes[j]);
  return s;
}

template <class R>
study<R> make_study(const gradcheck_args& a) {
  study<R> s;
  auto& spec = s.spec;
  spec.sizes = a.layers;
  if (!a.conv.empty()) {
    if (a.input_shape.size() != 3) throw config_error("--conv needs --input-shape C,H,W (the planar input image)");
    spec.input_shape = {a.input_shape[0], a.input_shape[1], a.input_shape[2]};
    spec.conv = make_conv_layers(a.conv, a.conv_kernel, a.conv_padding, a.conv_pool);
    spec.pool_temperature = a.pool_temperature;
    spec.sizes = spec.conv_sizes();
    spec.sizes.insert(spec.sizes.end(), a.dense.begin(), a.dense.end());
  }
  spec.output = parse_output(a.output);
  spec.n_readout = spec.output == output_kind::readout ? a.readout : 0;
  spec.activation = parse_activation(a.activation);
  spec.init_scale = a.init_scale;
  spec.seed = a.seed;
  if (a.batch < 1) throw config_error("--batch must be >= 1");
  s.net = layered_network<R>(spec);
  s.net64 = s.net.template cast<double>();
  make_batch(a, spec, s.x64, s.y64);
  s.x = s.x64.template cast<R>();
  s.y = s.y64.template cast<R>();

  // Exact reference, always in float64 on the same (cast) parameters.
  s.ref.resize(s.net64.n_params());
  const long T = a.reference_steps > 0 ? a.reference_steps : a.free_steps;
  relax_options ro{std::max<long>(T, 1), a.tol > 0 ? a.tol : 1e-12, true};
  if (a.reference == "bptt") {
    bptt_gradient<double> g(T);
    s.ref_residual = g.estimate(s.net64, s.x64, s.y64, s.ref).free.max_residual;
    s.ref_name = g.name();
  } else if (a.reference == "implicit") {
    implicit_gradient<double> g(ro);
    s.ref_residual = g.estimate(s.net64, s.x64, s.y64, s.ref).free.max_residual;
    s.ref_name = g.name();
  } else if (a.reference == "fd") {
    s.ref = finite_difference_gradient(s.net64, s.x64, s.y64, ro);
    s.ref_name = "central finite differences";
  } else if (a.reference == "complex-step") {
    s.ref = complex_step_gradient(s.net64, s.x64, s.y64, ro);
    s.ref_name = "complex-step differences";
  } else {
    throw config_error(
        fmt::format("unknown --reference '{}': expected bptt, implicit, fd or complex-step", a.reference));
  }
  return s;
}

template <class R>
void run(const gradcheck_args& a) {
  auto st = make_study<R>(a);
  const auto& spec = st.spec;
  const auto& net = st.net;
  const auto& x = st.x;
  const auto& y = st.y;
  const auto& ref = st.ref;
  const auto& ref_name = st.ref_name;
  const double ref_residual = st.ref_residual;
  relax_options free{a.free_steps, a.tol, a.stop_early};
  relax_options nudged{a.nudged_steps, a.tol, a.stop_early};
  free.order = nudged.order = parse_relax_order(a.order);
  free.omega = nudged.omega = a.omega;
  if (a.dtype == "bfloat16") {
    if (!bfloat16_available())
      throw config_error(
          fmt::format("--dtype bfloat16 needs oneDNN and AVX512-BF16 (products here: {})", matmul_backend()));
    free.precision = nudged.precision = matmul_precision::bfloat16;
  }

  const auto groups = param_group_names(spec);
  nlohmann::ordered_json doc;
  doc["build"] = build_info_json();
  doc["network"] = {{"layers", spec.sizes},       {"readout", spec.n_readout},  {"output", a.output},
                    {"activation", a.activation}, {"init_scale", a.init_scale}, {"seed", a.seed},
                    {"batch", a.batch},           {"dtype", a.dtype},           {"n_params", net.n_params()}};
  doc["relax"] = {{"free_steps", a.free_steps},
                  {"nudged_steps", a.nudged_steps},
                  {"tol", a.tol},
                  {"stop_early", a.stop_early},
                  {"order", a.order},
                  {"omega", a.omega},
                  {"noise_std", a.noise_std},
                  {"noise_seed", a.noise_seed}};
  doc["reference"] = {{"name", ref_name}, {"dtype", "float64"}};

  fmt::print("{}\n", build_info_line());
  fmt::print(
      "network {} -> {}, activation {}, {} parameters, batch {}, {}\n", describe_layers(spec),
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
    for (double beta : parse_betas(a.betas)) {
      ep_options o;
      o.n_points = N;
      o.beta = beta;
      o.free = free;
      o.nudged = nudged;
      o.start = a.start == "warm" ? ep_start::warm : ep_start::free_state;
      o.on_failure = nonconvergence_policy::keep;
      o.noise_std = a.noise_std;
      o.noise_seed = a.noise_seed;
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
  if (a.json_path == "-") std::cout << doc.dump(2) << "\n";
  else if (!a.json_path.empty()) write_text(a.json_path, doc.dump(2) + "\n");
  if (!a.out_dir.empty()) {
    const std::filesystem::path dir(a.out_dir);
    std::filesystem::create_directories(dir);
    write_text(dir / "sweep_beta.json", doc.dump(2) + "\n");
    std::string csv = "n_points,beta,rel_error,cosine,max_nudged_residual,not_converged\n";
    for (const auto& r : rows) {
      double worst = 0;
      long nc = r["free_not_converged"].get<long>();
      for (const auto& p : r["points"]) {
        worst = std::max(worst, p["max_residual"].is_number() ? p["max_residual"].get<double>() : INFINITY);
        nc += p["not_converged"].get<long>();
      }
      csv += fmt::format("{},{},{},{},{},{}\n", r["n_points"].get<int>(), r["beta"].get<double>(),
                         r["rel_error"].get<double>(), r["cosine"].get<double>(), worst, nc);
    }
    write_text(dir / "sweep_beta.csv", csv);
    plot_with_python({"sweep-beta", (dir / "sweep_beta.csv").string(), "-o", (dir / "sweep_beta.png").string()});
    fmt::print("wrote {}/sweep_beta.{{csv,json,png}}\n", dir.string());
  }
  if (worst_cos < a.min_cosine) {
    fmt::print(stderr, "eqprop: gradcheck failed: cosine {:.6f} below --min-cosine {}\n", worst_cos, a.min_cosine);
    set_exit_code(1);
  }
}

void add_gradcheck_options(CLI::App* cmd, gradcheck_args& a) {
  using cc = config_constraint;
  namespace lim = config_limits;
  // Layer sizes: the upper bound here; the network spec reports sizes that are not positive.
  const cc size = cc::any().at_most(lim::layer_size), steps = cc::closed(1, lim::steps);
  add_checked(cmd, "--layers", a.layers, "Input size then hidden layer sizes, e.g. 784,256,256", size)
      ->delimiter(',')
      ->capture_default_str();
  add_checked(cmd, "--conv", a.conv, "ConvNet: channels of each conv layer (then --dense; --layers is ignored)", size)
      ->delimiter(',');
  add_checked(cmd, "--input-shape", a.input_shape, "ConvNet input image C,H,W (planar)", cc::closed(1, 4096))
      ->delimiter(',');
  add_checked(cmd, "--conv-kernel", a.conv_kernel, "Kernel size per conv layer (one value: all)", cc::closed(1, 64))
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--conv-padding", a.conv_padding, "same | valid per conv layer (one value: all)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--conv-pool", a.conv_pool, "softmax | max | avg | none per conv layer (one value: all)")
      ->delimiter(',')
      ->capture_default_str();
  add_checked(cmd, "--pool-temperature", a.pool_temperature, "Softmax pooling temperature", cc::greater_than(0))
      ->capture_default_str();
  add_checked(cmd, "--dense", a.dense, "ConvNet: dense hidden layers after the convs", size)->delimiter(',');
  add_checked(cmd, "--readout", a.readout, "Classes of the softmax readout (output = readout)",
              cc::closed(0, lim::layer_size))
      ->capture_default_str();
  cmd->add_option("--output", a.output,
                  "readout (softmax + cross-entropy) or layer (last layer is the output, squared error)")
      ->check(CLI::IsMember({"readout", "layer"}))
      ->capture_default_str();
  cmd->add_option("--activation", a.activation, "hep_sigmoid | holotanh | tanh | half_clamp01")
      ->check([](const std::string& name) -> std::string {
        try {
          const activation_kind k = parse_activation(name);
          if (k == activation_kind::relu || !is_ep_activation(k))
            return fmt::format("activation '{}' is not available here; use hep_sigmoid, holotanh, tanh or half_clamp01",
                               name);
          return {};
        } catch (const config_error& e) {
          return e.what();
        }
      })
      ->capture_default_str();
  add_checked(cmd, "--init-scale", a.init_scale, "Weight init std (0: 1/sqrt(fan_in))", cc::at_least(0))
      ->capture_default_str();
  add_checked(cmd, "--seed", a.seed, "Seed for weights and the random batch", cc::at_least(0))->capture_default_str();
  add_checked(cmd, "--batch", a.batch, "Batch size", cc::closed(1, lim::batch))->capture_default_str();
  cmd->add_option(
         "--dtype", a.dtype,
         "float32, float64, or bfloat16 (float32 with bfloat16 relaxation products); the reference is always float64")
      ->check(CLI::IsMember({"float32", "float64", "bfloat16"}))
      ->capture_default_str();
  add_checked(cmd, "--free-steps,--T1", a.free_steps, "Free-phase steps", steps)->capture_default_str();
  add_checked(cmd, "--nudged-steps,--T2", a.nudged_steps, "Steps per nudged point", steps)->capture_default_str();
  add_checked(cmd, "--tol", a.tol, "Residual tolerance (0: 1e-5 float32, 1e-12 float64)", cc::at_least(0))
      ->capture_default_str();
  cmd->add_flag("--stop-early", a.stop_early, "Stop each relaxation once every sample is below tol");
  cmd->add_option("--order", a.order, "Update order of the estimator's steps (the reference's are synchronous)")
      ->check(CLI::IsMember({"synchronous", "alternating"}))
      ->capture_default_str();
  add_checked(cmd, "--omega", a.omega, "Over-relaxation factor of the estimator's steps", cc::open(0, 2))
      ->capture_default_str();
  add_checked(cmd, "--n-points,-N", a.n_points, "List of N (1 = classic EP, 2 = symmetric, >2 holomorphic)",
              cc::closed(1, 1024))
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--beta", a.betas, "List of |beta|, or ranges lin:A:B:COUNT / log:A:B:COUNT")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--start", a.start, "free (each point from the free state) or warm (around the circle)")
      ->check(CLI::IsMember({"free", "warm"}))
      ->capture_default_str();
  add_checked(cmd, "--noise", a.noise_std, "Neuron noise std in the nudged phases (the reference stays noiseless)",
              cc::at_least(0))
      ->capture_default_str();
  add_checked(cmd, "--noise-seed", a.noise_seed, "Seed of the noise stream", cc::at_least(0))->capture_default_str();
  cmd->add_option("--reference", a.reference, "bptt | implicit | fd | complex-step")
      ->check(CLI::IsMember({"bptt", "implicit", "fd", "complex-step"}))
      ->capture_default_str();
  add_checked(cmd, "--reference-steps", a.reference_steps, "Steps of the reference (0: the free-phase steps)",
              cc::closed(0, lim::steps))
      ->capture_default_str();
  cmd->add_option("--dataset", a.dataset, "Take the batch from this dataset's test split instead of random inputs");
  cmd->add_option("--data-dir", a.data_dir, "Data directory (default: $EQPROP_DATA, then ./data)");
  cmd->add_option("--json", a.json_path, "Also write the results as one JSON document to this file ('-' for stdout)");
  add_checked(cmd, "--min-cosine", a.min_cosine, "Exit with status 1 if any estimator's cosine is below this",
              cc::closed(-2, 1))
      ->capture_default_str();
  cmd->callback([&a] {
    if (a.dtype == "float32" || a.dtype == "bfloat16") run<float>(a);
    else run<double>(a);
  });
}

// sweep periods: continuous hEP, cosine with the exact gradient after every period, per T2.
struct periods_args {
  gradcheck_args g;
  std::vector<long> steps_per_point{5, 10, 20, 30, 40};
  int periods = 40;
  bool smooth = false;
  double alpha = 1;
};

template <class R>
void run_periods(const periods_args& p) {
  const auto& a = p.g;
  auto st = make_study<R>(a);
  const std::filesystem::path dir(a.out_dir);
  std::filesystem::create_directories(dir);
  const double beta = parse_betas(a.betas).front();
  const int N = a.n_points.front();
  fmt::print("{}\nnetwork {}, batch {}, {}; reference {}\n", build_info_line(), describe_layers(st.spec), a.batch,
             a.dtype, st.ref_name);
  fmt::print("{:>6} {:>7} {:>12} {:>11}\n", "T2", "period", "cosine", "rel_error");
  std::string csv = "steps_per_point,period,cosine,rel_error,n_dropped\n";
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (long T2 : p.steps_per_point) {
    continuous_options c;
    c.n_points = N;
    c.beta = beta;
    c.steps_per_point = T2;
    c.periods = p.periods;
    c.smooth = p.smooth;
    c.alpha = p.alpha;
    c.noise_std = a.noise_std;
    c.noise_seed = a.noise_seed;
    c.on_failure = nonconvergence_policy::keep;
    continuous_hep<R> est(c);
    std::vector<std::pair<double, double>> curve;
    est.on_period([&](int, std::span<const R> g) {
      std::vector<double> gd(g.begin(), g.end());
      curve.emplace_back(cosine(gd, st.ref), relative_error(gd, st.ref));
    });
    std::vector<R> g(st.net.n_params());
    const auto res = est.estimate(st.net, st.x, st.y, g);
    for (size_t i = 0; i < curve.size(); ++i) {
      csv += fmt::format("{},{},{},{},{}\n", T2, i + 1, curve[i].first, curve[i].second, res.n_dropped);
      if (i == 0 || i + 1 == curve.size() || (i + 1) % 10 == 0)
        fmt::print("{:>6} {:>7} {:>12.8f} {:>11.3e}\n", T2, i + 1, curve[i].first, curve[i].second);
      rows.push_back(
          {{"steps_per_point", T2}, {"period", i + 1}, {"cosine", curve[i].first}, {"rel_error", curve[i].second}});
    }
  }
  nlohmann::ordered_json doc;
  doc["build"] = build_info_json();
  doc["network"] = {{"layers", st.spec.sizes},    {"readout", st.spec.n_readout},
                    {"init_scale", a.init_scale}, {"seed", a.seed},
                    {"batch", a.batch},           {"dtype", a.dtype},
                    {"dataset", a.dataset}};
  doc["estimator"] = {{"n_points", N},      {"beta", beta},     {"periods", p.periods},
                      {"smooth", p.smooth}, {"alpha", p.alpha}, {"noise_std", a.noise_std}};
  doc["reference"] = st.ref_name;
  doc["rows"] = rows;
  write_text(dir / "sweep_periods.json", doc.dump(2) + "\n");
  write_text(dir / "sweep_periods.csv", csv);
  plot_with_python({"sweep-periods", (dir / "sweep_periods.csv").string(), "-o", (dir / "sweep_periods.png").string()});
  fmt::print("wrote {}/sweep_periods.{{csv,json,png}}\n", dir.string());
}

// sweep stability: the residual of the nudged relaxation (from the free state) over a grid
// of complex beta; the convergent region around the origin and its fractal boundary.
struct stability_args {
  gradcheck_args g;
  double extent = 1.5;  // Re, Im in [-extent, extent]
  int grid = 201;
};

template <class R>
void run_stability(const stability_args& p) {
  using C = std::complex<R>;
  const auto& a = p.g;
  auto st = make_study<R>(a);
  const std::filesystem::path dir(a.out_dir);
  std::filesystem::create_directories(dir);
  relax_state<R> free;
  free.set_input(st.net, st.x, st.y);
  free.reset();
  free.relax(st.net, R(0), relax_options{a.free_steps, a.tol, false});
  relax_state<C> nudged;
  nudged.set_input(st.net, st.x, st.y);
  const relax_options ro{a.nudged_steps, a.tol, false};
  std::string csv = "re,im,residual\n";
  long converged = 0;
  for (int i = 0; i < p.grid; ++i) {
    const double im = -p.extent + 2 * p.extent * i / (p.grid - 1);
    for (int j = 0; j < p.grid; ++j) {
      const double re = -p.extent + 2 * p.extent * j / (p.grid - 1);
      nudged.set_states_from_real(free.h());
      const auto rep = nudged.relax(st.net, C(R(re), R(im)), ro);
      converged += rep.converged();
      csv += fmt::format("{},{},{}\n", re, im, rep.max_residual);
    }
  }
  write_text(dir / "stability.csv", csv);
  fmt::print("{}\nnetwork {}, batch {}, {}: {} of {} grid points converged (residual <= tol after {} steps)\n",
             build_info_line(), describe_layers(st.spec), a.batch, a.dtype, converged, long(p.grid) * p.grid,
             a.nudged_steps);
  plot_with_python({"stability", (dir / "stability.csv").string(), "-o", (dir / "stability.png").string()});
  fmt::print("wrote {}/stability.{{csv,png}}\n", dir.string());
}

}  // namespace

void register_gradcheck(CLI::App& app) {
  static gradcheck_args a;
  add_gradcheck_options(
      app.add_subcommand("gradcheck", "Compare EP / holomorphic EP estimators with an exact reference gradient"), a);
}

void register_sweep(CLI::App& app) {
  auto* sweep = app.add_subcommand("sweep", "Gradient studies that write CSV/JSON data and a PNG figure");
  sweep->require_subcommand(1);
  static gradcheck_args a;
  // The paper's toy network (hep.md section 6.4, Fig. 2): 6 -> 4 -> 4, readout 4, float32.
  a.layers = {6, 4, 4};
  a.readout = 4;
  a.batch = 1;
  a.dtype = "float32";
  a.n_points = {1, 30};
  a.betas = {"lin:0.01:2:50"};
  a.out_dir = "sweep-beta";
  auto* cmd = sweep->add_subcommand("beta",
                                    "Cosine and relative error with the exact gradient versus |beta| for several N "
                                    "(writes sweep_beta.csv, .json and .png)");
  add_gradcheck_options(cmd, a);
  cmd->add_option("--out", a.out_dir, "Output directory")->capture_default_str();

  // The paper's continuous-learning figure (hep.md section 4.4, Fig. 3ab): MNIST network,
  // N = 10, |beta| = 0.5, BPTT reference with T1 = 400. Here a random batch by default
  // (--dataset mnist for the paper's).
  static periods_args pa;
  pa.g.layers = {784, 256, 256};
  pa.g.readout = 10;
  pa.g.init_scale = 0.05;
  pa.g.batch = 10;
  pa.g.dtype = "float32";
  pa.g.free_steps = 400;
  pa.g.n_points = {10};
  pa.g.betas = {"0.5"};
  pa.g.out_dir = "sweep-periods";
  auto* per = sweep->add_subcommand("periods",
                                    "Continuous holomorphic EP: cosine with the exact gradient versus the number "
                                    "of periods, for several steps per point T2");
  add_gradcheck_options(per, pa.g);
  using cc = config_constraint;
  add_checked(per, "--steps-per-point", pa.steps_per_point, "List of T2 (steps per phase point)",
              cc::closed(1, config_limits::steps))
      ->delimiter(',')
      ->capture_default_str();
  add_checked(per, "--periods", pa.periods, "Periods of the rotating teaching signal", cc::closed(1, 1e4))
      ->capture_default_str();
  per->add_flag("--smooth", pa.smooth, "Rotate beta every step (ODE form) instead of holding it for T2 steps");
  add_checked(per, "--alpha", pa.alpha, "dt/tau of the Euler step (1: plain fixed-point step)",
              cc::greater_than(0).at_most(1))
      ->capture_default_str();
  per->add_option("--out", pa.g.out_dir, "Output directory")->capture_default_str();
  per->callback([] {
    if (pa.g.dtype == "float32") run_periods<float>(pa);
    else run_periods<double>(pa);
  });

  // The paper's Fig. 2b: where the nudged relaxation converges in the complex beta plane.
  static stability_args sa;
  sa.g.layers = {6, 4, 4};
  sa.g.readout = 4;
  sa.g.batch = 1;
  sa.g.nudged_steps = 200;
  sa.g.reference = "bptt";
  sa.g.out_dir = "sweep-stability";
  auto* stab = sweep->add_subcommand("stability",
                                     "Relaxation residual over a grid of complex beta (a PNG of the complex plane)");
  add_gradcheck_options(stab, sa.g);
  add_checked(stab, "--extent", sa.extent, "The grid covers Re, Im in [-extent, extent]", cc::greater_than(0))
      ->capture_default_str();
  add_checked(stab, "--grid", sa.grid, "Grid points per axis", cc::closed(2, 4096))->capture_default_str();
  stab->add_option("--out", sa.g.out_dir, "Output directory")->capture_default_str();
  stab->callback([] {
    if (sa.g.dtype == "float32") run_stability<float>(sa);
    else run_stability<double>(sa);
  });
}

}  // namespace eqprop::cli
