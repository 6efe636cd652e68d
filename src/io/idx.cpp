// IDX reader (MNIST, Fashion-MNIST, KMNIST), raw or gzip-compressed.
#include <fmt/format.h>

#include "io_internal.hpp"

namespace eqprop {

namespace {

using io_detail::display;
using io_detail::load_be32;

// The bytes of an IDX file, raw or gzip-compressed, after checking the magic number and
// that the size announced by the header (4 + 4 * ndims bytes, then the product of the
// dimensions) matches the data exactly. The header is checked before anything else is read
// or decompressed: a raw file is read only once its size matches, and a gzip stream is
// decompressed no further than the announced size (one byte more is an error), so memory
// stays bounded by what the header announces, whatever the stream expands to.
std::vector<uint8_t> load_idx(const std::filesystem::path& file, uint32_t magic, int ndims, const char* what) {
  const io_detail::input_file in(file);
  const size_t header = 4 + 4 * size_t(ndims);
  std::vector<uint8_t> compressed;
  std::vector<uint8_t> head = in.read(0, std::min<uint64_t>(in.size(), header), "header");
  const bool gz = io_detail::is_gzip(head);
  if (gz) {
    compressed = in.read(0, in.size(), "file contents");
    head = io_detail::gunzip_prefix(compressed, display(file), header);
  }
  const char* unpacked = gz ? " (decompressed)" : "";
  if (head.size() < 4)
    throw data_error(fmt::format("{}: truncated IDX {} file: {} bytes{}, the header alone needs {}", display(file),
                                 what, head.size(), unpacked, header));
  const uint32_t got = load_be32(head.data());
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
  if (head.size() < header)
    throw data_error(fmt::format("{}: truncated IDX {} file: {} bytes{}, the header alone needs {}", display(file),
                                 what, head.size(), unpacked, header));
  // Dimensions are at most 2^32 - 1 each, so three of them fit in 96 bits.
  unsigned __int128 expected = 1;
  for (int k = 0; k < ndims; ++k) expected *= load_be32(head.data() + 4 + 4 * k);
  if (ndims == 3) {
    const uint32_t n = load_be32(head.data() + 4), rows = load_be32(head.data() + 8),
                   cols = load_be32(head.data() + 12);
    if (rows == 0 || cols == 0 || rows > 65536 || cols > 65536 || n > (uint32_t(1) << 31) - 1)
      throw data_error(
          fmt::format("{}: implausible IDX image dimensions {} x {} x {} (rows and columns must lie in "
                      "[1, 65536], the count below 2^31)",
                      display(file), n, rows, cols));
  }
  expected += header;
  const std::string announced =
      ndims == 3
          ? fmt::format("{} images of {}x{} ({} bytes in all)", load_be32(head.data() + 4), load_be32(head.data() + 8),
                        load_be32(head.data() + 12), static_cast<uint64_t>(expected))
          : fmt::format("{} labels ({} bytes in all)", load_be32(head.data() + 4), static_cast<uint64_t>(expected));
  const uint64_t have = gz ? 0 : in.size();
  if (gz) {
    // Deflate cannot expand more than ~1032:1: a larger announcement is a truncated file,
    // reported without decompressing anything.
    const uint64_t bound = io_detail::max_inflated_size(compressed.size());
    if (expected > bound)
      throw data_error(
          fmt::format("{}: truncated IDX {} file: the header announces {} but {} compressed bytes "
                      "cannot expand to more than {}",
                      display(file), what, announced, compressed.size(), bound));
    const uint64_t exp64 = static_cast<uint64_t>(expected);
    std::vector<uint8_t> bytes =
        io_detail::gunzip(compressed, display(file), exp64, fmt::format("its IDX header announces {}", announced));
    if (bytes.size() < exp64)
      throw data_error(
          fmt::format("{}: truncated IDX {} file: the header announces {} but the (decompressed) file "
                      "has only {} bytes",
                      display(file), what, announced, bytes.size()));
    return bytes;
  }
  if (have < expected)
    throw data_error(fmt::format("{}: truncated IDX {} file: the header announces {} but the file has only {} bytes",
                                 display(file), what, announced, have));
  if (have > expected)
    throw data_error(fmt::format("{}: IDX {} file has {} bytes, {} more than the header announces: {}", display(file),
                                 what, have, have - static_cast<uint64_t>(expected), announced));
  return in.read(0, have, "file contents");
}

}  // namespace

idx_images read_idx_images(const std::filesystem::path& file) {
  const std::vector<uint8_t> bytes = load_idx(file, 0x00000803u, 3, "image");
  const uint32_t n = load_be32(bytes.data() + 4), rows = load_be32(bytes.data() + 8),
                 cols = load_be32(bytes.data() + 12);
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
  std::vector<int32_t> y(n);
  for (uint32_t i = 0; i < n; ++i) {
    y[i] = bytes[8 + i];
    if (n_classes > 0 && y[i] >= n_classes)
      throw data_error(
          fmt::format("{}: label {} at index {} is out of range [0, {})", display(file), y[i], i, n_classes));
  }
  return y;
}

}  // namespace eqprop
