#include "eqprop/model/layered_network.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"

namespace eqprop {

std::string_view to_string(output_kind k) { return k == output_kind::readout ? "readout" : "layer"; }

weight_init parse_weight_init(std::string_view name) {
  if (name == "truncated_normal") return weight_init::truncated_normal;
  if (name == "kaiming_uniform") return weight_init::kaiming_uniform;
  throw config_error(fmt::format("unknown weight init '{}': expected 'truncated_normal' or 'kaiming_uniform'", name));
}

output_kind parse_output(std::string_view name) {
  if (name == "readout") return output_kind::readout;
  if (name == "layer") return output_kind::layer;
  throw config_error(
      fmt::format("unknown output '{}': expected 'readout' (softmax readout, cross-entropy) "
                  "or 'layer' (dynamical output layer, squared error)",
                  name));
}

std::string_view to_string(pool_kind k) {
  switch (k) {
    case pool_kind::none:
      return "none";
    case pool_kind::softmax:
      return "softmax";
    case pool_kind::max:
      return "max";
    case pool_kind::avg:
      return "avg";
  }
  return "?";
}

pool_kind parse_pool(std::string_view name) {
  if (name == "none") return pool_kind::none;
  if (name == "softmax") return pool_kind::softmax;
  if (name == "max") return pool_kind::max;
  if (name == "avg") return pool_kind::avg;
  throw config_error(
      fmt::format("unknown pooling '{}': expected 'softmax' (holomorphic), 'max' (non-holomorphic "
                  "control), 'avg' or 'none'",
                  name));
}

namespace {
// Geometry of conv layer i given its input image (c, h, w); throws on an impossible shape.
connection_geometry conv_geometry(const network_spec& s, int i, int c, int h, int w) {
  const conv_layer_spec& L = s.conv[i];
  connection_geometry g;
  g.cin = c, g.h = h, g.w = w;
  g.k = L.kernel;
  if (L.channels <= 0)
    throw config_error(fmt::format("conv layer {}: channels must be positive, got {}", i, L.channels));
  if (L.kernel <= 0) throw config_error(fmt::format("conv layer {}: kernel must be positive, got {}", i, L.kernel));
  if (L.same && L.kernel % 2 == 0)
    throw config_error(fmt::format("conv layer {}: SAME padding needs an odd kernel, got {}", i, L.kernel));
  g.pad = L.same ? (L.kernel - 1) / 2 : 0;
  g.cout = L.channels;
  g.ho = h + 2 * g.pad - g.k + 1;
  g.wo = w + 2 * g.pad - g.k + 1;
  if (g.ho <= 0 || g.wo <= 0)
    throw config_error(
        fmt::format("conv layer {}: a {}x{} VALID kernel does not fit the {}x{} input", i, g.k, g.k, h, w));
  g.pool = L.pool;
  g.ps = L.pool == pool_kind::none ? 1 : s.pool_size;
  g.hp = g.ho / g.ps, g.wp = g.wo / g.ps;
  if (g.hp <= 0 || g.wp <= 0)
    throw config_error(
        fmt::format("conv layer {}: {}x{} pooling does not fit its {}x{} output", i, g.ps, g.ps, g.ho, g.wo));
  g.planar_input = i == 0;
  g.temperature = s.pool_temperature;
  return g;
}
}  // namespace

namespace {
// A per-conv-layer list: one value for every layer, or exactly one per layer.
template <class T>
std::vector<T> per_conv_layer(const std::vector<T>& v, size_t n, const char* what) {
  if (v.size() == n) return v;
  if (v.size() == 1) return std::vector<T>(n, v[0]);
  throw config_error(fmt::format(
      "conv {}: {} entries given; give one for every conv layer ({}) or a single one for all", what, v.size(), n));
}
}  // namespace

std::vector<conv_layer_spec> make_conv_layers(const std::vector<int>& channels, const std::vector<int>& kernels,
                                              const std::vector<std::string>& paddings,
                                              const std::vector<std::string>& pools) {
  const auto k = per_conv_layer(kernels, channels.size(), "kernel");
  const auto pad = per_conv_layer(paddings, channels.size(), "padding");
  const auto pool = per_conv_layer(pools, channels.size(), "pool");
  std::vector<conv_layer_spec> out;
  for (size_t i = 0; i < channels.size(); ++i) {
    if (pad[i] != "same" && pad[i] != "valid")
      throw config_error(fmt::format("conv padding: expected same or valid, got '{}'", pad[i]));
    out.push_back({channels[i], k[i], pad[i] == "same", parse_pool(pool[i])});
  }
  return out;
}

std::vector<int> network_spec::conv_sizes() const {
  std::vector<int> out;
  if (conv.empty()) return out;
  int c = input_shape[0], h = input_shape[1], w = input_shape[2];
  if (c <= 0 || h <= 0 || w <= 0)
    throw config_error(
        fmt::format("a ConvNet needs the input image shape (channels, height, width), got ({}, {}, {})", c, h, w));
  out.push_back(c * h * w);
  for (int i = 0; i < static_cast<int>(conv.size()); ++i) {
    const auto g = conv_geometry(*this, i, c, h, w);
    out.push_back(static_cast<int>(g.out_size()));
    c = g.cout, h = g.hp, w = g.wp;
  }
  return out;
}

connection_geometry network_spec::geometry(int j) const {
  if (j < static_cast<int>(conv.size())) {
    int c = input_shape[0], h = input_shape[1], w = input_shape[2];
    for (int i = 0;; ++i) {
      auto g = conv_geometry(*this, i, c, h, w);
      if (i == j) return g;
      c = g.cout, h = g.hp, w = g.wp;
    }
  }
  connection_geometry g;
  g.cin = sizes[j], g.cout = sizes[j + 1];
  return g;
}

void network_spec::validate() const {
  if (sizes.size() < 2)
    throw config_error(fmt::format("network.layers must list the input size and at least one layer, got [{}]",
                                   fmt::join(sizes, ", ")));
  for (int s : sizes)
    if (s <= 0)
      throw config_error(fmt::format("network.layers: every size must be positive, got [{}]", fmt::join(sizes, ", ")));
  require_ep_activation(activation);
  if (output == output_kind::readout && n_readout <= 0)
    throw config_error(fmt::format("network.readout must be positive with output = readout, got {}", n_readout));
  if (output == output_kind::layer && n_readout != 0 && n_readout != sizes.back())
    throw config_error(fmt::format("network.readout = {} but output = layer uses the last layer ({} units) as output",
                                   n_readout, sizes.back()));
  if (!conv.empty()) {
    const auto cs = conv_sizes();
    if (cs.size() > sizes.size() || !std::equal(cs.begin(), cs.end(), sizes.begin()))
      throw config_error(
          fmt::format("network sizes [{}] do not start with the ConvNet's input and conv layer sizes [{}]",
                      fmt::join(sizes, ", "), fmt::join(cs, ", ")));
    if (!(pool_temperature > 0) || !std::isfinite(pool_temperature))
      throw config_error(fmt::format("network.pool_temperature must be > 0, got {}", pool_temperature));
    if (pool_size < 1) throw config_error(fmt::format("network.pool_size must be >= 1, got {}", pool_size));
  }
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
    const auto g = spec.geometry(j);
    add(fmt::format("W{}", j), j, g.cout, g.patch());
    add(fmt::format("b{}", j), j, g.cout, 1);
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
  for (const auto& blk : param_layout(spec_)) params_.add(blk.name, blk.group, blk.rows, blk.cols);
  for (int j = 0; j < spec_.n_layers(); ++j) geometry_.push_back(spec_.geometry(j));
  if constexpr (!is_complex_v<P>) {
    rng_t rng(spec_.seed);
    for (const auto& blk : params_.layout()) {
      const bool bias = blk.cols == 1 && blk.name[0] == 'b';
      P* p = params_.data() + blk.offset;
      if (spec_.init == weight_init::truncated_normal) {
        if (bias) continue;
        const double std = spec_.init_scale > 0 ? spec_.init_scale : 1.0 / std::sqrt(double(blk.cols));
        for (long i = 0; i < blk.size(); ++i) p[i] = P(std * truncated_normal(rng));
      } else {
        // A bias's fan-in is that of the weight block before it (the same rows).
        const long fan_in = bias ? params_.layout()[std::size_t(&blk - params_.layout().data()) - 1].cols : blk.cols;
        const double a = spec_.init_scale > 0 ? std::sqrt(3.0) * spec_.init_scale : 1.0 / std::sqrt(double(fan_in));
        for (long i = 0; i < blk.size(); ++i) p[i] = P(a * (2 * uniform01(rng) - 1));
      }
    }
  }
}

template class layered_network<float>;
template class layered_network<double>;
template class layered_network<std::complex<double>>;

}  // namespace eqprop
