#include "eqprop/train/deep_trainer.hpp"

#include "eqprop/core/error.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/train/optimizer.hpp"

namespace eqprop {

deep_task make_logic_task(const std::string& name, bool one_hot) {
  const dataset d = logic_gate_dataset(name);
  deep_task t;
  t.name = name;
  t.one_hot = one_hot;
  t.x = d.x.cast<double>();
  const int n = int(d.y.size());
  t.y.setZero(one_hot ? 2 : 1, n);
  for (int b = 0; b < n; ++b) {
    if (one_hot) t.y(d.y[size_t(b)], b) = 1.0;
    else t.y(0, b) = d.y[size_t(b)];
  }
  return t;
}

Eigen::MatrixXd one_hot_targets(const std::vector<int32_t>& labels, int n_classes) {
  Eigen::MatrixXd y = Eigen::MatrixXd::Zero(n_classes, Eigen::Index(labels.size()));
  for (std::size_t b = 0; b < labels.size(); ++b) {
    if (labels[b] < 0 || labels[b] >= n_classes)
      throw data_error("label " + std::to_string(labels[b]) + " outside [0, " + std::to_string(n_classes) + ")");
    y(labels[b], Eigen::Index(b)) = 1.0;
  }
  return y;
}

template <class R>
param_constraints deep_constraints(const graph_network<R>& net, const deep_learning& learn) {
  const int n = net.size();
  std::vector<char> keep(std::size_t(n) * std::size_t(n));
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i) keep[std::size_t(j) * std::size_t(n) + std::size_t(i)] = net.in_graph(i, j);
  param_constraints c(net.params().layout());
  c.add_mask("W", std::move(keep));
  if (learn.l1 > 0)
    c.add_l1("W", learn.l1, learn.l1_mode == deep_l1::subgradient ? l1_form::subgradient : l1_form::proximal);
  return c;
}

template <class R>
deep_step_result<R> deep_learning_step(graph_network<R>& net, const deep_dynamics& dyn, const deep_learning& learn,
                                       const matrix<R>& x, const matrix<R>& y, rng_t& rng) {
  aligned_vector<R> grad(net.params().size());
  auto r = deep_gradient(net, dyn, learn, x, y, rng, std::span<R>(grad));
  if (!r.finite()) return r;
  optimizer_options o;
  o.kind = optimizer_kind::sgd;
  o.lr = learn.lr;
  optimizer<R> opt(o, net.params().layout(), 1);
  opt.set_constraints(deep_constraints(net, learn));
  opt.step(net.params().values(), grad, 1.0);
  r.n_pruned = learn.prune ? deep_boltzmann_prune(net, learn, rng) : 0;
  return r;
}

template param_constraints deep_constraints(const graph_network<float>&, const deep_learning&);
template param_constraints deep_constraints(const graph_network<double>&, const deep_learning&);
template deep_step_result<float> deep_learning_step(graph_network<float>&, const deep_dynamics&, const deep_learning&,
                                                    const matrix<float>&, const matrix<float>&, rng_t&);
template deep_step_result<double> deep_learning_step(graph_network<double>&, const deep_dynamics&, const deep_learning&,
                                                     const matrix<double>&, const matrix<double>&, rng_t&);

}  // namespace eqprop
