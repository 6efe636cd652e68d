#include "eqprop/train/experiment.hpp"

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/learn/reference.hpp"

namespace eqprop {

namespace {
using cc = config_constraint;
namespace lim = config_limits;
const cc positive_size = cc::closed(1, lim::layer_size);  // a layer's neurons or channels
const cc layer_sizes = positive_size.sizes(0, lim::layers);
const cc step_count = cc::closed(1, lim::steps);
const cc batch_size = cc::closed(1, lim::batch);
const cc seed = cc::at_least(0);
const cc fraction = cc::closed(0, 1);
const cc non_negative = cc::at_least(0);
const cc positive = cc::greater_than(0);
const cc per_layer = non_negative.sizes(0, lim::layers + 1);  // layers then the readout
}  // namespace

void add_optimizer_keys(config_schema& s, const optimizer_key_defaults& d) {
  s.add("optimizer.kind", std::string(d.kind), cc::one_of({"sgd", "adam", "adamw"}), "the update rule");
  s.add("optimizer.lr", d.lr, positive, "learning rate");
  s.add("optimizer.lr_per_layer", std::vector<double>{}, per_layer,
        "one learning rate per layer then the readout (overrides lr)");
  s.add("optimizer.momentum", d.momentum, cc::closed(0, 1).below(1), "SGD momentum");
  s.add("optimizer.weight_decay", 0.0, non_negative, "weight decay");
  s.add("optimizer.weight_decay_per_layer", std::vector<double>{}, per_layer,
        "one weight decay per layer then the readout");
  s.add("optimizer.decoupled_wd", false,
        "SGD: decoupled decay w <- (1 - lr wd) w (hEP ConvNets); adamw is always decoupled");
  s.add("optimizer.beta1", 0.9, cc::closed(0, 1).below(1), "Adam beta1");
  s.add("optimizer.beta2", 0.999, cc::closed(0, 1).below(1), "Adam beta2");
  s.add("optimizer.eps", 1e-8, positive, "Adam epsilon");

  s.add("schedule.kind", std::string(d.schedule), cc::one_of({"constant", "cosine"}), "learning-rate schedule");
  s.add("schedule.per_step", false, "cosine: anneal every step instead of every epoch");
  s.add("schedule.min_factor", 0.0, fraction, "cosine: final lr as a fraction of the initial lr");
  s.add("schedule.epochs", int64_t(0), cc::closed(0, lim::epochs), "cosine: epochs to anneal over (0: run.epochs)");
  s.add("schedule.plateau_patience", int64_t(d.plateau_patience), cc::closed(0, lim::epochs).or_value(-1),
        "ReduceLROnPlateau on top of schedule.kind: after more than this many epochs without a new best of the "
        "watched loss (relative threshold 1e-4), the lr is multiplied by plateau_factor (-1: off)");
  s.add("schedule.plateau_factor", 0.5, cc::greater_than(0).at_most(1), "lr factor on a plateau");
  s.add("schedule.plateau_on", d.plateau_on.front(), cc::one_of(d.plateau_on),
        d.plateau_on.size() > 2
            ? "loss watched by the plateau schedule: test or train (test_loss / train_loss: the per-step loss, as "
              "the GLE paper's code), or test_readout / train_readout (cross-entropy of the time-averaged output, a "
              "steadier signal)"
            : "loss watched by the plateau schedule: test (test_loss) or train (train_loss)");
}

void add_conv_keys(config_schema& s) {
  using iv = std::vector<int64_t>;
  using sv = std::vector<std::string>;
  s.add("network.conv", iv{}, layer_sizes,
        "ConvNets: output channels of each conv layer, before the dense network.hidden layers (empty: an MLP)");
  s.add("network.conv_kernel", iv{3}, cc::closed(1, 64).sizes(0, lim::layers),
        "kernel size per conv layer (one value: all layers)");
  s.add("network.conv_padding", sv{"same"}, cc::one_of({"same", "valid"}).sizes(0, lim::layers),
        "padding per conv layer (one value: all layers)");
  s.add("network.conv_pool", sv{"softmax"}, cc::one_of({"softmax", "max", "avg", "none"}).sizes(0, lim::layers),
        "the pooling after each conv layer (one value: all layers)");
  s.add("network.pool_temperature", 1.0, positive, "softmax pooling temperature T");
  s.add("network.pool_size", int64_t(2), cc::closed(1, 8), "pooling window and stride");
}

void add_image_data_keys(config_schema& s) {
  s.add("data.normalize_mean", std::vector<double>{}, cc::any().sizes(0, 64),
        "per-channel mean subtracted from the inputs (empty: none)");
  s.add("data.normalize_std", std::vector<double>{}, positive.sizes(0, 64),
        "per-channel std the inputs are divided by (empty: none)");
  s.add("data.augment_pad", int64_t(0), cc::closed(0, 64),
        "random crop after zero-padding by this many pixels (0: off)");
  s.add("data.augment_flip", false, "random horizontal flips");
}

void add_activation_renames(config_schema& s, const std::string& key, activation_family family) {
  const config_key* k = s.find(key);
  for (const char* old : {"sigmoid", "hard_sigmoid"}) {
    const std::string replacement(to_string(*renamed_activation(old, family)));
    // A key that never accepted the old name (no saved config holds it) keeps its plain error.
    if (k && !k->allowed.violation(replacement).empty()) continue;
    s.renamed_value(key, old, replacement, renamed_activation_message(old, family));
  }
}

void add_data_limit_keys(config_schema& s) {
  const cc limit = cc::closed(1, lim::samples).or_value(-1);
  s.add("data.limit_train", int64_t(-1), limit, "use only the first N training samples (-1: all)");
  s.add("data.limit_test", int64_t(-1), limit, "use only the first N test samples (-1: all)");
}

void add_data_keys(config_schema& s, const char* default_name) {
  // data.name is checked (with a suggestion, ignoring case and '-' vs '_') by load_dataset.
  s.add("data.name", std::string(default_name),
        "dataset: yin_yang | mnist | fashion_mnist | kmnist | mnist1d | mnist1d_gle | cifar10 | cifar100 | imagenet32");
  s.add("data.dir", std::string(""), "data directory (empty: --data-dir, then $EQPROP_DATA, then ./data)");
  add_data_limit_keys(s);
  s.add("data.yin_yang_train", int64_t(5000), cc::closed(1, lim::samples), "Yin-Yang training samples");
  s.add("data.yin_yang_test", int64_t(1000), cc::closed(1, lim::samples), "Yin-Yang test samples");
  add_image_data_keys(s);
}

void add_run_keys(config_schema& s, long epochs, long batch, long eval_batch, long default_seed) {
  s.add("run.epochs", int64_t(epochs), cc::closed(1, lim::epochs), "epochs");
  s.add("run.batch", int64_t(batch), batch_size, "mini-batch size");
  s.add("run.eval_batch", int64_t(eval_batch), batch_size, "batch size for evaluation");
  s.add("run.eval_every", int64_t(1), cc::closed(1, lim::epochs),
        "evaluate the test split every N epochs and after the last (rows of other epochs hold training metrics only)");
  s.add("run.seed", int64_t(default_seed), seed, "seed of weights, data order, augmentation, noise and probes");
  s.add("run.dir", std::string(""), "run directory (empty: runs/<config name or 'default'>-<time>)");
  s.add("run.checkpoint_every", int64_t(1), cc::closed(1, lim::epochs),
        "write a checkpoint every N epochs (and at the end)");
  s.add("run.checkpoint_every_batches", int64_t(0), cc::closed(0, 1e9),
        "also write a checkpoint every N batches within an epoch (0: only at epoch ends); resuming from one is exact");
  s.add("run.max_failed_fraction", 0.5, fraction,
        "stop as diverged when more than this fraction of a batch fails to converge");
  s.add("run.target_accuracy", 0.0, fraction,
        "stop after the first evaluated epoch whose test accuracy reaches this (0: off; time to accuracy)");
}

void add_model_kind_key(config_schema& s, model_kind k) {
  s.add("model.kind", std::string(to_string(k)), cc::one_of(model_kind_names()),
        "the kind of network: layered (EP / hEP on MLPs and ConvNets) | vector_field (generalized EP without weight "
        "symmetry) | graph (DEEP on directed graphs) | gle (GLE on sequences); it picks the keys below");
}

std::vector<std::string> common_fixed_on_resume() {
  // Resuming: the checkpoint holds this network, trained on this data, with this
  // optimizer's state and from this seed; everything else may change (docs/runs.md).
  return {"model.kind",
          "data.name",
          "data.limit_train",
          "data.limit_test",
          "data.yin_yang_train",
          "data.yin_yang_test",
          "data.normalize_mean",
          "data.normalize_std",
          "network.",
          "optimizer.kind",
          "run.seed",
          "run.dir"};
}

const config_schema& layered_schema() {
  static const config_schema schema = [] {
    config_schema s;
    using iv = std::vector<int64_t>;
    add_model_kind_key(s, model_kind::layered);
    add_data_keys(s, "yin_yang");

    s.add("network.hidden", iv{120}, layer_sizes,
          "hidden layer sizes (the input size and the classes come from the data)");
    s.add("network.output", std::string("readout"), cc::one_of({"readout", "layer"}),
          "readout (softmax readout, cross-entropy) | layer (dynamical output layer, squared error)");
    s.add("network.activation", std::string("hep_sigmoid"),
          cc::one_of({"hep_sigmoid", "holotanh", "tanh", "half_clamp01", "clamp01", "relu"}),
          "hep_sigmoid = logistic(4x-2) | holotanh | tanh | half_clamp01 = clamp(x/2, 0, 1) | clamp01 = clamp(x, 0, 1) "
          "(both real states only) | relu "
          "(feed-forward BP baselines)");
    add_activation_renames(s, "network.activation", activation_family::ep);
    s.add("network.init", std::string("truncated_normal"), cc::one_of({"truncated_normal", "kaiming_uniform"}),
          "weight init: truncated_normal (+-2 std, biases zero; the hEP papers') | kaiming_uniform (PyTorch's default: "
          "weights and biases U(-a, a), a = 1/sqrt(fan_in); the 2021 EP code's)");
    s.add("network.init_scale", 0.0, non_negative,
          "weight init std (0: the init's default, 1/sqrt(fan_in) for truncated_normal, 1/sqrt(3 fan_in) for "
          "kaiming_uniform)");
    s.add("network.dtype", std::string("float32"), cc::one_of({"float32", "float64"}),
          "scalar type of parameters and states");
    add_conv_keys(s);
    s.add("network.feedforward", false,
          "feed-forward network trained by backprop (estimator.kind = backprop): the BP baseline");

    s.add(
        "estimator.kind", std::string("holomorphic"),
        cc::one_of({"classic", "symmetric", "holomorphic", "continuous", "bptt", "implicit", "backprop", "ep", "hep"}),
        "classic (N=1; also ep) | symmetric (N=2) | holomorphic (N points; also hep) | continuous (rotating beta, no "
        "free phase) | bptt | implicit | backprop (feed-forward network)");
    s.add("estimator.n_points", int64_t(4), cc::closed(1, 1024), "N, the points on the circle (holomorphic only)");
    s.add("estimator.beta", 0.03, positive, "|beta|, the radius of the teaching signal");
    s.add("estimator.start", std::string("free"), cc::one_of({"free", "warm"}),
          "free (each point from the free state) | warm (around the circle)");
    s.add("estimator.on_failure", std::string("drop"), cc::one_of({"drop", "error", "keep"}),
          "samples that do not converge: drop | error | keep");
    s.add("estimator.fail_residual", 1.0, positive, "a sample fails when its residual exceeds this in any phase");
    s.add("estimator.threads", int64_t(1), cc::closed(1, lim::threads),
          "classic/symmetric/holomorphic: column slices of the batch relaxed in parallel, one thread each "
          "(deterministic for a given count; counts agree to rounding; 1 with neuron noise); also the threads of the "
          "Adam update of large layers");
    s.add("estimator.average_last", int64_t(0), cc::closed(0, lim::steps),
          "average dF/dtheta over the last K steps of every phase (0: read at the last step; the paper's noisy classic "
          "EP: 5)");
    s.add("estimator.stack_points", true,
          "classic/symmetric/holomorphic with start = free: relax the real points, and the complex points, side by "
          "side as one wider batch each (same estimate, wider products); off with noise or average_last");
    s.add("estimator.periods", int64_t(3), cc::closed(1, 1e4), "continuous: periods of the rotating teaching signal");
    s.add("estimator.smooth", false,
          "continuous: rotate beta every step and integrate every step (else hold it for nudged_steps per point)");
    s.add("estimator.alpha", 1.0, cc::greater_than(0).at_most(1),
          "continuous: Euler step dt/tau of tau dh/dt = -h + sigma(pre) (1: plain fixed-point step)");

    s.add("relax.free_steps", int64_t(60), step_count, "free-phase steps (T1)");
    s.add("relax.nudged_steps", int64_t(20), step_count, "steps per nudged point (T2)");
    s.add("relax.tol", 0.0, non_negative, "residual tolerance (0: 1e-5 float32, 1e-12 float64)");
    s.add("relax.nudged_tol", 0.0, non_negative,
          "residual tolerance of the nudged phases (0: relax.tol); with stop_early, the nudged states' error "
          "enters the estimate divided by |beta|");
    s.add("relax.stop_early", false, "stop a relaxation once every sample is below tol");
    s.add("relax.freeze_converged", true,
          "with stop_early: a sample below tol stops stepping and the running samples are compacted (fewer FLOPs)");
    s.add("relax.order", std::string("synchronous"), cc::one_of({"synchronous", "alternating"}),
          "update order of a step: synchronous (every layer from the old states, the papers') or alternating "
          "(even layers, then odd layers from the new even ones: same fixed point, faster convergence)");
    s.add("relax.omega", 1.0, cc::open(0, 2),
          "over-relaxation factor of a step, h <- h + omega (sigma(pre) - h): 1 is the papers' "
          "fixed-point step; about 1.4 with relax.order = alternating converges in fewer steps (same fixed point)");
    s.add("relax.precision", std::string("float32"), cc::one_of({"float32", "bfloat16"}),
          "operands of the relaxation's float32 matrix products: float32, or bfloat16 (rounded, float32 accumulation; "
          "needs oneDNN and AVX512-BF16; complex states stay float32)");
    s.add("relax.noise_std", 0.0, non_negative,
          "std of Gaussian neuron noise added to every pre-activation at every step of the nudged phases");
    s.add("relax.noise_free_phase", false,
          "also add the neuron noise in the free phase (the paper's training does not)");

    add_optimizer_keys(s, {.lr = 0.1, .schedule = "cosine"});

    add_run_keys(s, 30, 20, 500);
    s.fixed_on_resume(common_fixed_on_resume());
    return s;
  }();
  return schema;
}

network_spec conv_spec_from_config(const config& cfg, int n_input, std::array<int, 3> input_shape) {
  network_spec s;
  const auto channels = cfg.get<std::vector<int>>("network.conv");
  if (!channels.empty()) {
    if (input_shape[0] * input_shape[1] * input_shape[2] != n_input || input_shape[1] <= 1)
      throw config_error(
          fmt::format("network.conv needs image inputs, but the data has {} features of shape ({}, {}, {})", n_input,
                      input_shape[0], input_shape[1], input_shape[2]));
    s.input_shape = input_shape;
    s.conv = make_conv_layers(channels, cfg.get<std::vector<int>>("network.conv_kernel"),
                              cfg.get<std::vector<std::string>>("network.conv_padding"),
                              cfg.get<std::vector<std::string>>("network.conv_pool"));
    s.pool_temperature = cfg.get<double>("network.pool_temperature");
    s.pool_size = cfg.get<int>("network.pool_size");
    s.sizes = s.conv_sizes();
  } else {
    s.sizes.push_back(n_input);
  }
  return s;
}

void normalize_from_config(const config& cfg, dataset_split& split) {
  const auto mean = cfg.get<std::vector<float>>("data.normalize_mean");
  const auto std = cfg.get<std::vector<float>>("data.normalize_std");
  if (!mean.empty() || !std.empty()) {
    normalize_per_channel(split.train, mean, std);
    normalize_per_channel(split.test, mean, std);
  }
}

network_spec make_network_spec(const config& cfg, int n_input, int n_classes, std::array<int, 3> input_shape) {
  network_spec s = conv_spec_from_config(cfg, n_input, input_shape);
  s.feedforward = cfg.get<bool>("network.feedforward");
  for (int h : cfg.get<std::vector<int>>("network.hidden")) s.sizes.push_back(h);
  s.output = parse_output(cfg.get<std::string>("network.output"));
  if (s.output == output_kind::readout) {
    if (s.sizes.size() < 2)
      throw config_error("network.hidden (or network.conv) must list at least one layer with output = readout");
    s.n_readout = n_classes;
  } else {
    s.sizes.push_back(n_classes);  // the output layer
  }
  s.activation = parse_activation(cfg.get<std::string>("network.activation"));
  s.init = parse_weight_init(cfg.get<std::string>("network.init"));
  s.init_scale = cfg.get<double>("network.init_scale");
  s.seed = cfg.get<uint64_t>("run.seed");
  s.validate();
  return s;
}

namespace {
// s is one of the schema's choices for estimator.on_failure.
nonconvergence_policy parse_policy(const std::string& s) {
  if (s == "error") return nonconvergence_policy::error;
  if (s == "keep") return nonconvergence_policy::keep;
  return nonconvergence_policy::drop;
}
}  // namespace

relax_options relax_from_config(const config& cfg, bool nudged) {
  const double tol = cfg.get<double>("relax.tol"), nudged_tol = cfg.get<double>("relax.nudged_tol");
  relax_options r{cfg.get<long>(nudged ? "relax.nudged_steps" : "relax.free_steps"),
                  nudged && nudged_tol > 0 ? nudged_tol : tol, cfg.get<bool>("relax.stop_early")};
  r.freeze_converged = cfg.get<bool>("relax.freeze_converged");
  r.order = parse_relax_order(cfg.get<std::string>("relax.order"));
  r.omega = cfg.get<double>("relax.omega");
  r.validate();  // before the run directory exists
  r.precision = parse_matmul_precision(cfg.get<std::string>("relax.precision"), cfg.get<std::string>("network.dtype"));
  return r;
}

template <class R>
std::unique_ptr<grad_estimator<R>> make_estimator(const config& cfg) {
  const auto kind = cfg.get<std::string>("estimator.kind");
  const relax_options free = relax_from_config(cfg, false), nudged = relax_from_config(cfg, true);
  if (kind == "bptt") return std::make_unique<bptt_gradient<R>>(free.max_steps);
  if (kind == "backprop") {
    if (!cfg.get<bool>("network.feedforward"))
      throw config_error("estimator.kind = backprop trains feed-forward networks: set network.feedforward = true");
    return std::make_unique<feedforward_backprop<R>>();
  }
  if (cfg.get<bool>("network.feedforward"))
    throw config_error(fmt::format("network.feedforward = true needs estimator.kind = backprop, got '{}'", kind));
  if (kind == "implicit") {
    implicit_options io;
    io.free = free;
    io.policy = parse_policy(cfg.get<std::string>("estimator.on_failure"));
    return std::make_unique<implicit_gradient<R>>(io);
  }
  const double noise = cfg.get<double>("relax.noise_std");
  const uint64_t noise_seed = cfg.get<uint64_t>("run.seed") * 0x9e3779b97f4a7c15ull + 0x6e6f697365ull;
  if (kind == "continuous") {
    continuous_options c;
    c.n_points = cfg.get<int>("estimator.n_points");
    c.beta = cfg.get<double>("estimator.beta");
    c.steps_per_point = nudged.max_steps;
    c.periods = cfg.get<int>("estimator.periods");
    c.smooth = cfg.get<bool>("estimator.smooth");
    c.alpha = cfg.get<double>("estimator.alpha");
    c.noise_std = noise;
    c.noise_seed = noise_seed;
    c.on_failure = parse_policy(cfg.get<std::string>("estimator.on_failure"));
    c.fail_residual = cfg.get<double>("estimator.fail_residual");
    return std::make_unique<continuous_hep<R>>(c);
  }
  ep_options o;
  if (kind == "classic" || kind == "ep") o.n_points = 1;
  else if (kind == "symmetric") o.n_points = 2;
  else if (kind == "holomorphic" || kind == "hep") o.n_points = cfg.get<int>("estimator.n_points");
  else throw internal_error(fmt::format("estimator.kind '{}' is in the schema but not built here", kind));
  o.beta = cfg.get<double>("estimator.beta");
  o.free = free;
  o.nudged = nudged;
  o.start = cfg.get<std::string>("estimator.start") == "warm" ? ep_start::warm : ep_start::free_state;
  o.on_failure = parse_policy(cfg.get<std::string>("estimator.on_failure"));
  o.fail_residual = cfg.get<double>("estimator.fail_residual");
  o.noise_std = noise;
  o.noise_in_free_phase = cfg.get<bool>("relax.noise_free_phase");
  o.noise_seed = noise_seed;
  o.average_last = cfg.get<int>("estimator.average_last");
  o.threads = cfg.get<int>("estimator.threads");
  o.stack_points = cfg.get<bool>("estimator.stack_points");
  return std::make_unique<cauchy_ep<R>>(o);
}
template std::unique_ptr<grad_estimator<float>> make_estimator<float>(const config&);
template std::unique_ptr<grad_estimator<double>> make_estimator<double>(const config&);

optimizer_options make_optimizer_options(const config& cfg) {
  optimizer_options o;
  o.kind = parse_optimizer(cfg.get<std::string>("optimizer.kind"));
  o.lr = cfg.get<double>("optimizer.lr");
  o.lr_per_group = cfg.get<std::vector<double>>("optimizer.lr_per_layer");
  o.momentum = cfg.get<double>("optimizer.momentum");
  o.weight_decay = cfg.get<double>("optimizer.weight_decay");
  o.wd_per_group = cfg.get<std::vector<double>>("optimizer.weight_decay_per_layer");
  o.decoupled_wd = cfg.get<bool>("optimizer.decoupled_wd");
  o.beta1 = cfg.get<double>("optimizer.beta1");
  o.beta2 = cfg.get<double>("optimizer.beta2");
  o.eps = cfg.get<double>("optimizer.eps");
  return o;
}

schedule_options make_schedule_options(const config& cfg) {
  schedule_options s;
  const auto kind = cfg.get<std::string>("schedule.kind");
  s.kind = kind == "cosine" ? schedule_kind::cosine : schedule_kind::constant;  // the schema's two choices
  s.per_step = cfg.get<bool>("schedule.per_step");
  s.min_factor = cfg.get<double>("schedule.min_factor");
  s.epochs = cfg.get<long>("schedule.epochs");
  return s;
}

plateau_options make_plateau_options(const config& cfg) {
  plateau_options p;
  p.patience = cfg.get<long>("schedule.plateau_patience");
  p.factor = cfg.get<double>("schedule.plateau_factor");
  p.metric = cfg.get<std::string>("schedule.plateau_on") + "_loss";
  return p;
}

}  // namespace eqprop
