#include "eqprop/model/graph_network.hpp"

#include <numeric>

#include "eqprop/core/error.hpp"

namespace eqprop {

graph_topology parse_graph_topology(const std::string& name) {
  if (name == "complete") return graph_topology::complete;
  if (name == "layered") return graph_topology::layered;
  if (name == "custom") return graph_topology::custom;
  throw config_error("unknown graph topology `" + name + "` (expected complete | layered | custom)");
}

std::string to_string(graph_topology t) {
  switch (t) {
    case graph_topology::complete:
      return "complete";
    case graph_topology::layered:
      return "layered";
    case graph_topology::custom:
      return "custom";
  }
  return "?";
}

template <class R>
graph_network<R>::graph_network(const graph_spec& spec, rng_t& rng) : spec_(spec) {
  if (spec.n_input < 1) throw config_error("graph network: n_input must be >= 1, got " + std::to_string(spec.n_input));
  if (spec.n_output < 1)
    throw config_error("graph network: n_output must be >= 1, got " + std::to_string(spec.n_output));
  for (int h : spec.hidden)
    if (h < 1) throw config_error("graph network: every hidden layer size must be >= 1, got " + std::to_string(h));
  n_in_ = spec.n_input + 1;
  n_hidden_ = std::accumulate(spec.hidden.begin(), spec.hidden.end(), 0);
  n_out_ = spec.n_output;
  const int n = size();
  structural_.setConstant(n, n, false);
  switch (spec.topology) {
    case graph_topology::complete:
      for (int i = 0; i < n; ++i)
        for (int j = n_in_; j < n; ++j) structural_(i, j) = (i != j);
      break;
    case graph_topology::layered: {
      // Layer boundaries: inputs, each hidden layer, the outputs.
      std::vector<int> start{0, n_in_};
      for (int h : spec.hidden) start.push_back(start.back() + h);
      if (start.back() != n_in_ + n_hidden_) throw internal_error("graph layers");
      start.push_back(n);
      if (spec.hidden.empty()) {
        start.erase(start.end() - 2);
        start.back() = n;
      }
      const int n_layers = static_cast<int>(start.size()) - 1;
      for (int l = 0; l + 1 < n_layers; ++l)
        for (int i = start[l]; i < start[l + 1]; ++i)
          for (int j = start[l + 1]; j < start[l + 2]; ++j) {
            structural_(i, j) = true;             // forward l -> l+1
            if (l > 0) structural_(j, i) = true;  // backward l+1 -> l (never into inputs)
          }
      for (int j = n_in_; j < n; ++j) structural_(bias_index(), j) = true;
      break;
    }
    case graph_topology::custom:
      if (spec.adjacency.rows() != n || spec.adjacency.cols() != n)
        throw shape_error("graph network: custom adjacency must be " + std::to_string(n) + " x " + std::to_string(n) +
                          ", got " + std::to_string(spec.adjacency.rows()) + " x " +
                          std::to_string(spec.adjacency.cols()));
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
          if (spec.adjacency(i, j) == 0) continue;
          if (j < n_in_)
            throw config_error("graph network: custom adjacency has an edge " + std::to_string(i) + " -> " +
                               std::to_string(j) + " into an input (inputs are clamped)");
          if (i == j) throw config_error("graph network: custom adjacency has a self-loop on " + std::to_string(i));
          structural_(i, j) = true;
        }
      break;
  }
  n_allowed_ = structural_.count();
  pruned_.setConstant(n, n, false);
  params_.add("W", 0, n, n);
  params_.add("b", 0, n_free(), 1);
  auto w = weights();
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      if (structural_(i, j)) w(i, j) = R(spec.init_std * standard_normal(rng));
}

template <class R>
void graph_network<R>::apply_masks() {
  const int n = size();
  auto w = weights();
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i)
      if (!in_graph(i, j)) w(i, j) = R(0);
}

template <class R>
long graph_network<R>::n_nonzero() const {
  return (weights().array() != R(0)).count();
}

template <class R>
double graph_network<R>::sparsity() const {
  return n_allowed_ == 0 ? 0.0 : 1.0 - double(n_nonzero()) / double(n_allowed_);
}

template class graph_network<float>;
template class graph_network<double>;

template <class R>
graph_drive<R>::graph_drive(const graph_network<R>& net, double sparse_threshold, matmul_precision precision)
    : free_cols_(net.weights().data() + long(net.n_input()) * net.size(), net.size(), net.n_free()),
      precision_(precision) {
  sparse_ = net.size() >= 32 && net.density() < sparse_threshold;
  if (sparse_) {
    sparse_m_ = free_cols_.transpose().sparseView();
    sparse_m_.makeCompressed();
  }
}

template <class R>
void graph_drive<R>::apply(const matrix<R>& s, matrix<R>& out) const {
  if (sparse_) {
    out.noalias() = sparse_m_ * s;
    return;
  }
  out.resize(free_cols_.cols(), s.cols());
  matmul<R, R>(free_cols_, true, s.data(), long(s.cols()), out.data(), false, precision_);
}

template class graph_drive<float>;
template class graph_drive<double>;

}  // namespace eqprop
