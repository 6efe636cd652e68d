// Vector-field networks with untied feedback weights (generalized EP, docs/generalized-ep.md,
// spec generalized-ep.md §1). There is no energy function.
//
// Layers: the clamped input x (layer 0, sizes[0]) and K dynamical layers 1..K whose states
// u_i are pre-activations; r_i = sigma(u_i) are the activities (r_0 = x, not activated).
// Layer K is the output layer, followed by a trainable softmax readout
// z = W_ro r_K + b_ro with loss l = CE(z, y).
// Every directed edge e: src -> dst carries a matrix M_e (n_dst x n_src). A forward edge
// also carries a bias b_e; a feedback edge has none. The discrete dynamics (Euler, dt = 1):
//   u_i <- sum_{e: dst = i} (M_e r_src + b_e) - [i = K] beta * dl/dr_K,
// i.e. du/dt = F(u) = C r + b - u - beta e(r) with C the block coupling matrix and
// e = dl/dr = W_ro^T (softmax(z) - y) on layer K.
// Sign convention (the library's, docs/concepts.md): the nudge -beta dl/dr teaches, as in
// the energy-based networks; with B = W^T on a chain the fixed points are exactly those
// of layered_network with a readout.
//
// Parameters live in one param_buffer (core/params.hpp): per edge its matrix (and the bias of a forward
// edge), in edge order, then Wro, bro. Gradients use the same layout.
//
// ConvNets (spec §1.3; vf_spec::conv non-empty, chain topology): the first conv.size()
// dynamical layers are convolutional, with the geometries of the energy-based twin
// (layered_network.hpp: HWC states, planar input, optional pooling P inside the field).
// Every edge then has a connection_geometry (geometry(e)): a forward conv edge i-1 -> i
// contributes P(conv_W(r_{i-1})) + b (one bias per channel); a feedback conv edge i+1 -> i
// holds a kernel B shaped like the forward kernel of i -> i+1 and contributes the
// vector-Jacobian product conv_B^T J_P(conv_B r_i)^T r_{i+1}, which depends on r_i through
// the pooling Jacobian. With B = W the field is minus the gradient of the energy-based
// ConvNet's energy. Edges with a dense geometry keep the matrix form above (a dense
// feedback matrix is n_dst x n_src, applied as M r_src).
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/params.hpp"
#include "eqprop/core/scalar.hpp"
#include "eqprop/model/activation.hpp"
#include "eqprop/model/layered_network.hpp"  // network_spec, connection_geometry: the conv twin

namespace eqprop {

enum class vf_topology {
  chain,  ///< forward i-1 -> i for i = 1..K, feedback i+1 -> i for i = 1..K-1
  loop,   ///< forward chain plus one feedback edge K -> 1 (no reciprocal pair: weight symmetry impossible)
  edges,  ///< the explicit edge list vf_spec::edges
};
std::string_view to_string(vf_topology t);
vf_topology parse_vf_topology(std::string_view name);  ///< "chain" | "loop" | "edges"

struct vf_edge {
  int src = 0, dst = 1;  ///< layer indices (0 = input); dst >= 1
  bool forward = true;   ///< forward edges carry a bias; feedback edges do not and may not leave the input
};

struct vf_spec {
  std::vector<int> sizes;  ///< [n_input, n_1, ..., n_K]
  int n_classes = 10;      ///< softmax readout classes
  vf_topology topology = vf_topology::chain;
  std::vector<vf_edge> edges;  ///< only with topology = edges
  activation_kind activation = activation_kind::hep_sigmoid;
  /// Feedback init: B <- sin(a) B_init + cos(a) W^T where W is the reciprocal forward
  /// edge (spec §1.4); a feedback edge without a reciprocal forward edge keeps B_init.
  double angle_deg = 90;
  double init_scale = 0;  ///< 0: truncated normal std 1/sqrt(fan_in); > 0: that std
  uint64_t seed = 0;
  // ConvNets only (conv empty for an MLP); sizes must then begin with layered_spec().conv_sizes().
  std::array<int, 3> input_shape{};   ///< channels, height, width of the planar input image
  std::vector<conv_layer_spec> conv;  ///< the first conv.size() dynamical layers
  double pool_temperature = 1;        ///< softmax pooling temperature
  int pool_size = 2;

  bool is_convnet() const { return !conv.empty(); }
  /// The energy-based twin's spec (same sizes, conv layers and readout): its geometry(j)
  /// is that of the forward edge j -> j+1.
  network_spec layered_spec() const;

  int n_layers() const { return static_cast<int>(sizes.size()) - 1; }  ///< K
  /// The edges of the topology (validated: config_error for bad indices or duplicates).
  std::vector<vf_edge> resolved_edges() const;
  void validate() const;
  long n_states() const;  ///< sum of n_1..n_K
};

template <class R>
class vector_field_network {
 public:
  vector_field_network() = default;
  /// Allocates and initialises the parameters from spec.seed (R real).
  explicit vector_field_network(vf_spec spec);

  const vf_spec& spec() const { return spec_; }
  int n_layers() const { return spec_.n_layers(); }
  int size(int layer) const { return spec_.sizes[layer]; }
  const std::vector<vf_edge>& edges() const { return edges_; }
  int n_edges() const { return static_cast<int>(edges_.size()); }
  const std::vector<param_block>& layout() const { return params_.layout(); }

  std::span<R> params() { return params_.values(); }
  std::span<const R> params() const { return params_.values(); }
  long n_params() const { return static_cast<long>(params_.size()); }

  matrix_map<R> M(int e) { return params_.view(w_block_[e]); }
  const_matrix_map<R> M(int e) const { return params_.view(w_block_[e]); }
  /// Bias of a forward edge (internal_error for a feedback edge).
  vector_map<R> b(int e);
  const_vector_map<R> b(int e) const;
  matrix_map<R> W_ro() { return params_.view(params_.n_blocks() - 2); }
  const_matrix_map<R> W_ro() const { return params_.view(params_.n_blocks() - 2); }
  vector_map<R> b_ro() {
    auto& l = params_.block(params_.n_blocks() - 1);
    return {params_.data() + l.offset, l.rows};
  }
  const_vector_map<R> b_ro() const {
    auto& l = params_.block(params_.n_blocks() - 1);
    return {params_.data() + l.offset, l.rows};
  }
  const param_block& weight_block(int e) const { return params_.block(w_block_[e]); }
  /// Geometry of edge e: a forward edge's own; a feedback edge's is that of the forward
  /// connection dst -> src whose kernel shape it shares. Dense for MLPs.
  const connection_geometry& geometry(int e) const { return geometry_[e]; }
  bool is_conv_edge(int e) const { return !geometry_[e].dense(); }
  int bias_block_index(int e) const { return b_block_[e]; }  ///< -1 for a feedback edge

  /// The forward edge opposite to edge e (same pair of layers, other direction and kind), or -1.
  int reciprocal(int e) const;
  /// Sets every feedback matrix with a reciprocal forward edge to W^T (tests).
  void tie_feedback();

 private:
  vf_spec spec_;
  std::vector<vf_edge> edges_;
  std::vector<int> w_block_, b_block_;
  std::vector<connection_geometry> geometry_;
  param_buffer<R> params_;
};

extern template class vector_field_network<float>;
extern template class vector_field_network<double>;

}  // namespace eqprop
