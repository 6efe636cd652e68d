#include "eqprop/model/activation.hpp"

#include <array>
#include <utility>

#include <fmt/format.h>

#include "eqprop/core/suggest.hpp"

namespace eqprop {

namespace {
// The table, in enum order: the kind, its name and its holomorphic flag.
template <class Act>
constexpr std::pair<std::string_view, bool> row() {
  return {Act::name, Act::holomorphic};
}
constexpr std::array<std::pair<std::string_view, bool>, 9> table{
    row<act::hep_sigmoid>(), row<act::logistic>(), row<act::holotanh>(), row<act::tanh>(),    row<act::half_clamp01>(),
    row<act::clamp01>(),     row<act::relu>(),     row<act::linear>(),   row<act::softplus>()};

std::size_t index(activation_kind k) {
  const auto i = static_cast<std::size_t>(k);
  if (i >= table.size()) throw internal_error("activation table: unknown activation kind");
  return i;
}
}  // namespace

bool is_holomorphic(activation_kind k) { return table[index(k)].second; }

std::string_view to_string(activation_kind k) { return table[index(k)].first; }

std::vector<std::string> activation_names() {
  std::vector<std::string> out;
  for (const auto& [name, holo] : table) out.emplace_back(name);
  return out;
}

bool is_ep_activation(activation_kind k) {
  switch (k) {
    case activation_kind::hep_sigmoid:
    case activation_kind::holotanh:
    case activation_kind::tanh:
    case activation_kind::half_clamp01:
    case activation_kind::clamp01:
    case activation_kind::relu:
      return true;
    default:
      return false;
  }
}

void require_ep_activation(activation_kind k) {
  if (!is_ep_activation(k))
    throw config_error(
        fmt::format("activation '{}' is not available in EP networks; use hep_sigmoid, holotanh, tanh, "
                    "half_clamp01, clamp01 or relu",
                    to_string(k)));
}

std::optional<activation_kind> renamed_activation(std::string_view old_name, activation_family family) {
  const bool ep = family == activation_family::ep;
  if (old_name == "sigmoid") return ep ? activation_kind::hep_sigmoid : activation_kind::logistic;
  if (old_name == "hard_sigmoid" || old_name == "hardsigmoid")
    return ep ? activation_kind::half_clamp01 : activation_kind::clamp01;
  return std::nullopt;
}

std::string renamed_activation_message(std::string_view old_name, std::optional<activation_family> family) {
  const bool sigmoid = old_name == "sigmoid";
  const std::string ep = sigmoid ? "'hep_sigmoid' for logistic(4x-2)" : "'half_clamp01' for clamp(x/2, 0, 1)";
  const std::string gle = sigmoid ? "'logistic' for 1/(1+e^-x)" : "'clamp01' for clamp(x, 0, 1)";
  if (!family)
    return fmt::format("activation '{}' was renamed: use {} (what EP configs meant) or {} (what GLE configs meant)",
                       old_name, ep, gle);
  return fmt::format("activation '{}' was renamed: use {}", old_name, *family == activation_family::ep ? ep : gle);
}

activation_kind parse_activation(std::string_view name) {
  for (std::size_t i = 0; i < table.size(); ++i)
    if (table[i].first == name) return static_cast<activation_kind>(i);
  if (name == "dsilu") return activation_kind::holotanh;
  if (renamed_activation(name, activation_family::ep)) throw config_error(renamed_activation_message(name));
  const auto names = activation_names();
  const auto near = suggest_closest(name, names);
  throw config_error(fmt::format("unknown activation '{}'{}; expected one of {}", name,
                                 near.empty() ? "" : " (did you mean '" + near + "'?)", fmt::join(names, ", ")));
}

template <class R>
void apply_activation(activation_kind kind, const matrix<R>& u, matrix<R>& r, matrix<R>& d) {
  r.resize(u.rows(), u.cols());
  d.resize(u.rows(), u.cols());
  const auto ua = u.array();
  switch (kind) {
    case activation_kind::linear:
      r = u;
      d.setOnes();
      return;
    case activation_kind::tanh:
      r.array() = ua.tanh();  // vectorised rational approximation in Eigen
      d.array() = R(1) - r.array().square();
      return;
    case activation_kind::softplus:
      r.array() = ua.max(R(0)) + (-ua.abs()).exp().log1p();
      d.array() = R(1) / (R(1) + (-ua).exp());
      return;
    case activation_kind::logistic:
      r.array() = R(1) / (R(1) + (-ua).exp());
      d.array() = r.array() * (R(1) - r.array());
      return;
    case activation_kind::hep_sigmoid:
      r.array() = R(1) / (R(1) + (R(2) - R(4) * ua).exp());
      d.array() = R(4) * r.array() * (R(1) - r.array());
      return;
    case activation_kind::clamp01:
      r.array() = ua.max(R(0)).min(R(1));
      d.array() = (ua > R(0) && ua < R(1)).template cast<R>();
      return;
    case activation_kind::half_clamp01:
      r.array() = (R(0.5) * ua).max(R(0)).min(R(1));
      d.array() = R(0.5) * (ua > R(0) && ua < R(2)).template cast<R>();
      return;
    case activation_kind::relu:
      r.array() = ua.max(R(0));
      d.array() = (ua > R(0)).template cast<R>();
      return;
    case activation_kind::holotanh:
      r = u.unaryExpr([](R x) { return act::holotanh::value(x); });
      d = u.unaryExpr([](R x) { return act::holotanh::deriv(x); });
      return;
  }
  throw internal_error("apply_activation: unknown activation kind");
}

template void apply_activation<float>(activation_kind, const matrix<float>&, matrix<float>&, matrix<float>&);
template void apply_activation<double>(activation_kind, const matrix<double>&, matrix<double>&, matrix<double>&);

}  // namespace eqprop
