#include "eqprop/model/vector_field_network.hpp"

#include <cmath>
#include <numbers>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"

namespace eqprop {

std::string_view to_string(vf_topology t) {
  switch (t) {
    case vf_topology::chain:
      return "chain";
    case vf_topology::loop:
      return "loop";
    case vf_topology::edges:
      return "edges";
  }
  return "?";
}

vf_topology parse_vf_topology(std::string_view name) {
  if (name == "chain") return vf_topology::chain;
  if (name == "loop") return vf_topology::loop;
  if (name == "edges") return vf_topology::edges;
  throw config_error(
      fmt::format("unknown topology '{}': expected 'chain' (forward + feedback between adjacent layers), "
                  "'loop' (forward chain + one feedback edge from the top to the first layer) or "
                  "'edges' (explicit edge list)",
                  name));
}

std::vector<vf_edge> vf_spec::resolved_edges() const {
  const int K = n_layers();
  std::vector<vf_edge> out;
  switch (topology) {
    case vf_topology::chain:
      for (int i = 1; i <= K; ++i) out.push_back({i - 1, i, true});
      for (int i = 1; i < K; ++i) out.push_back({i + 1, i, false});
      break;
    case vf_topology::loop:
      if (K < 2) throw config_error(fmt::format("the loop topology needs at least 2 dynamical layers, got {}", K));
      for (int i = 1; i <= K; ++i) out.push_back({i - 1, i, true});
      out.push_back({K, 1, false});
      break;
    case vf_topology::edges:
      out = edges;
      break;
  }
  if (out.empty()) throw config_error("the vector-field network has no edges");
  for (size_t a = 0; a < out.size(); ++a) {
    const auto& e = out[a];
    if (e.src < 0 || e.src > K || e.dst < 1 || e.dst > K)
      throw config_error(
          fmt::format("edge {} -> {}: layers are 0 (input) .. {}, and the target must be >= 1", e.src, e.dst, K));
    if (!e.forward && e.src == 0) throw config_error("a feedback edge cannot leave the input layer 0");
    if (e.src == e.dst)
      throw config_error(fmt::format("edge {} -> {}: self-connections are not supported", e.src, e.dst));
    for (size_t b = 0; b < a; ++b)
      if (out[b].src == e.src && out[b].dst == e.dst)
        throw config_error(fmt::format("edge {} -> {} is listed twice", e.src, e.dst));
  }
  return out;
}

void vf_spec::validate() const {
  if (sizes.size() < 2)
    throw config_error(fmt::format("network.layers must list the input size and at least one layer, got [{}]",
                                   fmt::join(sizes, ", ")));
  for (int s : sizes)
    if (s <= 0)
      throw config_error(fmt::format("network.layers: every size must be positive, got [{}]", fmt::join(sizes, ", ")));
  require_ep_activation(activation);
  if (n_classes <= 0) throw config_error(fmt::format("network.readout must be positive, got {}", n_classes));
  if (!std::isfinite(angle_deg)) throw config_error("network.angle must be finite");
  if (!(init_scale >= 0)) throw config_error(fmt::format("network.init_scale must be >= 0, got {}", init_scale));
  (void)resolved_edges();
  if (is_convnet()) {
    if (topology != vf_topology::chain)
      throw config_error(fmt::format(
          "a convolutional vector-field network needs network.topology = \"chain\", got \"{}\"", to_string(topology)));
    layered_spec().validate();
  }
}

network_spec vf_spec::layered_spec() const {
  network_spec s;
  s.sizes = sizes;
  s.n_readout = n_classes;
  s.activation = activation;
  s.input_shape = input_shape;
  s.conv = conv;
  s.pool_temperature = pool_temperature;
  s.pool_size = pool_size;
  return s;
}

long vf_spec::n_states() const {
  long n = 0;
  for (size_t i = 1; i < sizes.size(); ++i) n += sizes[i];
  return n;
}

template <class R>
vector_field_network<R>::vector_field_network(vf_spec spec) : spec_(std::move(spec)) {
  spec_.validate();
  edges_ = spec_.resolved_edges();
  // Parameter groups (per-layer learning rates): the forward edge into layer i is group
  // i - 1, a feedback edge src -> dst shares the group of the forward edge into src, the
  // readout is group K.
  int group = 0;
  auto add = [&](std::string name, long rows, long cols) { return params_.add(std::move(name), group, rows, cols); };
  const network_spec twin = spec_.layered_spec();
  for (const auto& e : edges_) {
    const char* tag = e.forward ? "W" : "B";
    group = (e.forward ? e.dst : e.src) - 1;
    connection_geometry g;  // dense: a 1x1 image
    g.cin = spec_.sizes[e.src], g.cout = spec_.sizes[e.dst];
    if (spec_.is_convnet()) g = twin.geometry(e.forward ? e.src : e.dst);  // chain: |src - dst| = 1
    geometry_.push_back(g);
    if (g.dense())
      w_block_.push_back(add(fmt::format("{}{}_{}", tag, e.src, e.dst), spec_.sizes[e.dst], spec_.sizes[e.src]));
    else w_block_.push_back(add(fmt::format("{}{}_{}", tag, e.src, e.dst), g.cout, g.patch()));
    b_block_.push_back(e.forward ? add(fmt::format("b{}_{}", e.src, e.dst), g.cout, 1) : -1);
  }
  group = spec_.n_layers();
  add("Wro", spec_.n_classes, spec_.sizes.back());
  add("bro", spec_.n_classes, 1);
  rng_t rng(spec_.seed);
  for (const auto& blk : params_.layout()) {
    if (blk.name[0] == 'b') continue;  // biases zero
    const double std = spec_.init_scale > 0 ? spec_.init_scale : 1.0 / std::sqrt(double(blk.cols));
    for (long k = 0; k < blk.size(); ++k) params_.data()[blk.offset + k] = R(std * truncated_normal(rng));
  }
  // Rotation of the feedback weights towards the transposed forward weights (spec §1.4).
  const double a = spec_.angle_deg * std::numbers::pi / 180.0;
  const R s = R(std::sin(a)), c = R(std::cos(a));
  for (int e = 0; e < n_edges(); ++e) {
    if (edges_[e].forward) continue;
    const int f = reciprocal(e);
    if (f < 0) continue;
    // A conv feedback kernel has the forward kernel's shape (the VJP does the transpose).
    const matrix<R> target = is_conv_edge(e) ? matrix<R>(M(f)) : matrix<R>(M(f).transpose());
    M(e) = s * M(e) + c * target;
  }
}

template <class R>
vector_map<R> vector_field_network<R>::b(int e) {
  if (b_block_[e] < 0) throw internal_error("vector_field_network::b: feedback edges have no bias");
  auto& l = params_.block(b_block_[e]);
  return {params_.data() + l.offset, l.rows};
}

template <class R>
const_vector_map<R> vector_field_network<R>::b(int e) const {
  if (b_block_[e] < 0) throw internal_error("vector_field_network::b: feedback edges have no bias");
  auto& l = params_.block(b_block_[e]);
  return {params_.data() + l.offset, l.rows};
}

template <class R>
int vector_field_network<R>::reciprocal(int e) const {
  for (int f = 0; f < n_edges(); ++f)
    if (f != e && edges_[f].src == edges_[e].dst && edges_[f].dst == edges_[e].src &&
        edges_[f].forward != edges_[e].forward)
      return f;
  return -1;
}

template <class R>
void vector_field_network<R>::tie_feedback() {
  for (int e = 0; e < n_edges(); ++e) {
    if (edges_[e].forward) continue;
    const int f = reciprocal(e);
    if (f < 0) continue;
    if (is_conv_edge(e)) M(e) = M(f);
    else M(e) = M(f).transpose();
  }
}

template class vector_field_network<float>;
template class vector_field_network<double>;

}  // namespace eqprop
