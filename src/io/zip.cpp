// Minimal zip reader (stored and deflated members, zip64 records) for .npz files, and
// the downsampled-ImageNet (Imagenet32x32) batch reader built on it.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zlib.h>

#include "io_internal.hpp"

namespace eqprop {

namespace {

using io_detail::display;
using io_detail::load_le16;
using io_detail::load_le32;
using io_detail::load_le64;

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50, kEnd64Sig = 0x06064b50,
                   kEnd64LocatorSig = 0x07064b50;

struct zip_entry {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, offset = 0;
};

class zip_reader {
 public:
  explicit zip_reader(const std::filesystem::path& file) : in_(file), name_(in_.name()), size_(in_.size()) {
    read_directory();
  }

  const std::vector<zip_entry>& entries() const { return entries_; }

  const zip_entry* find(const std::string& name) const {
    for (const auto& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }

  /// The member's uncompressed bytes, CRC-checked. With prefix < the member's size only the
  /// first prefix bytes are decompressed and returned (no CRC check is possible then).
  std::vector<uint8_t> read(const zip_entry& e, uint64_t prefix = UINT64_MAX) {
    const std::string src = fmt::format("{} (member '{}')", name_, e.name);
    if (e.flags & 1) throw data_error(fmt::format("{}: encrypted zip members are not supported", src));
    if (e.method != 0 && e.method != 8)
      throw data_error(
          fmt::format("{}: unsupported compression method {} (only 0 = stored and 8 = deflate)", src, e.method));
    if (e.method == 8 && e.usize > io_detail::max_inflated_size(e.csize))
      throw data_error(fmt::format("{}: corrupt zip: {} compressed bytes cannot expand to the recorded {} bytes", src,
                                   e.csize, e.usize));
    if (e.method == 0 && e.csize != e.usize)
      throw data_error(fmt::format("{}: corrupt zip: stored member has compressed size {} but uncompressed size {}",
                                   src, e.csize, e.usize));
    const std::vector<uint8_t> lh = read_at(e.offset, 30, "local file header");
    if (load_le32(lh.data()) != kLocalSig)
      throw data_error(fmt::format("{}: corrupt zip: no local file header signature at offset {}", src, e.offset));
    const uint64_t start = e.offset + 30 + load_le16(lh.data() + 26) + load_le16(lh.data() + 28);
    if (start > size_ || e.csize > size_ - start)
      throw data_error(
          fmt::format("{}: truncated zip: the member's {} compressed bytes at offset {} extend past the "
                      "end of the {}-byte file",
                      src, e.csize, start, size_));
    const bool partial = prefix < e.usize;
    std::vector<uint8_t> data = read_at(start, e.method == 0 && partial ? prefix : e.csize, "member data");
    if (e.method == 8) data = io_detail::inflate_raw(data, e.usize, src, prefix);
    if (partial) return data;
    const uint32_t crc = static_cast<uint32_t>(crc32_z(crc32_z(0, nullptr, 0), data.data(), data.size()));
    if (crc != e.crc)
      throw data_error(
          fmt::format("{}: CRC mismatch (computed {:08x}, recorded {:08x}): the archive is corrupt", src, crc, e.crc));
    return data;
  }

 private:
  std::vector<uint8_t> read_at(uint64_t offset, uint64_t n, const char* what) {
    if (offset > size_ || n > size_ - offset)
      throw data_error(fmt::format("{}: truncated zip: {} at offset {} ({} bytes) is past the end of the {}-byte file",
                                   name_, what, offset, n, size_));
    return in_.read(offset, n, what);
  }

  void read_directory() {
    const uint64_t tail_len = std::min<uint64_t>(size_, 22 + 65535);
    const uint64_t tail_start = size_ - tail_len;
    const std::vector<uint8_t> tail = read_at(tail_start, tail_len, "end of file");
    int64_t eocd = -1;
    for (int64_t p = static_cast<int64_t>(tail_len) - 22; p >= 0; --p) {
      if (load_le32(tail.data() + p) == kEndSig &&
          static_cast<uint64_t>(p) + 22 + load_le16(tail.data() + p + 20) <= tail_len) {
        eocd = p;
        break;
      }
    }
    if (eocd < 0)
      throw data_error(
          fmt::format("{}: not a zip archive, or truncated: no end-of-central-directory record found", name_));
    const uint8_t* e = tail.data() + eocd;
    const uint64_t eocd_pos = tail_start + static_cast<uint64_t>(eocd);
    if (load_le16(e + 4) != 0 && load_le16(e + 4) != 0xFFFF)
      throw data_error(fmt::format("{}: multi-disk zip archives are not supported", name_));
    uint64_t n_entries = load_le16(e + 10), cd_size = load_le32(e + 12), cd_offset = load_le32(e + 16);
    // A zip64 end record is announced by a locator just before the classic one.
    if (eocd_pos >= 20) {
      const std::vector<uint8_t> loc = read_at(eocd_pos - 20, 20, "zip64 locator");
      if (load_le32(loc.data()) == kEnd64LocatorSig) {
        const uint64_t off64 = load_le64(loc.data() + 8);
        const std::vector<uint8_t> r = read_at(off64, 56, "zip64 end record");
        if (load_le32(r.data()) != kEnd64Sig)
          throw data_error(fmt::format("{}: corrupt zip: bad zip64 end-of-central-directory record", name_));
        n_entries = load_le64(r.data() + 32);
        cd_size = load_le64(r.data() + 40);
        cd_offset = load_le64(r.data() + 48);
      }
    }
    if (cd_offset > size_ || cd_size > size_ - cd_offset)
      throw data_error(
          fmt::format("{}: truncated or corrupt zip: the central directory ({} bytes at offset {}) lies "
                      "outside the {}-byte file",
                      name_, cd_size, cd_offset, size_));
    if (n_entries > cd_size / 46)
      throw data_error(fmt::format("{}: corrupt zip: {} entries cannot fit in a {}-byte central directory", name_,
                                   n_entries, cd_size));
    const std::vector<uint8_t> cd = read_at(cd_offset, cd_size, "central directory");
    size_t p = 0;
    for (uint64_t i = 0; i < n_entries; ++i) {
      if (p + 46 > cd.size() || load_le32(cd.data() + p) != kCentralSig)
        throw data_error(fmt::format("{}: corrupt zip: bad central directory entry {}", name_, i));
      const uint8_t* c = cd.data() + p;
      zip_entry z;
      z.flags = load_le16(c + 8);
      z.method = load_le16(c + 10);
      z.crc = load_le32(c + 16);
      z.csize = load_le32(c + 20);
      z.usize = load_le32(c + 24);
      const size_t n_len = load_le16(c + 28), x_len = load_le16(c + 30), k_len = load_le16(c + 32);
      z.offset = load_le32(c + 42);
      if (p + 46 + n_len + x_len + k_len > cd.size())
        throw data_error(fmt::format("{}: corrupt zip: central directory entry {} overruns the directory", name_, i));
      z.name.assign(reinterpret_cast<const char*>(c + 46), n_len);
      // zip64 extended information: the 64-bit values of the fields saturated at 0xFFFFFFFF.
      const uint8_t* x = c + 46 + n_len;
      for (size_t q = 0; q + 4 <= x_len;) {
        const uint16_t id = load_le16(x + q), len = load_le16(x + q + 2);
        if (q + 4 + len > x_len) break;
        if (id == 0x0001) {
          size_t r = q + 4;
          auto next = [&](uint64_t& field) {
            if (field != 0xFFFFFFFFu) return;
            if (r + 8 > q + 4 + len)
              throw data_error(fmt::format("{}: corrupt zip: short zip64 field for '{}'", name_, z.name));
            field = load_le64(x + r);
            r += 8;
          };
          next(z.usize);
          next(z.csize);
          next(z.offset);
        }
        q += 4 + len;
      }
      entries_.push_back(std::move(z));
      p += 46 + n_len + x_len + k_len;
    }
  }

  io_detail::input_file in_;
  std::string name_;
  uint64_t size_ = 0;
  std::vector<zip_entry> entries_;
};

}  // namespace

std::vector<std::string> zip_member_names(const std::filesystem::path& file) {
  zip_reader z(file);
  std::vector<std::string> names;
  for (const auto& e : z.entries()) names.push_back(e.name);
  return names;
}

std::vector<uint8_t> read_zip_member(const std::filesystem::path& file, const std::string& member) {
  zip_reader z(file);
  const zip_entry* e = z.find(member);
  if (!e) {
    std::vector<std::string> names;
    for (const auto& en : z.entries()) names.push_back("'" + en.name + "'");
    throw data_error(
        fmt::format("{}: no member '{}' in the archive (members: {})", display(file), member, fmt::join(names, ", ")));
  }
  return z.read(*e);
}

dataset read_imagenet32_npz(const std::filesystem::path& file, long max_samples) {
  zip_reader z(file);
  auto member = [&](const char* stem) {
    const zip_entry* e = z.find(std::string(stem) + ".npy");
    if (!e) e = z.find(stem);
    if (!e)
      throw data_error(
          fmt::format("{}: not a downsampled-ImageNet batch: no '{}.npy' member in the archive", display(file), stem));
    return e;
  };
  const zip_entry* de = member("data");
  const zip_entry* le = member("labels");
  const std::string dsrc = fmt::format("{} (member '{}')", display(file), de->name);
  const std::string lsrc = fmt::format("{} (member '{}')", display(file), le->name);

  const std::vector<uint8_t> lbytes = z.read(*le);
  const npy_array<int64_t> labels = parse_npy<int64_t>(lbytes, lsrc);
  if (labels.shape.size() != 1 && !(labels.shape.size() == 2 && labels.shape[1] == 1))
    throw data_error(
        fmt::format("{}: labels must be a 1-D array, got shape ({})", lsrc, fmt::join(labels.shape, ", ")));

  // The header first (checked against the member's recorded size), then, with a limit, only
  // the rows needed: a limited read decompresses no more than it keeps.
  std::vector<uint8_t> head = z.read(*de, std::min<uint64_t>(de->usize, 256));  // numpy writes 128 bytes
  if (const uint64_t end = io_detail::npy_header_end(head, dsrc); end > head.size() && head.size() < de->usize)
    head = z.read(*de, std::min<uint64_t>(de->usize, end));
  const io_detail::npy_header h = io_detail::parse_npy_header(head, dsrc, de->usize);
  if (h.shape.size() != 2)
    throw data_error(
        fmt::format("{}: image data must be a 2-D array (N x 3*s*s), got shape ({})", dsrc, fmt::join(h.shape, ", ")));
  if (h.kind != 'u' || h.itemsize != 1)
    throw data_error(fmt::format("{}: image data must be uint8, got dtype '{}'", dsrc, h.descr));
  const long n = h.shape[0], cols = h.shape[1];
  const long side = std::lround(std::sqrt(static_cast<double>(cols) / 3.0));
  if (side <= 0 || side > 16384 || 3 * side * side != cols)
    throw data_error(fmt::format("{}: rows of {} values are not 3 x s x s images", dsrc, cols));
  if (labels.size() != n)
    throw data_error(fmt::format("{}: {} images but {} labels in {}", dsrc, n, labels.size(), lsrc));

  const long rows = max_samples >= 0 ? std::min(max_samples, n) : n;
  const std::vector<uint8_t> dbytes =
      z.read(*de, rows < n && !h.fortran ? h.data_offset + io_detail::npy_rows_bytes(h, rows) : UINT64_MAX);
  dataset d;
  d.name = "imagenet32";
  d.n_classes = 1000;
  d.shape = {3, static_cast<int>(side), static_cast<int>(side)};
  d.x.resize(cols, rows);
  io_detail::npy_convert<float>(h, dbytes, rows, d.x.data(), dsrc);
  d.x.array() /= 255.0f;
  d.y.resize(static_cast<size_t>(rows));
  for (long i = 0; i < rows; ++i) {
    const int64_t l = labels.data[static_cast<size_t>(i)];
    if (l < 1 || l > 1000)
      throw data_error(
          fmt::format("{}: label {} at index {} is out of range [1, 1000] (labels are 1-based)", lsrc, l, i));
    d.y[static_cast<size_t>(i)] = static_cast<int32_t>(l - 1);
  }
  return d;
}

}  // namespace eqprop
