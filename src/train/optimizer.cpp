#include "eqprop/train/optimizer.hpp"

#include <cmath>
#include <numbers>

#include <Eigen/Core>

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
    const int g = b.group;
    lr_.push_back(opt_.lr_per_group.empty() ? opt_.lr : opt_.lr_per_group.at(g));
    wd_.push_back(opt_.wd_per_group.empty() ? opt_.weight_decay : opt_.wd_per_group.at(g));
  }
  long n = 0;
  for (const auto& b : layout_) n = std::max(n, b.offset + b.size());
  if (opt_.momentum > 0 || opt_.kind != optimizer_kind::sgd) m_.assign(n, R(0));
  if (opt_.kind != optimizer_kind::sgd) v_.assign(n, R(0));
}

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
        // Same arithmetic as the scalar form (g' = g + wd th; m, v; mhat = m/bc1, vhat = v/bc2;
        // th -= lr mhat/(sqrt(vhat) + eps)), written on arrays so it vectorises: with
        // constants hoisted out of *this the loop is no longer reloading them per element.
        using arr = Eigen::Array<R, Eigen::Dynamic, 1>;
        const R b1 = R(opt_.beta1), b2 = R(opt_.beta2), c1 = R(1 - opt_.beta1), c2 = R(1 - opt_.beta2);
        const R d1 = R(bc1), d2 = R(bc2), eps = R(opt_.eps);
        const bool adamw = opt_.kind == optimizer_kind::adamw;
        auto update = [&](long i0, long len) {
          const long o = b.offset + i0;
          Eigen::Map<arr> P(p + i0, len), M(m_.data() + o, len), V(v_.data() + o, len);
          Eigen::Map<const arr> G(gr + i0, len);
          if (adamw || wd == R(0)) {
            M = b1 * M + c1 * G;
            V = b2 * V + c2 * G * G;
          } else {
            M = b1 * M + c1 * (G + wd * P);
            V = b2 * V + c2 * (G + wd * P) * (G + wd * P);
          }
          if (adamw) P -= lr * wd * P;
          P -= lr * (M / d1) / ((V / d2).sqrt() + eps);
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
}

template class optimizer<float>;
template class optimizer<double>;

}  // namespace eqprop
