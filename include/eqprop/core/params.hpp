// Flat parameter storage shared by every network: one aligned buffer holding named blocks
// (weight matrices, bias vectors, learned time constants), so optimisers, checkpoints and
// gradient checks see a single vector and a layout, whatever the network. A gradient (or
// any per-parameter) buffer uses the same layout.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eqprop/core/aligned.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/core/scalar.hpp"

namespace eqprop {

/// One named block of a flat parameter buffer: a column-major rows x cols matrix (cols = 1
/// for a vector) starting at `offset`.
struct param_block {
  std::string name;  ///< e.g. "W0", "b0", "Wout", "tau_m1"
  int group;         ///< optimizer group (per-group learning rates and decays), usually the layer
  long rows, cols, offset;
  long size() const { return rows * cols; }
};

/// Entries a layout covers: the end of its last block (0 for an empty layout).
long layout_size(const std::vector<param_block>& layout);
/// The block called `name`, or nullptr.
const param_block* find_block(const std::vector<param_block>& layout, std::string_view name);

/// Views of a gradient (or any) buffer laid out like the parameters.
template <class R>
inline matrix_map<R> block_view(std::span<R> buf, const param_block& b) {
  return {buf.data() + b.offset, b.rows, b.cols};
}

/// A network's parameters: the aligned flat buffer and its named blocks, in the order
/// they were added (each block starts where the previous one ends).
template <class T>
class param_buffer {
 public:
  /// Appends a zero-filled rows x cols block; returns its index. Throws internal_error for
  /// a duplicate name or a negative size.
  int add(std::string name, int group, long rows, long cols) {
    if (rows < 0 || cols < 0) throw internal_error("param_buffer: negative block size for " + name);
    if (find(name) >= 0) throw internal_error("param_buffer: duplicate block " + name);
    const long offset = long(values_.size());
    layout_.push_back({std::move(name), group, rows, cols, offset});
    values_.resize(std::size_t(offset + rows * cols), T(0));
    return int(layout_.size()) - 1;
  }

  std::size_t size() const { return values_.size(); }
  std::span<T> values() { return values_; }
  std::span<const T> values() const { return values_; }
  T* data() { return values_.data(); }
  const T* data() const { return values_.data(); }
  const std::vector<param_block>& layout() const { return layout_; }
  int n_blocks() const { return int(layout_.size()); }
  const param_block& block(int i) const { return layout_.at(std::size_t(i)); }
  /// Index of the block called `name`, or -1.
  int find(std::string_view name) const {
    for (std::size_t i = 0; i < layout_.size(); ++i)
      if (layout_[i].name == name) return int(i);
    return -1;
  }
  matrix_map<T> view(int i) { return block_view(values(), block(i)); }
  const_matrix_map<T> view(int i) const {
    const param_block& b = block(i);
    return {values_.data() + b.offset, b.rows, b.cols};
  }
  /// The block called `name`; internal_error when there is none.
  matrix_map<T> view(std::string_view name) { return view(checked_find(name)); }
  const_matrix_map<T> view(std::string_view name) const { return view(checked_find(name)); }

  /// The same layout with the values converted to Q.
  template <class Q>
  param_buffer<Q> cast() const {
    param_buffer<Q> out;
    out.layout_ = layout_;
    out.values_.assign(values_.begin(), values_.end());
    return out;
  }

 private:
  template <class>
  friend class param_buffer;
  int checked_find(std::string_view name) const {
    const int i = find(name);
    if (i < 0) throw internal_error("param_buffer: no block " + std::string(name));
    return i;
  }
  aligned_vector<T> values_;
  std::vector<param_block> layout_;
};

}  // namespace eqprop
