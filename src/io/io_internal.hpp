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

/// A regular file opened for reading. The type is checked on the open descriptor (opened
/// non-blocking), so a FIFO, device or socket given where a data file is expected is a
/// data_error naming the file, never a blocking read. Other failures (missing, directory,
/// unreadable, short read) are data_errors naming the file too.
class input_file {
 public:
  explicit input_file(const std::filesystem::path& file);
  ~input_file();
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;
  uint64_t size() const { return size_; }
  const std::string& name() const { return name_; }
  /// Exactly n bytes at offset; data_error if they lie past the end of the file.
  std::vector<uint8_t> read(uint64_t offset, uint64_t n, const char* what) const;

 private:
  std::string name_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

/// Reads a whole (regular) file; data_error (naming the file) if it is missing or unreadable.
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& file);

/// True if bytes start with the gzip magic 0x1f 0x8b.
inline bool is_gzip(std::span<const uint8_t> bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}
/// Deflate expands at most ~1032:1; a recorded size beyond this bound cannot be right.
inline uint64_t max_inflated_size(uint64_t compressed) { return 1032 * compressed + 1024; }

/// Decompresses a (possibly multi-member) gzip stream; data_error naming source on
/// corruption (bad header, CRC/length mismatch) or truncation, and as soon as the output
/// would exceed max_size bytes (what says where that bound comes from): memory stays
/// bounded by max_size whatever the stream expands to.
std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, const std::string& source, uint64_t max_size,
                            const std::string& what);
/// The first n decompressed bytes of a gzip stream (fewer if it is shorter); the CRC is not
/// checked. Decompresses no more than n bytes.
std::vector<uint8_t> gunzip_prefix(std::span<const uint8_t> bytes, const std::string& source, size_t n);
/// Decompresses a raw deflate stream (no header) that must expand to exactly
/// expected_size bytes; with prefix < expected_size only the first prefix bytes are
/// decompressed and returned (the caller cannot check a CRC then).
std::vector<uint8_t> inflate_raw(std::span<const uint8_t> bytes, uint64_t expected_size, const std::string& source,
                                 uint64_t prefix = UINT64_MAX);

inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
inline uint16_t load_le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load_le32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
inline uint64_t load_le64(const uint8_t* p) { return uint64_t(load_le32(p)) | (uint64_t(load_le32(p + 4)) << 32); }

/// A parsed and size-checked .npy header.
struct npy_header {
  std::string descr;  ///< as written, e.g. "<f8"
  char kind = 0;      ///< 'b', 'i', 'u' or 'f'
  int itemsize = 0;
  bool swap = false;  ///< data byte order differs from the host's
  bool fortran = false;
  std::vector<long> shape;
  size_t data_offset = 0;  ///< first data byte
  size_t count = 0;        ///< number of elements
};
/// Parses and size-checks a .npy header. head holds at least the header (npy_header_end
/// bytes) and total_size is the size of the whole .npy (file or archive member): the shape
/// and dtype must describe exactly total_size - data_offset data bytes, and the element
/// count (ignoring zero dimensions) must stay below 2^62, so every product of dimensions
/// fits in a long.
npy_header parse_npy_header(std::span<const uint8_t> head, const std::string& source, uint64_t total_size);
inline npy_header parse_npy_header(std::span<const uint8_t> bytes, const std::string& source) {
  return parse_npy_header(bytes, source, bytes.size());
}
/// Bytes up to the end of the header, read from the first 12 bytes (fewer: data_error).
size_t npy_header_end(std::span<const uint8_t> head, const std::string& source);
/// Data bytes (from data_offset) that the first `rows` entries along axis 0 occupy in C
/// order.
inline uint64_t npy_rows_bytes(const npy_header& h, long rows);

/// A .npy file's header and bytes (header, then the data read).
struct npy_file {
  npy_header header;
  std::vector<uint8_t> bytes;
};
/// Reads a .npy file: the header is checked against the file size before any data is
/// read, and with rows >= 0 only the data of the first `rows` entries along axis 0 is read
/// (all of it in Fortran order).
npy_file read_npy_file(const std::filesystem::path& file, long rows);

/// Converts the first `rows` entries along axis 0 (all if rows < 0) of the array to T in
/// C order, writing count * (rows / shape[0]) values to out. bytes starts with the header
/// and holds at least the data those rows need (all of it for Fortran order).
template <class T>
void npy_convert(const npy_header& h, std::span<const uint8_t> bytes, long rows, T* out, const std::string& source);

/// Product of all dimensions but the first (1 for a 1-D array).
inline long npy_row_size(const npy_header& h) {
  long r = 1;
  for (size_t k = 1; k < h.shape.size(); ++k) r *= h.shape[k];
  return r;
}
inline uint64_t npy_rows_bytes(const npy_header& h, long rows) {
  if (h.shape.empty()) return static_cast<uint64_t>(h.itemsize);
  return static_cast<uint64_t>(rows) * static_cast<uint64_t>(npy_row_size(h)) * static_cast<uint64_t>(h.itemsize);
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
