// A network on an arbitrary directed graph of neurons (DEEP, spec deep.md §1): one state
// vector over [inputs..., bias, hidden..., outputs...], a directed weight matrix
// W(i, j) = weight FROM neuron i TO neuron j, a structural mask fixed by the topology and
// a separate (persistent) pruning mask. Both masks are re-applied after every update.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Dense>
#include <Eigen/SparseCore>

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
  int n_input = 2;              ///< data inputs, without the bias neuron
  std::vector<int> hidden{2};   ///< hidden layer sizes (complete mode only uses their sum)
  int n_output = 1;
  graph_topology topology = graph_topology::complete;
  /// custom only: N x N, nonzero = edge i -> j allowed (N = n_input + 1 + hidden + n_output).
  Eigen::MatrixXi adjacency;
  double init_std = 0.05;       ///< weights ~ N(0, init_std^2)
};

class graph_network {
 public:
  /// Builds the structural mask and initialises the allowed weights from rng. Throws
  /// config_error / shape_error on an invalid spec.
  graph_network(const graph_spec& spec, rng_t& rng);

  int n_input() const { return n_in_; }          ///< clamped neurons, bias included
  int n_data_input() const { return n_in_ - 1; }
  int bias_index() const { return n_in_ - 1; }
  int n_hidden() const { return n_hidden_; }
  int n_output() const { return n_out_; }
  int n_free() const { return n_hidden_ + n_out_; }
  int size() const { return n_in_ + n_hidden_ + n_out_; }
  int first_output() const { return n_in_ + n_hidden_; }
  const graph_spec& spec() const { return spec_; }

  Eigen::MatrixXd weights;  ///< N x N, W(i, j) from i to j
  Eigen::VectorXd bias;     ///< n_free; zero for DEEP (the bias neuron plays that role)

  /// true where an edge may exist (fixed by the topology).
  const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& structural() const { return structural_; }
  /// true where an allowed edge has been pruned persistently.
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& pruned() { return pruned_; }
  const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& pruned() const { return pruned_; }

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
  graph_spec spec_;
  int n_in_ = 0, n_hidden_ = 0, n_out_ = 0;
  long n_allowed_ = 0;
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> structural_, pruned_;
};

/// The drive operator W_freeᵀ (n_free x N) used by the dynamics, stored dense or sparse
/// (sparse when the network's density is below sparse_threshold and N >= 32).
class graph_drive {
 public:
  graph_drive(const graph_network& net, double sparse_threshold = 0.2);
  bool is_sparse() const { return sparse_; }
  /// out = W(:, free)ᵀ * s  for s: N x B.
  void apply(const Eigen::MatrixXd& s, Eigen::MatrixXd& out) const;

 private:
  bool sparse_ = false;
  Eigen::MatrixXd dense_;
  Eigen::SparseMatrix<double> sparse_m_;
};

}  // namespace eqprop
