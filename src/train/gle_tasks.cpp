#include "eqprop/train/gle_tasks.hpp"

#include <array>
#include <chrono>
#include <cmath>
#include <complex>
#include <numbers>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/learn/gle_reference.hpp"
#include "eqprop/train/experiment.hpp"
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
  return {tau_m,       tau_r,       omega,       dt,          std::abs(H),  std::arg(H),
          std::abs(G), std::arg(G), std::abs(A), std::arg(A), std::abs(Ht), std::arg(Ht)};
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
    case gle_rule::gle:
      return "gle";
    case gle_rule::bp_instantaneous:
      return "bp";
    case gle_rule::bptt:
      return "bptt";
    case gle_rule::adjoint:
      return "adjoint";
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
        auto r = gle_reference_gradient<double>(
            student, xs, ts, o.beta, o.rule == gle_rule::bptt ? gle_reference_kind::bptt : gle_reference_kind::adjoint);
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
const config_schema& gle_schema() {
  static const config_schema schema = [] {
    using cc = config_constraint;
    namespace lim = config_limits;
    const cc positive = cc::greater_than(0);
    const cc activation = cc::one_of({"linear", "tanh", "softplus", "logistic", "clamp01", "relu"});
    config_schema s;
    add_model_kind_key(s, model_kind::gle);
    add_data_keys(s, "mnist1d_gle");  // any data set works as sequences of its features (mnist1d_gle: 360 steps)
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
    s.add("network.lag_bank_stages", int64_t(4), cc::closed(1, double(lim::layers)),
          "low-pass stages per lag-bank channel (1 -> n, then n -> n identities)");
    s.add("network.lag_bank_tau", std::vector<double>{0.2, 1.8}, positive.sizes(2, 2),
          "[tau_min, tau_max] of the lag-bank channels' tau_m (linspace, rounded to 2 decimals; tau_r = dt)");
    s.add("network.lag_bank_reset", true, "restart the lag bank from zero at every batch (as the reference)");
    s.add("network.init", std::string("kaiming_uniform"), cc::one_of({"kaiming_uniform", "normal"}),
          "kaiming_uniform (U(+-1/sqrt(fan_in))) or normal");
    s.add("network.init_std", 0.05, cc::at_least(0), "std of the normal init");
    s.add("network.dtype", std::string("float32"), cc::one_of({"float32", "float64"}),
          "scalar type of parameters and states");
    s.add("dynamics.dt", 0.2, positive, "Euler time step (one input sample per step)");
    s.add("dynamics.gamma", 0.0, cc::at_least(0), "error-to-membrane coupling");
    s.add("dynamics.prospective_errors", true, "GLE error neurons (false: instantaneous-error BP)");
    s.add("dynamics.learn_tau_m", false, "learn membrane time constants (clamped to [dt, 100])");
    s.add("dynamics.threads", int64_t(1), cc::closed(0, lim::threads),
          "threads for the layers of a step (0: all cores; results do not depend on it; more than 1 only pays on an "
          "otherwise idle machine)");
    s.add("loss.kind", std::string("ce"), cc::one_of({"ce", "mse"}), "ce (softmax cross-entropy) or mse");
    s.add("loss.beta", 1.0, positive, "output nudging strength");
    // The optimizer steps every time step: optimizer.lr is a rate per step (paper: 5e-3 * 72 / 360).
    add_optimizer_keys(s, {.lr = 1e-3,
                           .momentum = 0.0,
                           .kind = "adam",
                           .plateau_patience = 2,
                           .plateau_on = {"test", "train", "test_readout", "train_readout"}});
    s.add("optimizer.lr_reference_steps", int64_t(0), cc::closed(0, lim::steps),
          "> 0: lr is given per sample of this many steps and scaled by it / steps per sample (the paper's "
          "5e-3 with 72 gives 1e-3 at 360 steps), so the update per sample does not depend on the resolution");
    add_run_keys(s, 150, 100, 1000, 12);
    add_activation_renames(s, "network.first_activation", activation_family::gle);
    add_activation_renames(s, "network.activation", activation_family::gle);
    s.saved_default("network.initial_state", std::string("rest"));  // the start of runs written before the key
    auto fixed = common_fixed_on_resume();
    fixed.push_back("dynamics.learn_tau_m");  // the optimizer state's layout
    s.fixed_on_resume(fixed);
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

template <class R>
gle_network<R> gle_network_from_config(const config& cfg, int n_classes) {
  gle_network<R> net(gle_spec_from_config(cfg, 1, n_classes));
  net.set_threads(cfg.get<int>("dynamics.threads"));
  const int bank_layers = gle_sequence_setup_from_config(cfg).bank_layers;
  if (bank_layers > 0) net.W(0).setOnes();
  for (int l = 1; l < bank_layers; ++l) net.W(l).setIdentity();
  net.reset_state(cfg.get<long>("run.batch"));
  return net;
}

gle_sequence_setup gle_sequence_setup_from_config(const config& cfg) {
  return {cfg.get<int>("network.lag_bank") > 0 ? cfg.get<int>("network.lag_bank_stages") : 0,
          cfg.get<bool>("network.lag_bank_reset")};
}

template <class R>
void gle_run_sequences(gle_network<R>& net, const gle_sequence_setup& setup, const matrix<R>& x,
                       const gle_sequence_options<R>& options, gle_sequence_result<R>& result) {
  using mat = matrix<R>;
  const long B = x.cols(), T = x.rows();
  const bool learn = !options.grad.empty();
  if (learn && options.y == nullptr) throw shape_error("GLE learning needs targets");
  if (options.y && (options.y->rows() != net.n_output() || options.y->cols() != B))
    throw shape_error(fmt::format("GLE targets are {}x{}, the batch needs {}x{}", options.y->rows(), options.y->cols(),
                                  net.n_output(), B));
  const mat xt = x.transpose();  // B x T: column t is the batch's input at step t
  if (net.batch() != B) net.resize_batch(B);
  if (setup.bank_layers > 0 && setup.bank_reset) net.reset_layers(0, setup.bank_layers);
  result.sum_out.setZero(net.n_output(), B);
  result.step_loss.assign(options.y ? std::size_t(B) : 0, 0.0);
  result.readout.assign(options.y ? std::size_t(B) : 0, 0.0);
  result.outputs.clear();
  for (long t = 0; t < T; ++t) {
    Eigen::Map<const mat> xs(xt.col(t).data(), 1, B);
    if (learn) {
      net.step(xs, options.y, options.beta, options.grad);
      if (options.update) options.update();
    } else {
      net.step(xs, nullptr, R(0));
    }
    result.sum_out += net.output();
    if (options.record) result.outputs.push_back(net.output());
    if (options.y) gle_add_sample_losses<R>(net.spec().loss, net.output(), *options.y, result.step_loss);
  }
  if (!options.y) return;
  for (double& l : result.step_loss) l /= double(T);
  gle_add_sample_losses<R>(net.spec().loss, mat(result.sum_out / R(T)), *options.y, result.readout);
}

template <class R>
void gle_class_scores(gle_network<R>& net, const gle_sequence_setup& setup, const matrix<R>& x,
                      gle_sequence_result<R>& result, const matrix<R>* y) {
  gle_sequence_options<R> free;
  free.y = y;
  gle_run_sequences(net, setup, x, free, result);
}

#define EQPROP_GLE_SEQUENCES(R)                                                                 \
  template gle_network<R> gle_network_from_config(const config&, int);                          \
  template void gle_run_sequences(gle_network<R>&, const gle_sequence_setup&, const matrix<R>&, \
                                  const gle_sequence_options<R>&, gle_sequence_result<R>&);     \
  template void gle_class_scores(gle_network<R>&, const gle_sequence_setup&, const matrix<R>&,  \
                                 gle_sequence_result<R>&, const matrix<R>*);
EQPROP_GLE_SEQUENCES(float)
EQPROP_GLE_SEQUENCES(double)
#undef EQPROP_GLE_SEQUENCES

}  // namespace eqprop
