#include "eqprop/model/gle_network.hpp"

#include <algorithm>
#include <cmath>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <fmt/format.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"

namespace eqprop {

gle_initial_state parse_gle_initial_state(std::string_view name) {
  if (name == "zero") return gle_initial_state::zero;
  if (name == "rest") return gle_initial_state::rest;
  throw config_error(fmt::format("unknown GLE initial state '{}': expected zero or rest", name));
}

std::string_view to_string(gle_initial_state s) { return s == gle_initial_state::zero ? "zero" : "rest"; }

gle_loss parse_gle_loss(std::string_view name) {
  if (name == "mse") return gle_loss::mse;
  if (name == "ce") return gle_loss::ce;
  throw config_error(fmt::format("unknown GLE loss '{}': expected mse or ce", name));
}

std::string_view to_string(gle_loss l) { return l == gle_loss::mse ? "mse" : "ce"; }

std::vector<int> gle_spec::sizes() const {
  std::vector<int> s{n_input};
  for (const auto& L : layers) s.push_back(L.size);
  return s;
}

void set_tau_groups(gle_layer_spec& spec, const std::vector<gle_tau_group>& groups) {
  spec.tau_m.clear();
  spec.tau_r.clear();
  for (const auto& g : groups) {
    if (g.count < 0) throw config_error("tau group with a negative neuron count");
    spec.tau_m.insert(spec.tau_m.end(), std::size_t(g.count), g.tau_m);
    spec.tau_r.insert(spec.tau_r.end(), std::size_t(g.count), g.tau_r);
  }
  if (int(spec.tau_m.size()) != spec.size)
    throw config_error(fmt::format("tau groups cover {} neurons but the layer has {}", spec.tau_m.size(), spec.size));
}

std::vector<gle_tau_group> parse_tau_groups(std::string_view text) {
  std::vector<gle_tau_group> out;
  std::string s(text);
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    std::string item = s.substr(pos, comma - pos);
    item.erase(std::remove_if(item.begin(), item.end(), [](char c) { return std::isspace((unsigned char)c); }),
               item.end());
    pos = comma + 1;
    if (item.empty()) continue;
    gle_tau_group g{};
    char c1 = 0, c2 = 0;
    int consumed = 0;
    if (std::sscanf(item.c_str(), "%d%c%lf%c%lf%n", &g.count, &c1, &g.tau_m, &c2, &g.tau_r, &consumed) != 5 ||
        c1 != ':' || c2 != ':' || consumed != int(item.size()))
      throw config_error(fmt::format("bad tau group '{}': expected count:tau_m:tau_r, e.g. 18:0.6:0.2", item));
    out.push_back(g);
  }
  if (out.empty()) throw config_error("empty tau group list");
  return out;
}

template <class R>
gle_network<R>::gle_network(gle_spec spec) : spec_(std::move(spec)) {
  if (spec_.n_input < 1) throw config_error("GLE network: n_input must be >= 1");
  if (spec_.layers.empty()) throw config_error("GLE network: at least one layer (the output) is needed");
  if (!(spec_.dt > 0)) throw config_error("GLE network: dt must be > 0");
  if (spec_.tau_min == 0) spec_.tau_min = spec_.dt;
  rng_t rng(spec_.seed);
  int n_prev = spec_.n_input;
  for (int l = 0; l < n_layers(); ++l) {
    auto& L = spec_.layers[l];
    if (L.size < 1) throw config_error(fmt::format("GLE layer {}: size must be >= 1", l));
    if (L.tau_m.empty()) L.tau_m.assign(L.size, 1.0);
    if (L.tau_r.empty()) L.tau_r = L.tau_m;
    if (int(L.tau_m.size()) != L.size || int(L.tau_r.size()) != L.size)
      throw config_error(fmt::format("GLE layer {}: {} neurons but {} tau_m and {} tau_r values", l, L.size,
                                     L.tau_m.size(), L.tau_r.size()));
    for (int i = 0; i < L.size; ++i)
      if (!(L.tau_m[i] >= spec_.dt * (1 - 1e-12)) || !(L.tau_r[i] >= spec_.dt * (1 - 1e-12)))
        throw config_error(
            fmt::format("GLE layer {} neuron {}: tau_m = {}, tau_r = {} must both be >= dt = {} "
                        "(forward Euler is unstable otherwise)",
                        l, i, L.tau_m[i], L.tau_r[i], spec_.dt));
    w_off_.push_back(params_.block(params_.add(fmt::format("W{}", l), l, L.size, n_prev)).offset);
    b_off_.push_back(L.bias ? params_.block(params_.add(fmt::format("b{}", l), l, L.size, 1)).offset : -1);
    vec tm = Eigen::Map<const Eigen::VectorXd>(L.tau_m.data(), L.size).cast<R>();
    tau_r_.push_back(Eigen::Map<const Eigen::VectorXd>(L.tau_r.data(), L.size).cast<R>());
    inv_tau_r_.push_back(tau_r_.back().cwiseInverse());
    inv_tau_m_.push_back(tm.cwiseInverse());
    tau_off_.push_back(spec_.learn_tau_m ? params_.block(params_.add(tau_m_block(l), l, L.size, 1)).offset : -1);
    tau_fixed_.push_back(tm);
    n_prev = L.size;
  }
  n_prev = spec_.n_input;
  for (int l = 0; l < n_layers(); ++l) {
    const int n = spec_.layers[l].size;
    const double k = 1.0 / std::sqrt(double(n_prev));
    auto draw = [&]() -> R {
      switch (spec_.init) {
        case gle_init::kaiming_uniform:
          return R(k * (2 * uniform01(rng) - 1));
        case gle_init::normal:
          return R(spec_.init_std * standard_normal(rng));
        case gle_init::uniform01:
          return R(uniform01(rng));
      }
      return R(0);
    };
    R* w = params_.data() + w_off_[l];
    for (long i = 0; i < long(n) * n_prev; ++i) w[i] = draw();
    if (b_off_[l] >= 0)
      for (int i = 0; i < n; ++i) params_.data()[b_off_[l] + i] = draw();
    if (tau_off_[l] >= 0)
      for (int i = 0; i < n; ++i) params_.data()[tau_off_[l] + i] = tau_fixed_[l][i];
    macs_per_sample_ += (l == 0 ? 2.0 : 3.0) * double(n) * n_prev;  // no W^T e below layer 0
    n_prev = n;
  }
  state_.resize(n_layers());
  r_next_.resize(n_layers());
  e_down_next_.resize(n_layers());
  g_.resize(n_layers());
}

template <class R>
typename gle_network<R>::map gle_network<R>::W(int l) {
  const int nin = l == 0 ? spec_.n_input : spec_.layers[l - 1].size;
  return map(params_.data() + w_off_.at(l), spec_.layers[l].size, nin);
}
template <class R>
typename gle_network<R>::cmap gle_network<R>::W(int l) const {
  const int nin = l == 0 ? spec_.n_input : spec_.layers[l - 1].size;
  return cmap(params_.data() + w_off_.at(l), spec_.layers[l].size, nin);
}
template <class R>
R* gle_network<R>::b(int l) {
  return b_off_.at(l) < 0 ? nullptr : params_.data() + b_off_[l];
}
template <class R>
const R* gle_network<R>::b(int l) const {
  return b_off_.at(l) < 0 ? nullptr : params_.data() + b_off_[l];
}
template <class R>
Eigen::Map<typename gle_network<R>::vec> gle_network<R>::tau_m(int l) {
  R* p = tau_off_.at(l) >= 0 ? params_.data() + tau_off_[l] : tau_fixed_[l].data();
  return Eigen::Map<vec>(p, spec_.layers[l].size);
}
template <class R>
Eigen::Map<const typename gle_network<R>::vec> gle_network<R>::tau_m(int l) const {
  const R* p = tau_off_.at(l) >= 0 ? params_.data() + tau_off_[l] : tau_fixed_[l].data();
  return Eigen::Map<const vec>(p, spec_.layers[l].size);
}

template <class R>
void gle_network<R>::reset_state(long B) {
  if (B < 1) throw shape_error("GLE network: batch size must be >= 1");
  batch_ = B;
  for (int l = 0; l < n_layers(); ++l) {
    const int n = spec_.layers[l].size, nin = l == 0 ? spec_.n_input : spec_.layers[l - 1].size;
    auto& s = state_[l];
    for (mat* m : {&s.u, &s.v, &s.r, &s.dphi, &s.u_breve, &s.udot, &s.e, &r_next_[l], &g_[l]}) m->setZero(n, B);
    initial_state(l);
    s.e_down.setZero(nin, B);
    e_down_next_[l].setZero(nin, B);
  }
}

template <class R>
void gle_network<R>::reset_layers(int from, int to) {
  if (batch_ == 0) return;
  for (int l = std::max(0, from); l < std::min(to, n_layers()); ++l) {
    auto& s = state_[l];
    for (mat* m : {&s.u, &s.v, &s.r, &s.dphi, &s.u_breve, &s.udot, &s.e, &s.e_down}) m->setZero();
    initial_state(l);
  }
}

template <class R>
void gle_network<R>::initial_state(int l) {
  auto& s = state_[l];
  if (spec_.initial_state == gle_initial_state::rest) apply_activation<R>(spec_.layers[l].phi, s.u_breve, s.r, s.dphi);
}

template <class R>
void gle_network<R>::resize_batch(long B) {
  if (batch_ == 0) return reset_state(B);
  if (B == batch_) return;
  auto tile = [&](mat& m) {
    mat t(m.rows(), B);
    for (long j = 0; j < B; ++j) t.col(j) = m.col(j % batch_);
    m.swap(t);
  };
  for (int l = 0; l < n_layers(); ++l) {
    auto& s = state_[l];
    for (mat* m : {&s.u, &s.v, &s.r, &s.dphi, &s.u_breve, &s.udot, &s.e, &s.e_down}) tile(*m);
    r_next_[l].resize(s.r.rows(), B);
    g_[l].resize(s.r.rows(), B);
    e_down_next_[l].resize(s.e_down.rows(), B);
  }
  batch_ = B;
}

template <class R>
void gle_network<R>::output_error(gle_loss loss, const mat& r, const mat& target, R beta, mat& g) {
  if (target.rows() != r.rows() || target.cols() != r.cols())
    throw shape_error(
        fmt::format("GLE target is {}x{} but the output is {}x{}", target.rows(), target.cols(), r.rows(), r.cols()));
  if (loss == gle_loss::mse) {
    g = beta * (target - r);
    return;
  }
  g.resize(r.rows(), r.cols());
  for (long j = 0; j < r.cols(); ++j) {
    const R m = r.col(j).maxCoeff();
    g.col(j) = (r.col(j).array() - m).exp().matrix();
    g.col(j) /= g.col(j).sum();
  }
  g = beta * (target - g);
}

template <class R>
void gle_network<R>::step_layer(int l, const Eigen::Ref<const mat>& x, bool errors, std::span<R> grad) {
  const int L = n_layers();
  const R dt = R(spec_.dt), inv_B = R(1) / R(batch_);
  auto& s = state_[l];
  const auto& Ls = spec_.layers[l];
  const auto tm = tau_m(l);
  const auto& tr = tau_r_[l];
  vec& inv_tm = inv_tau_m_[l];
  inv_tm = tm.cwiseInverse();  // tau_m may be learned or written through tau_m(l); same size, no allocation
  const auto rin = l == 0 ? Eigen::Ref<const mat>(x) : Eigen::Ref<const mat>(state_[l - 1].r);
  if (errors) {
    // eps = g * phi'(u_breve) with g from the layer above (old) or the target
    mat& eps = r_next_[l];  // scratch; r_next_ is written only after the error step
    eps.array() = (l == L - 1 ? g_[L - 1] : state_[l + 1].e_down).array() * s.dphi.array();
    if (spec_.prospective_errors) {
      // v' = (eps - v)/tau_r;  e = v + tau_m v';  v += dt v'
      eps.array() = (eps - s.v).array().colwise() * inv_tau_r_[l].array();  // eps now holds v'
      s.e.array() = s.v.array() + eps.array().colwise() * tm.array();
      s.v.noalias() += dt * eps;
    } else {
      s.e = eps;
      s.v.setZero();
    }
  } else {
    s.e.setZero();
    s.v.setZero();
  }
  // a = W r_in + b (+ gamma e);  u' = (a - u)/tau_m;  u_breve = u + tau_r u';  u += dt u'
  mat& a = s.udot;
  a.noalias() = W(l) * rin;
  if (const R* bp = b(l)) a.colwise() += Eigen::Map<const vec>(bp, Ls.size);
  if (spec_.gamma != 0) a.noalias() += R(spec_.gamma) * s.e;
  s.udot.array() = (a - s.u).array().colwise() * inv_tm.array();
  s.u_breve.array() = s.u.array() + s.udot.array().colwise() * tr.array();
  s.u.noalias() += dt * s.udot;
  apply_activation<R>(Ls.phi, s.u_breve, r_next_[l], s.dphi);
  if (errors && l > 0) e_down_next_[l].noalias() = W(l).transpose() * s.e;
  if (!grad.empty()) {
    map gW(grad.data() + w_off_[l], Ls.size, rin.rows());
    gW.noalias() = (-inv_B) * s.e * rin.transpose();
    if (b_off_[l] >= 0) Eigen::Map<vec>(grad.data() + b_off_[l], Ls.size) = (-inv_B) * s.e.rowwise().sum();
    if (tau_off_[l] >= 0)
      Eigen::Map<vec>(grad.data() + tau_off_[l], Ls.size) =
          inv_B * (s.e.array() * s.udot.array()).matrix().rowwise().sum();
  }
}

template <class R>
void gle_network<R>::step(const Eigen::Ref<const mat>& x, const mat* target, R beta, std::span<R> grad) {
  if (x.rows() != spec_.n_input)
    throw shape_error(fmt::format("GLE input has {} rows but the network has {} inputs", x.rows(), spec_.n_input));
  if (x.cols() != batch_) resize_batch(x.cols());
  if (!grad.empty() && grad.size() != params_.size())
    throw shape_error(fmt::format("GLE gradient buffer has {} entries, the network {}", grad.size(), params_.size()));
  const int L = n_layers();
  const long B = batch_;
  const bool teach = target != nullptr && beta != R(0);
  // Without teaching, coupling or learning the error population has no input and no
  // effect: it is not simulated and rests at zero (its relaxed state).
  const bool errors = teach || spec_.gamma != 0 || !grad.empty();
  if (teach) output_error(spec_.loss, state_[L - 1].r, *target, beta, g_[L - 1]);
  else g_[L - 1].setZero();

  // Layers read only the previous step's neighbour values, so they are independent: run
  // them on `threads` cores when the step is large enough to pay for the fork (results do
  // not depend on the number of threads).
  const int nt = threads_ > 0 ? threads_ : max_threads();
  const bool parallel = nt > 1 && L > 1 && macs_per_sample_ * double(B) > 2e5;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (parallel)
  for (int l = 0; l < L; ++l) step_layer(l, x, errors, grad);
  for (int l = 0; l < L; ++l) {
    state_[l].r.swap(r_next_[l]);
    if (errors) state_[l].e_down.swap(e_down_next_[l]);
    else state_[l].e_down.setZero();
  }
  if (!state_[L - 1].r.allFinite()) ++nonfinite_steps_;
}

template <class R>
int gle_network<R>::max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

template <class R>
std::string gle_network<R>::tau_m_block(int l) {
  return fmt::format("tau_m{}", l);
}

template class gle_network<float>;
template class gle_network<double>;

}  // namespace eqprop
