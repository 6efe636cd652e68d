#include "eqprop/train/gle_tasks.hpp"

#include <array>
#include <chrono>
#include <cmath>
#include <complex>
#include <numbers>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/gle_reference.hpp"
#include "eqprop/train/data_checks.hpp"
#include "eqprop/train/experiment.hpp"  // add_data_limit_keys
#include "eqprop/train/optimizer.hpp"

namespace eqprop {

namespace {
using matd = Eigen::MatrixXd;
using cplx = std::complex<double>;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Fourier coefficient of samples y(k) at t_k = t0 + k dt over [from, to).
cplx project(const std::vector<double>& y, double omega, double dt, long from, long to) {
  cplx c = 0;
  for (long k = from; k < to; ++k) c += y[k] * std::exp(cplx(0, -omega * dt * double(k)));
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------
gle_operator_result gle_operator_response(double tau_m, double tau_r, double omega, double dt, int periods) {
  gle_spec spec;
  spec.n_input = 1;
  spec.dt = dt;
  spec.loss = gle_loss::mse;
  spec.layers.push_back(gle_layer(1, activation_kind::linear, {tau_m}, {tau_r}, false));
  const double beta = 1;
  const long K = long(std::llround(periods * 2 * std::numbers::pi / omega / dt));
  std::vector<double> in(K), fwd(K), err(K);
  for (long k = 0; k < K; ++k) in[k] = std::sin(omega * dt * double(k));
  // forward: u_breve in response to the input current
  gle_network<double> a(spec);
  a.W(0)(0, 0) = 1;
  a.reset_state(1);
  matd x(1, 1);
  for (long k = 0; k < K; ++k) {
    x(0, 0) = in[k];
    a.step(x, nullptr, 0);
    fwd[k] = a.state(0).u_breve(0, 0);
  }
  // GLE error neuron: zero input, target chosen so that the output error g equals the sine
  gle_network<double> b(spec);
  b.W(0)(0, 0) = 1;
  b.reset_state(1);
  x.setZero();
  std::vector<matd> xs(K, matd::Zero(1, 1)), ts(K, matd::Zero(1, 1));
  for (long k = 0; k < K; ++k) {
    matd t = b.output();
    t(0, 0) += in[k] / beta;
    b.step(x, &t, beta);
    err[k] = b.state(0).e(0, 0);
    ts[k](0, 0) = in[k] / beta;  // AM: output stays 0, so the output error is the sine
  }
  gle_network<double> c(spec);
  c.W(0)(0, 0) = 1;
  c.reset_state(1);
  auto am = gle_reference_gradient<double>(c, xs, ts, beta, gle_reference_kind::adjoint, true);
  std::vector<double> lam(K);
  for (long k = 0; k < K; ++k) lam[k] = am.lambda[k][0](0, 0);
  // Project on the middle half: transients gone at the start, lambda's cut-off at the end.
  const long from = K / 4, to = 3 * K / 4;
  const cplx ci = project(in, omega, dt, from, to);
  const cplx H = project(fwd, omega, dt, from, to) / ci;
  const cplx G = project(err, omega, dt, from, to) / ci;
  const cplx A = project(lam, omega, dt, from, to) / ci;
  const cplx Ht = cplx(1, omega * tau_r) / cplx(1, omega * tau_m);
  return {tau_m, tau_r, omega, dt, std::abs(H), std::arg(H), std::abs(G), std::arg(G), std::abs(A), std::arg(A),
          std::abs(Ht), std::arg(Ht)};
}

// ---------------------------------------------------------------------------------------
gle_rule parse_gle_rule(std::string_view s) {
  if (s == "gle") return gle_rule::gle;
  if (s == "bp" || s == "bp_instantaneous") return gle_rule::bp_instantaneous;
  if (s == "bptt") return gle_rule::bptt;
  if (s == "adjoint" || s == "am") return gle_rule::adjoint;
  throw config_error(fmt::format("unknown GLE learning rule '{}': expected gle, bp, bptt or adjoint", s));
}
std::string_view to_string(gle_rule r) {
  switch (r) {
    case gle_rule::gle: return "gle";
    case gle_rule::bp_instantaneous: return "bp";
    case gle_rule::bptt: return "bptt";
    case gle_rule::adjoint: return "adjoint";
  }
  return "?";
}

template <class R>
param_constraints gle_tau_constraints(const gle_network<R>& net) {
  param_constraints c(net.layout());
  if (net.spec().learn_tau_m)
    for (int l = 0; l < net.n_layers(); ++l)
      c.add_box(gle_network<R>::tau_m_block(l), net.spec().tau_min, net.spec().tau_max);
  return c;
}
template param_constraints gle_tau_constraints(const gle_network<float>&);
template param_constraints gle_tau_constraints(const gle_network<double>&);

lagline_result run_lagline(const lagline_options& o) {
  const auto t0 = clock_type::now();
  const bool windowed = o.rule == gle_rule::bptt || o.rule == gle_rule::adjoint;
  gle_spec spec;
  spec.n_input = 1;
  spec.dt = o.dt;
  spec.loss = gle_loss::mse;
  spec.layers.push_back(gle_layer(1, activation_kind::softplus, {1.0}, {0.1}, false));
  spec.layers.push_back(gle_layer(1, activation_kind::softplus, {2.0}, {0.1}, false));
  gle_network<double> teacher(spec);
  teacher.W(0)(0, 0) = 1;
  teacher.W(1)(0, 0) = 2;
  spec.learn_tau_m = true;
  spec.tau_min = 10 * o.dt;
  spec.gamma = windowed ? 0 : o.gamma;
  spec.prospective_errors = o.rule != gle_rule::bp_instantaneous;
  spec.init = gle_init::uniform01;
  spec.seed = o.seed;
  gle_network<double> student(spec);
  const param_constraints tau_box = gle_tau_constraints(student);
  {
    rng_t rng(o.seed + 1000);
    for (int l = 0; l < 2; ++l) student.tau_m(l)(0) = uniform01(rng);
    tau_box.apply(student.params());
  }
  const long B = o.batch;
  teacher.reset_state(B);
  student.reset_state(B);
  // Input: a +-1 square wave of half-period 2, random phase per batch element, smoothed
  // by a Gaussian of sigma = 5 steps (one smoothed period, indexed cyclically).
  const long P = std::max<long>(2, std::lround(4.0 / o.dt));
  std::vector<double> wave(P);
  {
    std::vector<double> sq(P);
    for (long k = 0; k < P; ++k) sq[k] = k < P / 2 ? 1.0 : -1.0;
    const double sigma = 5;
    for (long k = 0; k < P; ++k) {
      double s = 0, w = 0;
      for (long j = -25; j <= 25; ++j) {
        const double g = std::exp(-0.5 * double(j * j) / (sigma * sigma));
        s += g * sq[((k + j) % P + P) % P];
        w += g;
      }
      wave[k] = s / w;
    }
  }
  std::vector<long> offset(B);
  {
    rng_t rng(o.seed + 2000);
    for (auto& v : offset) v = long(random_index(rng, uint64_t(P)));
  }
  auto input_at = [&](long k, matd& x) {
    x.resize(1, B);
    for (long b = 0; b < B; ++b) x(0, b) = wave[(k + offset[b]) % P];
  };
  const long n_init = std::lround(o.t_init / o.dt), n_train = std::lround(o.t_train / o.dt);
  const long n_total = n_init + n_train;
  const long win = windowed ? std::max<long>(1, std::lround(o.window / o.dt)) : 1;
  optimizer_options oo;
  oo.kind = optimizer_kind::adam;
  oo.lr = o.lr * double(win);
  optimizer<double> opt(oo, student.layout(), student.n_groups());
  opt.set_constraints(tau_box);
  std::vector<double> grad(student.params().size());
  lagline_result res;
  const long tail = std::min<long>(n_total, std::lround(10 / o.dt));
  double loss_acc = 0, tail_acc = 0;
  long loss_n = 0;
  auto record = [&](long k, double loss) {
    loss_acc += loss;
    ++loss_n;
    if (k >= n_total - tail) tail_acc += loss;
    if ((k + 1) % o.record_every == 0 || k + 1 == n_total) {
      res.trace.push_back({double(k + 1) * o.dt, loss_acc / double(loss_n), student.W(0)(0, 0), student.W(1)(0, 0),
                           student.tau_m(0)(0), student.tau_m(1)(0)});
      loss_acc = 0;
      loss_n = 0;
    }
  };
  matd x;
  if (!windowed) {
    for (long k = 0; k < n_total; ++k) {
      input_at(k, x);
      const matd target = teacher.output();
      const bool learn = k >= n_init;
      student.step(x, &target, o.beta, learn ? std::span<double>(grad) : std::span<double>());
      teacher.step(x, nullptr, 0);
      if (learn) opt.step(student.params(), grad, 1.0);
      record(k, gle_loss_value<double>(gle_loss::mse, student.output(), teacher.output()));
    }
  } else {
    std::vector<matd> xs, ts;
    long k = 0;
    while (k < n_total) {
      const long n = std::min(win, n_total - k);
      xs.assign(n, matd());
      ts.assign(n, matd());
      for (long j = 0; j < n; ++j) {
        input_at(k + j, xs[j]);
        teacher.step(xs[j], nullptr, 0);
        ts[j] = teacher.output();
      }
      const bool learn = k >= n_init;
      std::vector<double> losses(n);
      if (learn) {
        // the reference runs the window forward; the per-step losses are recomputed from a copy
        gle_network<double> probe = student;
        for (long j = 0; j < n; ++j) {
          probe.step(xs[j], nullptr, 0);
          losses[j] = gle_loss_value<double>(gle_loss::mse, probe.output(), ts[j]);
        }
        auto r = gle_reference_gradient<double>(student, xs, ts, o.beta,
                                                o.rule == gle_rule::bptt ? gle_reference_kind::bptt
                                                                         : gle_reference_kind::adjoint);
        opt.step(student.params(), r.grad, 1.0);
      } else {
        for (long j = 0; j < n; ++j) {
          student.step(xs[j], nullptr, 0);
          losses[j] = gle_loss_value<double>(gle_loss::mse, student.output(), ts[j]);
        }
      }
      for (long j = 0; j < n; ++j) record(k + j, losses[j]);
      k += n;
    }
  }
  res.final_loss = tail_acc / double(tail);
  res.w_rel_error = std::max(std::abs(student.W(0)(0, 0) - 1.0) / 1.0, std::abs(student.W(1)(0, 0) - 2.0) / 2.0);
  res.tau_rel_error = std::max(std::abs(student.tau_m(0)(0) - 1.0) / 1.0, std::abs(student.tau_m(1)(0) - 2.0) / 2.0);
  res.steps = n_total;
  res.seconds = seconds_since(t0);
  return res;
}

// ---------------------------------------------------------------------------------------
namespace {
gle_spec lagnet_spec(double dt) {
  gle_spec spec;
  spec.n_input = 1;
  spec.dt = dt;
  spec.loss = gle_loss::mse;
  spec.layers.push_back(gle_layer(2, activation_kind::tanh, {1, 1}, {1, 0.1}, false));
  spec.layers.push_back(gle_layer(2, activation_kind::tanh, {1, 1}, {1, 0.1}, false));
  spec.layers.push_back(gle_layer(1, activation_kind::linear, {1}, {1}, false));
  return spec;
}
/// Teacher weights: a strong slow (retrospective) path; hid_1 w[0][0] = -0.5.
void lagnet_teacher_weights(gle_network<double>& n) {
  n.W(0) << -0.5, 1.5;
  n.W(1) << 1.0, 0.2, 0.2, 1.5;
  n.W(2) << 0.5, 1.5;
}
double lagnet_input(double t) { return std::sin(0.49 * t) + std::sin(1.07 * t) + std::sin(1.98 * t); }
}  // namespace

lagnet_result run_lagnet(const lagnet_options& o) {
  gle_spec spec = lagnet_spec(o.dt);
  gle_network<double> teacher(spec), student(spec);
  lagnet_teacher_weights(teacher);
  lagnet_teacher_weights(student);
  student.W(0)(0, 0) = 0.5;  // the student starts with the wrong sign on the fast path
  teacher.reset_state(1);
  student.reset_state(1);
  matd x(1, 1);
  const long n_warm = std::lround(o.t_warmup / o.dt), n_win = std::lround(o.t_window / o.dt);
  const long n_tail = std::lround(o.t_tail / o.dt);
  long k = 0;
  for (; k < n_warm; ++k) {
    x(0, 0) = lagnet_input(double(k) * o.dt);
    const matd target = teacher.output();
    student.step(x, &target, o.beta);
    teacher.step(x, nullptr, 0);
  }
  // Comparison window: GLE online errors and AM lambda from the same starting state.
  gle_network<double> am_net = student;
  std::vector<matd> xs(n_win), ts(n_win);
  std::vector<std::vector<double>> e(4, std::vector<double>(n_win)), lam(4, std::vector<double>(n_win));
  for (long j = 0; j < n_win; ++j, ++k) {
    x(0, 0) = lagnet_input(double(k) * o.dt);
    xs[j] = x;
    const matd target = teacher.output();
    student.step(x, &target, o.beta);
    teacher.step(x, nullptr, 0);
    ts[j] = teacher.output();
    for (int l = 0; l < 2; ++l)
      for (int i = 0; i < 2; ++i) e[2 * l + i][j] = student.state(l).e(i, 0);
  }
  auto am = gle_reference_gradient<double>(am_net, xs, ts, o.beta, gle_reference_kind::adjoint, true);
  for (long j = 0; j < n_win; ++j)
    for (int l = 0; l < 2; ++l)
      for (int i = 0; i < 2; ++i) lam[2 * l + i][j] = am.lambda[j][l](i, 0);
  lagnet_result res;
  const double omegas[3] = {0.49, 1.07, 1.98};
  const long from = 0, to = n_win - n_tail;
  for (int l = 0; l < 2; ++l)
    for (int i = 0; i < 2; ++i) {
      lagnet_neuron_compare c;
      c.name = fmt::format("hid{}.{}", l + 1, i == 0 ? "i" : "r");
      c.tau_m = spec.layers[l].tau_m[i];
      c.tau_r = spec.layers[l].tau_r[i];
      const auto& ee = e[2 * l + i];
      const auto& ll = lam[2 * l + i];
      for (double w : omegas) {
        const cplx ratio = project(ee, w, o.dt, from, to) / project(ll, w, o.dt, from, to);
        c.omega.push_back(w);
        c.gain.push_back(std::abs(ratio));
        c.phase.push_back(std::arg(ratio));
        const cplx H = cplx(1, w * c.tau_r) / cplx(1, w * c.tau_m);
        c.theory_gain.push_back(1 / std::norm(H));
      }
      double me = 0, ml = 0;
      for (long j = from; j < to; ++j) me += ee[j], ml += ll[j];
      me /= double(to - from);
      ml /= double(to - from);
      double see = 0, sll = 0, sel = 0;
      for (long j = from; j < to; ++j) {
        see += (ee[j] - me) * (ee[j] - me);
        sll += (ll[j] - ml) * (ll[j] - ml);
        sel += (ee[j] - me) * (ll[j] - ml);
      }
      c.correlation = sel / std::sqrt(see * sll);
      res.neurons.push_back(std::move(c));
    }
  const long stride = std::max<long>(1, std::lround(0.1 / o.dt));
  res.e.assign(4, {});
  res.lambda.assign(4, {});
  for (long j = 0; j < to; j += stride) {
    res.t.push_back(double(j) * o.dt);
    for (int n = 0; n < 4; ++n) {
      res.e[n].push_back(e[n][j]);
      res.lambda[n].push_back(lam[n][j]);
    }
  }
  if (o.train) {  // GLE learning of hid_1 only (spec §5.2): sgd momentum 0.9, learning from step 8000
    spec.gamma = o.gamma;
    gle_network<double> t2(lagnet_spec(o.dt)), s2(spec);
    lagnet_teacher_weights(t2);
    lagnet_teacher_weights(s2);
    s2.W(0)(0, 0) = 0.5;
    t2.reset_state(1);
    s2.reset_state(1);
    optimizer_options oo;
    oo.kind = optimizer_kind::sgd;
    oo.momentum = 0.9;
    oo.lr = o.lr;
    oo.lr_per_group = {o.lr, 0, 0};
    optimizer<double> opt(oo, s2.layout(), s2.n_groups());
    std::vector<double> grad(s2.params().size());
    const long n = std::lround(o.t_train / o.dt), start = 8000;
    double acc = 0;
    long cnt = 0;
    for (long j = 0; j < n; ++j) {
      x(0, 0) = lagnet_input(double(j) * o.dt);
      const matd target = t2.output();
      const bool learn = j >= start;
      s2.step(x, &target, o.beta, learn ? std::span<double>(grad) : std::span<double>());
      t2.step(x, nullptr, 0);
      if (learn) opt.step(s2.params(), grad, 1.0);
      acc += gle_loss_value<double>(gle_loss::mse, s2.output(), t2.output());
      ++cnt;
      if ((j + 1) % 1000 == 0) {
        res.train_t.push_back(double(j + 1) * o.dt);
        res.train_w00.push_back(s2.W(0)(0, 0));
        res.train_loss.push_back(acc / double(cnt));
        acc = 0;
        cnt = 0;
      }
    }
    res.final_w00 = s2.W(0)(0, 0);
  }
  return res;
}

// ---------------------------------------------------------------------------------------
const config_schema& gle_train_schema() {
  static const config_schema schema = [] {
    using cc = config_constraint;
    namespace lim = config_limits;
    const cc positive = cc::greater_than(0), batch = cc::closed(1, lim::batch);
    const cc activation = cc::one_of({"linear", "tanh", "softplus", "logistic", "clamp01", "relu"});
    config_schema s;
    // data.name is checked (with a suggestion) by load_dataset; any data set works as sequences of its features.
    s.add("data.name", std::string("mnist1d_gle"), "data set of scalar sequences (mnist1d_gle: 360 steps per sample)");
    add_data_limit_keys(s);
    s.add("network.width", int64_t(53), cc::closed(1, lim::layer_size), "neurons per hidden layer");
    s.add("network.depth", int64_t(6), cc::closed(0, double(lim::layers)), "number of hidden layers");
    s.add("network.first_activation", std::string("linear"), activation, "activation of the first hidden layer");
    s.add("network.activation", std::string("tanh"), activation,
          "activation of the other hidden layers: linear | tanh | softplus | logistic (1/(1+e^-x)) | clamp01 "
          "(clamp(x, 0, 1)) | relu");
    s.add("network.initial_state", std::string("zero"), cc::one_of({"zero", "rest"}),
          "state at the start (and at every lag-bank reset): zero (every variable 0, as the discrete scheme "
          "starts) or rest (r = phi(0), phi' = phi'(0): neurons at rest; differs only for phi(0) != 0)");
    s.add("network.tau_groups", std::string("18:0.6:0.2, 18:1.2:0.2, 17:1.2:1.2"),
          "per hidden layer: groups count:tau_m:tau_r (tau_r = dt: leaky integrator; tau_r = tau_m: instantaneous)");
    s.add("network.output_tau", 1.2, positive, "tau_m = tau_r of the (linear, instantaneous) output layer");
    s.add("network.lag_bank", int64_t(0), cc::closed(0, lim::layer_size),
          "channels of a fixed, untrained lag bank before the network (spec §5.4; 0: none)");
    s.add("network.lag_bank_stages", int64_t(4), cc::closed(1, double(lim::layers)), "low-pass stages per lag-bank channel (1 -> n, then n -> n identities)");
    s.add("network.lag_bank_tau", std::vector<double>{0.2, 1.8}, positive.sizes(2, 2),
          "[tau_min, tau_max] of the lag-bank channels' tau_m (linspace, rounded to 2 decimals; tau_r = dt)");
    s.add("network.lag_bank_reset", true, "restart the lag bank from zero at every batch (as the reference)");
    s.add("network.init", std::string("kaiming_uniform"), cc::one_of({"kaiming_uniform", "normal"}), "kaiming_uniform (U(+-1/sqrt(fan_in))) or normal");
    s.add("network.init_std", 0.05, cc::at_least(0), "std of the normal init");
    s.add("dynamics.dt", 0.2, positive, "Euler time step (one input sample per step)");
    s.add("dynamics.gamma", 0.0, cc::at_least(0), "error-to-membrane coupling");
    s.add("dynamics.prospective_errors", true, "GLE error neurons (false: instantaneous-error BP)");
    s.add("dynamics.learn_tau_m", false, "learn membrane time constants (clamped to [dt, 100])");
    s.add("loss.kind", std::string("ce"), cc::one_of({"ce", "mse"}), "ce (softmax cross-entropy) or mse");
    s.add("loss.beta", 1.0, positive, "output nudging strength");
    s.add("optimizer.kind", std::string("adam"), cc::one_of({"adam", "adamw", "sgd"}), "the update rule; steps every time step");
    s.add("optimizer.lr", 1e-3, positive, "learning rate per time step (paper: 5e-3 * 72 / 360)");
    s.add("optimizer.lr_reference_steps", int64_t(0), cc::closed(0, lim::steps),
          "> 0: lr is given per sample of this many steps and scaled by it / steps per sample (the paper's "
          "5e-3 with 72 gives 1e-3 at 360 steps), so the update per sample does not depend on the resolution");
    s.add("optimizer.momentum", 0.0, cc::closed(0, 1).below(1), "sgd momentum");
    s.add("schedule.plateau_patience", int64_t(2), cc::closed(0, lim::epochs).or_value(-1), "ReduceLROnPlateau patience in epochs (-1: off)");
    s.add("schedule.plateau_factor", 0.5, cc::greater_than(0).at_most(1), "lr factor on a plateau");
    s.add("schedule.plateau_on", std::string("test"), cc::one_of({"test", "train", "test_readout", "train_readout"}),
          "loss watched by the plateau schedule: test or train (per-step loss, as the paper's code), or "
          "test_readout / train_readout (cross-entropy of the time-averaged output, a steadier signal)");
    s.add("run.epochs", int64_t(150), cc::closed(1, lim::epochs), "epochs");
    s.add("run.batch", int64_t(100), batch, "training batch (parallel streams)");
    s.add("run.eval_batch", int64_t(1000), batch, "test batch");
    s.add("run.seed", int64_t(12), cc::at_least(0), "seed of the initialisation and the sample order");
    s.add("dynamics.threads", int64_t(1), cc::closed(0, lim::threads),
          "threads for the layers of a step (0: all cores; results do not depend on it; more than 1 only pays on an "
          "otherwise idle machine)");
    s.add("run.dir", std::string("runs/gle_mnist1d"), "run directory (metrics.jsonl/csv, config, checkpoint)");
    // Resuming: the checkpoint holds this network, on this data, with this optimizer's state.
    add_activation_renames(s, "network.first_activation", activation_family::gle);
    add_activation_renames(s, "network.activation", activation_family::gle);
    s.saved_default("network.initial_state", std::string("rest"));  // the start of runs written before the key
    s.fixed_on_resume({"data.", "network.", "dynamics.learn_tau_m", "optimizer.kind", "run.seed"});
    // The names every training config uses (saved runs keep loading).
    s.renamed_key("train.epochs", "run.epochs");
    s.renamed_key("train.batch", "run.batch");
    s.renamed_key("train.test_batch", "run.eval_batch");
    s.renamed_key("train.seed", "run.seed");
    s.renamed_key("train.threads", "dynamics.threads");
    return s;
  }();
  return schema;
}

gle_spec gle_spec_from_config(const config& cfg, int n_input, int n_classes) {
  gle_spec spec;
  spec.n_input = n_input;
  spec.dt = cfg.get<double>("dynamics.dt");
  spec.gamma = cfg.get<double>("dynamics.gamma");
  spec.prospective_errors = cfg.get<bool>("dynamics.prospective_errors");
  spec.learn_tau_m = cfg.get<bool>("dynamics.learn_tau_m");
  spec.loss = parse_gle_loss(cfg.get<std::string>("loss.kind"));
  const std::string init = cfg.get<std::string>("network.init");
  if (init == "kaiming_uniform") spec.init = gle_init::kaiming_uniform;
  else if (init == "normal") spec.init = gle_init::normal;
  else throw config_error(fmt::format("network.init '{}': expected kaiming_uniform or normal", init));
  spec.init_std = cfg.get<double>("network.init_std");
  spec.seed = cfg.get<uint64_t>("run.seed");
  spec.initial_state = parse_gle_initial_state(cfg.get<std::string>("network.initial_state"));
  const int bank = cfg.get<int>("network.lag_bank"), stages = cfg.get<int>("network.lag_bank_stages");
  if (bank > 0) {
    const auto range = cfg.get<std::vector<double>>("network.lag_bank_tau");
    std::vector<double> tm(bank);
    for (int i = 0; i < bank; ++i)
      tm[i] = std::round(100 * (bank == 1 ? range[0] : range[0] + (range[1] - range[0]) * i / (bank - 1))) / 100;
    for (int k = 0; k < stages; ++k)
      spec.layers.push_back(gle_layer(bank, activation_kind::linear, tm, std::vector<double>(bank, spec.dt), false));
  }
  const int width = cfg.get<int>("network.width"), depth = cfg.get<int>("network.depth");
  const auto groups = parse_tau_groups(cfg.get<std::string>("network.tau_groups"));
  for (int l = 0; l < depth; ++l) {
    gle_layer_spec L;
    L.size = width;
    L.phi = parse_activation(cfg.get<std::string>(l == 0 ? "network.first_activation" : "network.activation"));
    try {
      set_tau_groups(L, groups);
    } catch (const config_error& e) {
      throw config_error(fmt::format("network.tau_groups: {}", e.what()));
    }
    spec.layers.push_back(L);
  }
  const double to = cfg.get<double>("network.output_tau");
  spec.layers.push_back(gle_layer(n_classes, activation_kind::linear, std::vector<double>(n_classes, to),
                                  std::vector<double>(n_classes, to), true));
  return spec;
}

std::vector<gle_epoch_report> train_gle_sequences(const config& cfg, const std::filesystem::path& data_dir,
                                                  const gle_train_hooks& hooks, std::vector<float>* final_params) {
  using matf = Eigen::MatrixXf;
  dataset_options dopt;
  dopt.limit_train = cfg.get<long>("data.limit_train");
  dopt.limit_test = cfg.get<long>("data.limit_test");
  gle_network<float>(gle_spec_from_config(cfg, 1, 2));  // check the network description before loading data
  const auto split = load_dataset(cfg.get<std::string>("data.name"), data_dir, dopt);
  check_splits(split, "data.limit_train", "data.limit_test");
  const int n_classes = split.train.n_classes;
  const long T = split.train.dim();  // steps per sample: one scalar input per step
  gle_network<float> net(gle_spec_from_config(cfg, 1, n_classes));
  net.set_threads(cfg.get<int>("dynamics.threads"));
  optimizer_options oo;
  oo.kind = parse_optimizer(cfg.get<std::string>("optimizer.kind"));
  oo.lr = cfg.get<double>("optimizer.lr");
  oo.momentum = cfg.get<double>("optimizer.momentum");
  if (const long ref = cfg.get<long>("optimizer.lr_reference_steps"); ref > 0) oo.lr *= double(ref) / double(T);
  // A lag bank: all-ones fan-out, then identities, never trained (spec §5.4).
  const int bank_layers = cfg.get<int>("network.lag_bank") > 0 ? cfg.get<int>("network.lag_bank_stages") : 0;
  const bool bank_reset = cfg.get<bool>("network.lag_bank_reset");
  if (bank_layers > 0) {
    net.W(0).setOnes();
    for (int l = 1; l < bank_layers; ++l) net.W(l).setIdentity();
    oo.lr_per_group.assign(net.n_groups(), oo.lr);
    for (int l = 0; l < bank_layers; ++l) oo.lr_per_group[l] = 0;
  }
  optimizer<float> opt(oo, net.layout(), net.n_groups());
  opt.set_constraints(gle_tau_constraints(net));
  const long B = cfg.get<long>("run.batch"), TB = cfg.get<long>("run.eval_batch");
  const long epochs = cfg.get<long>("run.epochs");
  const double beta = cfg.get<double>("loss.beta");
  const long patience = cfg.get<long>("schedule.plateau_patience");
  const double factor = cfg.get<double>("schedule.plateau_factor");
  const std::string plateau_on = cfg.get<std::string>("schedule.plateau_on");
  const uint64_t seed = cfg.get<uint64_t>("run.seed");
  batch_iterator it(split.train, B, seed, true, false);
  aligned_vector<float> grad(net.params().size());
  net.reset_state(B);
  double lr_factor = 1, best = std::numeric_limits<double>::infinity();
  long bad = 0;
  std::vector<gle_epoch_report> reports;
  matrix<float> xb;
  std::vector<int32_t> yb;
  matf xt, target, sum_out;
  // Runs one batch of sequences; returns (sum of per-step losses / T, number correct). A
  // sample whose summed output is NaN/Inf is never correct; run_batch counts it in
  // batch_non_finite.
  double readout_loss = 0;  // batch sum of the readout cross-entropy, set by run_batch
  long batch_non_finite = 0;
  auto run_batch = [&](const matrix<float>& xbatch, const std::vector<int32_t>& y, bool learn) {
    const long b = long(y.size());
    xt = xbatch.transpose();  // b x T: column t is the batch's input at step t
    target.setZero(n_classes, b);
    for (long j = 0; j < b; ++j) target(y[j], j) = 1;
    sum_out.setZero(n_classes, b);
    if (bank_layers > 0 && bank_reset) {
      if (net.batch() != b) net.resize_batch(b);
      net.reset_layers(0, bank_layers);
    }
    double loss = 0;
    for (long t = 0; t < T; ++t) {
      Eigen::Map<const matf> x(xt.col(t).data(), 1, b);
      if (learn) {
        net.step(x, &target, float(beta), grad);
        opt.step(net.params(), grad, lr_factor);
      } else {
        net.step(x, nullptr, 0.0f);
      }
      sum_out += net.output();
      loss += gle_loss_value<float>(net.spec().loss, net.output(), target);
    }
    long correct = 0;
    batch_non_finite = 0;
    for (long j = 0; j < b; ++j) {
      if (!sum_out.col(j).allFinite()) {
        ++batch_non_finite;
        continue;
      }
      Eigen::Index m;
      sum_out.col(j).maxCoeff(&m);
      correct += (m == y[j]);
    }
    readout_loss = gle_loss_value<float>(net.spec().loss, matf(sum_out / float(T)), target) * double(b);
    return std::pair<double, long>(loss / double(T), correct);
  };
  static const char* state_names[] = {"u", "v", "r", "dphi", "u_breve", "udot", "e", "e_down"};
  auto state_mats = [](gle_layer_state<float>& s) {
    return std::array<matf*, 8>{&s.u, &s.v, &s.r, &s.dphi, &s.u_breve, &s.udot, &s.e, &s.e_down};
  };
  long first_epoch = 1;
  if (hooks.resume) {
    const checkpoint& ck = *hooks.resume;
    if (ck.meta.value("kind", "") != "gle") throw data_error("not a GLE checkpoint (meta.kind != \"gle\")");
    const auto p = ck.array("params").to_vector<float>();
    if (p.size() != net.params().size())
      throw data_error(fmt::format("checkpoint has {} parameters, the configured network {}", p.size(), net.params().size()));
    std::copy(p.begin(), p.end(), net.params().begin());
    const auto m = opt.m().empty() ? std::vector<float>{} : ck.array("opt_m").to_vector<float>();
    const auto v = opt.v().empty() ? std::vector<float>{} : ck.array("opt_v").to_vector<float>();
    opt.restore(m, v, ck.meta.at("opt_t").get<int64_t>());
    net.reset_state(ck.meta.at("batch").get<long>());
    for (int l = 0; l < net.n_layers(); ++l) {
      auto mats = state_mats(net.state(l));
      for (int k = 0; k < 8; ++k) {
        matf m = ck.array(fmt::format("state{}_{}", l, state_names[k])).to_matrix<float>();
        if (m.rows() != mats[k]->rows() || m.cols() != mats[k]->cols())
          throw data_error(fmt::format("checkpoint state{}_{} has the wrong shape", l, state_names[k]));
        *mats[k] = m;
      }
    }
    lr_factor = ck.array("lr_factor").to_scalar<double>();
    best = ck.array("plateau_best").to_scalar<double>();
    bad = ck.meta.at("plateau_bad").get<long>();
    first_epoch = ck.meta.at("epoch").get<long>() + 1;
  }
  auto make_checkpoint = [&](long epoch) {
    checkpoint ck;
    ck.meta["kind"] = "gle";
    ck.meta["epoch"] = epoch;
    ck.meta["config"] = cfg.to_json();
    ck.meta["opt_t"] = opt.t();
    ck.meta["batch"] = net.batch();
    ck.meta["plateau_bad"] = bad;
    ck.arrays["params"] = checkpoint_array::from_vector(std::vector<float>(net.params().begin(), net.params().end()));
    if (!opt.m().empty()) ck.arrays["opt_m"] = checkpoint_array::from_vector(opt.m());
    if (!opt.v().empty()) ck.arrays["opt_v"] = checkpoint_array::from_vector(opt.v());
    ck.arrays["lr_factor"] = checkpoint_array::from_scalar(lr_factor);
    ck.arrays["plateau_best"] = checkpoint_array::from_scalar(best);
    for (int l = 0; l < net.n_layers(); ++l) {
      auto mats = state_mats(net.state(l));
      for (int k = 0; k < 8; ++k)
        ck.arrays[fmt::format("state{}_{}", l, state_names[k])] = checkpoint_array::from_eigen(*mats[k]);
    }
    return ck;
  };
  for (long epoch = first_epoch; epoch <= epochs; ++epoch) {
    const auto t0 = clock_type::now();
    it.start_epoch(epoch - 1);
    double tr_loss = 0, tr_readout = 0, te_readout = 0;
    long tr_correct = 0, tr_n = 0, steps = 0;
    for (long i = 0; i < it.n_batches(); ++i) {
      if (hooks.should_stop && hooks.should_stop()) return reports;
      it.fill(i, xb, yb);
      const auto [l, c] = run_batch(xb, yb, true);
      tr_loss += l * double(yb.size());
      tr_readout += readout_loss;
      tr_correct += c;
      tr_n += long(yb.size());
      steps += T;
      if (net.nonfinite_steps() > 0 || batch_non_finite > 0 || !std::isfinite(l) || !std::isfinite(readout_loss))
        throw convergence_error(fmt::format("GLE training diverged: non-finite outputs or loss in epoch {}, batch {} "
                                            "(lower optimizer.lr or check the time constants)",
                                            epoch, i + 1),
                                std::numeric_limits<double>::infinity(), epoch);
      if (hooks.on_progress) hooks.on_progress(i + 1, it.n_batches(), tr_loss / double(tr_n), double(tr_correct) / double(tr_n));
    }
    const double train_seconds = seconds_since(t0);
    double te_loss = 0;
    long te_correct = 0, te_non_finite = 0;
    const long n_test = split.test.size();
    for (long s = 0; s < n_test; s += TB) {
      const long b = std::min(TB, n_test - s);
      matrix<float> xtest = split.test.x.middleCols(s, b);
      std::vector<int32_t> ytest(split.test.y.begin() + s, split.test.y.begin() + s + b);
      const auto [l, c] = run_batch(xtest, ytest, false);
      te_loss += l * double(b);
      te_readout += readout_loss;
      te_correct += c;
      te_non_finite += batch_non_finite;
    }
    gle_epoch_report r;
    r.epoch = epoch;
    r.train_loss = tr_loss / double(tr_n);
    r.train_acc = double(tr_correct) / double(tr_n);
    r.test_loss = te_loss / double(n_test);
    r.train_readout_loss = tr_readout / double(tr_n);
    r.test_readout_loss = te_readout / double(n_test);
    r.test_acc = double(te_correct) / double(n_test);
    r.lr = oo.lr * lr_factor;
    r.seconds = seconds_since(t0);
    r.ms_per_step = 1e3 * train_seconds / double(std::max<long>(1, steps));
    r.nonfinite_steps = net.nonfinite_steps();
    // An epoch whose evaluation is not finite is reported by nobody and never checkpointed.
    if (net.nonfinite_steps() > 0 || te_non_finite > 0 || !std::isfinite(r.test_loss) ||
        !std::isfinite(r.test_readout_loss) || !std::isfinite(r.train_loss))
      throw convergence_error(fmt::format("GLE training diverged: {} of {} test samples gave non-finite outputs in epoch "
                                          "{} ({} non-finite steps; lower optimizer.lr or check the time constants)",
                                          te_non_finite, n_test, epoch, net.nonfinite_steps()),
                              std::numeric_limits<double>::infinity(), epoch);
    reports.push_back(r);
    if (hooks.on_epoch) hooks.on_epoch(r);
    if (patience >= 0) {  // ReduceLROnPlateau(mode=min, threshold=1e-4 rel)
      const double watched = plateau_on == "test"            ? r.test_loss
                             : plateau_on == "train"         ? r.train_loss
                             : plateau_on == "test_readout" ? r.test_readout_loss
                                                             : r.train_readout_loss;
      if (watched < best * (1 - 1e-4)) {
        best = watched;
        bad = 0;
      } else if (++bad > patience) {
        lr_factor *= factor;
        bad = 0;
      }
    }
    if (hooks.on_checkpoint) hooks.on_checkpoint(make_checkpoint(epoch));
  }
  if (final_params) final_params->assign(net.params().begin(), net.params().end());
  return reports;
}

}  // namespace eqprop
