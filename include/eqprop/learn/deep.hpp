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
// The training loop over data sets is in eqprop/train/deep_trainer.hpp.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "eqprop/core/rng.hpp"
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
  long free_steps = 1000;     ///< T1 (step budget of the free phase)
  long nudged_steps = 1000;   ///< T2
  double stop_tol = 0;        ///< stop a phase early when max_b ‖Δs_b‖² <= stop_tol (0: never)
  double leak = 0;            ///< γ >= 0
  deep_decay decay = deep_decay::row_sum;
  deep_presyn presyn = deep_presyn::identity;
  bool clip = true;           ///< project the free states onto [0, 1] after every step (published)
};

struct deep_learning {
  deep_rule rule = deep_rule::trajectory;
  double beta = 1;
  double lr = 200;            ///< η
  double beta0 = 0, beta1 = 1;
  bool sign = false;          ///< Manhattan update: η sign(ΔW)
  bool learn_bias = false;    ///< the vector-field baseline learns b with the endpoint rule
  bool reciprocal_nudge = false;  ///< nudged phase with deep_reciprocal_term (vector_field rule, no clip)
  double l1 = 0;              ///< λ (0: off)
  deep_l1 l1_mode = deep_l1::subgradient;
  // Boltzmann pruning after each update.
  bool prune = false;
  double prune_tol = 0.01;    ///< |W| above this is never pruned
  double prune_temp = 5;      ///< softmax temperature T
  bool persistent = false;    ///< pruned edges stay pruned (graph_network::pruned())
  bool exclude_structural = false;  ///< leave structural zeros out of the softmax denominator
};

/// Result of one phase for a batch.
struct deep_phase_report {
  long steps = 0;
  double residual = 0;       ///< max over the batch of ‖Δs‖² at the last step
  bool converged = false;    ///< residual <= stop_tol (false when stop_tol = 0 and the budget ran out)
  bool finite = true;
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
void deep_check_batch(const graph_network& net, const Eigen::MatrixXd& x, const Eigen::MatrixXd& y);

/// Initial free states ~ U(0, 0.1) and clamped inputs: s is N x B, x is n_data_input x B.
Eigen::MatrixXd deep_initial_state(const graph_network& net, const Eigen::MatrixXd& x, rng_t& rng);

/// A linear term added to the rate of the free neurons of sample b: k[b] (s_b − s_ref_b) over
/// the free block (k[b] is n_free x n_free, s_ref is N x B).
struct deep_linear_term {
  Eigen::MatrixXd s_ref;
  std::vector<Eigen::MatrixXd> k;
};

/// Runs one phase from s (in place). y (n_output x B) and beta are used when nudged.
/// on_step(prev, next) is called after every step when set (the trajectory rule); extra,
/// when set, is added to the rate of every step (the reciprocal nudge).
deep_phase_report deep_relax(const graph_network& net, const deep_dynamics& dyn, Eigen::MatrixXd& s,
                             const Eigen::MatrixXd* y, double beta,
                             const std::function<void(const Eigen::MatrixXd&, const Eigen::MatrixXd&)>& on_step = {},
                             const deep_linear_term* extra = nullptr);

/// The reciprocal-nudge term at the free states s_free (N x B): k[b] = J_bᵀ − J_b with J_b the
/// free-block Jacobian (deep_jacobian) at sample b. Added to the nudged phase, it replaces the
/// linearisation J_b of the dynamics around s_free by J_bᵀ, so that (s^β − s*)/β → J^{-T} ∂C/∂s
/// as β → 0 and the vector-field rule becomes −∂C/∂W (C = ½‖y − s_out‖²) for any J, symmetric
/// or not (exact-gradient EP for non-conservative systems, Scurria et al.). Non-local: the
/// learning (nudged) phase needs the reverse edges' weights at every neuron (W_jm at j for the edge m -> j).
deep_linear_term deep_reciprocal_term(const graph_network& net, const deep_dynamics& dyn, const Eigen::MatrixXd& s_free);

/// One learning step on a batch (free phase, nudged phase, update, shrinkage, pruning).
struct deep_step_result {
  deep_phase_report free, nudged;
  Eigen::MatrixXd s_free, s_nudged;  ///< end states of both phases (N x B)
  double update_l1 = 0;              ///< ‖ΔW applied‖₁ (before shrinkage)
  long n_pruned = 0;                 ///< weights zeroed by pruning this step
};
deep_step_result deep_learning_step(graph_network& net, const deep_dynamics& dyn, const deep_learning& learn,
                                    const Eigen::MatrixXd& x, const Eigen::MatrixXd& y, rng_t& rng);

/// The vector-field rule: ΔW_ij = (1/(βB)) Σ_b Σ_{m free} ∂F_m/∂W_ij (s*) (s_m^β − s_m*), with F the
/// free-phase vector field (unclipped) at the free state s*. For a free target j the drive gives
/// ρ(s_i*) (s_j^β − s_j*); for a free source i the decay D_i depends on W_ij too and adds
/// −(∂D_i/∂W_ij) s_i* (s_i^β − s_i*) (∂D_i/∂W_ij = 1 for row_sum, sign W_ij for abs_row_sum, 0 for
/// unit). With a symmetric Jacobian this is the EP estimate of −∂(½‖y − s_out‖²)/∂W as β → 0.
/// Zero outside the graph (structural or pruned). States are N x B.
Eigen::MatrixXd deep_vector_field_update(const graph_network& net, const deep_dynamics& dyn, const Eigen::MatrixXd& s_free,
                                         const Eigen::MatrixXd& s_nudged, double beta);

/// Boltzmann pruning (spec §5): per target column j, p_ij = softmax_i(−|W_ij|/T); weights
/// with |W_ij| > tol are kept; each other allowed weight is zeroed when p_ij > U(0,1).
/// Returns the number of weights zeroed.
long deep_boltzmann_prune(graph_network& net, const deep_learning& learn, rng_t& rng);

/// Applies L1 shrinkage with strength lambda to the allowed weights.
void deep_l1_shrink(graph_network& net, double lambda, deep_l1 mode);

/// Free-phase error and MSE of a batch's output states (y holds targets).
/// one_hot: argmax against argmax of y; scalar: each output thresholded at 0.5.
/// A sample with a NaN/Inf output is never correct: it counts as misclassified and in
/// n_non_finite, and is left out of mse (NaN when no sample is finite).
struct deep_scores {
  double error = 0;  ///< fraction of misclassified samples
  double mse = 0;    ///< mean over the finite samples and the outputs of (s − y)²
  long n_non_finite = 0;
};
deep_scores deep_score(const graph_network& net, const Eigen::MatrixXd& s, const Eigen::MatrixXd& y, bool one_hot);

}  // namespace eqprop
