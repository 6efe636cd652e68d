#include "eqprop/model/layered_network.hpp"

#include <cmath>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"

namespace eqprop {

std::string_view to_string(output_kind k) { return k == output_kind::readout ? "readout" : "layer"; }

output_kind parse_output(std::string_view name) {
  if (name == "readout") return output_kind::readout;
  if (name == "layer") return output_kind::layer;
  throw config_error(fmt::format("unknown output '{}': expected 'readout' (softmax readout, cross-entropy) "
                                 "or 'layer' (dynamical output layer, squared error)", name));
}

void network_spec::validate() const {
  if (sizes.size() < 2)
    throw config_error(fmt::format("network.layers must list the input size and at least one layer, got [{}]",
                                   fmt::join(sizes, ", ")));
  for (int s : sizes)
    if (s <= 0) throw config_error(fmt::format("network.layers: every size must be positive, got [{}]", fmt::join(sizes, ", ")));
  if (output == output_kind::readout && n_readout <= 0)
    throw config_error(fmt::format("network.readout must be positive with output = readout, got {}", n_readout));
  if (output == output_kind::layer && n_readout != 0 && n_readout != sizes.back())
    throw config_error(fmt::format("network.readout = {} but output = layer uses the last layer ({} units) as output",
                                   n_readout, sizes.back()));
  if (!(init_scale >= 0) || !std::isfinite(init_scale))
    throw config_error(fmt::format("network.init_scale must be >= 0 (0 = 1/sqrt(fan_in)), got {}", init_scale));
}

std::vector<param_block> param_layout(const network_spec& spec) {
  std::vector<param_block> out;
  long offset = 0;
  auto add = [&](std::string name, int group, long rows, long cols) {
    out.push_back({std::move(name), group, rows, cols, offset});
    offset += rows * cols;
  };
  const int K = spec.n_layers();
  for (int j = 0; j < K; ++j) {
    add(fmt::format("W{}", j), j, spec.sizes[j + 1], spec.sizes[j]);
    add(fmt::format("b{}", j), j, spec.sizes[j + 1], 1);
  }
  // The readout blocks always exist (empty for output = layer) so W_out()/b_out() indices are fixed.
  const long nr = spec.output == output_kind::readout ? spec.n_readout : 0;
  add("Wout", K, nr, spec.sizes.back());
  add("bout", K, nr, 1);
  return out;
}

std::vector<std::string> param_group_names(const network_spec& spec) {
  std::vector<std::string> names;
  for (int j = 0; j < spec.n_layers(); ++j) names.push_back(fmt::format("layer{}", j));
  if (spec.output == output_kind::readout) names.push_back("readout");
  return names;
}

template <class P>
layered_network<P>::layered_network(network_spec spec) : spec_(std::move(spec)) {
  spec_.validate();
  layout_ = param_layout(spec_);
  const auto& last = layout_.back();
  params_.assign(static_cast<size_t>(last.offset + last.size()), P(0));
  if constexpr (!is_complex_v<P>) {
    // Truncated normal (+-2 std, no rescaling: Haiku's default) with std 1/sqrt(fan_in)
    // or init_scale; biases zero.
    rng_t rng(spec_.seed);
    for (const auto& blk : layout_) {
      if (blk.cols == 1 && blk.name[0] == 'b') continue;
      const double std = spec_.init_scale > 0 ? spec_.init_scale : 1.0 / std::sqrt(double(blk.cols));
      for (long i = 0; i < blk.size(); ++i) params_[blk.offset + i] = P(std * truncated_normal(rng));
    }
  }
}

template class layered_network<float>;
template class layered_network<double>;
template class layered_network<std::complex<double>>;

}  // namespace eqprop
