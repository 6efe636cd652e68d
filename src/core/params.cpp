#include "eqprop/core/params.hpp"

#include <algorithm>

namespace eqprop {

long layout_size(const std::vector<param_block>& layout) {
  long end = 0;
  for (const auto& b : layout) end = std::max(end, b.offset + b.size());
  return end;
}

const param_block* find_block(const std::vector<param_block>& layout, std::string_view name) {
  for (const auto& b : layout)
    if (b.name == name) return &b;
  return nullptr;
}

}  // namespace eqprop
