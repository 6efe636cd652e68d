// .npy reader: format versions 1.0/2.0/3.0, simple numeric dtypes, C or Fortran order.
#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io_internal.hpp"

namespace eqprop {

namespace io_detail {

namespace {

// A tiny parser for the Python dict literal of a .npy header, e.g.
// {'descr': '<f8', 'fortran_order': False, 'shape': (4000, 40), }
class header_parser {
 public:
  header_parser(std::string_view text, const std::string& source) : s_(text), source_(source) {}

  void parse(npy_header& h) {
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (peek() == '[') fail("structured dtypes (a list in 'descr') are not supported; save a plain numeric array");
        h.descr = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        h.fortran = parse_bool();
        have_order = true;
      } else if (key == "shape") {
        h.shape = parse_shape();
        have_shape = true;
      } else {
        fail(fmt::format("unexpected key '{}' in the header", key));
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_ws();
      if (peek() != '}') fail("expected ',' or '}' in the header dictionary");
    }
    if (!have_descr || !have_order || !have_shape)
      fail("the header dictionary lacks one of 'descr', 'fortran_order', 'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw data_error(fmt::format("{}: bad .npy header: {} (header: {})", source_, what, s_.substr(0, 200)));
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) fail(fmt::format("expected '{}' at position {}", c, pos_));
    ++pos_;
  }
  std::string parse_string() {
    const char q = peek();
    if (q != '\'' && q != '"') fail(fmt::format("expected a quoted string at position {}", pos_));
    ++pos_;
    const size_t end = s_.find(q, pos_);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string out(s_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }
  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("'fortran_order' must be True or False");
  }
  std::vector<long> parse_shape() {
    expect('(');
    std::vector<long> shape;
    while (true) {
      skip_ws();
      if (peek() == ')') {
        ++pos_;
        break;
      }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("shape entries must be non-negative integers");
      unsigned long long v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        v = v * 10 + static_cast<unsigned>(s_[pos_++] - '0');
        if (v > (1ULL << 48)) fail("shape entry too large");
      }
      if (peek() == 'L') ++pos_;  // Python 2 long suffix
      shape.push_back(static_cast<long>(v));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_ws();
      if (peek() != ')') fail("expected ',' or ')' in the shape");
    }
    return shape;
  }

  std::string_view s_;
  const std::string& source_;
  size_t pos_ = 0;
};

float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (exp == 0) v = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31) v = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else v = std::ldexp(static_cast<float>(man | 0x400), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

struct half_tag {
  uint16_t bits;
};

template <class Src>
Src load_elem(const uint8_t* p, bool swap) {
  uint8_t buf[sizeof(Src)];
  std::memcpy(buf, p, sizeof(Src));
  if (swap) std::reverse(buf, buf + sizeof(Src));
  Src v;
  std::memcpy(&v, buf, sizeof(Src));
  return v;
}

template <class T, class Src>
T convert_value(Src v, size_t index, const std::string& source) {
  if constexpr (std::is_same_v<Src, half_tag>) {
    return convert_value<T, float>(half_to_float(v.bits), index, source);
  } else if constexpr (std::is_same_v<T, float> && std::is_same_v<Src, double>) {
    // Out-of-range doubles become +-inf (or +-FLT_MAX when they round to it) explicitly:
    // a plain cast of an out-of-range value is undefined behaviour.
    constexpr double fmax = std::numeric_limits<float>::max(), inf_from = 0x1.ffffffp127;
    constexpr float finf = std::numeric_limits<float>::infinity();
    if (v > fmax) return v >= inf_from ? finf : std::numeric_limits<float>::max();
    if (v < -fmax) return v <= -inf_from ? -finf : -std::numeric_limits<float>::max();
    return static_cast<T>(v);
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(v);
  } else if constexpr (std::is_floating_point_v<Src>) {
    if (!std::isfinite(v) || v != std::trunc(v))
      throw data_error(fmt::format("{}: element {} is {}, not an integer", source, index, static_cast<double>(v)));
    // 2^63 and 2^31 are exactly representable, so these comparisons are exact.
    const double d = static_cast<double>(v);
    if (d < static_cast<double>(std::numeric_limits<T>::min()) ||
        d >= -static_cast<double>(std::numeric_limits<T>::min()))
      throw data_error(
          fmt::format("{}: element {} = {} is out of range for a {}-bit integer", source, index, d, 8 * sizeof(T)));
    return static_cast<T>(v);
  } else {
    if (!std::in_range<T>(v))
      throw data_error(
          fmt::format("{}: element {} = {} is out of range for a {}-bit integer", source, index, v, 8 * sizeof(T)));
    return static_cast<T>(v);
  }
}

template <class T, class Src>
void convert_all(const npy_header& h, const uint8_t* data, long rows, T* out, const std::string& source) {
  const size_t isz = static_cast<size_t>(h.itemsize);
  const long row_size = npy_row_size(h);
  const size_t n = h.shape.empty() ? 1 : static_cast<size_t>(rows) * static_cast<size_t>(row_size);
  auto get = [&](size_t src) -> T {
    if constexpr (std::is_same_v<Src, half_tag>)
      return convert_value<T>(half_tag{load_elem<uint16_t>(data + src * isz, h.swap)}, src, source);
    else if constexpr (std::is_same_v<Src, bool>)
      return convert_value<T>(static_cast<uint8_t>(data[src] != 0), src, source);
    else return convert_value<T>(load_elem<Src>(data + src * isz, h.swap), src, source);
  };
  if (!h.fortran || h.shape.size() <= 1) {
    for (size_t k = 0; k < n; ++k) out[k] = get(k);
    return;
  }
  // Fortran order: walk the output in C order and map each multi-index to the
  // column-major source offset.
  const size_t nd = h.shape.size();
  std::vector<size_t> fstride(nd), idx(nd, 0), dims(nd);
  size_t st = 1;
  for (size_t d = 0; d < nd; ++d) {
    fstride[d] = st;
    st *= static_cast<size_t>(h.shape[d]);
    dims[d] = static_cast<size_t>(h.shape[d]);
  }
  dims[0] = static_cast<size_t>(rows);
  size_t src = 0;
  for (size_t k = 0; k < n; ++k) {
    out[k] = get(src);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < dims[d]) {
        src += fstride[d];
        break;
      }
      src -= (idx[d] - 1) * fstride[d];
      idx[d] = 0;
    }
  }
}

}  // namespace

size_t npy_header_end(std::span<const uint8_t> bytes, const std::string& source) {
  static constexpr uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (bytes.size() < 10 || !std::equal(magic, magic + 6, bytes.begin()))
    throw data_error(fmt::format("{}: not a .npy file (bad magic: expected \\x93NUMPY at the start)", source));
  const int major = bytes[6], minor = bytes[7];
  if (major == 1) return 10 + size_t(load_le16(bytes.data() + 8));
  if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw data_error(fmt::format("{}: truncated .npy file (no header length)", source));
    return 12 + size_t(load_le32(bytes.data() + 8));
  }
  throw data_error(
      fmt::format("{}: unsupported .npy format version {}.{} (supported: 1.0, 2.0, 3.0)", source, major, minor));
}

npy_header parse_npy_header(std::span<const uint8_t> bytes, const std::string& source, uint64_t total_size) {
  const size_t end = npy_header_end(bytes, source);
  const size_t start = bytes[6] == 1 ? 10 : 12, header_len = end - start;
  if (total_size < end)
    throw data_error(
        fmt::format("{}: truncated .npy file: the header needs {} bytes, the file has {}", source, end, total_size));
  if (bytes.size() < end)
    throw data_error(fmt::format("{}: truncated .npy header: {} of its {} bytes available", source, bytes.size(), end));
  npy_header h;
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + start), header_len);
  header_parser(text, source).parse(h);
  h.data_offset = start + header_len;

  // dtype: optional byte order, kind, item size.
  std::string_view d = h.descr;
  char order = '=';
  if (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) {
    order = d[0];
    d.remove_prefix(1);
  }
  int size = 0;
  bool size_ok = d.size() >= 2 && d.size() <= 3;  // item sizes have one digit (two would be too large anyway)
  for (size_t k = 1; size_ok && k < d.size(); ++k) {
    if (!std::isdigit(static_cast<unsigned char>(d[k]))) size_ok = false;
    else size = size * 10 + (d[k] - '0');
  }
  const char kind = d.empty() ? '?' : d[0];
  bool ok = size_ok;
  if (ok) {
    switch (kind) {
      case 'b':
        ok = size == 1;
        break;
      case 'i':
      case 'u':
        ok = size == 1 || size == 2 || size == 4 || size == 8;
        break;
      case 'f':
        ok = size == 2 || size == 4 || size == 8;
        break;
      default:
        ok = false;
    }
  }
  if (!ok)
    throw data_error(
        fmt::format("{}: unsupported dtype '{}' (supported: bool b1, integers i1..i8 and u1..u8, floats f2, f4, f8)",
                    source, h.descr));
  h.kind = kind;
  h.itemsize = size;
  constexpr bool little = std::endian::native == std::endian::little;
  h.swap = size > 1 && ((order == '<' && !little) || (order == '>' && little));

  // Element count: each dimension is below 2^48 (checked while parsing) and the product is
  // saturated at 2^64, so neither can overflow. The product of the non-zero dimensions is
  // bounded too, so that the sizes derived from the shape (a row's element count, an empty
  // array's columns) fit in a long wherever they are used.
  unsigned __int128 count = 1, nonzero = 1;
  const unsigned __int128 cap = static_cast<unsigned __int128>(1) << 64;
  for (long s : h.shape) {
    count = std::min(count * static_cast<unsigned __int128>(s), cap);
    if (s != 0) nonzero = std::min(nonzero * static_cast<unsigned __int128>(s), cap);
  }
  if (nonzero * static_cast<unsigned>(size) >= (static_cast<unsigned __int128>(1) << 62))
    throw data_error(fmt::format("{}: implausible .npy shape ({}) of {}: 2^62 bytes or more", source,
                                 fmt::join(h.shape, ", "), h.descr));
  const unsigned __int128 need = count * static_cast<unsigned>(size);
  const uint64_t have = total_size - h.data_offset;
  if (need > have)
    throw data_error(fmt::format("{}: truncated .npy file: shape ({}) of {} needs {} data bytes, the file has {}",
                                 source, fmt::join(h.shape, ", "), h.descr, static_cast<unsigned long long>(need),
                                 have));
  if (need < have)
    throw data_error(fmt::format("{}: .npy file has {} data bytes, {} more than shape ({}) of {} needs", source, have,
                                 have - static_cast<uint64_t>(need), fmt::join(h.shape, ", "), h.descr));
  h.count = static_cast<size_t>(count);
  return h;
}

template <class T>
void npy_convert(const npy_header& h, std::span<const uint8_t> bytes, long rows, T* out, const std::string& source) {
  const long total = h.shape.empty() ? 1 : h.shape[0];
  if (rows < 0 || rows > total) rows = total;
  const uint64_t need = h.fortran && h.shape.size() > 1 ? h.count * uint64_t(h.itemsize) : npy_rows_bytes(h, rows);
  if (bytes.size() < h.data_offset || bytes.size() - h.data_offset < need)
    throw data_error(fmt::format("{}: internal: {} data bytes needed, {} read", source, need,
                                 bytes.size() - std::min(bytes.size(), h.data_offset)));
  const uint8_t* data = bytes.data() + h.data_offset;
  switch (h.kind) {
    case 'b':
      convert_all<T, bool>(h, data, rows, out, source);
      return;
    case 'i':
      switch (h.itemsize) {
        case 1:
          convert_all<T, int8_t>(h, data, rows, out, source);
          return;
        case 2:
          convert_all<T, int16_t>(h, data, rows, out, source);
          return;
        case 4:
          convert_all<T, int32_t>(h, data, rows, out, source);
          return;
        default:
          convert_all<T, int64_t>(h, data, rows, out, source);
          return;
      }
    case 'u':
      switch (h.itemsize) {
        case 1:
          convert_all<T, uint8_t>(h, data, rows, out, source);
          return;
        case 2:
          convert_all<T, uint16_t>(h, data, rows, out, source);
          return;
        case 4:
          convert_all<T, uint32_t>(h, data, rows, out, source);
          return;
        default:
          convert_all<T, uint64_t>(h, data, rows, out, source);
          return;
      }
    default:
      switch (h.itemsize) {
        case 2:
          convert_all<T, half_tag>(h, data, rows, out, source);
          return;
        case 4:
          convert_all<T, float>(h, data, rows, out, source);
          return;
        default:
          convert_all<T, double>(h, data, rows, out, source);
          return;
      }
  }
}

template void npy_convert<float>(const npy_header&, std::span<const uint8_t>, long, float*, const std::string&);
template void npy_convert<double>(const npy_header&, std::span<const uint8_t>, long, double*, const std::string&);
template void npy_convert<int32_t>(const npy_header&, std::span<const uint8_t>, long, int32_t*, const std::string&);
template void npy_convert<int64_t>(const npy_header&, std::span<const uint8_t>, long, int64_t*, const std::string&);

}  // namespace io_detail

template <class T>
npy_array<T> parse_npy(std::span<const uint8_t> bytes, const std::string& source) {
  const io_detail::npy_header h = io_detail::parse_npy_header(bytes, source);
  npy_array<T> a;
  a.shape = h.shape;
  a.descr = h.descr;
  a.data.resize(h.count);
  io_detail::npy_convert<T>(h, bytes, -1, a.data.data(), source);
  return a;
}

namespace io_detail {

npy_file read_npy_file(const std::filesystem::path& file, long rows) {
  const input_file in(file);
  npy_file f;
  const std::vector<uint8_t> head = in.read(0, std::min<uint64_t>(in.size(), 12), "header");
  const size_t end = npy_header_end(head, in.name());
  f.bytes = in.read(0, std::min<uint64_t>(in.size(), end), "header");
  f.header = parse_npy_header(f.bytes, in.name(), in.size());
  // The header matched the file size, so this reads no more than the file holds.
  const uint64_t need = rows >= 0 && !(f.header.fortran && f.header.shape.size() > 1)
                            ? npy_rows_bytes(f.header, std::min(rows, f.header.shape.empty() ? 1 : f.header.shape[0]))
                            : in.size() - f.header.data_offset;
  const std::vector<uint8_t> data = in.read(f.header.data_offset, need, "array data");
  f.bytes.insert(f.bytes.end(), data.begin(), data.end());
  return f;
}

}  // namespace io_detail

template <class T>
npy_array<T> read_npy(const std::filesystem::path& file) {
  const io_detail::npy_file f = io_detail::read_npy_file(file, -1);
  npy_array<T> a;
  a.shape = f.header.shape;
  a.descr = f.header.descr;
  a.data.resize(f.header.count);
  io_detail::npy_convert<T>(f.header, f.bytes, -1, a.data.data(), io_detail::display(file));
  return a;
}

template npy_array<float> parse_npy<float>(std::span<const uint8_t>, const std::string&);
template npy_array<double> parse_npy<double>(std::span<const uint8_t>, const std::string&);
template npy_array<int32_t> parse_npy<int32_t>(std::span<const uint8_t>, const std::string&);
template npy_array<int64_t> parse_npy<int64_t>(std::span<const uint8_t>, const std::string&);
template npy_array<float> read_npy<float>(const std::filesystem::path&);
template npy_array<double> read_npy<double>(const std::filesystem::path&);
template npy_array<int32_t> read_npy<int32_t>(const std::filesystem::path&);
template npy_array<int64_t> read_npy<int64_t>(const std::filesystem::path&);

}  // namespace eqprop
