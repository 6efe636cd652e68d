#include "eqprop/train/constraints.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "eqprop/core/eigen.hpp"

#include <fmt/format.h>

#include "eqprop/core/error.hpp"

namespace eqprop {

param_constraints::param_constraints(std::vector<param_block> layout) : layout_(std::move(layout)) {}

std::size_t param_constraints::block(std::string_view name, const char* kind) const {
  for (std::size_t k = 0; k < layout_.size(); ++k)
    if (layout_[k].name == name) return k;
  std::string names;
  for (const auto& b : layout_) names += (names.empty() ? "" : ", ") + b.name;
  throw config_error(fmt::format("{} constraint on block '{}': the parameters have no such block (blocks: {})", kind,
                                 name, names.empty() ? "none" : names));
}

void param_constraints::check_mask(std::size_t k, const std::vector<char>& keep) const {
  const param_block& b = layout_[k];
  if (long(keep.size()) != b.size())
    throw config_error(fmt::format("mask constraint on block '{}': the mask has {} entries, the block {} ({} x {})",
                                   b.name, keep.size(), b.size(), b.rows, b.cols));
}

param_constraints& param_constraints::add_box(std::string_view name, double lo, double hi) {
  const std::size_t k = block(name, "box");
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (std::isnan(lo) || std::isnan(hi) || lo > hi || lo == inf || hi == -inf)
    throw config_error(
        fmt::format("box constraint on block '{}': [lo, hi] = [{}, {}] must hold numbers with lo <= hi "
                    "(infinite only on the open side: lo = -inf, hi = +inf)",
                    name, lo, hi));
  for (const auto& c : boxes_)
    if (c.k == k) throw config_error(fmt::format("box constraint on block '{}': the block already has one", name));
  boxes_.push_back({k, lo, hi});
  return *this;
}

param_constraints& param_constraints::add_mask(std::string_view name, std::vector<char> keep) {
  const std::size_t k = block(name, "mask");
  check_mask(k, keep);
  for (const auto& c : masks_)
    if (c.k == k) throw config_error(fmt::format("mask constraint on block '{}': the block already has one", name));
  masks_.push_back({k, std::move(keep)});
  return *this;
}

param_constraints& param_constraints::add_l1(std::string_view name, double lambda, l1_form form) {
  const std::size_t k = block(name, "L1");
  if (!std::isfinite(lambda) || lambda < 0)
    throw config_error(fmt::format("L1 constraint on block '{}': lambda = {} must be finite and >= 0", name, lambda));
  for (const auto& c : l1s_)
    if (c.k == k) throw config_error(fmt::format("L1 constraint on block '{}': the block already has one", name));
  l1s_.push_back({k, lambda, form});
  return *this;
}

void param_constraints::set_mask(std::string_view name, std::vector<char> keep) {
  const std::size_t k = block(name, "mask");
  check_mask(k, keep);
  for (auto& c : masks_)
    if (c.k == k) {
      c.keep = std::move(keep);
      return;
    }
  masks_.push_back({k, std::move(keep)});
}

const std::vector<char>& param_constraints::mask(std::string_view name) const {
  const std::size_t k = block(name, "mask");
  for (const auto& c : masks_)
    if (c.k == k) return c.keep;
  throw config_error(fmt::format("mask constraint on block '{}': the block has no mask", name));
}

template <class R>
void param_constraints::apply(std::span<R> params, double lr_factor) const {
  if (empty()) return;
  if (long(params.size()) != layout_size(layout_))
    throw shape_error(fmt::format("parameter constraints: the buffer has {} entries, the layout {}", params.size(),
                                  layout_size(layout_)));
  using vec = Eigen::Matrix<R, Eigen::Dynamic, 1>;
  auto view = [&](std::size_t k) { return Eigen::Map<vec>(params.data() + layout_[k].offset, layout_[k].size()); };
  for (const auto& c : l1s_) {
    const R t = R(c.lambda * lr_factor);
    if (t == R(0)) continue;
    auto w = view(c.k);
    if (c.form == l1_form::subgradient) w -= t * w.cwiseSign();
    else w = w.cwiseSign().cwiseProduct((w.cwiseAbs().array() - t).max(R(0)).matrix());
  }
  for (const auto& c : boxes_) {
    auto w = view(c.k);
    w = w.cwiseMax(R(c.lo)).cwiseMin(R(c.hi));
  }
  for (const auto& c : masks_) {
    R* w = params.data() + layout_[c.k].offset;
    for (std::size_t i = 0; i < c.keep.size(); ++i)
      if (!c.keep[i]) w[i] = R(0);
  }
}

template void param_constraints::apply<float>(std::span<float>, double) const;
template void param_constraints::apply<double>(std::span<double>, double) const;

}  // namespace eqprop
