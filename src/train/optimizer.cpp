#include "eqprop/train/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "eqprop/core/eigen.hpp"

#include <fmt/format.h>

#include "eqprop/core/error.hpp"

namespace eqprop {

optimizer_kind parse_optimizer(std::string_view s) {
  if (s == "sgd") return optimizer_kind::sgd;
  if (s == "adam") return optimizer_kind::adam;
  if (s == "adamw") return optimizer_kind::adamw;
  throw config_error(fmt::format("unknown optimizer.kind '{}': expected sgd, adam or adamw", s));
}

double schedule_options::factor(long epoch, long step, long steps_per_epoch, long run_epochs) const {
  if (kind == schedule_kind::constant) return 1.0;
  const double T = double(epochs > 0 ? epochs : run_epochs);
  double t = double(epoch);
  if (per_step && steps_per_epoch > 0) t += double(step) / double(steps_per_epoch);
  t = std::min(t, T);
  return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + std::cos(std::numbers::pi * t / T));
}

void plateau_state::update(const plateau_options& o, double watched) {
  if (!o.enabled()) return;
  if (watched < best * (1 - 1e-4)) {
    best = watched;
    bad = 0;
  } else if (++bad > o.patience) {
    scale *= o.factor;
    bad = 0;
  }
}

template <class R>
void optimizer<R>::restore(std::span<const R> m, std::span<const R> v, int64_t t) {
  auto check = [](const char* name, std::size_t got, std::size_t want) {
    if (got != want)
      throw data_error(
          fmt::format("checkpoint optimizer state `{}` has {} entries, this optimizer keeps {}", name, got, want));
  };
  check("opt_m", m.size(), m_.size());
  check("opt_v", v.size(), v_.size());
  if (t < 0) throw data_error(fmt::format("checkpoint optimizer step count {} is negative", t));
  std::copy(m.begin(), m.end(), m_.begin());
  std::copy(v.begin(), v.end(), v_.begin());
  t_ = t;
}

template <class R>
void optimizer<R>::set_constraints(param_constraints c) {
  const auto& l = c.layout();
  const bool same = std::equal(l.begin(), l.end(), layout_.begin(), layout_.end(), [](const auto& a, const auto& b) {
    return a.name == b.name && a.rows == b.rows && a.cols == b.cols && a.offset == b.offset;
  });
  if (!c.empty() && !same)
    throw internal_error("optimizer::set_constraints: constraints over another parameter layout");
  cons_ = std::move(c);
}

template <class R>
optimizer<R>::optimizer(optimizer_options opt, const std::vector<param_block>& layout, int n_groups)
    : opt_(std::move(opt)), layout_(layout) {
  auto check = [&](const std::vector<double>& v, const char* key) {
    if (!v.empty() && static_cast<int>(v.size()) != n_groups)
      throw config_error(fmt::format("{} has {} entries but the network has {} parameter groups (layers then readout)",
                                     key, v.size(), n_groups));
  };
  check(opt_.lr_per_group, "optimizer.lr_per_layer");
  check(opt_.wd_per_group, "optimizer.weight_decay_per_layer");
  if (!(opt_.lr > 0) && opt_.lr_per_group.empty()) throw config_error("optimizer.lr must be > 0");
  if (opt_.momentum < 0 || opt_.momentum >= 1) throw config_error("optimizer.momentum must be in [0, 1)");
  for (const auto& b : layout_) {
    // Empty blocks (the readout of a network whose last layer is the output) hold no
    // parameter and may lie outside the groups: any rate does.
    const bool per_group = b.size() > 0;
    lr_.push_back(per_group && !opt_.lr_per_group.empty() ? opt_.lr_per_group.at(b.group) : opt_.lr);
    wd_.push_back(per_group && !opt_.wd_per_group.empty() ? opt_.wd_per_group.at(b.group) : opt_.weight_decay);
  }
  long n = 0;
  for (const auto& b : layout_) n = std::max(n, b.offset + b.size());
  if (opt_.momentum > 0 || opt_.kind != optimizer_kind::sgd) m_.assign(n, R(0));
  if (opt_.kind != optimizer_kind::sgd) v_.assign(n, R(0));
}

namespace {

// Adam on blocks of adam_block entries with fixed-size Eigen arrays: every entry goes through
// the same vector instructions, whatever its index, the block's address or the chunking over
// threads. (Dynamic-size maps peel a scalar head up to the first aligned address, and Eigen's
// vector sqrt rounds differently from the scalar one, so the result of an entry depended on
// where the buffer lay.) Same arithmetic as the scalar form: g' = g + wd th (adam); m, v;
// th -= lr mhat / (sqrt(vhat) + eps); adamw: th -= lr wd th first.
constexpr long adam_block = 16;

template <class R>
struct adam_constants {
  R b1, b2, c1, c2, d1, d2, eps, lr, wd;
  bool adamw;
};

template <class R>
inline void adam_update_block(R* p, R* m, R* v, const R* g, const adam_constants<R>& c) {
  using blk = Eigen::Array<R, adam_block, 1>;
  Eigen::Map<blk> P(p), M(m), V(v);
  const Eigen::Map<const blk> G(g);
  if (c.adamw || c.wd == R(0)) {
    M = c.b1 * M + c.c1 * G;
    V = c.b2 * V + c.c2 * G * G;
  } else {
    const blk gw = G + c.wd * P;
    M = c.b1 * M + c.c1 * gw;
    V = c.b2 * V + c.c2 * gw * gw;
  }
  if (c.adamw) P -= c.lr * c.wd * P;
  P -= c.lr * (M / c.d1) / ((V / c.d2).sqrt() + c.eps);
}

}  // namespace

template <class R>
void optimizer<R>::step(std::span<R> th, std::span<const R> g, double lr_factor) {
  if (th.size() != g.size()) throw shape_error("optimizer::step: parameters and gradient differ in size");
  ++t_;
  const double mu = opt_.momentum;
  const double bc1 = 1 - std::pow(opt_.beta1, double(t_)), bc2 = 1 - std::pow(opt_.beta2, double(t_));
  for (size_t k = 0; k < layout_.size(); ++k) {
    const auto& b = layout_[k];
    const R lr = R(lr_[k] * lr_factor), wd = R(wd_[k]);
    R* p = th.data() + b.offset;
    const R* gr = g.data() + b.offset;
    const long n = b.size();
    switch (opt_.kind) {
      case optimizer_kind::sgd:
        if (m_.empty()) {
          for (long i = 0; i < n; ++i) {
            const R gi = opt_.decoupled_wd ? gr[i] : gr[i] + wd * p[i];
            if (opt_.decoupled_wd) p[i] *= (R(1) - lr * wd);
            p[i] -= lr * gi;
          }
        } else {
          R* m = m_.data() + b.offset;
          for (long i = 0; i < n; ++i) {
            const R gi = opt_.decoupled_wd ? gr[i] : gr[i] + wd * p[i];
            m[i] = R(mu) * m[i] + gi;
            if (opt_.decoupled_wd) p[i] *= (R(1) - lr * wd);
            p[i] -= lr * m[i];
          }
        }
        break;
      case optimizer_kind::adam:
      case optimizer_kind::adamw: {
        const adam_constants<R> ac{R(opt_.beta1),
                                   R(opt_.beta2),
                                   R(1 - opt_.beta1),
                                   R(1 - opt_.beta2),
                                   R(bc1),
                                   R(bc2),
                                   R(opt_.eps),
                                   lr,
                                   wd,
                                   opt_.kind == optimizer_kind::adamw};
        R* m = m_.data() + b.offset;
        R* v = v_.data() + b.offset;
        auto update = [&](long i0, long len) {
          long i = i0;
          for (; i + adam_block <= i0 + len; i += adam_block) adam_update_block(p + i, m + i, v + i, gr + i, ac);
          if (i == i0 + len) return;
          // The last entries through the same code, padded to a block (padding discarded).
          const long r = i0 + len - i;
          R tp[adam_block] = {}, tm[adam_block] = {}, tv[adam_block] = {}, tg[adam_block] = {};
          std::copy_n(p + i, r, tp), std::copy_n(m + i, r, tm), std::copy_n(v + i, r, tv), std::copy_n(gr + i, r, tg);
          adam_update_block(tp, tm, tv, tg, ac);
          std::copy_n(tp, r, p + i), std::copy_n(tm, r, m + i), std::copy_n(tv, r, v + i);
        };
        // Chunks of a large block on threads; chunk boundaries are multiples of 64 entries.
        // Small blocks never enter an OpenMP region (even a serial one costs about a microsecond
        // per block, which doubled the Adam time of a GLE step).
        const int T = opt_.threads > 1 && n >= (1L << 16) ? opt_.threads : 1;
        if (T == 1) {
          update(0, n);
        } else {
#pragma omp parallel for schedule(static, 1) num_threads(T)
          for (int c = 0; c < T; ++c) {
            const long i0 = (n * c / T) & ~63L, i1 = c + 1 == T ? n : (n * (c + 1) / T) & ~63L;
            update(i0, i1 - i0);
          }
        }
        break;
      }
    }
  }
  cons_.apply(th, lr_factor);
}

template class optimizer<float>;
template class optimizer<double>;

}  // namespace eqprop
