// IDX reader (MNIST, Fashion-MNIST, KMNIST), raw or gzip-compressed.
#include <fmt/format.h>

#include "io_internal.hpp"

namespace eqprop {

namespace {

using io_detail::display;
using io_detail::load_be32;

// Reads and, if needed, decompresses an IDX file; checks the magic number.
std::vector<uint8_t> load_idx(const std::filesystem::path& file, uint32_t magic, int ndims, const char* what) {
  std::vector<uint8_t> bytes = io_detail::read_file_bytes(file);
  if (io_detail::is_gzip(bytes)) bytes = io_detail::gunzip(bytes, display(file));
  const size_t header = 4 + 4 * size_t(ndims);
  if (bytes.size() < 4)
    throw data_error(fmt::format("{}: truncated IDX {} file: {} bytes, the header alone needs {}", display(file),
                                 what, bytes.size(), header));
  const uint32_t got = load_be32(bytes.data());
  if (got != magic) {
    std::string hint;
    if (got == 2049 || got == 2051)
      hint = fmt::format(" (this looks like an IDX {} file)", got == 2049 ? "label" : "image");
    else if ((got >> 8) == 0x08 && (got & 0xff) != 0)
      hint = fmt::format(" (unsigned-byte IDX with {} dimensions)", got & 0xff);
    else if ((got >> 16) == 0 && ((got >> 8) & 0xff) != 0x08)
      hint = fmt::format(" (element type 0x{:02x}; only unsigned bytes 0x08 are supported)", (got >> 8) & 0xff);
    throw data_error(fmt::format("{}: bad magic number 0x{:08x} ({}), expected 0x{:08x} ({}) for an IDX {} file{}",
                                 display(file), got, got, magic, magic, what, hint));
  }
  if (bytes.size() < header)
    throw data_error(fmt::format("{}: truncated IDX {} file: {} bytes, the header alone needs {}", display(file),
                                 what, bytes.size(), header));
  return bytes;
}

}  // namespace

idx_images read_idx_images(const std::filesystem::path& file) {
  const std::vector<uint8_t> bytes = load_idx(file, 0x00000803u, 3, "image");
  const uint32_t n = load_be32(bytes.data() + 4), rows = load_be32(bytes.data() + 8),
                 cols = load_be32(bytes.data() + 12);
  if (rows == 0 || cols == 0 || rows > 65536 || cols > 65536 || n > (uint32_t(1) << 31) - 1)
    throw data_error(fmt::format("{}: implausible IDX image dimensions {} x {} x {}", display(file), n, rows, cols));
  const uint64_t expected = 16 + uint64_t(n) * rows * cols;
  if (bytes.size() < expected)
    throw data_error(fmt::format(
        "{}: truncated IDX image file: the header announces {} images of {}x{} ({} bytes in all) but the "
        "(decompressed) file has only {} bytes",
        display(file), n, rows, cols, expected, bytes.size()));
  if (bytes.size() > expected)
    throw data_error(fmt::format("{}: IDX image file has {} bytes, {} more than the {} images of {}x{} announced "
                                 "in its header",
                                 display(file), bytes.size(), bytes.size() - expected, n, rows, cols));
  idx_images out;
  out.count = n;
  out.rows = static_cast<int>(rows);
  out.cols = static_cast<int>(cols);
  out.pixels.assign(bytes.begin() + 16, bytes.end());
  return out;
}

std::vector<int32_t> read_idx_labels(const std::filesystem::path& file, int n_classes) {
  const std::vector<uint8_t> bytes = load_idx(file, 0x00000801u, 1, "label");
  const uint32_t n = load_be32(bytes.data() + 4);
  const uint64_t expected = 8 + uint64_t(n);
  if (bytes.size() < expected)
    throw data_error(fmt::format(
        "{}: truncated IDX label file: the header announces {} labels ({} bytes in all) but the (decompressed) "
        "file has only {} bytes",
        display(file), n, expected, bytes.size()));
  if (bytes.size() > expected)
    throw data_error(fmt::format("{}: IDX label file has {} bytes, {} more than the {} labels announced in its header",
                                 display(file), bytes.size(), bytes.size() - expected, n));
  std::vector<int32_t> y(n);
  for (uint32_t i = 0; i < n; ++i) {
    y[i] = bytes[8 + i];
    if (n_classes > 0 && y[i] >= n_classes)
      throw data_error(fmt::format("{}: label {} at index {} is out of range [0, {})", display(file), y[i], i,
                                   n_classes));
  }
  return y;
}

}  // namespace eqprop
