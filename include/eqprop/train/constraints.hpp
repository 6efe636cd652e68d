// Parameter constraints over the flat parameter buffer: boxes (clipping), fixed zero masks
// and L1 shrinkage, each on one named block of the layout. An optimizer applies them after
// every update (optimizer::set_constraints), so that step() is update + constraints in one
// place; where parameters change outside a step (initialisation, a hand-set value), the
// same object's apply() enforces them.
//
// apply(params, lr_factor) runs, in this order, each kind over its blocks in the order the
// constraints were added:
//   1. L1 shrinkage, threshold t = lambda * lr_factor (skipped when t = 0):
//        subgradient:  w -= t sign(w)                       (sign(0) = 0)
//        proximal:     w = sign(w) max(|w| - t, 0)          (soft threshold)
//   2. box:   w = min(max(w, lo), hi)
//   3. mask:  w = 0 where the mask is 0
// so masked entries are exactly 0 after every step, whatever the update, the shrinkage or a
// box did. lambda is the threshold per step at the base learning rate: it is not multiplied
// by the optimizer's lr, only by the schedule's lr_factor (1 in apply unless given); fold lr
// into lambda for the proximal step of a penalty lambda' ||w||_1 under step size lr
// (t = lr lambda'). Bounds and lambda are converted to the buffer's scalar type when applied.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eqprop/core/params.hpp"

namespace eqprop {

enum class l1_form { subgradient, proximal };

class param_constraints {
 public:
  /// No layout and no constraints: apply() does nothing.
  param_constraints() = default;
  /// Constraints over blocks of `layout` (added below, by block name).
  explicit param_constraints(std::vector<param_block> layout);

  /// Every entry of `block` into [lo, hi]. Bounds may be infinite on their open side (lo =
  /// -inf, hi = +inf) for a one-sided box. Throws config_error, naming the block, for an
  /// unknown block, a NaN bound, lo > hi, lo = +inf or hi = -inf, or a second box on it.
  param_constraints& add_box(std::string_view block, double lo, double hi);
  /// Entries of `block` whose `keep` is 0 are forced to 0; keep has one entry per entry of
  /// the block, in the buffer's (column-major) order. Throws config_error, naming the
  /// block, for an unknown block, a size mismatch or a second mask on it.
  param_constraints& add_mask(std::string_view block, std::vector<char> keep);
  /// L1 shrinkage of `block` with strength lambda (see the header comment). Throws
  /// config_error, naming the block, for an unknown block, a lambda that is not finite and
  /// >= 0, or a second L1 constraint on it.
  param_constraints& add_l1(std::string_view block, double lambda, l1_form form);

  /// Replaces the mask of `block` (e.g. after pruning), adding one if it has none; the
  /// same checks as add_mask.
  void set_mask(std::string_view block, std::vector<char> keep);
  /// The mask of `block`; config_error when it has none.
  const std::vector<char>& mask(std::string_view block) const;

  /// Enforces every constraint on params (laid out as layout()), in the order above.
  /// Throws shape_error when params does not cover the layout (unless there is nothing to
  /// apply).
  template <class R>
  void apply(std::span<R> params, double lr_factor = 1) const;

  bool empty() const { return boxes_.empty() && masks_.empty() && l1s_.empty(); }
  const std::vector<param_block>& layout() const { return layout_; }

 private:
  struct box_c {
    std::size_t k;  // index into layout_
    double lo, hi;
  };
  struct mask_c {
    std::size_t k;  // index into layout_
    std::vector<char> keep;
  };
  struct l1_c {
    std::size_t k;  // index into layout_
    double lambda;
    l1_form form;
  };
  std::size_t block(std::string_view name, const char* kind) const;
  void check_mask(std::size_t k, const std::vector<char>& keep) const;
  std::vector<param_block> layout_;
  std::vector<box_c> boxes_;
  std::vector<mask_c> masks_;
  std::vector<l1_c> l1s_;
};

extern template void param_constraints::apply<float>(std::span<float>, double) const;
extern template void param_constraints::apply<double>(std::span<double>, double) const;

}  // namespace eqprop
