#include "eqprop/train/trainer.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <limits>
#include <optional>
#include <thread>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/build_info.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/io/fetch.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/data_checks.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/metrics_log.hpp"
#include "eqprop/train/progress.hpp"
#include "eqprop/train/run_dir.hpp"
#include "training_models.hpp"

namespace eqprop {
namespace fs = std::filesystem;

namespace {

// A network's parameters as one span (graph networks hand out their param_buffer).
template <class Net>
auto param_values(Net& net) {
  if constexpr (requires { net.params().values(); }) return net.params().values();
  else return net.params();
}

constexpr const char* checkpoint_name = "checkpoint.eqck";
constexpr const char* in_memory_dir = "(in memory)";  // the data_record::dir of in-memory data

struct loaded_data {
  dataset_split split;
  data_record record;  ///< the data directory and the checksums of the files read
};

// Loads the config's data set; both splits (only the test split when !need_train) must be
// non-empty and finite (check_split), before normalisation. A new run (saved_run = false)
// reads from data.dir, else the --data-dir flag, else resolve_data_dir's default. A saved
// run (resumed or evaluated) reads from saved_run_data_dir's choice and, when it carries a
// record (`recorded`), must read files with the recorded checksums (check_data_record).
loaded_data load_data(const config& cfg, const std::string& data_dir_flag, bool need_train = true,
                      bool saved_run = false, const data_record* recorded = nullptr) {
  dataset_options d;
  d.seed = cfg.get<uint64_t>("run.seed");
  d.yin_yang_train = cfg.get<long>("data.yin_yang_train");
  d.yin_yang_test = cfg.get<long>("data.yin_yang_test");
  d.limit_train = cfg.get<long>("data.limit_train");
  d.limit_test = cfg.get<long>("data.limit_test");
  const auto cfg_dir = cfg.get<std::string>("data.dir");
  fs::path dir = resolve_data_dir(cfg_dir.empty() ? data_dir_flag : cfg_dir);
  data_dir_source how = cfg_dir.empty() ? data_dir_flag.empty() ? data_dir_source::default_dir : data_dir_source::flag
                                        : data_dir_source::config;
  if (recorded && recorded->dir == in_memory_dir)
    throw data_error(
        "the run was trained on in-memory arrays (eqprop.train(data=...)): pass the same arrays to resume "
        "or evaluate it");
  if (saved_run) std::tie(dir, how) = saved_run_data_dir(cfg_dir, data_dir_flag, recorded);
  loaded_data loaded;
  try {
    loaded.split = load_dataset(cfg.get<std::string>("data.name"), dir, d);
  } catch (const data_error& e) {
    if (how != data_dir_source::recorded) throw;
    throw data_error(
        fmt::format("{}\n(`{}` is the data directory recorded when the run started; pass --data-dir DIR "
                    "with the data the run was trained on)",
                    e.what(), dir.string()));
  }
  loaded.record = record_data(dir, loaded.split.files);
  if (recorded) check_data_record(*recorded, loaded.record, how);
  auto& split = loaded.split;
  if (need_train) check_split(split.train, "training", "data.limit_train, or data.yin_yang_train for yin_yang");
  check_split(split.test, "test", "data.limit_test, or data.yin_yang_test for yin_yang");
  normalize_from_config(cfg, split);
  return loaded;
}

// The record of in-memory data: the SHA-256 of each split's inputs and labels.
data_record memory_record(const dataset_split& d) {
  data_record r;
  r.dir = in_memory_dir;
  for (const auto& [name, set] : {std::pair<const char*, const dataset*>{"train", &d.train}, {"test", &d.test}}) {
    r.files.emplace_back(
        std::string("x_") + name,
        bytes_digest(set->x.data(), std::size_t(set->x.size()) * sizeof(float), checksum_kind::sha256));
    r.files.emplace_back(std::string("y_") + name,
                         bytes_digest(set->y.data(), set->y.size() * sizeof(int32_t), checksum_kind::sha256));
  }
  return r;
}

// The data of a run given in memory (train_options::data), checked against the record of a
// resumed run.
loaded_data memory_data(const config& cfg, const dataset_split& d, const data_record* recorded) {
  loaded_data loaded;
  loaded.split = d;
  loaded.record = memory_record(d);
  if (recorded && recorded->files != loaded.record.files)
    throw data_error(
        recorded->dir == in_memory_dir
            ? "the in-memory data differ from the arrays the run was trained on (their SHA-256 differ)"
            : fmt::format("the run was trained on the data in `{}`, not on in-memory arrays", recorded->dir));
  check_split(loaded.split.train, "training", "the in-memory training arrays");
  check_split(loaded.split.test, "test", "the in-memory test arrays");
  normalize_from_config(cfg, loaded.split);
  return loaded;
}

// The run's data record from a checkpoint's meta (nullopt for checkpoints written before
// runs recorded their data).
std::optional<data_record> saved_data_record(const checkpoint& ck, const fs::path& file) {
  if (!ck.meta.contains("data")) return std::nullopt;
  return data_record::from_json(ck.meta.at("data"), file.string());
}

// Top-1/top-5 accuracy, loss and convergence of the free phase over a whole split. A sample
// whose output scores or cost are NaN/Inf is counted in n_non_finite and as wrong (top-1 and
// top-5); the loss is the mean over the finite samples only (NaN if there are none).
template <class M>
eval_result evaluate(M& m, const dataset& d, long batch) {
  using R = typename M::real_type;
  eval_result r;
  batch_iterator it(d, batch, 0, false, false);
  it.start_epoch(0);
  m.begin_evaluation();
  matrix<float> xf;
  std::vector<int32_t> labels;
  matrix<R> scores;
  vector<R> cost;
  double loss = 0, res = 0;
  long top1 = 0, top5 = 0;
  for (long i = 0; i < it.n_batches(); ++i) {
    it.fill(i, xf, labels);
    const matrix<R> x = xf.cast<R>();
    const matrix<R> y = m.targets(labels);
    const auto rep = m.free_outputs(x, y, scores, cost);
    r.n_not_converged += rep.n_not_converged;
    res += rep.mean_residual * double(x.cols());
    long bad = 0;
    for (long b = 0; b < scores.cols(); ++b) {
      if (!std::isfinite(double(cost(b))) || !scores.col(b).allFinite()) {
        ++bad;
        continue;
      }
      loss += double(cost(b));
      const R target = scores(labels[b], b);
      long above = 0;
      for (long c = 0; c < scores.rows(); ++c)
        if (scores(c, b) > target || (scores(c, b) == target && c < labels[b])) ++above;
      top1 += above == 0;
      top5 += above < 5;
    }
    // Non-finite states make the outputs non-finite; the relaxation's own count is the floor.
    r.n_non_finite += std::max<long>(bad, rep.n_non_finite);
    r.n += x.cols();
  }
  r.accuracy = double(top1) / double(r.n);
  r.top5 = double(top5) / double(r.n);
  r.loss = r.n > r.n_non_finite ? loss / double(r.n - r.n_non_finite) : NAN;
  r.mean_residual = res / double(r.n);
  return r;
}

// "epoch 3" (at an epoch's end) or "epoch 4 after batch 7" (mid-epoch).
std::string checkpoint_position(long epochs_done, long batch) {
  return batch > 0 ? fmt::format("epoch {} after batch {}", epochs_done + 1, batch)
                   : fmt::format("epoch {}", epochs_done);
}

std::string non_default_summary(const config& cfg) {
  std::vector<std::string> parts;
  for (const auto& k : cfg.schema().keys())
    if (cfg.is_set_by_user(k.key)) parts.push_back(fmt::format("{}={}", k.key, format_config_value(cfg.value(k.key))));
  return parts.empty() ? std::string("(all defaults)") : fmt::format("{}", fmt::join(parts, " "));
}

template <class M>
train_result train_impl(const config& cfg, const train_options& topt) {
  using R = typename M::real_type;
  std::ostream& out = topt.out ? *topt.out : std::cout;
  train_result result;
  // Run directory.
  fs::path dir = topt.run_dir;
  if (dir.empty()) dir = cfg.get<std::string>("run.dir");
  if (dir.empty()) dir = default_run_dir(topt.name);
  result.run_dir = dir;
  std::optional<checkpoint> resume_ck;
  std::optional<data_record> recorded;
  if (topt.resume) {
    resume_ck = load_checkpoint(dir / checkpoint_name);
    recorded = saved_data_record(*resume_ck, dir / checkpoint_name);
  }
  M::check_config(cfg);
  const auto loaded = topt.data ? memory_data(cfg, *topt.data, recorded ? &*recorded : nullptr)
                                : load_data(cfg, topt.data_dir, true, topt.resume, recorded ? &*recorded : nullptr);
  const auto& split = loaded.split;
  M model(cfg, split.train.dim(), split.train.n_classes, split.train.shape);
  auto& net = model.net;
  auto est = model.estimator();
  optimizer_options oo = make_optimizer_options(cfg);
  oo.threads = cfg.schema().find("estimator.threads") ? cfg.get<int>("estimator.threads") : 1;
  model.adjust_optimizer(oo);
  optimizer<R> opt(oo, net.layout(), model.n_groups());
  const auto sched = make_schedule_options(cfg);
  const auto plateau = make_plateau_options(cfg);
  plateau_state plateau_at;  // the plateau schedule's state after the last epoch
  const long epochs = cfg.get<long>("run.epochs"), batch = cfg.get<long>("run.batch");
  const uint64_t seed = cfg.get<uint64_t>("run.seed");
  const long ck_every = cfg.get<long>("run.checkpoint_every");                  // >= 1 (schema)
  const long ck_every_batches = cfg.get<long>("run.checkpoint_every_batches");  // >= 0 (schema)
  const double max_failed = cfg.get<double>("run.max_failed_fraction");
  const double target_accuracy = cfg.get<double>("run.target_accuracy");
  const int aug_pad = cfg.get<int>("data.augment_pad");
  const bool aug_flip = cfg.get<bool>("data.augment_flip");

  long start_epoch = 0, start_batch = 0;
  nlohmann::json partial;  // a mid-epoch checkpoint's rng states and epoch sums
  if (topt.resume) {
    const auto& ck = *resume_ck;
    const auto p = ck.array("params").to_vector<R>();
    if (static_cast<long>(p.size()) != net.n_params())
      throw data_error(fmt::format("{}: checkpoint has {} parameters, the config's network {}",
                                   (dir / checkpoint_name).string(), p.size(), net.n_params()));
    std::copy(p.begin(), p.end(), param_values(net).begin());
    const auto m = opt.m().empty() ? std::vector<R>{} : ck.array("opt_m").to_vector<R>();
    const auto v = opt.v().empty() ? std::vector<R>{} : ck.array("opt_v").to_vector<R>();
    opt.restore(m, v, ck.array("opt_t").to_scalar<int64_t>());
    if (plateau.enabled() && ck.arrays.contains("plateau")) {  // else enabled on resume: a fresh start
      const auto p = ck.array("plateau").to_vector<double>();
      if (p.size() != 3)
        throw data_error(fmt::format("{}: `plateau` must hold 3 values", (dir / checkpoint_name).string()));
      plateau_at = {p[0], p[1], static_cast<long>(p[2])};
    }
    model.restore(ck);
    start_epoch = ck.meta.at("epoch").get<long>();
    start_batch = ck.meta.value("batch", 0L);
    if (start_batch > 0) partial = ck.meta.at("partial");
  } else {
    prepare_new_run_directory(dir, topt.overwrite);
    write_file_atomic(dir / "config.toml", cfg.to_toml());
    write_file_atomic(dir / "build.json", build_info_json().dump(2) + "\n");
  }
  model.attach(opt);
  write_file_atomic(dir / "data.json", loaded.record.to_json().dump(2) + "\n");
  metrics_log log(dir, topt.resume);
  if (topt.resume) log.truncate_after_epoch(start_epoch);

  out << build_info_line() << "\n";
  out << fmt::format("run {}  seed {}  {}\n", dir.string(), seed, scalar_traits<R>::name);
  out << fmt::format("config: {}\n", non_default_summary(cfg));
  out << fmt::format("data {}: {} train, {} test, {} inputs, {} classes | {} {} | {}\n", split.train.name,
                     split.train.size(), split.test.size(), split.train.dim(), split.train.n_classes,
                     cfg.get<std::string>("model.kind"), model.describe(), est->name());
  if (topt.resume)
    out << (start_batch > 0 ? fmt::format("resuming in epoch {} after batch {}\n", start_epoch + 1, start_batch)
                            : fmt::format("resuming after epoch {}\n", start_epoch));
  std::optional<stop_signal_guard> signals;
  if (topt.handle_signals) signals.emplace();

  const long eval_batch = cfg.get<long>("run.eval_batch"), eval_every = cfg.get<long>("run.eval_every");
  model.set_diagnostic_batch(split.train);
  batch_iterator it(split.train, batch, seed, true, false);
  // --quiet: no status line and no periodic lines; the epoch lines still print.
  progress prog(out, !topt.quiet && topt.out == nullptr && progress::stdout_is_terminal(), 0.1,
                topt.quiet ? std::numeric_limits<double>::infinity() : 10.0);
  aligned_vector<R> grad(net.n_params());
  matrix<float> xf;
  std::vector<int32_t> labels;
  long batches_seen = 0;
  // The checkpoint of this run on disk: written only after an epoch whose training steps and
  // evaluation (when run.eval_every evaluates it) were finite, so it is always a "good" one
  // (none yet: empty; a resumed run starts from one).
  // Mid-epoch checkpoints are written after a batch whose loss and gradient were finite.
  std::string last_good_at = topt.resume ? checkpoint_position(start_epoch, start_batch) : std::string();
  auto last_good = [&] {
    return !last_good_at.empty() ? fmt::format("the last good checkpoint ({}, {}) is kept",
                                               (dir / checkpoint_name).string(), last_good_at)
                                 : std::string("no checkpoint had been written yet");
  };

  // epochs_done full epochs, then `batch` batches of the next one (0: at the epoch's end),
  // with `part` the state that batch needs to continue exactly (rng states, epoch sums).
  bool reached_target = false;  // stopped at run.target_accuracy
  auto save = [&](long epochs_done, long batch = 0, const nlohmann::json& part = {}) {
    checkpoint ck;
    ck.meta["epoch"] = epochs_done;
    ck.meta["batch"] = batch;
    if (batch > 0) ck.meta["partial"] = part;
    if (reached_target) ck.meta["reached_target"] = true;  // a finished run (run_finished)
    ck.meta["data"] = loaded.record.to_json();
    ck.meta["config"] = cfg.to_json();
    ck.meta["build"] = build_info_json();
    ck.meta["dtype"] = std::string(scalar_traits<R>::name);
    ck.meta["n_input"] = split.train.dim();
    ck.meta["n_classes"] = split.train.n_classes;
    ck.meta["input_shape"] = split.train.shape;
    ck.arrays["params"] =
        checkpoint_array::from_vector(std::vector<R>(param_values(net).begin(), param_values(net).end()));
    ck.arrays["opt_m"] = checkpoint_array::from_vector(opt.m());
    ck.arrays["opt_v"] = checkpoint_array::from_vector(opt.v());
    ck.arrays["opt_t"] = checkpoint_array::from_scalar<int64_t>(opt.t());
    if (plateau.enabled())
      ck.arrays["plateau"] =
          checkpoint_array::from_vector(std::vector<double>{plateau_at.scale, plateau_at.best, double(plateau_at.bad)});
    model.save(ck);
    save_checkpoint(dir / checkpoint_name, ck);
    last_good_at = checkpoint_position(epochs_done, batch);
  };
  long interrupt_countdown = topt.interrupt_after_batches;

  if (M::log_initial && !topt.resume) {  // epoch 0: before training
    const auto ev = evaluate(model, split.test, eval_batch);
    nlohmann::ordered_json row;
    row["epoch"] = 0;
    row["test_loss"] = ev.loss;
    row["test_acc"] = ev.accuracy;
    row["test_top5"] = ev.top5;
    row["test_non_finite"] = ev.n_non_finite;
    if (ev.n_non_finite > 0) {
      log.append(row);
      result.diverged = true;
      result.message = fmt::format(
          "diverged at initialisation: {} of {} test samples gave non-finite outputs; "
          "nothing was trained",
          ev.n_non_finite, ev.n);
      return result;
    }
    model.diagnostics(row);
    log.append(row);
    if (topt.on_epoch) topt.on_epoch(row);
    out << fmt::format("epoch 0: test loss {:.4f} acc {:.2f}%{}\n", ev.loss, 100 * ev.accuracy, model.epoch_note(row));
  }

  for (long epoch = start_epoch; epoch < epochs; ++epoch) {
    it.start_epoch(epoch);
    est->reseed_noise(seed * 0x2545f4914f6cdd1dull + uint64_t(epoch) + 1);  // resumable noise stream
    std::mt19937_64 aug_rng(seed * 0x9e3779b97f4a7c15ull + uint64_t(epoch) + 1);
    const long nb = it.n_batches();
    prog.begin_epoch(epoch + 1, epochs, nb);
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0, res_sum = 0;
    long correct = 0, seen = 0, failed = 0, not_conv = 0, steps = 0;
    double lr_factor = 1;
    long first = 0;
    rng_t* noise = est->noise_rng();
    if (epoch == start_epoch && start_batch > 0) {  // continue a mid-epoch checkpoint
      first = start_batch;
      rng_state_from_string(aug_rng, partial.at("aug_rng").get<std::string>());
      if (noise) rng_state_from_string(*noise, partial.at("noise_rng").get<std::string>());
      loss_sum = partial.at("loss_sum").get<double>();
      res_sum = partial.at("res_sum").get<double>();
      correct = partial.at("correct").get<long>();
      seen = partial.at("seen").get<long>();
      failed = partial.at("failed").get<long>();
      not_conv = partial.at("not_conv").get<long>();
      steps = partial.at("steps").get<long>();
    }
    auto save_mid = [&](long batches_done) {
      nlohmann::json part{{"aug_rng", rng_state_to_string(aug_rng)},
                          {"noise_rng", noise ? rng_state_to_string(*noise) : std::string()},
                          {"loss_sum", loss_sum},
                          {"res_sum", res_sum},
                          {"correct", correct},
                          {"seen", seen},
                          {"failed", failed},
                          {"not_conv", not_conv},
                          {"steps", steps}};
      save(epoch, batches_done, part);
    };
    for (long i = first; i < nb; ++i) {
      if ((topt.should_stop && topt.should_stop()) || (signals && stop_signal_guard::requested())) {
        save_mid(i);
        result.interrupted = true;
        result.message = fmt::format(
            "interrupted in epoch {} after batch {} of {}; checkpoint written to {}. Resume with: eqprop train "
            "--resume {}",
            epoch + 1, i, nb, (dir / checkpoint_name).string(), shell_quote(dir.string()));
        return result;
      }
      it.fill(i, xf, labels);
      if (aug_pad > 0 || aug_flip) augment_batch(xf, split.train.shape, aug_pad, aug_flip, aug_rng);
      const matrix<R> x = xf.cast<R>();
      const matrix<R> y = model.targets(labels);
      lr_factor = sched.factor(epoch, i, nb, epochs) * plateau_at.scale;
      constexpr bool learns_in_batch = requires { model.train_batch(x, y, opt, lr_factor); };
      grad_result g;
      if constexpr (learns_in_batch) g = model.train_batch(x, y, opt, lr_factor);
      else g = est->estimate(net, x, y, grad);
      const long B = x.cols();
      bool finite = g.n_dropped == B || std::isfinite(g.loss);
      if constexpr (!learns_in_batch)
        for (R v : grad) finite = finite && std::isfinite(v);
      if (!finite || double(g.n_dropped) > max_failed * double(B)) {
        result.diverged = true;
        result.message = fmt::format(
            "diverged in epoch {} batch {}: {}; stopped, {}. Try a smaller learning rate or |beta|{}.", epoch + 1,
            i + 1,
            learns_in_batch ? fmt::format("non-finite states, outputs or loss (loss {})", g.loss)
                            : fmt::format("{} of {} samples failed to converge (free residual {:.3g}), loss {}",
                                          g.n_dropped, B, g.free.max_residual, g.loss),
            last_good(), learns_in_batch ? "" : ", or more relaxation steps");
        return result;
      }
      if constexpr (!learns_in_batch) opt.step(param_values(net), grad, lr_factor);
      model.after_step(opt);
      if (B > g.n_dropped) loss_sum += g.loss * double(B - g.n_dropped);
      for (long b = 0; b < B; ++b) correct += g.predictions[b] == labels[b];
      seen += B;
      failed += g.n_dropped;
      not_conv += g.free.n_not_converged;
      res_sum += g.free.mean_residual * double(B);
      steps += g.relax_steps;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (topt.on_batch)
        topt.on_batch(epoch + 1, i + 1, nb, loss_sum / double(std::max<long>(1, seen - failed)),
                      double(correct) / double(seen));
      prog.update(i + 1, [&] {
        return progress::fields{{"loss", fmt::format("{:.4f}", loss_sum / double(std::max<long>(1, seen - failed)))},
                                {"acc", fmt::format("{:.2f}%", 100.0 * correct / double(seen))},
                                {"", fmt::format("{:.0f} samples/s", double(seen) / std::max(secs, 1e-9))}};
      });
      if (ck_every_batches > 0 && (i + 1) % ck_every_batches == 0 && i + 1 < nb) save_mid(i + 1);
      if (topt.kill_after_batches >= 0 && ++batches_seen >= topt.kill_after_batches) std::_Exit(137);
      if (interrupt_countdown > 0 && --interrupt_countdown == 0) {
        ::kill(::getpid(), SIGINT);  // to the process, not this thread: see confine_stop_signals
        // Its handler may run on another thread: wait for it, so the stop is at this batch.
        for (int w = 0; signals && w < 10000 && !stop_signal_guard::requested(); ++w)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    const double train_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool evaluated = (epoch + 1) % eval_every == 0 || epoch + 1 == epochs;
    const auto ev = evaluated ? evaluate(model, split.test, eval_batch) : eval_result{};
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::ordered_json row;
    row["epoch"] = epoch + 1;
    row["train_loss"] = loss_sum / double(std::max<long>(1, seen - failed));
    row["train_acc"] = double(correct) / double(seen);
    if (evaluated) {
      row["test_loss"] = ev.loss;
      row["test_acc"] = ev.accuracy;
      row["test_top5"] = ev.top5;
      row["test_non_finite"] = ev.n_non_finite;
    }
    row["lr"] = oo.lr * lr_factor;
    row["time_s"] = secs;
    row["train_time_s"] = train_secs;
    row["samples_per_s"] = double(seen) / train_secs;
    row["mean_residual"] = res_sum / double(seen);
    row["not_converged"] = not_conv;
    row["dropped"] = failed;
    row["relax_steps_per_batch"] = double(steps) / double(nb);
    if (ev.n_non_finite > 0) {
      log.append(row);
      // Not a good epoch: no checkpoint of it, and no accuracy of it is reported.
      result.diverged = true;
      result.message = fmt::format(
          "diverged in epoch {}: {} of {} test samples gave non-finite outputs at the end of the epoch; stopped, {}. "
          "Try a smaller learning rate or |beta|, or more relaxation steps.",
          epoch + 1, ev.n_non_finite, ev.n, last_good());
      return result;
    }
    model.diagnostics(row);
    if (plateau.enabled() && row.contains(plateau.metric))
      plateau_at.update(plateau, row[plateau.metric].get<double>());
    log.append(row);
    prog.end_epoch(fmt::format(
        "train loss {:.4f} acc {:.2f}% | {} | {:.1f}s, {:.0f} samples/s{}{}", row["train_loss"].get<double>(),
        100 * row["train_acc"].get<double>(),
        evaluated ? fmt::format("test loss {:.4f} acc {:.2f}% top5 {:.2f}%", ev.loss, 100 * ev.accuracy, 100 * ev.top5)
                  : std::string("not evaluated"),
        secs, row["samples_per_s"].get<double>(),
        failed ? fmt::format(", {} sample{} dropped", failed, failed == 1 ? "" : "s") : std::string(),
        model.epoch_note(row)));
    if (topt.on_epoch) topt.on_epoch(row);
    reached_target = target_accuracy > 0 && evaluated && ev.accuracy >= target_accuracy;
    if ((epoch + 1) % ck_every == 0 || epoch + 1 == epochs || reached_target) save(epoch + 1);
    result.epochs_done = epoch + 1;
    result.train_accuracy = row["train_acc"].get<double>();
    if (evaluated) {
      result.test_accuracy = ev.accuracy;
      result.test_top5 = ev.top5;
      result.test_loss = ev.loss;
    }
    if (reached_target) {
      result.reached_target = true;
      result.message = fmt::format("reached test accuracy {:.2f}% >= run.target_accuracy {:.2f}% in epoch {}",
                                   100 * ev.accuracy, 100 * target_accuracy, epoch + 1);
      out << result.message << "\n";
      return result;
    }
  }
  if (start_epoch >= epochs) {
    const auto ev = evaluate(model, split.test, eval_batch);
    if (ev.n_non_finite > 0) {
      result.diverged = true;
      result.message = fmt::format("the checkpoint of epoch {} gives non-finite outputs for {} of {} test samples",
                                   start_epoch, ev.n_non_finite, ev.n);
      return result;
    }
    result.epochs_done = epochs;
    result.test_accuracy = ev.accuracy;
    result.test_top5 = ev.top5;
    result.test_loss = ev.loss;
  }
  return result;
}

}  // namespace

namespace {
// f(M{}) with M the model class of the config's kind and dtype.
template <class F>
auto with_model(const config& cfg, F&& f) {
  const bool f64 = cfg.get<std::string>("network.dtype") == "float64";
  switch (parse_model_kind(cfg.get<std::string>("model.kind"))) {
    case model_kind::layered:
      return f64 ? f(std::type_identity<detail::layered_model<double>>{})
                 : f(std::type_identity<detail::layered_model<float>>{});
    case model_kind::vector_field:
      return f64 ? f(std::type_identity<detail::vector_field_model<double>>{})
                 : f(std::type_identity<detail::vector_field_model<float>>{});
    case model_kind::graph:
      return f64 ? f(std::type_identity<detail::graph_model<double>>{})
                 : f(std::type_identity<detail::graph_model<float>>{});
    case model_kind::gle:
      return f64 ? f(std::type_identity<detail::gle_model<double>>{})
                 : f(std::type_identity<detail::gle_model<float>>{});
  }
  throw config_error("unknown model.kind");
}

}  // namespace

bool run_finished(const checkpoint& ck, long epochs) {
  return ck.meta.value("batch", 0L) == 0 &&
         (ck.meta.at("epoch").get<long>() >= epochs || ck.meta.value("reached_target", false));
}

train_result train(const config& cfg, const train_options& opt) {
  return with_model(cfg, [&]<class M>(std::type_identity<M>) { return train_impl<M>(cfg, opt); });
}

namespace {
// A model built from a run's config takes the checkpoint's parameters (converted from the
// dtype they were saved in) and the state beyond them (restore); data_error when their number
// differs from the network's.
template <class M>
void restore_trained(M& model, const checkpoint& ck, const fs::path& file) {
  using R = typename M::real_type;
  const auto& saved = ck.array("params");
  std::vector<R> p;
  if (saved.dtype == checkpoint_dtype::f32) {
    const auto f = saved.to_vector<float>();
    p.assign(f.begin(), f.end());
  } else {
    const auto d = saved.to_vector<double>();
    p.assign(d.begin(), d.end());
  }
  if (static_cast<long>(p.size()) != model.net.n_params())
    throw data_error(fmt::format("{}: checkpoint has {} parameters, its config's network {}", file.string(), p.size(),
                                 model.net.n_params()));
  std::copy(p.begin(), p.end(), param_values(model.net).begin());
  model.restore(ck);
}

template <class M>
eval_result evaluate_impl(const config& cfg, const checkpoint& ck, const fs::path& file, const std::string& data_dir,
                          const data_record* recorded) {
  const auto loaded = load_data(cfg, data_dir, false, true, recorded);
  const auto& split = loaded.split;
  M model(cfg, split.test.dim(), split.test.n_classes, split.test.shape);
  restore_trained(model, ck, file);
  return evaluate(model, split.test, cfg.get<long>("run.eval_batch"));
}
}  // namespace

config saved_run_config(const checkpoint& ck, const fs::path& file) {
  if (ck.meta.contains("kind") && ck.meta.at("kind").is_string() && ck.meta.at("kind") != "layered") {
    const auto kind = ck.meta.at("kind").get<std::string>();
    throw data_error(fmt::format(
        "{}: a checkpoint of kind {} (written by `eqprop {} train`{}), not of an `eqprop train` "
        "run, which eval and load_run read (its run directory's metrics.csv holds the scores "
        "of every epoch)",
        file.string(), ck.meta.at("kind").dump(), kind,
        kind == "gle" || kind == "deep"
            ? fmt::format(" before it became `eqprop train --set model.kind={}`", kind == "gle" ? "gle" : "graph")
            : std::string()));
  }
  if (!ck.meta.contains("config"))
    throw data_error(
        fmt::format("{}: not the checkpoint of an `eqprop train` run (it holds no config)", file.string()));
  config cfg(training_schema(saved_model_kind(ck.meta.at("config"))));
  cfg.load_saved_json(ck.meta.at("config"), file.string());
  return cfg;
}

eval_result evaluate_checkpoint(const fs::path& run_or_checkpoint, const std::string& data_dir) {
  const fs::path file = fs::is_directory(run_or_checkpoint) ? run_or_checkpoint / checkpoint_name : run_or_checkpoint;
  const auto ck = load_checkpoint(file);
  const config cfg = saved_run_config(ck, file);
  const auto recorded = saved_data_record(ck, file);
  const data_record* rec = recorded ? &*recorded : nullptr;
  return with_model(cfg,
                    [&]<class M>(std::type_identity<M>) { return evaluate_impl<M>(cfg, ck, file, data_dir, rec); });
}

saved_run load_saved_run(const fs::path& run_or_checkpoint, const std::string& data_dir) {
  const fs::path file = fs::is_directory(run_or_checkpoint) ? run_or_checkpoint / checkpoint_name : run_or_checkpoint;
  if (fs::is_directory(run_or_checkpoint) && !fs::exists(file))
    throw data_error(
        fmt::format("{}: not a run directory: it holds no {}", run_or_checkpoint.string(), checkpoint_name));
  if (!fs::exists(file)) throw data_error(fmt::format("{}: no such run directory or checkpoint file", file.string()));
  auto ck = load_checkpoint(file);
  config cfg = saved_run_config(ck, file);
  const model_kind kind = saved_model_kind(ck.meta.at("config"));
  saved_run run{file, std::move(ck), std::move(cfg), kind, 0, 0, {}, {}};
  if (run.ck.meta.contains("n_input")) {  // the sizes the run was built with: no data needed
    run.n_input = run.ck.meta.at("n_input").get<int>();
    run.n_classes = run.ck.meta.at("n_classes").get<int>();
    run.input_shape = run.ck.meta.at("input_shape").get<std::array<int, 3>>();
  } else {
    const auto recorded = saved_data_record(run.ck, file);
    const auto loaded = load_data(run.cfg, data_dir, false, true, recorded ? &*recorded : nullptr);
    const auto& test = loaded.split.test;
    run.n_input = test.dim();
    run.n_classes = test.n_classes;
    run.input_shape = test.shape;
  }
  // The model evaluate() scores with: one source for each kind's evaluation settings.
  run.eval_relax = with_model(run.cfg, [&]<class M>(std::type_identity<M>) -> relax_options {
    if constexpr (requires(M & m) { m.eval_relax; })
      return M(run.cfg, run.n_input, run.n_classes, run.input_shape).eval_relax;
    else return {};  // graph networks: their own dynamics (deep_dynamics_from_config)
  });
  return run;
}

namespace {
// The model class of each network type, and its kind (saved_network).
template <class Net>
struct model_of;
template <class R>
struct model_of<layered_network<R>> {
  using type = detail::layered_model<R>;
  static constexpr model_kind kind = model_kind::layered;
};
template <class R>
struct model_of<vector_field_network<R>> {
  using type = detail::vector_field_model<R>;
  static constexpr model_kind kind = model_kind::vector_field;
};
template <class R>
struct model_of<graph_network<R>> {
  using type = detail::graph_model<R>;
  static constexpr model_kind kind = model_kind::graph;
};
template <class R>
struct model_of<gle_network<R>> {
  using type = detail::gle_model<R>;
  static constexpr model_kind kind = model_kind::gle;
};
}  // namespace

template <class Net>
Net saved_network(const saved_run& run) {
  using M = typename model_of<Net>::type;
  constexpr model_kind want = model_of<Net>::kind;
  if (run.kind != want)
    throw config_error(
        fmt::format("{}: a {} run, not a {} run", run.checkpoint_file.string(), to_string(run.kind), to_string(want)));
  M model(run.cfg, run.n_input, run.n_classes, run.input_shape);
  restore_trained(model, run.ck, run.checkpoint_file);
  return std::move(model.net);
}
template layered_network<float> saved_network(const saved_run&);
template layered_network<double> saved_network(const saved_run&);
template vector_field_network<float> saved_network(const saved_run&);
template vector_field_network<double> saved_network(const saved_run&);
template graph_network<float> saved_network(const saved_run&);
template graph_network<double> saved_network(const saved_run&);
template gle_network<float> saved_network(const saved_run&);
template gle_network<double> saved_network(const saved_run&);

}  // namespace eqprop
