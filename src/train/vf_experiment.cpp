#include "eqprop/train/vf_experiment.hpp"

#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/dynamics/relax.hpp"  // one_hot
#include "eqprop/io/dataset.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/data_checks.hpp"
#include "eqprop/train/experiment.hpp"  // optimizer and schedule options
#include "eqprop/train/model_kind.hpp"
#include "eqprop/train/trainer.hpp"

namespace eqprop {

const config_schema& vector_field_schema() {
  static const config_schema schema = [] {
    using iv = std::vector<int64_t>;
    using sv = std::vector<std::string>;
    using cc = config_constraint;
    namespace lim = config_limits;
    const cc steps = cc::closed(1, lim::steps);
    config_schema s;
    add_model_kind_key(s, model_kind::vector_field);
    add_data_keys(s, "fashion_mnist");
    add_conv_keys(s);
    s.add("network.hidden", iv{256, 256}, cc::closed(1, lim::layer_size).sizes(0, lim::layers),
          "hidden layer sizes (the dynamical output layer follows)");
    s.add("network.output_size", int64_t(10), cc::closed(0, lim::layer_size),
          "size of the dynamical output layer 'out' (a softmax readout follows; 0 with conv: the last conv layer is "
          "'out')");
    s.add("network.topology", std::string("chain"), cc::one_of({"chain", "loop", "edges"}),
          "how the dynamical layers are connected");
    s.add("network.edges", sv{}, cc::any().sizes(0, 4096),
          "topology = edges: \"src>dst\" (forward, with bias) or \"fb:src>dst\" (feedback, no bias); layer 0 = input");
    s.add("network.activation", std::string("hep_sigmoid"), cc::one_of({"hep_sigmoid", "holotanh", "tanh"}),
          "hep_sigmoid (= logistic(4x-2)) | holotanh | tanh");
    add_activation_renames(s, "network.activation", activation_family::ep);
    s.renamed_key("network.output", "network.output_size");
    s.add("network.angle", 90.0, cc::closed(-360, 360),
          "initial rotation of the feedback weights in degrees (0: B = W^T, 90: independent)");
    s.add("network.init_scale", 0.0, cc::at_least(0), "weight init std (0: 1/sqrt(fan_in), truncated normal)");
    s.add("network.dtype", std::string("float32"), cc::one_of({"float32", "float64"}),
          "scalar type of parameters and states");
    s.add("estimator.kind", std::string("holomorphic"), cc::one_of({"holomorphic", "exact", "continuous", "implicit"}),
          "holomorphic (N points on the circle of radius |beta|) | exact (the N = 0 limit, forward-mode d r/d beta) | "
          "continuous (rotating beta, estimator.online_steps) | implicit (recurrent backprop, the reference)");
    s.renamed_key("estimator.method", "estimator.kind");
    s.renamed_value("estimator.kind", "cauchy", "holomorphic",
                    "estimator.kind 'cauchy' is now 'holomorphic' (the same N-point estimator)");
    s.renamed_value("estimator.kind", "online", "continuous", "estimator.kind 'online' is now 'continuous'");
    s.renamed_value("estimator.kind", "rbp", "implicit", "estimator.kind 'rbp' (recurrent backprop) is now 'implicit'");
    s.add("estimator.n_points", int64_t(2), cc::closed(1, 1024), "N (holomorphic, continuous)");
    s.add("estimator.beta", 0.5, cc::greater_than(0), "|beta|");
    s.add("estimator.online_steps", int64_t(1200), cc::closed(1, 100 * lim::steps),
          "continuous: total steps (segments of relax.nudged_steps)");
    s.add("estimator.rbp_steps", int64_t(0), cc::closed(0, lim::steps),
          "implicit: adjoint iterations (0: relax.free_steps)");
    s.add("estimator.fail_residual", 1.0, cc::greater_than(0),
          "samples above this residual (or non-finite) are dropped from the gradient");
    s.add("estimator.threads", int64_t(1), cc::closed(1, lim::threads),
          "column slices of the batch relaxed in parallel, one thread each (deterministic for a given count); also the "
          "threads of the update");
    s.add("relax.free_steps", int64_t(150), steps, "T1");
    s.add("relax.nudged_steps", int64_t(20), steps, "T2");
    s.add("relax.tol", 1e-4, cc::greater_than(0), "free phases with residual above this are counted as not converged");
    s.renamed_key("estimator.tol", "relax.tol");
    s.add("relax.stop_early", false,
          "end the free phase once every sample's residual is below relax.tol (nudged phases always run T2 steps)");
    s.add("relax.freeze_converged", true,
          "with stop_early: samples below relax.tol stop and the others are compacted into fewer columns");
    s.add("relax.omega", 1.0, cc::open(0, 2),
          "free phase: over-relaxation u <- u + omega (F(u) - u) (1: the papers' step; the fixed point does not depend "
          "on it)");
    s.add("relax.order", std::string("synchronous"), cc::one_of({"synchronous", "alternating"}),
          "free phase: synchronous (every layer from the old activities, the papers' step) | alternating (odd layers, "
          "then even ones from their new activities; the same fixed points)");
    s.add("relax.precision", std::string("float32"), cc::one_of({"float32", "bfloat16"}),
          "operands of the float32 products (bfloat16: oneDNN on a CPU with AVX512-BF16)");
    s.add("homeostasis.lambda", 0.0, cc::at_least(0), "coefficient of the homeostatic gradient (0: off)");
    s.add("homeostasis.probes", int64_t(5), cc::closed(1, 1024), "Gaussian probes per sample");
    add_optimizer_keys(s,
                       {.lr = 0.01});  // lr_per_layer: the forward edge into layer i is entry i-1, feedback shares it
    add_run_keys(s, 50, 50, 1000);
    s.add("diagnostics.samples", int64_t(50), cc::closed(0, lim::samples),
          "training samples used for the per-epoch diagnostics (0: none)");
    s.add("diagnostics.rbp_dense", false, "diagnostics: dense adjoint solve instead of iterations");
    s.fixed_on_resume(common_fixed_on_resume());
    return s;
  }();
  return schema;
}

namespace {
std::vector<vf_edge> parse_edges(const std::vector<std::string>& items) {
  std::vector<vf_edge> out;
  for (const auto& raw : items) {
    std::string s = raw;
    bool fwd = true;
    if (s.rfind("fb:", 0) == 0) {
      fwd = false;
      s = s.substr(3);
    }
    const auto gt = s.find('>');
    try {
      if (gt == std::string::npos) throw std::invalid_argument("no >");
      size_t p1 = 0, p2 = 0;
      const int a = std::stoi(s.substr(0, gt), &p1), b = std::stoi(s.substr(gt + 1), &p2);
      if (p1 != gt || p2 != s.size() - gt - 1) throw std::invalid_argument("junk");
      out.push_back({a, b, fwd});
    } catch (const std::exception&) {
      throw config_error(
          fmt::format("network.edges: cannot read '{}': write \"src>dst\" for a forward edge and "
                      "\"fb:src>dst\" for a feedback edge (layer 0 = input)",
                      raw));
    }
  }
  return out;
}
}  // namespace

namespace {
// estimator.kind's vocabulary (shared with the layered kind) to the generalized-EP method.
gep_method gep_method_of_kind(const std::string& kind) {
  if (kind == "holomorphic") return gep_method::cauchy;
  if (kind == "continuous") return gep_method::online;
  if (kind == "implicit") return gep_method::rbp;
  return parse_gep_method(kind);
}
}  // namespace

vf_spec make_vf_spec(const config& cfg, int n_input, int n_classes, std::array<int, 3> input_shape) {
  vf_spec s;
  s.n_classes = n_classes;
  const network_spec c = conv_spec_from_config(cfg, n_input, input_shape);
  s.input_shape = c.input_shape;
  s.conv = c.conv;
  s.pool_temperature = c.pool_temperature;
  s.pool_size = c.pool_size;
  s.sizes = c.sizes;
  for (int h : cfg.get<std::vector<int>>("network.hidden")) s.sizes.push_back(h);
  const int out = cfg.get<int>("network.output_size");
  if (out > 0 || !s.is_convnet()) s.sizes.push_back(out);
  s.topology = parse_vf_topology(cfg.get<std::string>("network.topology"));
  const auto edges = cfg.get<std::vector<std::string>>("network.edges");
  if (s.topology == vf_topology::edges) s.edges = parse_edges(edges);
  else if (!edges.empty()) throw config_error("network.edges is only used with network.topology = \"edges\"");
  s.activation = parse_activation(cfg.get<std::string>("network.activation"));
  s.angle_deg = cfg.get<double>("network.angle");
  s.init_scale = cfg.get<double>("network.init_scale");
  s.seed = cfg.get<uint64_t>("run.seed");
  return s;
}

gep_options make_gep_options(const config& cfg) {
  gep_options o;
  o.method = gep_method_of_kind(cfg.get<std::string>("estimator.kind"));
  o.n_points = cfg.get<int>("estimator.n_points");
  o.beta = cfg.get<double>("estimator.beta");
  o.online_steps = cfg.get<long>("estimator.online_steps");
  o.rbp_steps = cfg.get<long>("estimator.rbp_steps");
  o.tol = cfg.get<double>("relax.tol");
  o.fail_residual = cfg.get<double>("estimator.fail_residual");
  o.free_steps = cfg.get<long>("relax.free_steps");
  o.nudged_steps = cfg.get<long>("relax.nudged_steps");
  o.stop_early = cfg.get<bool>("relax.stop_early");
  o.freeze_converged = cfg.get<bool>("relax.freeze_converged");
  o.omega = cfg.get<double>("relax.omega");
  o.order = parse_relax_order(cfg.get<std::string>("relax.order"));
  o.precision = parse_matmul_precision(cfg.get<std::string>("relax.precision"), cfg.get<std::string>("network.dtype"));
  o.threads = cfg.get<int>("estimator.threads");
  o.homeo_lambda = cfg.get<double>("homeostasis.lambda");
  o.homeo_probes = cfg.get<int>("homeostasis.probes");
  o.seed = cfg.get<uint64_t>("run.seed") * 0x9e3779b97f4a7c15ull + 0x686f6d656full;
  o.validate();
  return o;
}

dataset_split gep_load_data(const config& cfg, const std::string& flag_dir, long limit_train, long limit_test) {
  dataset_options d;
  d.limit_train = limit_train >= 0 ? limit_train : cfg.get<long>("data.limit_train");
  d.limit_test = limit_test >= 0 ? limit_test : cfg.get<long>("data.limit_test");
  const auto dir = cfg.get<std::string>("data.dir");
  auto split = load_dataset(cfg.get<std::string>("data.name"), resolve_data_dir(dir.empty() ? flag_dir : dir), d);
  check_splits(split, "data.limit_train", "data.limit_test");
  normalize_from_config(cfg, split);
  return split;
}

}  // namespace eqprop
