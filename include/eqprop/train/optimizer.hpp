// Optimisers over the flat parameter buffer, with per-group (per-layer) learning rates and
// weight decays. They see only parameters and gradients, never the network or the rule.
//
//   sgd  (coupled decay):   g' = g + wd th;  m = mu m + g';  th -= lr m
//   sgd  (decoupled decay): m = mu m + g;    th = (1 - lr wd) th - lr m        (hEP ConvNets)
//   adam:  g' = g + wd th; m, v moments of g'; th -= lr mhat / (sqrt(vhat) + eps)
//   adamw: as adam on g, then th -= lr wd th
//
// After the update, step() applies the constraints attached with set_constraints (boxes,
// masks, L1 shrinkage: train/constraints.hpp), so a step always ends on feasible parameters.
#pragma once
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/aligned.hpp"
#include "eqprop/core/params.hpp"
#include "eqprop/train/constraints.hpp"

namespace eqprop {

enum class optimizer_kind { sgd, adam, adamw };
optimizer_kind parse_optimizer(std::string_view);

struct optimizer_options {
  optimizer_kind kind = optimizer_kind::sgd;
  double lr = 0.05;
  std::vector<double> lr_per_group;  ///< one per parameter group (layer0.., readout); empty: lr everywhere
  double momentum = 0;
  double weight_decay = 0;
  std::vector<double> wd_per_group;  ///< empty: weight_decay everywhere
  bool decoupled_wd = false;         ///< sgd: decoupled decay (th *= 1 - lr wd); adamw is always decoupled
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  /// Adam/AdamW: blocks of at least 2^16 entries are updated in this many contiguous chunks
  /// on OpenMP threads (experiment configs: estimator.threads). An entry's update depends on
  /// its values alone: the same bits for any count and any buffer address.
  int threads = 1;
};

enum class schedule_kind { constant, cosine };
struct schedule_options {
  schedule_kind kind = schedule_kind::constant;
  bool per_step = false;  ///< cosine: anneal per step (fractional epochs) instead of per epoch
  double min_factor = 0;  ///< cosine: final lr = lr * min_factor
  long epochs = 0;        ///< cosine: anneal over this many epochs (0: the run's epochs)
  /// Multiplier of the base lr at (epoch, step within epoch of steps_per_epoch).
  double factor(long epoch, long step, long steps_per_epoch, long run_epochs) const;
};

/// ReduceLROnPlateau (mode min, relative threshold 1e-4), epoch by epoch, multiplying
/// whatever schedule_options gives.
struct plateau_options {
  long patience = -1;                ///< epochs without a new best before the lr drops (-1: off)
  double factor = 0.5;               ///< lr multiplier on a plateau
  std::string metric = "test_loss";  ///< the watched column of the epoch's metrics row
  bool enabled() const { return patience >= 0; }
};
struct plateau_state {
  double scale = 1;                                       ///< the lr multiplier now
  double best = std::numeric_limits<double>::infinity();  ///< the lowest watched value so far
  long bad = 0;                                           ///< epochs since the last new best
  /// An epoch ends with the watched value: a value below best (1 - 1e-4) is the new best;
  /// otherwise, after more than o.patience such epochs, scale *= o.factor and the count
  /// restarts. Nothing changes when !o.enabled().
  void update(const plateau_options& o, double watched);
};

template <class R>
class optimizer {
 public:
  optimizer(optimizer_options opt, const std::vector<param_block>& layout, int n_groups);
  /// params -= update(grad), then constraints().apply(params, lr_factor); lr_factor scales
  /// every group's learning rate (schedule) and the L1 thresholds.
  void step(std::span<R> params, std::span<const R> grad, double lr_factor);
  /// Constraints applied after every step, replacing any attached before. Throws
  /// internal_error unless they were built over this optimizer's layout (or are empty).
  void set_constraints(param_constraints c);
  /// The attached constraints, e.g. to replace a mask after pruning (set_mask).
  param_constraints& constraints() { return cons_; }
  const param_constraints& constraints() const { return cons_; }
  const optimizer_options& options() const { return opt_; }
  /// State for checkpoints: moment buffers and the step count.
  aligned_vector<R>& m() { return m_; }
  aligned_vector<R>& v() { return v_; }
  int64_t& t() { return t_; }
  /// Restores the state saved from m(), v() and t() (a checkpoint). Throws data_error,
  /// changing nothing, unless each moment buffer is empty or has the size this optimizer
  /// keeps, and t >= 0.
  void restore(std::span<const R> m, std::span<const R> v, int64_t t);

 private:
  optimizer_options opt_;
  std::vector<double> lr_, wd_;  // per parameter entry group -> value, expanded per block
  std::vector<param_block> layout_;
  aligned_vector<R> m_, v_;
  int64_t t_ = 0;
  param_constraints cons_;
};

extern template class optimizer<float>;
extern template class optimizer<double>;

}  // namespace eqprop
