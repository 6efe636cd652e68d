// The one interface every gradient estimator and exact reference implements, so the
// training loop never knows which one it runs.
//
// Convention (docs/concepts.md): the loss of a batch is L = mean_b C(h*_b), with h* the
// free fixed point; an estimator writes its estimate of dL/dtheta into grad (layout of
// the network's params()), and the optimiser descends: theta <- theta - lr * grad.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/error.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/relax.hpp"
#include "eqprop/model/layered_network.hpp"

namespace eqprop {

/// What happens to samples whose relaxation failed (non-finite, or residual above
/// drop_residual): they are always counted and reported.
enum class nonconvergence_policy {
  drop,   ///< the sample contributes nothing; the gradient is the mean over kept samples
  error,  ///< throw convergence_error
  keep,   ///< use the sample anyway (for studies of the failure itself); non-finite still dropped
};

struct grad_result {
  double loss = 0;                      ///< mean cost at the free state (kept samples)
  std::vector<int32_t> predictions;     ///< argmax of the output at the free state (-1: NaN/Inf output)
  relax_report free;                    ///< the free phase (empty for estimators without one)
  std::vector<relax_report> points;     ///< one per nudged relaxation actually run
  long n_dropped = 0;                   ///< samples excluded from the gradient
  long relax_steps = 0;                 ///< total steps run, all phases (the slowest sample's)
  long relax_sample_steps = 0;          ///< steps summed over the samples, all phases (the cost when
                                        ///< converged samples freeze; 0 where not counted)
  long relax_complex_sample_steps = 0;  ///< of those, the steps in complex arithmetic (twice the real FLOPs)
  double grad_seconds = 0;              ///< wall time of dF/dtheta from the relaxed states (0 where not timed);
                                        ///< the phases' times are in free.seconds and points[k].seconds
};

/// Throws shape_error unless grad has one entry per parameter of net (any network kind).
template <class Net, class R>
void check_grad_size(const Net& net, std::span<R> grad, const char* who) {
  if (static_cast<long>(grad.size()) != net.n_params())
    throw shape_error(std::string(who) + ": gradient buffer has " + std::to_string(grad.size()) +
                      " entries, the network " + std::to_string(net.n_params()) + " parameters");
}

/// Net: the network kind (layered_network<R>, vector_field_network<R>, graph_network<R>).
template <class R, class Net = layered_network<R>>
class grad_estimator {
 public:
  virtual ~grad_estimator() = default;
  /// Human-readable description, e.g. "holomorphic EP N=4 |beta|=0.1".
  virtual std::string name() const = 0;
  /// Estimates dL/dtheta on the batch (x: n_in x B, y: n_out x B) into grad (overwritten).
  virtual grad_result estimate(const Net& net, const matrix<R>& x, const matrix<R>& y, std::span<R> grad) = 0;
  /// Restarts the neuron-noise stream (if any) from this seed; the trainer calls it at
  /// every epoch start so that a resumed run draws the same noise.
  virtual void reseed_noise(uint64_t seed) {}
  /// The neuron-noise generator (nullptr: none), whose state a mid-epoch checkpoint saves
  /// and restores.
  virtual rng_t* noise_rng() { return nullptr; }
};

}  // namespace eqprop
