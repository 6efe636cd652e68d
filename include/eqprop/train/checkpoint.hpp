// Checkpoints: a JSON metadata object plus named raw arrays in one self-checking binary
// file, written atomically. Format (all integers little-endian; see docs/runs.md):
//
//   "EQPROPCK"  u32 version (=1)  u64 header_length  header (JSON, space-padded so the
//   data section starts at a multiple of 8)  data section (arrays, each 8-byte aligned)
//   u32 CRC32 (zlib) of every byte before it
//
// The header is {"meta": <caller's object>, "arrays": [{"name", "dtype", "shape", "offset",
// "length"}...], "data_length": N}; offsets are relative to the start of the data section.
// Arrays are stored in C (row-major) order, like numpy.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "eqprop/core/error.hpp"
#include "eqprop/core/scalar.hpp"

namespace eqprop {

static_assert(std::endian::native == std::endian::little,
              "eqprop checkpoints store raw little-endian data; big-endian hosts are not supported");

/// Element type of a checkpoint array.
enum class checkpoint_dtype : uint8_t { f32, f64, i64, u8 };

/// "f32", "f64", "i64", "u8".
std::string_view dtype_name(checkpoint_dtype t);
/// Bytes per element.
std::size_t dtype_size(checkpoint_dtype t);

/// The dtype storing C++ type T (float, double, int64_t, uint8_t).
template <class T>
constexpr checkpoint_dtype dtype_of() {
  if constexpr (std::is_same_v<T, float>) return checkpoint_dtype::f32;
  else if constexpr (std::is_same_v<T, double>) return checkpoint_dtype::f64;
  else if constexpr (std::is_same_v<T, int64_t>) return checkpoint_dtype::i64;
  else if constexpr (std::is_same_v<T, uint8_t>) return checkpoint_dtype::u8;
  else static_assert(sizeof(T) == 0, "checkpoint arrays hold float, double, int64_t or uint8_t");
}

/// One named array: dtype, shape (empty = scalar, one element) and the raw bytes.
struct checkpoint_array {
  checkpoint_dtype dtype = checkpoint_dtype::u8;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;

  /// Product of the shape (1 for a scalar).
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }

  /// A 1-D array holding v.
  template <class T, class A>
  static checkpoint_array from_vector(const std::vector<T, A>& v) {
    return from_vector(v, {static_cast<int64_t>(v.size())});
  }
  /// An array of the given shape (C order) holding v; throws shape_error on a size mismatch.
  template <class T, class A>
  static checkpoint_array from_vector(const std::vector<T, A>& v, std::vector<int64_t> shape) {
    checkpoint_array a;
    a.dtype = dtype_of<T>();
    a.shape = std::move(shape);
    if (a.numel() != static_cast<int64_t>(v.size()))
      throw shape_error("checkpoint_array::from_vector: " + std::to_string(v.size()) +
                        " elements do not match the shape (" + std::to_string(a.numel()) + ")");
    a.bytes.resize(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(a.bytes.data(), v.data(), a.bytes.size());
    return a;
  }
  /// A single value (shape []).
  template <class T>
  static checkpoint_array from_scalar(T x) {
    return from_vector(std::vector<T>{x}, {});
  }
  /// A dense Eigen matrix or vector. Vectors (one column or one row at compile time) get
  /// shape [n]; matrices get shape [rows, cols], stored row-major.
  template <class Derived>
  static checkpoint_array from_eigen(const Eigen::DenseBase<Derived>& m) {
    using T = typename Derived::Scalar;
    const Eigen::Index r = m.rows(), c = m.cols();
    std::vector<T> v(static_cast<std::size_t>(r * c));
    for (Eigen::Index i = 0; i < r; ++i)
      for (Eigen::Index j = 0; j < c; ++j) v[static_cast<std::size_t>(i * c + j)] = m(i, j);
    if constexpr (Derived::ColsAtCompileTime == 1 || Derived::RowsAtCompileTime == 1)
      return from_vector(v, {static_cast<int64_t>(r * c)});
    else return from_vector(v, {static_cast<int64_t>(r), static_cast<int64_t>(c)});
  }

  /// The elements in C order (A: e.g. aligned_allocator<T>). Throws data_error unless dtype
  /// is exactly dtype_of<T>().
  template <class T, class A = std::allocator<T>>
  std::vector<T, A> to_vector() const {
    check_dtype(dtype_of<T>());
    std::vector<T, A> v(bytes.size() / sizeof(T));
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
    return v;
  }
  /// The single element of a scalar (or one-element) array.
  template <class T>
  T to_scalar() const {
    auto v = to_vector<T>();
    if (v.size() != 1) throw data_error("checkpoint array is not a scalar (" + shape_string() + ")");
    return v[0];
  }
  /// A 2-D array as a matrix (a 1-D array of n gives an n x 1 matrix). Throws data_error on
  /// a dtype or rank mismatch.
  template <class T>
  matrix<T> to_matrix() const {
    auto v = to_vector<T>();
    if (shape.size() == 1) return const_vector_map<T>(v.data(), static_cast<Eigen::Index>(v.size()));
    if (shape.size() != 2) throw data_error("checkpoint array is not a matrix (" + shape_string() + ")");
    const auto r = static_cast<Eigen::Index>(shape[0]), c = static_cast<Eigen::Index>(shape[1]);
    return Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(v.data(), r, c);
  }
  /// A 1-D array as a vector. Throws data_error on a dtype or rank mismatch.
  template <class T>
  vector<T> to_eigen_vector() const {
    auto v = to_vector<T>();
    if (shape.size() != 1) throw data_error("checkpoint array is not a vector (" + shape_string() + ")");
    return const_vector_map<T>(v.data(), static_cast<Eigen::Index>(v.size()));
  }

  /// "f32[3, 4]".
  std::string shape_string() const;

 private:
  void check_dtype(checkpoint_dtype want) const;
};

/// A checkpoint: caller-defined metadata (epoch, step, config, RNG states...) and arrays.
struct checkpoint {
  nlohmann::json meta = nlohmann::json::object();
  std::map<std::string, checkpoint_array> arrays;

  /// The named array; throws data_error when it is missing.
  const checkpoint_array& array(const std::string& name) const;
};

/// The current checkpoint format version written by save_checkpoint.
inline constexpr uint32_t checkpoint_format_version = 1;

/// Writes a checkpoint atomically (see write_file_atomic): after a crash or a full disk the
/// file holds the previous checkpoint or the new one, never a partial file. Throws
/// eqprop::error on I/O failure, shape_error when an array's byte count does not match its
/// dtype and shape.
void save_checkpoint(const std::filesystem::path& path, const checkpoint& ck);

/// Reads and fully validates a checkpoint (magic, version, header, sizes, alignment, CRC).
/// Throws data_error naming the file and the problem.
checkpoint load_checkpoint(const std::filesystem::path& path);

/// The full state of a generator as text (its operator<< form), to store in meta.
std::string rng_state_to_string(const std::mt19937_64& rng);
/// Restores a generator from rng_state_to_string's text. Throws data_error if malformed.
void rng_state_from_string(std::mt19937_64& rng, std::string_view state);

}  // namespace eqprop
