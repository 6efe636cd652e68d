#include "eqprop/learn/generalized_ep.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <type_traits>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/dynamics/conv_ops.hpp"
#include "eqprop/model/activate_n.hpp"

namespace eqprop {

// ---------------------------------------------------------------------------------------
// Options

std::string_view to_string(gep_method m) {
  switch (m) {
    case gep_method::cauchy:
      return "cauchy";
    case gep_method::exact:
      return "exact";
    case gep_method::online:
      return "online";
    case gep_method::rbp:
      return "rbp";
  }
  return "?";
}

gep_method parse_gep_method(std::string_view s) {
  if (s == "cauchy") return gep_method::cauchy;
  if (s == "exact") return gep_method::exact;
  if (s == "online") return gep_method::online;
  if (s == "rbp") return gep_method::rbp;
  throw config_error(
      fmt::format("unknown estimator method '{}': expected 'cauchy' (N-point hEP), 'exact' (N = 0, "
                  "forward-mode d r/d beta), 'online' (continuous-time) or 'rbp' (recurrent backprop)",
                  s));
}

void gep_options::validate() const {
  if ((method == gep_method::cauchy || method == gep_method::online) && n_points < 1)
    throw config_error(fmt::format("estimator.n_points must be >= 1, got {}", n_points));
  if (method == gep_method::online && n_points < 2)
    throw config_error("the online estimator needs estimator.n_points >= 2 phases per period");
  if (!(beta > 0) || !std::isfinite(beta)) throw config_error(fmt::format("estimator.beta must be > 0, got {}", beta));
  if (free_steps < 1 || nudged_steps < 1) throw config_error("estimator.free_steps and nudged_steps must be >= 1");
  if (method == gep_method::online && online_steps < nudged_steps)
    throw config_error("estimator.online_steps must be >= nudged_steps (at least one segment)");
  if (rbp_steps < 0) throw config_error("estimator.rbp_steps must be >= 0");
  if (!(fail_residual > 0)) throw config_error("estimator.fail_residual must be > 0");
  if (!(tol > 0)) throw config_error("relax.tol must be > 0");
  if (!(homeo_lambda >= 0) || !std::isfinite(homeo_lambda))
    throw config_error(fmt::format("homeostasis.lambda must be >= 0, got {}", homeo_lambda));
  if (homeo_probes < 1) throw config_error(fmt::format("homeostasis.probes must be >= 1, got {}", homeo_probes));
}

ep_options gep_options::cauchy_options() const {
  ep_options o;
  o.n_points = n_points;
  o.beta = beta;
  o.free = free_relax();
  o.nudged = relax_options{nudged_steps, tol};
  o.nudged.precision = precision;
  o.fail_residual = fail_residual;
  o.threads = threads;
  return o;
}

relax_options gep_options::free_relax() const {
  relax_options o{free_steps, tol, stop_early};
  o.freeze_converged = freeze_converged;
  o.omega = omega;
  o.order = order;
  o.precision = precision;
  return o;
}

continuous_options gep_options::online_options() const {
  continuous_options o;
  o.n_points = n_points;
  o.beta = beta;
  o.steps_per_point = nudged_steps;
  o.segments = online_steps / nudged_steps;
  o.tol = tol;
  o.precision = precision;
  o.fail_residual = fail_residual;
  o.threads = threads;
  return o;
}

rbp_options gep_options::backprop_options() const {
  rbp_options o;
  o.free = free_relax();
  o.adjoint_steps = rbp_steps;
  o.dense = rbp_dense;
  o.fail_residual = fail_residual;
  o.threads = threads;
  return o;
}

// ---------------------------------------------------------------------------------------
// Estimator

template <class R>
template <class E>
void generalized_ep<R>::bind(std::unique_ptr<E> e) {
  E* p = e.get();
  slices_ = [p] { return p->n_slices(); };
  free_ = [p](int t) -> const vf_state<R>& { return p->free_state(t); };
  terms_ = [p](int t) -> const std::vector<matrix<R>>& { return p->slice_terms(t); };
  weights_ = [p](int t) -> const vector<R>& { return p->slice_weights(t); };
  est_ = std::move(e);
}

template <class R>
generalized_ep<R>::generalized_ep(gep_options opt) : opt_(opt) {
  opt_.validate();
  rng_.seed(opt_.seed);
  using VF = vector_field_network<R>;
  switch (opt_.method) {
    case gep_method::cauchy:
      bind(std::make_unique<cauchy_ep<R, VF>>(opt_.cauchy_options()));
      break;
    case gep_method::exact:
      bind(std::make_unique<forward_mode_ep<R>>(opt_.cauchy_options()));
      break;
    case gep_method::online:
      bind(std::make_unique<continuous_hep<R, VF>>(opt_.online_options()));
      break;
    case gep_method::rbp:
      bind(std::make_unique<recurrent_backprop<R>>(opt_.backprop_options()));
      break;
  }
}

template <class R>
const vf_state<R>& generalized_ep<R>::free_state(int t) const {
  if (n_slices() == 0) throw internal_error("generalized_ep::free_state: no estimate yet");
  return free_(t);
}

template <class R>
int generalized_ep<R>::n_slices() const {
  return eps_.empty() ? 0 : slices_();
}

template <class R>
std::string generalized_ep<R>::name() const {
  std::string h = opt_.homeo_lambda > 0 ? fmt::format(" + homeostasis lambda={}", opt_.homeo_lambda) : "";
  switch (opt_.method) {
    case gep_method::cauchy:
      return fmt::format("generalized hEP N={} |beta|={}{}", opt_.n_points, opt_.beta, h);
    case gep_method::exact:
      return fmt::format("generalized hEP exact d r/d beta (N=0){}", h);
    case gep_method::online:
      return fmt::format("continuous-time generalized hEP N={} |beta|={} T={}{}", opt_.n_points, opt_.beta,
                         opt_.online_steps, h);
    case gep_method::rbp:
      return fmt::format("recurrent backprop ({}){}", opt_.rbp_dense ? "dense" : "iterative", h);
  }
  return "?";
}

template <class R>
gep_result generalized_ep<R>::estimate(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                                       std::span<R> grad) {
  check_grad_size(net, grad, "generalized EP");
  if (x.cols() != y.cols()) throw shape_error(fmt::format("{} inputs but {} targets", x.cols(), y.cols()));
  gep_result out;
  static_cast<grad_result&>(out) = est_->estimate(net, x, y, grad);
  // The error vectors of the batch, dropped samples zeroed.
  const int K = net.n_layers();
  const long B = x.cols();
  eps_.assign(K + 1, matrix<R>());
  for (int i = 1; i <= K; ++i) eps_[i].resize(net.size(i), B);
  const int T = slices_();
  long c = 0;
  for (int t = 0; t < T; ++t) {
    const auto& e = terms_(t);
    const auto& w = weights_(t);
    for (int i = 1; i <= K; ++i) {
      eps_[i].middleCols(c, w.size()) = e[i];
      for (long b = 0; b < w.size(); ++b)
        if (w(b) == R(0)) eps_[i].col(c + b).setZero();
    }
    c += w.size();
  }
  if (opt_.homeo_lambda > 0) {
    if (net.spec().is_convnet()) {  // the Jacobian depends on the state: probes at every sample's free state
      for (int t = 0; t < T; ++t) {
        const double share = double(free_state(t).batch()) / double(B);
        out.homeo_loss +=
            share * homeostatic_loss_at(net, free_state(t), opt_.homeo_probes, rng_, grad, opt_.homeo_lambda * share);
      }
    } else {
      out.homeo_loss = homeostatic_loss_mc(net, long(opt_.homeo_probes) * B, rng_, grad, opt_.homeo_lambda);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Homeostasis and diagnostics

namespace {
template <class R>
std::vector<long> layer_offsets(const vector_field_network<R>& net) {
  std::vector<long> off(net.n_layers() + 2, 0);
  for (int i = 2; i <= net.n_layers() + 1; ++i) off[i] = off[i - 1] + net.size(i - 1);
  return off;  // off[i] = start of layer i (i >= 1); off[K+1] = n
}

// out = C v (or C^T v) over layers 1..K with the network's own parameters.
template <class R>
void couple(const vector_field_network<R>& net, const std::vector<matrix<R>>& v, std::vector<matrix<R>>& out,
            bool transpose) {
  const int K = net.n_layers();
  out.resize(K + 1);
  for (int i = 1; i <= K; ++i) out[i].setZero(net.size(i), v[i].cols());
  for (int e = 0; e < net.n_edges(); ++e) {
    const auto& ed = net.edges()[e];
    if (ed.src == 0) continue;
    if (!transpose) out[ed.dst].noalias() += net.M(e) * v[ed.src];
    else out[ed.src].noalias() += net.M(e).transpose() * v[ed.dst];
  }
}
}  // namespace

template <class R>
matrix<double> coupling_matrix(const vector_field_network<R>& net) {
  if (net.spec().is_convnet())
    throw config_error(
        "a ConvNet's Jacobian depends on the state: use the probe estimates at a state "
        "(homeostatic_loss_at, jacobian_stats_at) instead of the dense coupling matrix");
  const auto off = layer_offsets(net);
  const long n = off[net.n_layers() + 1];
  matrix<double> Cm = matrix<double>::Zero(n, n);
  for (int e = 0; e < net.n_edges(); ++e) {
    const auto& ed = net.edges()[e];
    if (ed.src == 0) continue;
    Cm.block(off[ed.dst], off[ed.src], net.size(ed.dst), net.size(ed.src)) += net.M(e).template cast<double>();
  }
  return Cm;
}

template <class R>
double homeostatic_loss_mc(const vector_field_network<R>& net, long n_probes, rng_t& rng, std::span<R> grad,
                           double coef) {
  if (n_probes < 1) throw config_error("homeostatic_loss_mc: need at least one probe");
  const int K = net.n_layers();
  const long n = net.spec().n_states();
  std::vector<matrix<R>> eps(K + 1), v, w, c;
  for (int i = 1; i <= K; ++i) {
    eps[i].resize(net.size(i), n_probes);
    for (long b = 0; b < n_probes; ++b)  // probe by probe: a probe's draws do not depend on the batch size
      for (long k = 0; k < net.size(i); ++k) eps[i](k, b) = R(standard_normal(rng));
  }
  couple(net, eps, v, false);  // J eps = C eps - eps
  for (int i = 1; i <= K; ++i) v[i] -= eps[i];
  couple(net, v, w, false);  // J (J eps)
  for (int i = 1; i <= K; ++i) w[i] -= v[i];
  double value = 0;
  for (int i = 1; i <= K; ++i) value += double(v[i].squaredNorm()) - double(eps[i].cwiseProduct(w[i]).sum());
  const double scale = 1.0 / (double(n) * double(n_probes));
  if (!grad.empty()) {
    couple(net, eps, c, true);  // J^T eps
    for (int i = 1; i <= K; ++i) c[i] -= eps[i];
    // d/dC [|J eps|^2 - eps^T J^2 eps] = 2 v eps^T - eps v^T - (J^T eps) eps^T
    const R s = R(coef * scale);
    for (int e = 0; e < net.n_edges(); ++e) {
      const auto& ed = net.edges()[e];
      if (ed.src == 0) continue;
      auto G = block_view(grad, net.weight_block(e));
      G.noalias() += (R(2) * s) * v[ed.dst] * eps[ed.src].transpose();
      G.noalias() -= s * eps[ed.dst] * v[ed.src].transpose();
      G.noalias() -= s * c[ed.dst] * eps[ed.src].transpose();
    }
  }
  return value * scale;
}

template <class R>
double homeostatic_loss_exact(const vector_field_network<R>& net, std::span<R> grad, double coef) {
  const matrix<double> Cm = coupling_matrix(net);
  const long n = Cm.rows();
  const matrix<double> A = 0.5 * (Cm - Cm.transpose());
  if (!grad.empty()) {
    const auto off = layer_offsets(net);
    for (int e = 0; e < net.n_edges(); ++e) {
      const auto& ed = net.edges()[e];
      if (ed.src == 0) continue;
      block_view(grad, net.weight_block(e)) +=
          (coef * 4.0 / double(n) * A.block(off[ed.dst], off[ed.src], net.size(ed.dst), net.size(ed.src)))
              .template cast<R>();
    }
  }
  return 2.0 * A.squaredNorm() / double(n);
}

namespace {
// probes_per_sample Gaussian probes at every sample of st (columns p * B + b), in a state
// holding st's input and activities replicated; J eps = dC/dr eps - eps (activations bypassed).
template <class R>
struct probe_batch {
  matrix<R> x, y;
  std::vector<matrix<R>> r, eps, Jeps;
  vf_state<R> st;
  probe_batch(const vector_field_network<R>& net, const vf_state<R>& at, long probes_per_sample, rng_t& rng) {
    if (probes_per_sample < 1) throw config_error("homeostasis: need at least one probe per sample");
    const int K = net.n_layers();
    const long B = at.batch(), P = probes_per_sample * B;
    x.resize(net.size(0), P);
    y.resize(net.spec().n_classes, P);
    r.assign(K + 1, matrix<R>());
    eps.assign(K + 1, matrix<R>());
    for (int i = 1; i <= K; ++i) {
      r[i].resize(net.size(i), P);
      eps[i].resize(net.size(i), P);
    }
    for (long p = 0; p < probes_per_sample; ++p) {
      x.middleCols(p * B, B) = at.r()[0];
      y.middleCols(p * B, B) = at.y();
      for (int i = 1; i <= K; ++i) r[i].middleCols(p * B, B) = at.r()[i];
    }
    for (long c = 0; c < P; ++c)
      for (int i = 1; i <= K; ++i)
        for (long k = 0; k < net.size(i); ++k) eps[i](k, c) = R(standard_normal(rng));
    st.set_input(net, x, y);
    st.set_activities(r);
    jvp(eps, Jeps);
  }
  void jvp(const std::vector<matrix<R>>& v, std::vector<matrix<R>>& out) {
    st.coupling_jvp(v, out);
    for (size_t i = 1; i < out.size(); ++i) out[i] -= v[i];
  }
  void vjp(const std::vector<matrix<R>>& v, std::vector<matrix<R>>& out) {
    st.coupling_vjp(v, out);
    for (size_t i = 1; i < out.size(); ++i) out[i] -= v[i];
  }
  long columns() const { return x.cols(); }
  // grad += s * d/dtheta <a, J(theta) b> at the fixed activities: complex step in r along b
  // of the parameter VJP (exact to rounding: the field is analytic in r, or piecewise linear
  // for max pooling).
  void add_mixed(const vector_field_network<R>& net, const std::vector<matrix<R>>& a, const std::vector<matrix<R>>& b,
                 R s, std::span<R> grad) const {
    using C = std::complex<R>;
    const R h = std::is_same_v<R, float> ? R(1e-10) : R(1e-20);
    vf_state<C> cs;
    cs.set_input(net, x, y);
    std::vector<matrix<C>> rc(r.size()), ac(r.size());
    for (size_t i = 1; i < r.size(); ++i) {
      rc[i] = r[i].template cast<C>() + C(0, h) * b[i].template cast<C>();
      ac[i] = a[i].template cast<C>();
    }
    cs.set_activities(rc);
    cs.add_param_vjp(ac, C(0, -s / h), grad);
  }
};
}  // namespace

template <class R>
double homeostatic_loss_at(const vector_field_network<R>& net, const vf_state<R>& at, long probes_per_sample,
                           rng_t& rng, std::span<R> grad, double coef) {
  probe_batch<R> pb(net, at, probes_per_sample, rng);
  const int K = net.n_layers();
  std::vector<matrix<R>> JJeps;
  pb.jvp(pb.Jeps, JJeps);
  double value = 0;
  for (int i = 1; i <= K; ++i)
    value += double(pb.Jeps[i].squaredNorm()) - double(pb.eps[i].cwiseProduct(JJeps[i]).sum());
  const double scale = 1.0 / (double(net.spec().n_states()) * double(pb.columns()));
  if (!grad.empty()) {
    // d[|J e|^2 - e^T J J e] = 2 <Je, dJ e> - <J^T e, dJ e> - <e, dJ (J e)>
    std::vector<matrix<R>> JTeps, a(K + 1);
    pb.vjp(pb.eps, JTeps);
    for (int i = 1; i <= K; ++i) a[i] = R(2) * pb.Jeps[i] - JTeps[i];
    const R s = R(coef * scale);
    pb.add_mixed(net, a, pb.eps, s, grad);
    pb.add_mixed(net, pb.eps, pb.Jeps, -s, grad);
  }
  return value * scale;
}

template <class R>
jacobian_stats jacobian_stats_at(const vector_field_network<R>& net, const vf_state<R>& at, long probes_per_sample,
                                 rng_t& rng) {
  probe_batch<R> pb(net, at, probes_per_sample, rng);
  std::vector<matrix<R>> JTeps;
  pb.vjp(pb.eps, JTeps);
  double s2 = 0, a2 = 0;  // E |S e|^2 = |S|_F^2, E |A e|^2 = |A|_F^2 (per sample)
  for (int i = 1; i <= net.n_layers(); ++i) {
    s2 += double((pb.Jeps[i] + JTeps[i]).squaredNorm()) / 4;
    a2 += double((pb.Jeps[i] - JTeps[i]).squaredNorm()) / 4;
  }
  s2 /= double(pb.columns());
  a2 /= double(pb.columns());
  jacobian_stats out;
  out.symmetry_index = std::sqrt(s2) / (std::sqrt(s2) + std::sqrt(a2));
  out.homeo = 2 * a2 / double(net.spec().n_states());
  return out;
}

template <class R>
double jacobian_symmetry_index(const vector_field_network<R>& net) {
  const matrix<double> Cm = coupling_matrix(net);
  const matrix<double> S = 0.5 * (Cm + Cm.transpose()) - matrix<double>::Identity(Cm.rows(), Cm.cols());
  const double s = S.norm(), a = (0.5 * (Cm - Cm.transpose())).norm();
  return s / (s + a);
}

template <class R>
double feedback_angle_deg(const vector_field_network<R>& net) {
  double dot = 0, nw = 0, nb = 0;
  bool any = false;
  for (int e = 0; e < net.n_edges(); ++e) {
    if (net.edges()[e].forward) continue;
    const int f = net.reciprocal(e);
    if (f < 0) continue;
    any = true;
    const matrix<double> W = net.M(f).template cast<double>(), Bm = net.M(e).template cast<double>();
    // A conv feedback kernel is compared with the forward kernel itself (the VJP transposes it).
    dot += net.is_conv_edge(e) ? W.cwiseProduct(Bm).sum() : W.cwiseProduct(Bm.transpose()).sum();
    nw += W.squaredNorm();
    nb += Bm.squaredNorm();
  }
  if (!any) return NAN;
  const double c = std::clamp(dot / std::sqrt(nw * nb), -1.0, 1.0);
  return std::acos(c) * 180.0 / std::numbers::pi;
}

template <class R>
gep_diagnostics gep_diagnose(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                             const gep_options& ep, bool rbp_dense) {
  gep_diagnostics d;
  gep_options eo = ep;
  eo.homeo_lambda = 0;
  eo.threads = 1;  // the free state read below is the whole batch's
  gep_options ro = eo;
  ro.method = gep_method::rbp;
  ro.rbp_dense = rbp_dense;
  generalized_ep<R> e1(eo), e2(ro);
  aligned_vector<R> g1(net.n_params()), g2(net.n_params());
  const auto r1 = e1.estimate(net, x, y, g1);
  const auto r2 = e2.estimate(net, x, y, g2);
  d.n_dropped_ep = r1.n_dropped;
  d.n_dropped_rbp = r2.n_dropped;
  d.n_free_not_converged = r2.free.n_not_converged;
  for (int i = 1; i <= net.n_layers(); ++i) {
    const auto& a = e1.error_vectors()[i];
    const auto& b = e2.error_vectors()[i];
    const double na = double(a.norm()), nb = double(b.norm());
    d.layer_cosine.push_back(na > 0 && nb > 0 ? double(a.cwiseProduct(b).sum()) / (na * nb) : NAN);
  }
  const Eigen::Map<const vector<R>> v1(g1.data(), g1.size()), v2(g2.data(), g2.size());
  d.grad_cosine = double(v1.dot(v2)) / (double(v1.norm()) * double(v2.norm()));
  d.grad_rel_error = double((v1 - v2).norm()) / double(v2.norm());
  d.angle_deg = feedback_angle_deg(net);
  if (net.spec().is_convnet()) {  // probes at the free states of the batch
    rng_t rng(ep.seed ^ 0x6469616700ull);
    const auto js = jacobian_stats_at(net, e2.free_state(), 16, rng);
    d.symmetry_index = js.symmetry_index;
    d.homeo_exact = js.homeo;
  } else {
    d.symmetry_index = jacobian_symmetry_index(net);
    d.homeo_exact = homeostatic_loss_exact(net);
  }
  return d;
}

#define EQPROP_GEP_INSTANTIATE(R)                                                                                     \
  template class generalized_ep<R>;                                                                                   \
  template matrix<double> coupling_matrix(const vector_field_network<R>&);                                            \
  template double homeostatic_loss_mc(const vector_field_network<R>&, long, rng_t&, std::span<R>, double);            \
  template double homeostatic_loss_exact(const vector_field_network<R>&, std::span<R>, double);                       \
  template double homeostatic_loss_at(const vector_field_network<R>&, const vf_state<R>&, long, rng_t&, std::span<R>, \
                                      double);                                                                        \
  template jacobian_stats jacobian_stats_at(const vector_field_network<R>&, const vf_state<R>&, long, rng_t&);        \
  template double jacobian_symmetry_index(const vector_field_network<R>&);                                            \
  template double feedback_angle_deg(const vector_field_network<R>&);                                                 \
  template gep_diagnostics gep_diagnose(const vector_field_network<R>&, const matrix<R>&, const matrix<R>&,           \
                                        const gep_options&, bool);
EQPROP_GEP_INSTANTIATE(float)
EQPROP_GEP_INSTANTIATE(double)

}  // namespace eqprop
