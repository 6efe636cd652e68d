#include "eqprop/train/gep_trainer.hpp"

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
#include "eqprop/train/metrics_log.hpp"

namespace eqprop {

const config_schema& gep_schema() {
  static const config_schema schema = [] {
    using iv = std::vector<int64_t>;
    using sv = std::vector<std::string>;
    using cc = config_constraint;
    namespace lim = config_limits;
    const cc steps = cc::closed(1, lim::steps), batch = cc::closed(1, lim::batch);
    config_schema s;
    // data.name is checked (with a suggestion, ignoring case and '-' vs '_') by load_dataset.
    s.add("data.name", std::string("fashion_mnist"), "dataset (any `eqprop data list` name; image data sets with network.conv)");
    s.add("data.dir", std::string(""), "data directory (empty: --data-dir, then $EQPROP_DATA, then ./data)");
    add_data_limit_keys(s);
    add_image_data_keys(s);
    add_conv_keys(s);
    s.add("network.hidden", iv{256, 256}, cc::closed(1, lim::layer_size).sizes(0, lim::layers), "hidden layer sizes (the dynamical output layer follows)");
    s.add("network.output_size", int64_t(10), cc::closed(0, lim::layer_size), "size of the dynamical output layer 'out' (a softmax readout follows; 0 with conv: the last conv layer is 'out')");
    s.add("network.topology", std::string("chain"), cc::one_of({"chain", "loop", "edges"}), "how the dynamical layers are connected");
    s.add("network.edges", sv{}, cc::any().sizes(0, 4096), "topology = edges: \"src>dst\" (forward, with bias) or \"fb:src>dst\" (feedback, no bias); layer 0 = input");
    s.add("network.activation", std::string("hep_sigmoid"), cc::one_of({"hep_sigmoid", "holotanh", "tanh"}), "hep_sigmoid (= logistic(4x-2)) | holotanh | tanh");
    add_activation_renames(s, "network.activation", activation_family::ep);
    s.renamed_key("network.output", "network.output_size");
    s.add("network.angle", 90.0, cc::closed(-360, 360), "initial rotation of the feedback weights in degrees (0: B = W^T, 90: independent)");
    s.add("network.init_scale", 0.0, cc::at_least(0), "weight init std (0: 1/sqrt(fan_in), truncated normal)");
    s.add("network.dtype", std::string("float32"), cc::one_of({"float32", "float64"}), "scalar type of parameters and states");
    s.add("estimator.method", std::string("cauchy"), cc::one_of({"cauchy", "exact", "online", "rbp"}), "the gradient estimator");
    s.add("estimator.n_points", int64_t(2), cc::closed(1, 1024), "N (cauchy, online)");
    s.add("estimator.beta", 0.5, cc::greater_than(0), "|beta|");
    s.add("estimator.online_steps", int64_t(1200), cc::closed(1, 100 * lim::steps), "online: total steps (segments of relax.nudged_steps)");
    s.add("estimator.rbp_steps", int64_t(0), cc::closed(0, lim::steps), "rbp: adjoint iterations (0: relax.free_steps)");
    s.add("estimator.tol", 1e-4, cc::greater_than(0), "free phases with residual above this are counted as not converged");
    s.add("estimator.fail_residual", 1.0, cc::greater_than(0), "samples above this residual (or non-finite) are dropped from the gradient");
    s.add("relax.free_steps", int64_t(150), steps, "T1");
    s.add("relax.nudged_steps", int64_t(20), steps, "T2");
    s.add("relax.stop_early", false, "end the free phase once every sample's residual is below estimator.tol (nudged phases always run T2 steps)");
    s.add("relax.freeze_converged", true, "with stop_early: samples below estimator.tol stop and the others are compacted into fewer columns");
    s.add("relax.omega", 1.0, cc::open(0, 2), "free phase: over-relaxation u <- u + omega (F(u) - u) (1: the papers' step; the fixed point does not depend on it)");
    s.add("relax.order", std::string("synchronous"), cc::one_of({"synchronous", "alternating"}), "free phase: synchronous (every layer from the old activities, the papers' step) | alternating (odd layers, then even ones from their new activities; the same fixed points)");
    s.add("relax.precision", std::string("float32"), cc::one_of({"float32", "bfloat16"}), "operands of the float32 products (bfloat16: oneDNN on a CPU with AVX512-BF16)");
    s.add("estimator.threads", int64_t(1), cc::closed(1, lim::threads), "column slices of the batch relaxed in parallel, one thread each (deterministic for a given count)");
    s.add("homeostasis.lambda", 0.0, cc::at_least(0), "coefficient of the homeostatic gradient (0: off)");
    s.add("homeostasis.probes", int64_t(5), cc::closed(1, 1024), "Gaussian probes per sample");
    add_optimizer_keys(s, 0.01, "constant");  // lr_per_layer: the forward edge into layer i is entry i-1, feedback shares it
    s.add("run.epochs", int64_t(50), cc::closed(1, lim::epochs), "epochs");
    s.add("run.batch", int64_t(50), batch, "mini-batch size");
    s.add("run.eval_batch", int64_t(1000), batch, "batch size for evaluation");
    s.add("run.seed", int64_t(0), cc::at_least(0), "seed of weights, data order and probes");
    s.add("run.max_failed_fraction", 0.5, cc::closed(0, 1), "stop as diverged when more than this fraction of a batch is dropped");
    s.add("run.log_every", int64_t(200), cc::closed(0, 1e9), "print a progress line every N batches (0: never)");
    s.add("diagnostics.samples", int64_t(50), cc::closed(0, lim::samples), "training samples used for the per-epoch diagnostics (0: none)");
    s.add("diagnostics.rbp_dense", false, "diagnostics: dense adjoint solve instead of iterations");
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
      throw config_error(fmt::format("network.edges: cannot read '{}': write \"src>dst\" for a forward edge and "
                                     "\"fb:src>dst\" for a feedback edge (layer 0 = input)", raw));
    }
  }
  return out;
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
  o.method = parse_gep_method(cfg.get<std::string>("estimator.method"));
  o.n_points = cfg.get<int>("estimator.n_points");
  o.beta = cfg.get<double>("estimator.beta");
  o.online_steps = cfg.get<long>("estimator.online_steps");
  o.rbp_steps = cfg.get<long>("estimator.rbp_steps");
  o.tol = cfg.get<double>("estimator.tol");
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

namespace {

// A sample whose states, probabilities or loss are NaN/Inf is never correct: it counts as
// wrong and in n_non_finite; loss is the mean over the finite samples (NaN if none).
struct eval_out {
  double accuracy = 0, loss = 0;
  long n = 0, n_not_converged = 0, n_non_finite = 0;
};

template <class R>
eval_out evaluate(const vector_field_network<R>& net, const dataset& data, const gep_options& o, long eval_batch) {
  eval_out out;
  vf_state<R> st;
  long correct = 0;
  double loss = 0;
  vector<R> lps;
  for (long start = 0; start < data.size(); start += eval_batch) {
    const long b = std::min(eval_batch, data.size() - start);
    const matrix<R> x = data.x.middleCols(start, b).template cast<R>();
    const std::span<const int32_t> lab(data.y.data() + start, b);
    const matrix<R> y = one_hot<R>(lab, net.spec().n_classes);
    st.set_input(net, x, y);
    const auto rep = st.relax(R(0), o.free_relax());
    out.n_not_converged += rep.n_not_converged;
    st.loss_per_sample(lps);
    long bad = 0;
    for (long k = 0; k < b; ++k) {
      if (!std::isfinite(double(lps(k))) || !st.probs().col(k).allFinite()) {
        ++bad;
        continue;
      }
      Eigen::Index arg;
      st.probs().col(k).maxCoeff(&arg);
      if (arg == lab[k]) ++correct;
      loss += double(lps(k));
    }
    // Non-finite states always make the probabilities non-finite; the relaxation's own count
    // is the floor in case they do not.
    out.n_non_finite += std::max<long>(bad, rep.n_non_finite);
  }
  out.n = data.size();
  out.accuracy = out.n ? double(correct) / double(out.n) : 0;
  out.loss = out.n > out.n_non_finite ? loss / double(out.n - out.n_non_finite) : NAN;
  return out;
}

template <class R>
gep_train_result run(const config& cfg, const gep_train_options& opt) {
  std::ostream& os = opt.out ? *opt.out : std::cout;
  const auto split = gep_load_data(cfg, opt.data_dir);
  vector_field_network<R> net(make_vf_spec(cfg, split.train.dim(), split.train.n_classes, split.train.shape));
  const gep_options go = make_gep_options(cfg);
  generalized_ep<R> est(go);
  optimizer<R> optim(make_optimizer_options(cfg), net.layout(), net.n_layers() + 1);
  const auto sched = make_schedule_options(cfg);
  const int aug_pad = cfg.get<int>("data.augment_pad");
  const bool aug_flip = cfg.get<bool>("data.augment_flip");
  const long epochs = cfg.get<long>("run.epochs"), batch = cfg.get<long>("run.batch");
  const long eval_batch = cfg.get<long>("run.eval_batch"), log_every = cfg.get<long>("run.log_every");
  const double max_failed = cfg.get<double>("run.max_failed_fraction");
  const long diag_n = std::min<long>(cfg.get<long>("diagnostics.samples"), split.train.size());
  const bool diag_dense = cfg.get<bool>("diagnostics.rbp_dense");
  if (batch < 1 || eval_batch < 1) throw config_error("run.batch and run.eval_batch must be >= 1");
  const uint64_t seed = cfg.get<uint64_t>("run.seed");

  std::unique_ptr<metrics_log> log;
  if (!opt.run_dir.empty()) {
    create_run_directory(opt.run_dir);
    write_file_atomic(opt.run_dir / "config.toml", cfg.to_toml());
    log = std::make_unique<metrics_log>(opt.run_dir, false);
  }
  if (!opt.quiet)
    os << fmt::format("gep train: {} on {} ({} train / {} test), layers {}, topology {}, angle {} deg, {} params, {}\n",
                      est.name(), split.train.name, split.train.size(), split.test.size(), net.spec().sizes.size() - 1,
                      to_string(net.spec().topology), net.spec().angle_deg, net.n_params(),
                      cfg.get<std::string>("network.dtype"));

  // Fixed diagnostic batch: the first diag_n training samples.
  matrix<R> xd, yd;
  if (diag_n > 0) {
    xd = split.train.x.leftCols(diag_n).template cast<R>();
    yd = one_hot<R>(std::span<const int32_t>(split.train.y.data(), diag_n), net.spec().n_classes);
  }
  gep_train_result res;
  const bool conv = net.spec().is_convnet();
  if (conv && diag_n < 1) throw config_error("a ConvNet's symmetry diagnostics need samples: set diagnostics.samples >= 1");
  auto diag_row = [&](nlohmann::ordered_json& row) {
    // A ConvNet's Jacobian depends on the state: its symmetry index and homeostatic loss
    // are probe estimates at the diagnostic batch's free states (gep_diagnose).
    const double ang = feedback_angle_deg(net);
    row["angle_deg"] = std::isfinite(ang) ? nlohmann::ordered_json(ang) : nlohmann::ordered_json(nullptr);
    if (!conv) {
      row["symmetry_index"] = jacobian_symmetry_index(net);
      row["homeo_exact"] = homeostatic_loss_exact(net);
    }
    if (diag_n > 0) {
      const auto d = gep_diagnose(net, xd, yd, go, diag_dense);
      if (conv) {
        row["symmetry_index"] = d.symmetry_index;
        row["homeo_probe_estimate"] = d.homeo_exact;
      }
      for (size_t i = 0; i < d.layer_cosine.size(); ++i) row[fmt::format("cos_layer{}", i + 1)] = d.layer_cosine[i];
      row["grad_cos_rbp"] = d.grad_cosine;
      row["grad_rel_err_rbp"] = d.grad_rel_error;
      row["diag_not_converged"] = d.n_free_not_converged;
    }
    res.symmetry_index = row["symmetry_index"].get<double>();
    res.angle_deg = ang;
  };
  auto emit = [&](const nlohmann::ordered_json& row) {
    if (log) log->append(row);
    if (opt.on_epoch) opt.on_epoch(row);
  };
  // The checkpoint on disk is only ever of an epoch whose evaluation was finite.
  long last_good_epoch = -1;
  auto last_good = [&] {
    if (opt.run_dir.empty()) return std::string("no run directory, nothing saved");
    return last_good_epoch >= 0 ? fmt::format("the last good checkpoint ({}, epoch {}) is kept",
                                              (opt.run_dir / "checkpoint.eqck").string(), last_good_epoch)
                                : std::string("no checkpoint had been written yet");
  };
  auto non_finite_eval = [&](long ep, const eval_out& te) {
    res.diverged = true;
    res.message = fmt::format("diverged {}: {} of {} test samples gave non-finite outputs; stopped, {}",
                              ep == 0 ? std::string("at initialisation") : fmt::format("in epoch {}", ep), te.n_non_finite,
                              te.n, last_good());
  };
  {
    nlohmann::ordered_json row;
    row["epoch"] = 0;
    const auto te = evaluate(net, split.test, go, eval_batch);
    row["test_accuracy"] = te.accuracy;
    row["test_loss"] = te.loss;
    row["test_non_finite"] = te.n_non_finite;
    if (te.n_non_finite > 0) {
      emit(row);
      non_finite_eval(0, te);
      return res;
    }
    diag_row(row);
    emit(row);
    if (!opt.quiet)
      os << fmt::format("epoch 0: test {:.2f}%, symmetry index {:.4f}, angle {}\n", 100 * te.accuracy,
                        row["symmetry_index"].get<double>(),
                        std::isfinite(res.angle_deg) ? fmt::format("{:.1f} deg", res.angle_deg) : std::string("n/a"));
  }

  // Parameters after each epoch (written atomically; no optimiser state: no resume).
  auto save_params = [&](long epoch) {
    checkpoint ck;
    ck.meta["kind"] = "gep";
    ck.meta["config"] = cfg.to_json();
    ck.meta["epochs_done"] = epoch;
    ck.meta["n_input"] = net.size(0);
    ck.meta["n_classes"] = net.spec().n_classes;
    ck.meta["input_shape"] = split.train.shape;
    std::vector<double> p(net.params().begin(), net.params().end());
    ck.arrays["params"] = checkpoint_array::from_vector(p);
    save_checkpoint(opt.run_dir / "checkpoint.eqck", ck);
    last_good_epoch = epoch;
  };
  batch_iterator it(split.train, batch, seed, true, false);
  aligned_vector<R> grad(net.n_params());
  matrix<float> xb;
  std::vector<int32_t> yb;
  for (long ep = 1; ep <= epochs; ++ep) {
    const auto t0 = std::chrono::steady_clock::now();
    it.start_epoch(ep - 1);
    est.reseed(go.seed + uint64_t(ep));
    std::mt19937_64 aug_rng(seed * 0x9e3779b97f4a7c15ull + uint64_t(ep) + 1);
    double lr_factor = 1;
    long correct = 0, seen = 0, dropped = 0, not_conv = 0;
    double loss_sum = 0, homeo_sum = 0;
    const long nb = it.n_batches();
    for (long bi = 0; bi < nb; ++bi) {
      it.fill(bi, xb, yb);
      if (aug_pad > 0 || aug_flip) augment_batch(xb, split.train.shape, aug_pad, aug_flip, aug_rng);
      const matrix<R> x = xb.cast<R>();
      const matrix<R> y = one_hot<R>(yb, net.spec().n_classes);
      const auto r = est.estimate(net, x, y, grad);
      dropped += r.n_dropped;
      not_conv += r.free.n_not_converged;
      const long kept_b = x.cols() - r.n_dropped;
      bool finite = kept_b == 0 || std::isfinite(r.loss);
      for (R v : grad) finite = finite && std::isfinite(v);
      if (!finite || double(r.n_dropped) > max_failed * double(x.cols())) {
        res.diverged = true;
        res.message = fmt::format("diverged in epoch {} batch {}: {} of {} samples dropped (non-finite or residual > {}), "
                                  "loss {}{}; stopped, {}",
                                  ep, bi + 1, r.n_dropped, x.cols(), go.fail_residual, r.loss,
                                  finite ? "" : ", non-finite loss or gradient", last_good());
        break;
      }
      lr_factor = sched.factor(ep - 1, bi, nb, epochs);
      optim.step(net.params(), grad, lr_factor);
      for (long k = 0; k < x.cols(); ++k) correct += r.predictions[k] == yb[k];
      seen += x.cols();
      if (kept_b > 0) loss_sum += r.loss * double(kept_b);  // the mean over the kept samples
      homeo_sum += r.homeo_loss;
      if (opt.on_batch)
        opt.on_batch(ep, bi + 1, nb, loss_sum / double(std::max<long>(1, seen - dropped)),
                     double(correct) / double(std::max<long>(1, seen)));
      else if (!opt.quiet && log_every > 0 && (bi + 1) % log_every == 0)
        os << fmt::format("  epoch {} batch {}/{}: train acc {:.2f}%, loss {:.4f}, dropped {}, free not converged {}\n", ep,
                          bi + 1, nb, 100.0 * double(correct) / double(seen),
                          loss_sum / double(std::max<long>(1, seen - dropped)), dropped, not_conv)
           << std::flush;
    }
    res.n_dropped += dropped;
    res.n_free_not_converged += not_conv;
    if (res.diverged) break;
    const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto te = evaluate(net, split.test, go, eval_batch);
    nlohmann::ordered_json row;
    row["epoch"] = ep;
    row["train_loss"] = seen > dropped ? loss_sum / double(seen - dropped) : NAN;
    row["train_accuracy"] = seen ? double(correct) / double(seen) : 0;
    row["test_accuracy"] = te.accuracy;
    row["test_loss"] = te.loss;
    row["test_not_converged"] = te.n_not_converged;
    row["test_non_finite"] = te.n_non_finite;
    row["n_dropped"] = dropped;
    row["free_not_converged"] = not_conv;
    row["homeo_mc"] = go.homeo_lambda > 0 && nb ? nlohmann::ordered_json(homeo_sum / double(nb)) : nlohmann::ordered_json(nullptr);
    if (te.n_non_finite > 0) {  // not a good epoch: logged, never checkpointed
      emit(row);
      non_finite_eval(ep, te);
      break;
    }
    diag_row(row);
    row["lr"] = cfg.get<double>("optimizer.lr") * lr_factor;
    row["train_seconds"] = train_s;
    emit(row);
    res.epochs_done = ep;
    if (!opt.run_dir.empty()) save_params(ep);
    res.test_accuracy = te.accuracy;
    res.test_loss = te.loss;
    res.train_accuracy = row["train_accuracy"].get<double>();
    if (!opt.quiet)
      os << fmt::format("epoch {}: train {:.2f}%, test {:.2f}% (loss {:.4f}), symmetry index {:.4f}, angle {}, "
                        "dropped {}, free not converged {} (train) / {} (test), {:.0f} s\n",
                        ep, 100 * res.train_accuracy, 100 * te.accuracy, te.loss, res.symmetry_index,
                        std::isfinite(res.angle_deg) ? fmt::format("{:.1f} deg", res.angle_deg) : std::string("n/a"),
                        dropped, not_conv, te.n_not_converged, train_s)
         << std::flush;
  }
  return res;
}

}  // namespace

gep_train_result gep_train(const config& cfg, const gep_train_options& opt) {
  const auto dtype = cfg.get<std::string>("network.dtype");
  if (dtype == "float32") return run<float>(cfg, opt);
  if (dtype == "float64") return run<double>(cfg, opt);
  throw config_error(fmt::format("network.dtype must be float32 or float64, got '{}'", dtype));
}

vector_field_network<double> gep_load_network(const std::filesystem::path& run_dir, config& cfg_out) {
  const auto ck = load_checkpoint(run_dir / "checkpoint.eqck");
  if (!ck.meta.contains("kind") || ck.meta["kind"] != "gep")
    throw data_error("`" + (run_dir / "checkpoint.eqck").string() + "` is not a gep checkpoint (written by `eqprop gep train`)");
  cfg_out.load_saved_json(ck.meta.at("config"), (run_dir / "checkpoint.eqck").string());
  const auto p = ck.arrays.at("params").to_vector<double>();
  std::array<int, 3> shape{1, 1, ck.meta.at("n_input").get<int>()};
  if (ck.meta.contains("input_shape")) shape = ck.meta.at("input_shape").get<std::array<int, 3>>();
  vector_field_network<double> net(
      make_vf_spec(cfg_out, ck.meta.at("n_input").get<int>(), ck.meta.at("n_classes").get<int>(), shape));
  if (long(p.size()) != net.n_params()) throw data_error("gep checkpoint: the parameter count does not match the saved network");
  std::copy(p.begin(), p.end(), net.params().begin());
  return net;
}

}  // namespace eqprop
