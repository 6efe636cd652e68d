// A network on an arbitrary directed graph of neurons (DEEP, spec deep.md §1): one state
// vector over [inputs..., bias, hidden..., outputs...], a directed weight matrix
// W(i, j) = weight FROM neuron i TO neuron j, a structural mask fixed by the topology and
// a separate (persistent) pruning mask. Both masks are re-applied after every update.
// The parameters live in one param_buffer (blocks "W", N x N, and "b", n_free), in float or
// double (graph_network<R>, explicitly instantiated for both).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/eigen.hpp"

#include "eqprop/core/matmul.hpp"
#include "eqprop/core/params.hpp"
#include "eqprop/core/rng.hpp"

namespace eqprop {

enum class graph_topology {
  complete,  ///< every input (and the bias) to every free neuron; every free neuron to every other
  layered,   ///< input -> first hidden layer, adjacent layers both ways, bias to every free neuron
  custom,    ///< a user-given adjacency (edges into inputs and self-loops are still refused)
};
/// "complete" | "layered" | "custom"; throws config_error otherwise.
graph_topology parse_graph_topology(const std::string& name);
std::string to_string(graph_topology t);

struct graph_spec {
  int n_input = 2;             ///< data inputs, without the bias neuron
  std::vector<int> hidden{2};  ///< hidden layer sizes (complete mode only uses their sum)
  int n_output = 1;
  graph_topology topology = graph_topology::complete;
  /// custom only: N x N, nonzero = edge i -> j allowed (N = n_input + 1 + hidden + n_output).
  Eigen::MatrixXi adjacency;
  double init_std = 0.05;  ///< weights ~ N(0, init_std^2)
};

template <class R>
class graph_network {
 public:
  using real = R;
  /// Builds the structural mask and initialises the allowed weights from rng (drawn in
  /// double, then rounded to R). Throws config_error / shape_error on an invalid spec.
  graph_network(const graph_spec& spec, rng_t& rng);

  int n_input() const { return n_in_; }  ///< clamped neurons, bias included
  int n_data_input() const { return n_in_ - 1; }
  int bias_index() const { return n_in_ - 1; }
  int n_hidden() const { return n_hidden_; }
  int n_output() const { return n_out_; }
  int n_free() const { return n_hidden_ + n_out_; }
  int size() const { return n_in_ + n_hidden_ + n_out_; }
  int first_output() const { return n_in_ + n_hidden_; }
  const graph_spec& spec() const { return spec_; }

  /// The flat parameters: block "W" (N x N, W(i, j) from i to j), then block "b" (n_free;
  /// zero for DEEP, where the bias neuron plays that role). A gradient or update buffer for
  /// this network has the same layout.
  param_buffer<R>& params() { return params_; }
  const param_buffer<R>& params() const { return params_; }
  const std::vector<param_block>& layout() const { return params_.layout(); }
  long n_params() const { return static_cast<long>(params_.size()); }
  matrix_map<R> weights() { return params_.view(0); }
  const_matrix_map<R> weights() const { return params_.view(0); }
  vector_map<R> bias() { return {params_.data() + params_.block(1).offset, n_free()}; }
  const_vector_map<R> bias() const { return {params_.data() + params_.block(1).offset, n_free()}; }
  /// The "W" block of a buffer laid out like params() (a gradient or an update).
  static matrix_map<R> weights_of(std::span<R> buf, const param_buffer<R>& p) { return block_view(buf, p.block(0)); }

  /// The same network with its parameters converted to Q.
  template <class Q>
  graph_network<Q> cast() const;

  /// true where an edge may exist (fixed by the topology).
  const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& structural() const { return structural_; }
  /// true where an allowed edge has been pruned persistently.
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& pruned() { return pruned_; }
  const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& pruned() const { return pruned_; }
  /// true where a weight may be non-zero: structural and not pruned.
  bool in_graph(int i, int j) const { return structural_(i, j) && !pruned_(i, j); }

  /// Zeroes every weight outside the structural mask or inside the pruning mask.
  void apply_masks();
  /// Number of edges the topology allows (N^2 minus the structural zeros).
  long n_allowed() const { return n_allowed_; }
  /// Number of non-zero weights.
  long n_nonzero() const;
  /// 1 - nnz / (N^2 - #structural zeros): structural zeros never count as sparsity.
  double sparsity() const;
  /// Fraction of the N x N entries that may be non-zero; drives the sparse/dense choice.
  double density() const { return double(n_allowed_ - pruned_.count()) / double(size()) / double(size()); }

 private:
  template <class>
  friend class graph_network;
  graph_network() = default;
  graph_spec spec_;
  int n_in_ = 0, n_hidden_ = 0, n_out_ = 0;
  long n_allowed_ = 0;
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> structural_, pruned_;
  param_buffer<R> params_;
};

template <class R>
template <class Q>
graph_network<Q> graph_network<R>::cast() const {
  graph_network<Q> out;
  out.spec_ = spec_;
  out.n_in_ = n_in_;
  out.n_hidden_ = n_hidden_;
  out.n_out_ = n_out_;
  out.n_allowed_ = n_allowed_;
  out.structural_ = structural_;
  out.pruned_ = pruned_;
  out.params_ = params_.template cast<Q>();
  return out;
}

extern template class graph_network<float>;
extern template class graph_network<double>;

/// The drive operator W_freeᵀ (n_free x N) used by the dynamics. Dense: the products read
/// the network's "W" block in place through the matmul seam (the network must outlive the
/// drive and stay unchanged while it is used). Sparse (density below sparse_threshold and
/// N >= 32): a compressed copy.
template <class R>
class graph_drive {
 public:
  explicit graph_drive(const graph_network<R>& net, double sparse_threshold = 0.2,
                       matmul_precision precision = matmul_precision::float32);
  bool is_sparse() const { return sparse_; }
  /// out = W(:, free)ᵀ * s  for s: N x B (out is resized to n_free x B).
  void apply(const matrix<R>& s, matrix<R>& out) const;

 private:
  bool sparse_ = false;
  const_matrix_map<R> free_cols_;  // W(:, free): N x n_free, inside the network's parameters
  Eigen::SparseMatrix<R> sparse_m_;
  matmul_precision precision_;
};

extern template class graph_drive<float>;
extern template class graph_drive<double>;

}  // namespace eqprop
