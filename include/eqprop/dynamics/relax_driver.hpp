// The one relaxation loop of every network state: a fixed number of steps or a tolerance,
// per-sample freezing with compaction of the running columns, and one way of counting
// non-convergence and non-finite states.
//
// A state of any network type joins by satisfying column_state (one column per sample in
// every per-sample buffer, a per-column residual of its last step, a visitor over those
// buffers); the step is a callable, so the driver never sees the network's equations.
#pragma once
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <concepts>
#include <exception>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "eqprop/core/matmul.hpp"
#include "eqprop/core/rng.hpp"
#include "eqprop/core/scalar.hpp"

namespace eqprop {

/// The update order of a relaxation step. synchronous: every layer from the old states (the
/// papers' fixed-point iteration). alternating: the even layers (0, 2, ...) from the old
/// states, then the odd layers from the new even ones (Gauss-Seidel); the same fixed point at
/// the same cost per step, without the period-2 oscillation of synchronous steps, and about
/// twice as fast to a given residual on MNIST (docs/dev/performance.md). Networks without a
/// layer order (vector fields, graphs) step synchronously.
enum class relax_order { synchronous, alternating };
/// "synchronous" or "alternating" (config key relax.order); config_error otherwise.
relax_order parse_relax_order(const std::string& name);

struct relax_options {
  long max_steps = 100;     ///< steps to run (all of them unless stop_early)
  double tol = 0;           ///< a sample has converged when its residual <= tol (0: the scalar's default_tol)
  bool stop_early = false;  ///< stop as soon as every sample has converged
  double noise_std = 0;     ///< Gaussian noise added to every pre-activation at every step (real)
  rng_t* noise_rng = nullptr;
  relax_order order = relax_order::synchronous;
  /// With stop_early: a sample below tol stops stepping (its state is kept) and the running
  /// samples are compacted, so that the products shrink with the number still running.
  bool freeze_converged = true;
  /// Over-relaxation: each step moves h <- h + omega (sigma(pre) - h), in (0, 2); 1 is the
  /// papers' fixed-point step. The fixed point does not depend on it. With the alternating
  /// order (successive over-relaxation) omega = 1.4 took 22 instead of 37 steps per sample to
  /// tol 1e-2 on mlp512x2 (docs/dev/performance.md). The residual is the update's length, so a
  /// given tol is stricter by the factor omega.
  double omega = 1;
  /// Operands of the float32 products (float32 states only; see matmul_precision).
  matmul_precision precision = matmul_precision::float32;
  /// config_error on max_steps < 0 or omega outside (0, 2); relax() calls it.
  void validate() const;
  /// The tolerance for states of scalar S: tol, or S's default_tol when tol is 0, rounded
  /// to S's precision as the residuals are.
  template <class S>
  double tol_for() const {
    using real = real_t<S>;
    return double(tol > 0 ? real(tol) : scalar_traits<S>::default_tol);
  }
};

/// What a relaxation did. Never silently hides a failure: non-finite states and samples
/// whose residual stays above tol are counted.
struct relax_report {
  long steps = 0;
  long sample_steps = 0;    ///< steps summed over the samples (steps x batch unless frozen early)
  double max_residual = 0;  ///< largest per-sample residual at the last step
  double mean_residual = 0;
  long n_not_converged = 0;  ///< samples with residual > tol (or non-finite)
  long n_non_finite = 0;     ///< samples with NaN/Inf states
  double seconds = 0;        ///< wall time of the relaxation (estimators: of the whole phase,
                             ///< set-up copies included; averaged over thread slices)
  bool converged() const { return n_not_converged == 0; }
};

/// A batch workspace the driver can relax:
///  - batch(): the number of columns (samples) it holds now;
///  - residual()(b): the length of column b's update in the last step;
///  - column_finite(b): every state of column b is finite;
///  - for_each_column_buffer(f): calls f(buffer) on every Eigen matrix (one column per
///    sample) and vector (one entry per sample) that must follow the samples when columns
///    are removed or put back; always the same buffers in the same order (an empty or
///    differently sized one too: the driver leaves those alone);
///  - columns_restored(): the full batch is back; caches not among the buffers are stale.
template <class State>
concept column_state = requires(State& s, const State& cs, long b) {
  typename State::scalar;
  { cs.batch() } -> std::convertible_to<long>;
  { cs.residual()(b) } -> std::convertible_to<double>;
  { cs.column_finite(b) } -> std::convertible_to<bool>;
  s.columns_restored();
};

namespace detail {
// Full-batch copies of the visited buffers while samples are frozen, in visiting order per type.
template <class S>
class frozen_batch {
 public:
  using real = real_t<S>;
  template <class T>
  T& next() {  // the copy of the next visited buffer of type T (empty if none was kept)
    auto& l = list<T>();
    const size_t k = at_[index<T>()]++;
    if (k >= l.size()) l.resize(k + 1);
    return l[k];
  }
  template <class T>
  void add(const T& buf) {
    list<T>().push_back(buf);
  }
  void rewind() { at_ = {}; }

 private:
  template <class T>
  static constexpr int index() {
    if constexpr (std::is_same_v<T, matrix<S>>) return 0;
    else if constexpr (std::is_same_v<T, matrix<real>>) return 1;
    else if constexpr (std::is_same_v<T, vector<S>>) return 2;
    else {
      static_assert(std::is_same_v<T, vector<real>>, "column buffers are matrix<S|real> or vector<S|real>");
      return 3;
    }
  }
  template <class T>
  std::vector<T>& list() {
    if constexpr (index<T>() == 0) return ms_;
    else if constexpr (index<T>() == 1) return mr_;
    else if constexpr (index<T>() == 2) return vs_;
    else return vr_;
  }
  std::vector<matrix<S>> ms_;
  std::vector<matrix<real>> mr_;
  std::vector<vector<S>> vs_;
  std::vector<vector<real>> vr_;
  std::array<size_t, 4> at_{};
};

template <class T>
long n_columns(const T& buf) {
  if constexpr (T::ColsAtCompileTime == 1) return buf.size();
  else return buf.cols();
}
template <class T>
auto column(T& buf, long c) {
  if constexpr (T::ColsAtCompileTime == 1) return buf.segment(c, 1);
  else return buf.col(c);
}
}  // namespace detail

/// The report of a relaxed batch: per-sample residuals against tol, non-finite columns
/// counted as not converged (max and mean residual then infinite).
template <column_state State>
void report_columns(const State& st, double tol, relax_report& rep) {
  const long B = st.batch();
  double sum = 0;
  rep.n_non_finite = rep.n_not_converged = 0;
  rep.max_residual = 0;
  for (long b = 0; b < B; ++b) {
    const double r = double(st.residual()(b));
    if (!std::isfinite(r) || !st.column_finite(b)) {
      ++rep.n_non_finite;
      ++rep.n_not_converged;
      rep.max_residual = std::numeric_limits<double>::infinity();
      continue;
    }
    if (r > tol) ++rep.n_not_converged;
    rep.max_residual = std::max(rep.max_residual, r);
    sum += r;
  }
  rep.mean_residual = rep.n_non_finite ? std::numeric_limits<double>::infinity() : (B ? sum / double(B) : 0.0);
}

/// Relaxes st by calling step() (one step of the state's dynamics, returning the largest
/// per-sample residual) up to max_steps times. With stop_early the loop ends when every
/// sample's residual is <= tol; with freeze as well, once an eighth of the running samples
/// are below tol they stop (keeping the state and residual of their last step) and the
/// others are compacted into fewer columns, so that the products shrink with the samples
/// still running. A sample whose residual is non-finite counts as done (and freezes): it
/// neither holds up nor cuts short the others; the loop ends when no sample is finite.
/// The full batch is back on return.
template <column_state State, class Step>
relax_report relax_columns(State& st, long max_steps, bool stop_early, bool freeze, double tol, Step&& step) {
  using S = typename State::scalar;
  const auto t_start = std::chrono::steady_clock::now();
  relax_report rep;
  detail::frozen_batch<S> all;
  std::vector<long> cols;  // running column -> its column in the full batch; empty: none frozen
  long full = 0;
  // The running columns `which` -> their columns of the full batch.
  auto store = [&](const std::vector<long>& which) {
    all.rewind();
    st.for_each_column_buffer([&](auto& buf) {
      auto& f = all.template next<std::decay_t<decltype(buf)>>();
      if (detail::n_columns(f) != full || detail::n_columns(buf) != long(cols.size())) return;
      for (long c : which) detail::column(f, cols[size_t(c)]) = detail::column(buf, c);
    });
  };
  // A column is done when it has converged or its residual is no longer finite (a diverged
  // sample cannot recover; it must not hold up, or cut short, the others).
  auto done = [&](long b) {
    const double r = double(st.residual()(b));
    return r <= tol || !std::isfinite(r);
  };
  std::vector<long> keep, frozen;
  for (long t = 0; t < max_steps; ++t) {
    const double mx = double(step());
    rep.steps = t + 1;
    rep.sample_steps += st.batch();
    if (stop_early && mx <= tol) break;
    if (!std::isfinite(mx)) {  // some column diverged: stop when no column is still finite
      long n_finite = 0, n_done = 0;
      for (long b = 0; b < st.batch(); ++b) {
        n_finite += std::isfinite(double(st.residual()(b))) ? 1 : 0;
        n_done += done(b) ? 1 : 0;
      }
      if (n_finite == 0 || (stop_early && n_done == st.batch())) break;
    }
    if (!(freeze && stop_early) || t + 1 >= max_steps) continue;
    keep.clear();
    frozen.clear();
    for (long b = 0; b < st.batch(); ++b) (done(b) ? frozen : keep).push_back(b);
    if (frozen.empty() || long(frozen.size()) * 8 < st.batch()) continue;
    if (cols.empty()) {  // first freeze: keep the full batch
      full = st.batch();
      st.for_each_column_buffer([&](auto& buf) { all.add(buf); });
      cols.resize(size_t(full));
      std::iota(cols.begin(), cols.end(), 0L);
    }
    store(frozen);
    const long running = long(cols.size());
    st.for_each_column_buffer([&](auto& buf) {
      if (detail::n_columns(buf) != running) return;
      if constexpr (std::decay_t<decltype(buf)>::ColsAtCompileTime == 1) buf = buf(keep).eval();
      else buf = buf(Eigen::all, keep).eval();
    });
    std::vector<long> next(keep.size());
    for (size_t i = 0; i < keep.size(); ++i) next[i] = cols[size_t(keep[i])];
    cols.swap(next);
  }
  if (!cols.empty()) {  // the running samples back into the full batch
    std::vector<long> running(cols.size());
    std::iota(running.begin(), running.end(), 0L);
    store(running);
    all.rewind();
    st.for_each_column_buffer([&](auto& buf) {
      auto& f = all.template next<std::decay_t<decltype(buf)>>();
      if (detail::n_columns(f) == full) buf.swap(f);
    });
    st.columns_restored();
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return rep;
}

/// Column c0[t] .. c0[t+1] of a batch of B is slice t of T: contiguous, as equal as possible.
inline std::vector<long> slice_bounds(long B, int T) {
  std::vector<long> c0(size_t(T) + 1);
  for (int t = 0; t <= T; ++t) c0[size_t(t)] = B * t / T;
  return c0;
}

/// Copies the columns of x and y into the T = slices.size() column slices (slice_bounds),
/// slices[t].x and slices[t].y; returns the column offsets c0 (T + 1 entries).
template <class Slice, class M>
std::vector<long> split_columns(const M& x, const M& y, std::vector<Slice>& slices) {
  const int T = static_cast<int>(slices.size());
  const std::vector<long> c0 = slice_bounds(x.cols(), T);
  for (int t = 0; t < T; ++t) {
    slices[size_t(t)].x = x.middleCols(c0[size_t(t)], c0[size_t(t) + 1] - c0[size_t(t)]);
    slices[size_t(t)].y = y.middleCols(c0[size_t(t)], c0[size_t(t) + 1] - c0[size_t(t)]);
  }
  return c0;
}

/// Runs f(t) for t = 0 .. T-1 on T OpenMP threads (on the caller when T = 1); the first
/// exception is rethrown after all have finished. Defined in the library, which is the one
/// target compiled with OpenMP.
void parallel_slices(int T, const std::function<void(int)>& f);

/// grad = the sum of the slices' gradients slices[t].grad (each sized like grad), entry by
/// entry in slice order, so the result does not depend on the split of the entries: each of
/// the T threads sums one contiguous chunk of the parameters.
template <class Slice, class R>
void sum_slice_gradients(const std::vector<Slice>& slices, std::span<R> grad) {
  const int T = static_cast<int>(slices.size());
  const long P = static_cast<long>(grad.size());
  parallel_slices(T, [&](int t) {
    const long i0 = P * t / T, len = P * (t + 1) / T - i0;
    Eigen::Map<vector<R>> g(grad.data() + i0, len);
    g = Eigen::Map<const vector<R>>(slices[0].grad.data() + i0, len);
    for (int u = 1; u < T; ++u) g += Eigen::Map<const vector<R>>(slices[size_t(u)].grad.data() + i0, len);
  });
}

/// Flags (failed[b] = 1) the samples of st whose last relaxation failed: a residual above
/// limit (NaN included) or a non-finite state. Flags already set stay set.
template <class St>
void mark_failed_columns(const St& st, double limit, std::vector<char>& failed) {
  const auto& res = st.residual();
  for (long b = 0; b < res.size(); ++b)
    if (!(double(res(b)) <= limit) || (!failed[b] && !st.column_finite(b))) failed[b] = 1;
}

/// The report of one relaxation split over column slices of n[t] samples.
inline relax_report merge_reports(const std::vector<relax_report>& r, const std::vector<long>& n) {
  if (r.size() == 1) return r[0];
  relax_report m;
  double sum = 0, count = 0;
  for (size_t t = 0; t < r.size(); ++t) {
    m.steps = std::max(m.steps, r[t].steps);
    m.sample_steps += r[t].sample_steps;
    m.max_residual = std::max(m.max_residual, r[t].max_residual);
    m.n_not_converged += r[t].n_not_converged;
    m.n_non_finite += r[t].n_non_finite;
    m.seconds += r[t].seconds / double(r.size());
    sum += r[t].mean_residual * double(n[t]);
    count += double(n[t]);
  }
  m.mean_residual = sum / count;
  return m;
}

}  // namespace eqprop
