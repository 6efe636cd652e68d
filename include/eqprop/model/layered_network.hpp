// Layered energy-based network (the "primitive function" model of the hEP spec, §1.2).
//
// Layers: the clamped input x (sizes[0]), then K = sizes.size() - 1 dynamical layers
// h_0 .. h_{K-1} (sizes[1..K]). Dense weights W_j map layer j-1 to layer j (W_0 maps x to
// h_0), shape sizes[j+1] x sizes[j], with bias b_j. The output is either
//  - output_kind::readout: a linear softmax readout z = W_out h_{K-1} + b_out (not dynamical)
//    with cost C = cross-entropy(z, y), or
//  - output_kind::layer: the last dynamical layer is the output, cost C = 1/2 |h_{K-1} - y|^2
//    (no |.|: the holomorphic continuation is the plain square).
// Energy (the sign convention used throughout eqprop, see docs/concepts.md):
//   E(h) = sum_i int sigma^{-1} - sum_j h_j^T (W_j l_{j-1} + b_j),  F = E + beta * C,
// so the fixed points h = sigma(-dF/dh + h-terms) are h_j = sigma(W_j l_{j-1} + b_j
// + W_{j+1}^T h_{j+1} - beta dC/dh_j).
//
// ConvNets (hEP spec §1.2, §6.2): the first conv.size() dynamical layers are
// convolutional. Connection j then maps l_{j-1} to P(conv_j(l_{j-1})) with P a pooling
// applied inside the energy (Phi_j = h_j . (P(conv_j l_{j-1}) + b_j)), and the top-down
// term of layer j-1 is the exact transpose J_{P o conv}^T h_j. A dense connection is the
// special case of a 1x1 "image" with kernel 1 and no pooling, so every connection has
// one geometry (connection_geometry) and one code path. Weights of connection j are a
// C_out x (k*k*C_in) matrix (im2col order: C_in fastest, then kx, then ky), biases one per
// output channel. The network input is planar CHW (the data sets' convention); conv
// states inside the network are HWC (channel fastest), so a batch of conv states is a
// C x (H*W*B) matrix, and dense layers after the convs see that flattening.
//
// Parameters are stored in one param_buffer (core/params.hpp: W_0, b_0, W_1, b_1, ..., W_out, b_out), so
// optimisers, checkpoints and gradient checks see a single vector; gradients use the
// same layout. P is real in normal use; P = complex<double> exists only for complex-step
// differentiation tests.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/aligned.hpp"
#include "eqprop/core/params.hpp"
#include "eqprop/core/scalar.hpp"
#include "eqprop/model/activation.hpp"

namespace eqprop {

enum class output_kind { readout, layer };

std::string_view to_string(output_kind k);
output_kind parse_output(std::string_view name);  ///< "readout" | "layer"

/// How the weights are drawn at construction. truncated_normal: N(0, std^2) truncated at
/// +-2 std (Haiku's default, the hEP papers'), biases zero. kaiming_uniform: PyTorch's default for
/// Linear and Conv2d layers (the 2021 EP code's): weights and biases U(-a, a) with
/// a = 1/sqrt(fan_in), i.e. std 1/sqrt(3 fan_in).
enum class weight_init { truncated_normal, kaiming_uniform };
weight_init parse_weight_init(std::string_view name);  ///< "truncated_normal" | "kaiming_uniform"

/// Pooling inside the energy (windows of pool_size x pool_size, stride pool_size, VALID).
enum class pool_kind {
  none,
  softmax,  ///< sum v exp(v/T) / sum exp(v/T), window max (real part) subtracted: holomorphic
  max,      ///< the non-holomorphic control (argmax of the real part)
  avg,
};
std::string_view to_string(pool_kind k);
pool_kind parse_pool(std::string_view name);  ///< "none" | "softmax" | "max" | "avg"

/// One convolutional layer: C_out channels, k x k kernel, stride 1, SAME (zero padding
/// (k-1)/2, odd k) or VALID padding, then optional pooling.
struct conv_layer_spec {
  int channels = 0;
  int kernel = 3;
  bool same = true;
  pool_kind pool = pool_kind::none;
};

/// Conv layers from per-layer lists; kernels, paddings ("same" | "valid") and pools
/// (see parse_pool) hold one value for all layers or one per layer (config_error otherwise).
std::vector<conv_layer_spec> make_conv_layers(const std::vector<int>& channels, const std::vector<int>& kernels,
                                              const std::vector<std::string>& paddings,
                                              const std::vector<std::string>& pools);

/// Geometry of connection j (l_{j-1} -> h_j). Dense: cin = n_in, h = w = 1, k = 1.
struct connection_geometry {
  int cin = 0, h = 1, w = 1;     ///< input image
  int k = 1, pad = 0;            ///< kernel size, zero padding
  int cout = 0, ho = 1, wo = 1;  ///< conv output
  pool_kind pool = pool_kind::none;
  int ps = 1, hp = 1, wp = 1;  ///< pool size and pooled output (ps = 1, hp = ho, wp = wo without pooling)
  bool planar_input = false;   ///< the input is planar CHW (layer 0 of a ConvNet), else HWC
  double temperature = 1;      ///< softmax pooling temperature
  long in_size() const { return long(cin) * h * w; }
  long conv_size() const { return long(cout) * ho * wo; }
  long out_size() const { return long(cout) * hp * wp; }
  long patch() const { return long(k) * k * cin; }
  bool dense() const { return h == 1 && w == 1 && k == 1 && pool == pool_kind::none; }
};

struct network_spec {
  std::vector<int> sizes;  ///< [n_input, n_1, ..., n_K]; with output_kind::layer, n_K is the output size
  int n_readout = 0;       ///< number of classes of the softmax readout (output_kind::readout only)
  output_kind output = output_kind::readout;
  activation_kind activation = activation_kind::hep_sigmoid;
  weight_init init = weight_init::truncated_normal;
  /// > 0: the weights' std (kaiming_uniform: a = sqrt(3) init_scale, biases too); 0: the init's
  /// default (truncated_normal: 1/sqrt(fan_in); kaiming_uniform: a = 1/sqrt(fan_in)).
  double init_scale = 0;
  uint64_t seed = 0;
  // ConvNets only (conv empty for an MLP):
  std::array<int, 3> input_shape{};   ///< channels, height, width of the (planar) input image
  std::vector<conv_layer_spec> conv;  ///< the first conv.size() dynamical layers
  double pool_temperature = 1;        ///< softmax pooling temperature T
  int pool_size = 2;
  /// A feed-forward network (the backprop baselines): no top-down terms, one bottom-up
  /// sweep h_j = sigma(P(conv_j h_{j-1}) + b_j) is the whole relaxation.
  bool feedforward = false;

  int n_layers() const { return static_cast<int>(sizes.size()) - 1; }  ///< K, dynamical layers
  int n_output() const { return output == output_kind::readout ? n_readout : sizes.back(); }
  /// Throws config_error with a clear message if the spec is unusable.
  void validate() const;
  /// Geometry of connection j in [0, n_layers()) (sizes must be consistent: validate()).
  connection_geometry geometry(int j) const;
  /// [C*H*W, out_1, ..., out_nconv]: the sizes of the input and of the conv layers; a
  /// ConvNet's sizes are these followed by the dense hidden sizes.
  std::vector<int> conv_sizes() const;
  bool is_convnet() const { return !conv.empty(); }
};

/// The blocks "W0", "b0", ..., "Wout", "bout"; group j for W_j/b_j, K for the readout.
std::vector<param_block> param_layout(const network_spec& spec);
std::vector<std::string> param_group_names(const network_spec& spec);  ///< "layer0".., "readout"

template <class P>
class layered_network {
 public:
  layered_network() = default;
  /// Allocates and initialises the parameters from spec.seed (real P only).
  explicit layered_network(network_spec spec);

  const network_spec& spec() const { return spec_; }
  int n_layers() const { return spec_.n_layers(); }
  const std::vector<param_block>& layout() const { return params_.layout(); }
  const connection_geometry& geometry(int j) const { return geometry_[j]; }

  std::span<P> params() { return params_.values(); }
  std::span<const P> params() const { return params_.values(); }
  long n_params() const { return static_cast<long>(params_.size()); }
  /// FLOPs of the products of one relaxation step of one sample in real arithmetic: the
  /// bottom-up and top-down products of the connections 1..K-1 (2 per multiply-add; the input
  /// drive is computed once per batch; biases, pooling, activations and readout not counted).
  /// A complex state costs twice this.
  double flops_per_step() const {
    double f = 0;
    for (int j = 1; j < n_layers(); ++j) f += 4.0 * double(geometry_[j].conv_size()) * double(geometry_[j].patch());
    return f;
  }

  matrix_map<P> W(int j) { return block(2 * j); }
  const_matrix_map<P> W(int j) const { return block(2 * j); }
  vector_map<P> b(int j) { return bias(2 * j + 1); }
  const_vector_map<P> b(int j) const { return bias(2 * j + 1); }
  matrix_map<P> W_out() { return block(2 * n_layers()); }
  const_matrix_map<P> W_out() const { return block(2 * n_layers()); }
  vector_map<P> b_out() { return bias(2 * n_layers() + 1); }
  const_vector_map<P> b_out() const { return bias(2 * n_layers() + 1); }

  /// Same network with parameters converted to Q (e.g. to complex<double> for complex-step tests).
  template <class Q>
  layered_network<Q> cast() const {
    layered_network<Q> out;
    out.spec_ = spec_;
    out.geometry_ = geometry_;
    out.params_ = params_.template cast<Q>();
    return out;
  }

 private:
  template <class>
  friend class layered_network;
  matrix_map<P> block(int i) { return params_.view(i); }
  const_matrix_map<P> block(int i) const { return params_.view(i); }
  vector_map<P> bias(int i) {
    auto& l = params_.block(i);
    return {params_.data() + l.offset, l.rows};
  }
  const_vector_map<P> bias(int i) const {
    auto& l = params_.block(i);
    return {params_.data() + l.offset, l.rows};
  }

  network_spec spec_;
  std::vector<connection_geometry> geometry_;
  param_buffer<P> params_;
};

extern template class layered_network<float>;
extern template class layered_network<double>;
extern template class layered_network<std::complex<double>>;

}  // namespace eqprop
