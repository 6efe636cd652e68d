#include "eqprop/model/activation.hpp"

#include <fmt/format.h>

namespace eqprop {

bool is_holomorphic(activation_kind k) {
  switch (k) {
    case activation_kind::sigmoid: return act::sigmoid::holomorphic;
    case activation_kind::holotanh: return act::holotanh::holomorphic;
    case activation_kind::tanh: return act::tanh::holomorphic;
    case activation_kind::hard_sigmoid: return act::hard_sigmoid::holomorphic;
    case activation_kind::relu: return act::relu::holomorphic;
  }
  return false;
}

std::string_view to_string(activation_kind k) {
  switch (k) {
    case activation_kind::sigmoid: return act::sigmoid::name;
    case activation_kind::holotanh: return act::holotanh::name;
    case activation_kind::tanh: return act::tanh::name;
    case activation_kind::hard_sigmoid: return act::hard_sigmoid::name;
    case activation_kind::relu: return act::relu::name;
  }
  return "?";
}

std::vector<std::string> activation_names() { return {"sigmoid", "holotanh", "tanh", "hard_sigmoid", "relu"}; }

activation_kind parse_activation(std::string_view name) {
  if (name == "sigmoid") return activation_kind::sigmoid;
  if (name == "holotanh" || name == "dsilu") return activation_kind::holotanh;
  if (name == "tanh") return activation_kind::tanh;
  if (name == "hard_sigmoid" || name == "hardsigmoid") return activation_kind::hard_sigmoid;
  if (name == "relu") return activation_kind::relu;
  throw config_error(fmt::format("unknown activation '{}': expected one of sigmoid, holotanh, tanh, hard_sigmoid, relu", name));
}

}  // namespace eqprop
