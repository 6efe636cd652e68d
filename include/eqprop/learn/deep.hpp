// DEEP: equilibrium propagation on directed graph networks (spec deep.md, Farinha et al.
// 2020). Dynamics of every free neuron j (inputs clamped), Euler steps, clip to [0, 1]:
//
//   ds_j/dt = Σ_i W_ij ρ(s_i) + b_j − (D_j + γ) s_j  [+ β (y_j − s_j) on outputs, nudged]
//
// with D_j = Σ_k W_jk (published), Σ_k |W_jk| (abs variant) or 1 (the asymmetric
// vector-field EP baseline). Published: ρ = identity, γ = 0, b = 0.
// Learning: the trajectory rule ΔW_ij = (1/(B T2)) Σ_b Σ_t s_i(t) [β0 s_j(t) + β1 Δs_j(t)]
// over the nudged phase (not divided by β), the endpoint rule (1/(βB)) Σ s_i* (s_j^β − s_j*), or
// the vector-field rule (deep_vector_field_update: ∂F/∂W contracted with (s^β − s*)/β);
// W <- masks(W + η ΔW (or η sign ΔW), L1 shrinkage), then optional Boltzmann pruning.
// Phases relax through the shared driver (relax_columns, eqprop/dynamics/relax_driver.hpp);
// states and parameters are float or double (R), products through the matmul seam.
// deep_gradient writes −ΔW into a buffer laid out like the parameters; the weights change
// in train/ (deep_learning_step, eqprop/train/deep_trainer.hpp: SGD with the masks and L1 shrinkage as
// parameter constraints (deep_constraints), then pruning).
#pragma once
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/relax_driver.hpp"
#include "eqprop/learn/estimator.hpp"
#include "eqprop/model/activation.hpp"
#include "eqprop/model/graph_network.hpp"

namespace eqprop {

enum class deep_decay { row_sum, abs_row_sum, unit };
/// ρ: identity | hep_sigmoid = logistic(4s − 2) | tanh, the functions of the activation table
/// (deep_presyn_activation).
enum class deep_presyn { identity, hep_sigmoid, tanh };
enum class deep_rule { trajectory, endpoint, vector_field };
enum class deep_l1 { subgradient, soft_threshold };

struct deep_dynamics {
  double dt = 0.05;
  long free_steps = 1000;    ///< T1 (step budget of the free phase)
  long nudged_steps = 1000;  ///< T2
  /// Stop a phase early when max_b ‖Δs_b‖² <= stop_tol (0: never). The driver sees the
  /// per-sample residual ‖Δs_b‖ against the tolerance sqrt(stop_tol).
  double stop_tol = 0;
  /// With stop_tol > 0: a sample whose last step moved ‖Δs_b‖² <= stop_tol stops stepping
  /// (relax_options::freeze_converged). Off by default: the others' extra steps then still
  /// move it (by less than the tolerance per step), as published. Never in the nudged phase
  /// of the trajectory rule, which sums over every sample's steps.
  bool freeze = false;
  double leak = 0;  ///< γ >= 0
  deep_decay decay = deep_decay::row_sum;
  deep_presyn presyn = deep_presyn::identity;
  bool clip = true;  ///< project the free states onto [0, 1] after every step (published)
};

struct deep_learning {
  deep_rule rule = deep_rule::trajectory;
  double beta = 1;
  double lr = 200;  ///< η
  double beta0 = 0, beta1 = 1;
  bool sign = false;              ///< Manhattan update: η sign(ΔW)
  bool learn_bias = false;        ///< the vector-field baseline learns b with the endpoint rule
  bool reciprocal_nudge = false;  ///< nudged phase with deep_reciprocal_term (vector_field rule, no clip)
  double l1 = 0;                  ///< λ (0: off)
  deep_l1 l1_mode = deep_l1::subgradient;
  // Boltzmann pruning after each update.
  bool prune = false;
  double prune_tol = 0.01;          ///< |W| above this is never pruned
  double prune_temp = 5;            ///< softmax temperature T
  bool persistent = false;          ///< pruned edges stay pruned (graph_network::pruned())
  bool exclude_structural = false;  ///< leave structural zeros out of the softmax denominator
};

/// Parsers for the enum settings; throw config_error naming the accepted values. The retired
/// presynaptic name "sigmoid" is a config_error naming hep_sigmoid (renamed_activation_message).
deep_decay parse_deep_decay(const std::string& s);
deep_presyn parse_deep_presyn(const std::string& s);
/// ρ from saved settings (checkpoint metadata): as parse_deep_presyn, but "sigmoid", the
/// name that settings saved before the rename hold for logistic(4s − 2), reads as hep_sigmoid.
deep_presyn parse_saved_deep_presyn(const std::string& s);
deep_rule parse_deep_rule(const std::string& s);
deep_l1 parse_deep_l1(const std::string& s);
/// The names the parsers accept (the first spelling where there are two).
std::string to_string(deep_decay d);
std::string to_string(deep_presyn p);
std::string to_string(deep_rule r);
std::string to_string(deep_l1 m);

/// ρ as an activation of the table (eqprop/model/activation.hpp): linear for identity,
/// hep_sigmoid, tanh. ρ and ρ' are computed with apply_activation of this kind.
activation_kind deep_presyn_activation(deep_presyn p);

/// Throws config_error for settings the learning step cannot use correctly: the reciprocal
/// nudge with a rule other than vector_field (only that rule turns its nudge into −∂C/∂W) or
/// with clipping (deep_jacobian ignores the clip's active set, so Jᵀ − J is wrong wherever a
/// neuron is held at 0 or 1). deep_learning_step and deep_train check this.
void deep_check_settings(const deep_dynamics& dyn, const deep_learning& learn);

/// Throws shape_error unless x has the network's data inputs as rows and y (targets) has
/// n_output rows and as many columns as x.
template <class R>
void deep_check_batch(const graph_network<R>& net, const matrix<R>& x, const matrix<R>& y);

/// Initial free states ~ U(0, 0.1) and clamped inputs: s is N x B, x is n_data_input x B.
/// The random numbers are drawn in double and rounded to R (the same draws for any R).
template <class R>
matrix<R> deep_initial_state(const graph_network<R>& net, const matrix<R>& x, rng_t& rng);

/// A linear term added to the rate of the free neurons of sample b: k[b] (s_b − s_ref_b) over
/// the free block (k[b] is n_free x n_free, s_ref is N x B). Kept in double whatever the
/// network's type; the relaxation rounds it to R.
struct deep_linear_term {
  Eigen::MatrixXd s_ref;
  std::vector<Eigen::MatrixXd> k;
};

/// Runs one phase from s (in place) through relax_columns: up to free_steps (y null) or
/// nudged_steps steps, stopping early when stop_tol > 0 and every sample's ‖Δs_b‖² <=
/// stop_tol (the report's residuals are ‖Δs_b‖, its tolerance sqrt(stop_tol); a sample is
/// converged when its last step moved no more than that, with stop_tol 0 only when it did
/// not move). y (n_output x B) and beta are used when nudged; extra, when set, is added to the
/// rate of every step (the reciprocal nudge). Non-finite samples are counted in
/// n_non_finite and stop holding up the others.
template <class R>
relax_report deep_relax(const graph_network<R>& net, const deep_dynamics& dyn, matrix<R>& s,
                        const std::type_identity_t<matrix<R>>* y, double beta, const deep_linear_term* extra = nullptr);

/// The reciprocal-nudge term at the free states s_free (N x B): k[b] = J_bᵀ − J_b with J_b the
/// free-block Jacobian (deep_jacobian) at sample b. Added to the nudged phase, it replaces the
/// linearisation J_b of the dynamics around s_free by J_bᵀ, so that (s^β − s*)/β → J^{-T} ∂C/∂s
/// as β → 0 and the vector-field rule becomes −∂C/∂W (C = ½‖y − s_out‖²) for any J, symmetric
/// or not (exact-gradient EP for non-conservative systems, Scurria et al.). Non-local: the
/// learning (nudged) phase needs the reverse edges' weights at every neuron (W_jm at j for the edge m -> j).
template <class R>
deep_linear_term deep_reciprocal_term(const graph_network<R>& net, const deep_dynamics& dyn, const matrix<R>& s_free);

/// The phases of one learning step on a batch and the update they give.
template <class R>
struct deep_step_result {
  relax_report free, nudged;
  matrix<R> s_free, s_nudged;  ///< end states of both phases (N x B)
  double update_l1 = 0;        ///< ‖ΔW applied‖₁ (before shrinkage)
  long n_pruned = 0;           ///< weights zeroed by pruning this step
  bool finite() const { return free.n_non_finite == 0 && nudged.n_non_finite == 0; }
};
/// Free phase, nudged phase and the rule's update (spec §2-§4): writes the descent direction
/// g = −ΔW (−sign ΔW with learn.sign; zero outside the graph) into grad's "W" block and, with
/// learn_bias, −(mean over the batch of s^β − s*)/β into its "b" block (zero otherwise), so
/// that plain SGD with learn.lr (θ −= η g) applies the update. grad: laid out like
/// net.params(). When a phase gave non-finite states, grad is zero and the result says so.
template <class R>
deep_step_result<R> deep_gradient(const graph_network<R>& net, const deep_dynamics& dyn, const deep_learning& learn,
                                  const matrix<R>& x, const matrix<R>& y, rng_t& rng, std::span<R> grad);

/// The vector-field rule: ΔW_ij = (1/(βB)) Σ_b Σ_{m free} ∂F_m/∂W_ij (s*) (s_m^β − s_m*), with F the
/// free-phase vector field (unclipped) at the free state s*. For a free target j the drive gives
/// ρ(s_i*) (s_j^β − s_j*); for a free source i the decay D_i depends on W_ij too and adds
/// −(∂D_i/∂W_ij) s_i* (s_i^β − s_i*) (∂D_i/∂W_ij = 1 for row_sum, sign W_ij for abs_row_sum, 0 for
/// unit). With a symmetric Jacobian this is the EP estimate of −∂(½‖y − s_out‖²)/∂W as β → 0.
/// Zero outside the graph (structural or pruned). States are N x B.
template <class R>
matrix<R> deep_vector_field_update(const graph_network<R>& net, const deep_dynamics& dyn, const matrix<R>& s_free,
                                   const matrix<R>& s_nudged, double beta);

/// Boltzmann pruning (spec §5): per target column j, p_ij = softmax_i(−|W_ij|/T); weights
/// with |W_ij| > tol are kept; each other allowed weight is zeroed when p_ij > U(0,1).
/// Returns the number of weights zeroed.
template <class R>
long deep_boltzmann_prune(graph_network<R>& net, const deep_learning& learn, rng_t& rng);

/// Free-phase error and MSE of a batch's output states (y holds targets).
/// one_hot: argmax against argmax of y; scalar: each output thresholded at 0.5.
/// A sample with a NaN/Inf output is never correct: it counts as misclassified and in
/// n_non_finite, and is left out of mse (NaN when no sample is finite).
struct deep_scores {
  double error = 0;  ///< fraction of misclassified samples
  double mse = 0;    ///< mean over the finite samples and the outputs of (s − y)²
  long n_non_finite = 0;
};
template <class R>
deep_scores deep_score(const graph_network<R>& net, const matrix<R>& s, const matrix<R>& y, bool one_hot);

/// The free phase that scores classes (the evaluation of `eqprop train`/`eval` and of
/// eqprop.load_run's predict): initial states from rng (deep_initial_state), relaxed with dyn
/// and beta = 0. scores (classes x B): the output states, or, for one output neuron s, the
/// two classes' scores (1 − s, s), so that the argmax (ties to the lower index) is the
/// predicted class (s > 0.5 for one output). outputs, when set, receives the output states
/// (n_output x B).
template <class R>
relax_report deep_class_scores(const graph_network<R>& net, const deep_dynamics& dyn, const matrix<R>& x, rng_t& rng,
                               matrix<R>& scores, matrix<R>* outputs = nullptr);

/// DEEP's rules (trajectory, endpoint, vector field) behind the estimator interface every
/// learning rule implements: estimate() is deep_gradient (free phase, nudged phase, −ΔW
/// into grad), with loss = mean over the finite samples of ½‖y − s_out‖² at the free state,
/// predictions the argmax of the outputs (one-hot targets) or, for one output, s_out > 0.5
/// (−1 for a non-finite sample), and free/points the two phases' reports. A sample with
/// non-finite states zeroes the whole update (deep_gradient) and is counted in n_dropped.
template <class R>
class deep_estimator : public grad_estimator<R, graph_network<R>> {
 public:
  deep_estimator(deep_dynamics dyn, deep_learning learn, uint64_t seed);
  std::string name() const override;
  grad_result estimate(const graph_network<R>& net, const matrix<R>& x, const matrix<R>& y, std::span<R> grad) override;
  /// Initial states and pruning draw from this stream.
  void reseed_noise(uint64_t seed) override { rng_.seed(seed); }
  /// The generator of the initial states and of pruning (a mid-epoch checkpoint saves it).
  rng_t* noise_rng() override { return &rng_; }
  const deep_step_result<R>& last() const { return last_; }

 private:
  deep_dynamics dyn_;
  deep_learning learn_;
  rng_t rng_;
  deep_step_result<R> last_;
};

extern template class deep_estimator<float>;
extern template class deep_estimator<double>;

}  // namespace eqprop
