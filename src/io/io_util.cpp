// File reading and zlib decompression helpers for the dataset readers.
#include <algorithm>
#include <limits>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <zlib.h>

#include "io_internal.hpp"

namespace eqprop::io_detail {

namespace fs = std::filesystem;

std::string display(const fs::path& file) { return file.string(); }

input_file::input_file(const fs::path& file) : name_(display(file)) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  fd_ = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) {
    const int e = errno;
    if (e == ENOENT) throw data_error(fmt::format("{}: file not found", name_));
    throw data_error(fmt::format("{}: cannot open file for reading ({})", name_, std::generic_category().message(e)));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    ::close(fd_);
    throw data_error(fmt::format("{}: cannot determine the file size", name_));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a regular file";
    throw data_error(fmt::format("{}: is {}, expected a regular file", name_, kind));
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

input_file::~input_file() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<uint8_t> input_file::read(uint64_t offset, uint64_t n, const char* what) const {
  if (offset > size_ || n > size_ - offset)
    throw data_error(fmt::format("{}: truncated: {} at offset {} ({} bytes) is past the end of the {}-byte file", name_,
                                 what, offset, n, size_));
  std::vector<uint8_t> buf(static_cast<size_t>(n));
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t r = ::pread(fd_, buf.data() + done, std::min<size_t>(buf.size() - done, size_t(1) << 30),
                              static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      throw data_error(fmt::format("{}: read error at offset {} ({})", name_, offset + done,
                                   std::generic_category().message(errno)));
    if (r == 0)
      throw data_error(
          fmt::format("{}: read error after {} of {} bytes (the file shrank while being read)", name_, done, n));
    done += static_cast<size_t>(r);
  }
  return buf;
}

std::vector<uint8_t> read_file_bytes(const fs::path& file) {
  const input_file f(file);
  return f.read(0, f.size(), "file contents");
}

namespace {

constexpr size_t kChunk = size_t(1) << 30;  // zlib counts are 32-bit

std::string zmsg(const z_stream& zs, int rc) {
  if (zs.msg) return zs.msg;
  return fmt::format("zlib error {}", rc);
}

/// An inflate stream released on every exit (return, break or exception).
struct inflater {
  z_stream zs{};
  inflater(int window_bits, const std::string& source) {
    if (inflateInit2(&zs, window_bits) != Z_OK) throw data_error(fmt::format("{}: cannot initialise zlib", source));
  }
  ~inflater() { inflateEnd(&zs); }
  inflater(const inflater&) = delete;
  inflater& operator=(const inflater&) = delete;
};

// Inflates a gzip stream into at most limit bytes. prefix_only: stop (without error) once
// limit bytes are out; else data_error as soon as the output would exceed limit.
std::vector<uint8_t> gunzip_bounded(std::span<const uint8_t> bytes, const std::string& source, uint64_t limit,
                                    bool prefix_only, const std::string& what) {
  std::vector<uint8_t> out;
  // Room for one byte past the limit tells "more than allowed" from "exactly the limit".
  const uint64_t cap = prefix_only ? limit : limit + 1;
  inflater inf(16 + MAX_WBITS, source);
  z_stream& zs = inf.zs;
  size_t in_pos = 0, out_pos = 0;
  bool member_done = false;
  while (true) {
    if (out_pos == out.size()) {
      if (out_pos >= cap) {
        if (prefix_only) return out;
        throw data_error(
            fmt::format("{}: the gzip data decompress to more than {} bytes ({}); stopped there", source, limit, what));
      }
      out.resize(static_cast<size_t>(std::min<uint64_t>(std::max<uint64_t>(2 * uint64_t(out.size()), 1 << 16), cap)));
    }
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
      throw data_error(
          fmt::format("{}: corrupt gzip data ({}) after {} compressed bytes", source, zmsg(zs, rc), in_pos));
    if (rc == Z_MEM_ERROR) throw data_error(fmt::format("{}: out of memory while decompressing", source));
    if (rc == Z_BUF_ERROR || rc == Z_OK) {
      // inflate stops only when the output is full or the input chunk is used up.
      if (zs.avail_out == 0 || in_pos < bytes.size()) continue;
      if (prefix_only) break;  // the caller checks the length it needs
      throw data_error(
          fmt::format("{}: truncated gzip stream: the compressed data end after {} bytes ({} bytes decompressed) "
                      "before the end-of-stream marker",
                      source, bytes.size(), out_pos));
    }
    throw data_error(fmt::format("{}: gzip decompression failed ({})", source, zmsg(zs, rc)));
  }
  if (!member_done && !prefix_only) throw data_error(fmt::format("{}: truncated gzip stream", source));
  out.resize(out_pos);
  return out;
}

}  // namespace

std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, const std::string& source, uint64_t max_size,
                            const std::string& what) {
  return gunzip_bounded(bytes, source, max_size, false, what);
}

std::vector<uint8_t> gunzip_prefix(std::span<const uint8_t> bytes, const std::string& source, size_t n) {
  return gunzip_bounded(bytes, source, n, true, "");
}

std::vector<uint8_t> inflate_raw(std::span<const uint8_t> bytes, uint64_t expected_size, const std::string& source,
                                 uint64_t prefix) {
  if (expected_size > max_inflated_size(bytes.size()))
    throw data_error(fmt::format("{}: corrupt data: {} compressed bytes cannot expand to the recorded {} bytes", source,
                                 bytes.size(), expected_size));
  const bool partial = prefix < expected_size;
  std::vector<uint8_t> out(static_cast<size_t>(partial ? prefix : expected_size));
  uint8_t spill[64];  // catches output beyond the expected size
  inflater inf(-MAX_WBITS, source);
  z_stream& zs = inf.zs;
  size_t in_pos = 0, out_pos = 0;
  while (true) {
    if (partial && out_pos == out.size()) break;  // the prefix the caller needs
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
    if (rc == Z_DATA_ERROR) throw data_error(fmt::format("{}: corrupt deflate data ({})", source, zmsg(zs, rc)));
    if (rc == Z_MEM_ERROR) throw data_error(fmt::format("{}: out of memory while decompressing", source));
    if (rc == Z_BUF_ERROR || rc == Z_OK) {
      if (zs.avail_out == 0 || in_pos < bytes.size()) continue;
      throw data_error(
          fmt::format("{}: truncated deflate data ({} of {} bytes decompressed)", source, out_pos, expected_size));
    }
    throw data_error(fmt::format("{}: deflate decompression failed ({})", source, zmsg(zs, rc)));
  }
  if (out_pos != out.size())
    throw data_error(
        fmt::format("{}: deflate data expand to {} bytes, the directory records {}", source, out_pos, expected_size));
  return out;
}

void keep_first(dataset& d, long n) {
  if (n < 0 || n >= d.size()) return;
  d.x.conservativeResize(d.x.rows(), n);
  d.y.resize(static_cast<size_t>(n));
}

}  // namespace eqprop::io_detail
