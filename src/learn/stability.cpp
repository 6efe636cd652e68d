#include "eqprop/learn/stability.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include "eqprop/core/eigen.hpp"

#include "eqprop/core/error.hpp"

namespace eqprop {

namespace {
void require_square(const Eigen::MatrixXd& j, const char* who) {
  if (j.rows() != j.cols())
    throw shape_error(fmt::format("{}: the Jacobian must be square, got {} x {}", who, j.rows(), j.cols()));
}
}  // namespace

double spectral_abscissa(const Eigen::MatrixXd& j) {
  require_square(j, "spectral_abscissa");
  if (j.size() == 0) return -std::numeric_limits<double>::infinity();
  Eigen::EigenSolver<Eigen::MatrixXd> es(j, false);
  if (es.info() != Eigen::Success) throw error("spectral_abscissa: the eigenvalue iteration did not converge");
  return es.eigenvalues().real().maxCoeff();
}

double log_norm_1(const Eigen::MatrixXd& j) {
  require_square(j, "log_norm_1");
  double mu = -std::numeric_limits<double>::infinity();
  for (Eigen::Index c = 0; c < j.cols(); ++c)
    mu = std::max(mu, j(c, c) + j.col(c).cwiseAbs().sum() - std::abs(j(c, c)));
  return mu;
}

double log_norm_inf(const Eigen::MatrixXd& j) {
  require_square(j, "log_norm_inf");
  double mu = -std::numeric_limits<double>::infinity();
  for (Eigen::Index r = 0; r < j.rows(); ++r)
    mu = std::max(mu, j(r, r) + j.row(r).cwiseAbs().sum() - std::abs(j(r, r)));
  return mu;
}

double log_norm_2(const Eigen::MatrixXd& j) {
  require_square(j, "log_norm_2");
  if (j.size() == 0) return -std::numeric_limits<double>::infinity();
  const Eigen::MatrixXd sym = 0.5 * (j + j.transpose());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(sym, Eigen::EigenvaluesOnly);
  return es.eigenvalues().maxCoeff();
}

Eigen::MatrixXd principal_submatrix(const Eigen::MatrixXd& j, const std::vector<bool>& keep) {
  require_square(j, "principal_submatrix");
  if (Eigen::Index(keep.size()) != j.rows())
    throw shape_error(
        fmt::format("principal_submatrix: mask has {} entries for a {} x {} matrix", keep.size(), j.rows(), j.cols()));
  std::vector<Eigen::Index> idx;
  for (std::size_t i = 0; i < keep.size(); ++i)
    if (keep[i]) idx.push_back(Eigen::Index(i));
  Eigen::MatrixXd sub(idx.size(), idx.size());
  for (std::size_t a = 0; a < idx.size(); ++a)
    for (std::size_t b = 0; b < idx.size(); ++b) sub(a, b) = j(idx[a], idx[b]);
  return sub;
}

stability_report analyze_stability(const Eigen::MatrixXd& j, const std::vector<bool>& active) {
  require_square(j, "analyze_stability");
  stability_report r;
  r.n = int(j.rows());
  const std::vector<bool> act = active.empty() ? std::vector<bool>(std::size_t(r.n), true) : active;
  const Eigen::MatrixXd ja = principal_submatrix(j, act);
  r.n_active = int(ja.rows());
  r.diagonal_negative = r.n > 0 && (j.diagonal().array() < 0).all();
  for (int k = 0; k < r.n; ++k) {
    const double d = std::abs(j(k, k));
    if (j.row(k).cwiseAbs().sum() - d >= d) ++r.rows_failing;
    if (j.col(k).cwiseAbs().sum() - d >= d) ++r.cols_failing;
    r.max_abs_column_sum = std::max(r.max_abs_column_sum, std::abs(j.col(k).sum()));
  }
  r.gershgorin_rows = r.diagonal_negative && r.rows_failing == 0;
  r.gershgorin_cols = r.diagonal_negative && r.cols_failing == 0;
  r.spectral_abscissa = spectral_abscissa(j);
  r.active_spectral_abscissa = spectral_abscissa(ja);
  r.mu_1 = log_norm_1(j);
  r.mu_2 = log_norm_2(j);
  r.mu_inf = log_norm_inf(j);

  const double scale = std::max(1.0, j.cwiseAbs().maxCoeff());
  const double neg = -1e-12 * scale;  // "negative" must beat rounding
  std::string v;
  const bool zero_cols = r.n > 0 && r.max_abs_column_sum <= 1e-12 * scale;
  if (zero_cols)
    v += fmt::format(
        "every column of J sums to 0 (max |column sum| = {:.1e}), so 1ᵀJ = 0 and J is singular: "
        "the Gershgorin conditions (strict diagonal dominance) cannot hold and the spectral abscissa is >= 0 "
        "(here {:.3g}); ",
        r.max_abs_column_sum, r.spectral_abscissa);
  v += fmt::format(
      "Gershgorin: diagonal {}, by rows {} ({} failing), by columns {} ({} failing); "
      "log-norms mu_1 = {:.4g}, mu_2 = {:.4g}, mu_inf = {:.4g}; spectral abscissa {:.4g} (full, {} neurons), "
      "{:.4g} (active set, {} unsaturated). ",
      r.diagonal_negative, r.gershgorin_rows, r.rows_failing, r.gershgorin_cols, r.cols_failing, r.mu_1, r.mu_2,
      r.mu_inf, r.spectral_abscissa, r.n, r.active_spectral_abscissa, r.n_active);
  if (r.mu_1 < neg || r.mu_2 < neg || r.mu_inf < neg) {
    r.certified = true;
    const char* which = r.mu_1 < neg ? "mu_1" : r.mu_inf < neg ? "mu_inf" : "mu_2";
    v += fmt::format(
        "VERDICT: stable without relying on saturation — {} < 0 certifies contraction of the linear dynamics.", which);
  } else if (r.spectral_abscissa < neg) {
    r.certified = true;
    v += "VERDICT: stable without relying on saturation — the full Jacobian is Hurwitz (spectral abscissa < 0).";
  } else if (r.active_spectral_abscissa < neg) {
    r.certified = true;
    v += r.n_active == 0
             ? "VERDICT: locally stable only through saturation — every neuron is saturated (empty active set), "
               "the full linear system is not Hurwitz."
             : "VERDICT: locally stable only through saturation — the Jacobian restricted to unsaturated neurons is "
               "Hurwitz, "
               "the full linear system is not.";
  } else {
    v += "VERDICT: not certified — no log-norm is negative and the active-set Jacobian is not Hurwitz.";
  }
  r.verdict = v;
  return r;
}

nlohmann::ordered_json stability_report::to_json() const {
  nlohmann::ordered_json j;
  j["n"] = n;
  j["n_active"] = n_active;
  j["diagonal_negative"] = diagonal_negative;
  j["gershgorin_rows"] = gershgorin_rows;
  j["rows_failing"] = rows_failing;
  j["gershgorin_cols"] = gershgorin_cols;
  j["cols_failing"] = cols_failing;
  j["max_abs_column_sum"] = max_abs_column_sum;
  j["spectral_abscissa"] = spectral_abscissa;
  j["active_spectral_abscissa"] = std::isfinite(active_spectral_abscissa)
                                      ? nlohmann::ordered_json(active_spectral_abscissa)
                                      : nlohmann::ordered_json(nullptr);
  j["mu_1"] = mu_1;
  j["mu_2"] = mu_2;
  j["mu_inf"] = mu_inf;
  j["certified"] = certified;
  j["verdict"] = verdict;
  return j;
}

Eigen::MatrixXd deep_jacobian(const graph_network<double>& net, const deep_dynamics& dyn, const Eigen::VectorXd& s) {
  if (s.size() != net.size())
    throw shape_error(fmt::format("deep_jacobian: state has {} entries, expected {}", s.size(), net.size()));
  const int nf = net.n_free(), n_in = net.n_input();
  Eigen::MatrixXd rho, dr;  // ρ and ρ' of the free neurons
  apply_activation<double>(deep_presyn_activation(dyn.presyn), s.tail(nf), rho, dr);
  Eigen::MatrixXd j = net.weights().bottomRightCorner(nf, nf).transpose() * dr.col(0).asDiagonal();
  for (int k = 0; k < nf; ++k) {
    const auto row = net.weights().row(n_in + k);
    const double d = dyn.decay == deep_decay::row_sum       ? row.sum()
                     : dyn.decay == deep_decay::abs_row_sum ? row.cwiseAbs().sum()
                                                            : 1.0;
    j(k, k) -= d + dyn.leak;
  }
  return j;
}

std::vector<bool> deep_active_set(const graph_network<double>& net, const Eigen::VectorXd& s, double margin,
                                  const Eigen::VectorXd* rate) {
  std::vector<bool> a(std::size_t(net.n_free()));
  for (int m = 0; m < net.n_free(); ++m) {
    const double x = s(net.n_input() + m);
    const bool pinned_low = x <= margin && (!rate || (*rate)(m) < 0);
    const bool pinned_high = x >= 1 - margin && (!rate || (*rate)(m) > 0);
    a[std::size_t(m)] = !pinned_low && !pinned_high;
  }
  return a;
}

Eigen::VectorXd deep_rate(const graph_network<double>& net, const deep_dynamics& dyn, const Eigen::VectorXd& s) {
  if (s.size() != net.size())
    throw shape_error(fmt::format("deep_rate: state has {} entries, expected {}", s.size(), net.size()));
  const int n_in = net.n_input(), nf = net.n_free();
  Eigen::MatrixXd pre, dpre;  // ρ(s), the same function as the relaxation
  apply_activation<double>(deep_presyn_activation(dyn.presyn), s, pre, dpre);
  Eigen::VectorXd rate = net.weights().rightCols(nf).transpose() * pre.col(0);
  if (net.bias().size() == nf) rate += net.bias();
  for (int j = 0; j < nf; ++j) {
    const auto row = net.weights().row(n_in + j);
    const double d = dyn.decay == deep_decay::row_sum       ? row.sum()
                     : dyn.decay == deep_decay::abs_row_sum ? row.cwiseAbs().sum()
                                                            : 1.0;
    rate(j) -= (d + dyn.leak) * s(n_in + j);
  }
  return rate;
}

deep_stability_summary deep_stability(const graph_network<double>& net, const deep_dynamics& dyn,
                                      const Eigen::MatrixXd& x, uint64_t seed) {
  rng_t rng(seed);
  Eigen::MatrixXd s = deep_initial_state(net, x, rng);
  deep_relax(net, dyn, s, nullptr, 0.0);
  deep_stability_summary out;
  for (Eigen::Index b = 0; b < s.cols(); ++b) {
    const Eigen::VectorXd sb = s.col(b);
    const Eigen::VectorXd rate = deep_rate(net, dyn, sb);
    // Without clipping no neuron is held at a bound: every free neuron is active.
    const std::vector<bool> active =
        dyn.clip ? deep_active_set(net, sb, 1e-9, &rate) : std::vector<bool>(std::size_t(net.n_free()), true);
    out.per_pattern.push_back(analyze_stability(deep_jacobian(net, dyn, sb), active));
    if (b == 0 || out.per_pattern.back().active_spectral_abscissa > out.worst.active_spectral_abscissa)
      out.worst = out.per_pattern.back();
  }
  return out;
}

}  // namespace eqprop
