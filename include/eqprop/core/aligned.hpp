// Numeric buffers whose first element is 64-byte aligned.
//
// Vectorised code (Eigen's reductions and its assignments on Unaligned maps, oneDNN) treats
// the elements before the first vector-aligned address differently from the rest: they are
// peeled into a scalar head, which changes the order of a sum and, where the compiler fuses
// multiply-adds in scalar code only, the rounding of an elementwise update. A std::vector
// is only 16-byte aligned, and where in a cache line its buffer lands depends on earlier heap
// activity (e.g. the length of a path string), so results computed on it could depend on the
// command line. Every parameter, state, gradient, optimizer-state and data buffer is
// therefore either an Eigen matrix (allocated with Eigen's alignment, 64 bytes where
// AVX-512 is enabled) or an aligned_vector: then the address of element i modulo 64 is a
// function of i alone, and so is every result (for a given thread count).
#pragma once
#include <cstddef>
#include <limits>
#include <new>
#include <vector>

namespace eqprop {

/// Alignment in bytes of aligned_vector buffers: a cache line, and the widest vector
/// register (AVX-512) any backend uses.
inline constexpr std::size_t buffer_alignment = 64;

/// Allocator returning buffer_alignment-aligned storage (aligned operator new).
template <class T>
struct aligned_allocator {
  using value_type = T;
  aligned_allocator() noexcept = default;
  template <class U>
  aligned_allocator(const aligned_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(buffer_alignment)));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(buffer_alignment)); }

  template <class U>
  bool operator==(const aligned_allocator<U>&) const noexcept {
    return true;
  }
};

/// The numeric buffer type: a std::vector whose data() is buffer_alignment-aligned.
template <class T>
using aligned_vector = std::vector<T, aligned_allocator<T>>;

}  // namespace eqprop
