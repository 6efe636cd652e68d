// Internal helpers shared by the dataset readers (not part of the public API).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/error.hpp"
#include "eqprop/io/dataset.hpp"

namespace eqprop::io_detail {

/// The file name as it appears in error messages.
std::string display(const std::filesystem::path& file);

/// Reads a whole file; data_error (naming the file) if it is missing or unreadable.
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& file);

/// True if bytes start with the gzip magic 0x1f 0x8b.
inline bool is_gzip(std::span<const uint8_t> bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}
/// Decompresses a (possibly multi-member) gzip stream; data_error naming source on
/// corruption (bad header, CRC/length mismatch) or truncation.
std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, const std::string& source);
/// Decompresses a raw deflate stream (no header) that must expand to exactly
/// expected_size bytes.
std::vector<uint8_t> inflate_raw(std::span<const uint8_t> bytes, uint64_t expected_size,
                                 const std::string& source);

inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
inline uint16_t load_le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load_le32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
inline uint64_t load_le64(const uint8_t* p) {
  return uint64_t(load_le32(p)) | (uint64_t(load_le32(p + 4)) << 32);
}

/// A parsed and size-checked .npy header.
struct npy_header {
  std::string descr;        ///< as written, e.g. "<f8"
  char kind = 0;            ///< 'b', 'i', 'u' or 'f'
  int itemsize = 0;
  bool swap = false;        ///< data byte order differs from the host's
  bool fortran = false;
  std::vector<long> shape;
  size_t data_offset = 0;   ///< first data byte
  size_t count = 0;         ///< number of elements
};
npy_header parse_npy_header(std::span<const uint8_t> bytes, const std::string& source);

/// Converts the first `rows` entries along axis 0 (all if rows < 0) of the array to T in
/// C order, writing count * (rows / shape[0]) values to out.
template <class T>
void npy_convert(const npy_header& h, std::span<const uint8_t> bytes, long rows, T* out,
                 const std::string& source);

/// Product of all dimensions but the first (1 for a 1-D array).
inline long npy_row_size(const npy_header& h) {
  long r = 1;
  for (size_t k = 1; k < h.shape.size(); ++k) r *= h.shape[k];
  return r;
}

/// splitmix64 finaliser: a bijective 64-bit mix used to derive seeds.
inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Keeps only the first n samples (n < 0 or n >= size: unchanged).
void keep_first(dataset& d, long n);

}  // namespace eqprop::io_detail
