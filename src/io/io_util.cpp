// File reading and zlib decompression helpers for the dataset readers.
#include <algorithm>
#include <fstream>
#include <limits>
#include <system_error>

#include <fmt/format.h>
#include <zlib.h>

#include "io_internal.hpp"

namespace eqprop::io_detail {

namespace fs = std::filesystem;

std::string display(const fs::path& file) { return file.string(); }

std::vector<uint8_t> read_file_bytes(const fs::path& file) {
  std::error_code ec;
  const auto st = fs::status(file, ec);
  if (ec || !fs::exists(st)) throw data_error(fmt::format("{}: file not found", display(file)));
  if (fs::is_directory(st)) throw data_error(fmt::format("{}: is a directory, expected a file", display(file)));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw data_error(fmt::format("{}: cannot open file for reading", display(file)));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw data_error(fmt::format("{}: cannot determine the file size", display(file)));
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw data_error(fmt::format("{}: read error after {} of {} bytes", display(file),
                                 static_cast<long long>(in.gcount()), static_cast<long long>(size)));
  return bytes;
}

namespace {

constexpr size_t kChunk = size_t(1) << 30;  // zlib counts are 32-bit

std::string zmsg(const z_stream& zs, int rc) {
  if (zs.msg) return zs.msg;
  return fmt::format("zlib error {}", rc);
}

}  // namespace

std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, const std::string& source) {
  std::vector<uint8_t> out;
  // The last 4 bytes hold the uncompressed size mod 2^32: a good reservation hint.
  if (bytes.size() >= 18) {
    const uint64_t hint = load_le32(bytes.data() + bytes.size() - 4);
    if (hint <= 1100 * uint64_t(bytes.size())) out.reserve(static_cast<size_t>(hint));
  }
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw data_error(fmt::format("{}: cannot initialise zlib", source));
  size_t in_pos = 0, out_pos = 0;
  bool member_done = false;
  try {
    while (true) {
      if (out_pos == out.size()) out.resize(std::max<size_t>(out.size() * 2, 1 << 16));
      zs.next_in = const_cast<Bytef*>(bytes.data() + in_pos);
      zs.avail_in = static_cast<uInt>(std::min(kChunk, bytes.size() - in_pos));
      zs.next_out = out.data() + out_pos;
      zs.avail_out = static_cast<uInt>(std::min(kChunk, out.size() - out_pos));
      const uInt in_before = zs.avail_in, out_before = zs.avail_out;
      const int rc = inflate(&zs, Z_NO_FLUSH);
      in_pos += in_before - zs.avail_in;
      out_pos += out_before - zs.avail_out;
      if (rc == Z_STREAM_END) {
        member_done = true;
        // Another gzip member may follow (concatenated .gz files); anything else is ignored.
        if (bytes.size() - in_pos >= 2 && bytes[in_pos] == 0x1f && bytes[in_pos + 1] == 0x8b) {
          inflateReset(&zs);
          member_done = false;
          continue;
        }
        break;
      }
      if (rc == Z_DATA_ERROR)
        throw data_error(fmt::format("{}: corrupt gzip data ({}) after {} compressed bytes", source,
                                     zmsg(zs, rc), in_pos));
      if (rc == Z_MEM_ERROR) throw data_error(fmt::format("{}: out of memory while decompressing", source));
      if (rc == Z_BUF_ERROR || rc == Z_OK) {
        // inflate stops only when the output is full or the input chunk is used up.
        if (zs.avail_out == 0 || in_pos < bytes.size()) continue;
        throw data_error(fmt::format(
            "{}: truncated gzip stream: the compressed data end after {} bytes ({} bytes decompressed) "
            "before the end-of-stream marker",
            source, bytes.size(), out_pos));
      }
      throw data_error(fmt::format("{}: gzip decompression failed ({})", source, zmsg(zs, rc)));
    }
  } catch (...) {
    inflateEnd(&zs);
    throw;
  }
  inflateEnd(&zs);
  if (!member_done) throw data_error(fmt::format("{}: truncated gzip stream", source));
  out.resize(out_pos);
  out.shrink_to_fit();
  return out;
}

std::vector<uint8_t> inflate_raw(std::span<const uint8_t> bytes, uint64_t expected_size,
                                 const std::string& source) {
  if (expected_size > std::numeric_limits<size_t>::max() / 2)
    throw data_error(fmt::format("{}: implausible uncompressed size {}", source, expected_size));
  std::vector<uint8_t> out(static_cast<size_t>(expected_size));
  uint8_t spill[64];  // catches output beyond the expected size
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw data_error(fmt::format("{}: cannot initialise zlib", source));
  size_t in_pos = 0, out_pos = 0;
  try {
    while (true) {
      const bool spilling = out_pos == out.size();
      zs.next_in = const_cast<Bytef*>(bytes.data() + in_pos);
      zs.avail_in = static_cast<uInt>(std::min(kChunk, bytes.size() - in_pos));
      zs.next_out = spilling ? spill : out.data() + out_pos;
      zs.avail_out = spilling ? sizeof spill : static_cast<uInt>(std::min(kChunk, out.size() - out_pos));
      const uInt in_before = zs.avail_in, out_before = zs.avail_out;
      const int rc = inflate(&zs, Z_NO_FLUSH);
      in_pos += in_before - zs.avail_in;
      const size_t produced = out_before - zs.avail_out;
      if (spilling && produced > 0)
        throw data_error(fmt::format("{}: deflate data expand to more than the {} bytes recorded in the directory",
                                     source, expected_size));
      out_pos += produced;
      if (rc == Z_STREAM_END) break;
      if (rc == Z_DATA_ERROR)
        throw data_error(fmt::format("{}: corrupt deflate data ({})", source, zmsg(zs, rc)));
      if (rc == Z_MEM_ERROR) throw data_error(fmt::format("{}: out of memory while decompressing", source));
      if (rc == Z_BUF_ERROR || rc == Z_OK) {
        if (zs.avail_out == 0 || in_pos < bytes.size()) continue;
        throw data_error(fmt::format("{}: truncated deflate data ({} of {} bytes decompressed)", source,
                                     out_pos, expected_size));
      }
      throw data_error(fmt::format("{}: deflate decompression failed ({})", source, zmsg(zs, rc)));
    }
  } catch (...) {
    inflateEnd(&zs);
    throw;
  }
  inflateEnd(&zs);
  if (out_pos != out.size())
    throw data_error(fmt::format("{}: deflate data expand to {} bytes, the directory records {}", source, out_pos,
                                 expected_size));
  return out;
}

void keep_first(dataset& d, long n) {
  if (n < 0 || n >= d.size()) return;
  d.x.conservativeResize(d.x.rows(), n);
  d.y.resize(static_cast<size_t>(n));
}

}  // namespace eqprop::io_detail
