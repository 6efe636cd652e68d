// Stability certificates for linearised dynamics ṡ = J s (spec deep.md §6): Gershgorin
// tests by rows and by columns (the published check), the spectral abscissa of the
// Jacobian restricted to unsaturated neurons, and the matrix measures (log-norms)
// μ_1, μ_2, μ_∞. A negative log-norm certifies contraction in that norm; a negative
// spectral abscissa certifies local asymptotic stability (Lyapunov's indirect method).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include "eqprop/core/eigen.hpp"

#include "eqprop/learn/deep.hpp"

namespace eqprop {

/// max Re λ(J). Throws shape_error unless J is square.
double spectral_abscissa(const Eigen::MatrixXd& j);
/// μ_1(J) = max_j (J_jj + Σ_{i≠j} |J_ij|)  (columns).
double log_norm_1(const Eigen::MatrixXd& j);
/// μ_2(J) = λ_max((J + Jᵀ)/2).
double log_norm_2(const Eigen::MatrixXd& j);
/// μ_∞(J) = max_i (J_ii + Σ_{j≠i} |J_ij|)  (rows).
double log_norm_inf(const Eigen::MatrixXd& j);
/// Principal sub-matrix over the indices where keep is true.
Eigen::MatrixXd principal_submatrix(const Eigen::MatrixXd& j, const std::vector<bool>& keep);

struct stability_report {
  int n = 0;         ///< size of J (free neurons)
  int n_active = 0;  ///< unsaturated neurons
  // The published Gershgorin check.
  bool diagonal_negative = false;                         ///< every J_jj < 0
  int rows_failing = 0, cols_failing = 0;                 ///< |J_jj| <= Σ_{m≠j} |J_jm| (rows) / |J_mj| (columns)
  bool gershgorin_rows = false, gershgorin_cols = false;  ///< diagonal negative and no failing row / column
  double max_abs_column_sum = 0;                          ///< max_j |Σ_i J_ij|: zero for the published DEEP dynamics
  double spectral_abscissa = 0;                           ///< of the full J
  double active_spectral_abscissa = 0;                    ///< of J restricted to the active set (−inf if empty)
  double mu_1 = 0, mu_2 = 0, mu_inf = 0;                  ///< of the full J
  bool certified = false;                                 ///< some certificate below holds
  std::string verdict;                                    ///< plain words with the numbers behind them
  nlohmann::ordered_json to_json() const;
};

/// Analyses J (square); active marks unsaturated neurons (empty: all active).
stability_report analyze_stability(const Eigen::MatrixXd& j, const std::vector<bool>& active = {});

/// The free-block Jacobian of the (unclipped) DEEP dynamics at state s (a column of N):
/// J_jm = W_mj ρ'(s_m) (m ≠ j), J_jj = W_jj ρ'(s_j) − (D_j + γ).
Eigen::MatrixXd deep_jacobian(const graph_network<double>& net, const deep_dynamics& dyn, const Eigen::VectorXd& s);
/// Free neurons strictly inside (margin, 1 − margin); with rate (ds/dt of the free
/// neurons, unclipped), a neuron at a bound counts as saturated only when its rate pushes
/// it strictly outwards (otherwise the clip is not active and it stays in the active set).
std::vector<bool> deep_active_set(const graph_network<double>& net, const Eigen::VectorXd& s, double margin = 1e-9,
                                  const Eigen::VectorXd* rate = nullptr);
/// ds/dt of the free neurons at state s (free dynamics, before clipping).
Eigen::VectorXd deep_rate(const graph_network<double>& net, const deep_dynamics& dyn, const Eigen::VectorXd& s);

/// Relaxes the free phase for every column of x and reports the stability of the
/// worst equilibrium (largest active-set spectral abscissa); also the per-pattern reports.
struct deep_stability_summary {
  stability_report worst;
  std::vector<stability_report> per_pattern;
};
deep_stability_summary deep_stability(const graph_network<double>& net, const deep_dynamics& dyn,
                                      const Eigen::MatrixXd& x, uint64_t seed = 1);

}  // namespace eqprop
