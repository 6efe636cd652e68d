// Checkpoint file format: writing (atomic, streamed) and fully validated reading.
#include "eqprop/train/checkpoint.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <zlib.h>

#include "eqprop/core/atomic_file.hpp"
#include "eqprop/train/config.hpp"

namespace eqprop {

namespace {

constexpr std::string_view kMagic = "EQPROPCK";
constexpr std::size_t kPrefixSize = 8 + 4 + 8;  // magic, version, header length
constexpr std::size_t kCrcSize = 4;
constexpr std::size_t kAlign = 8;

std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

template <class T>
void put_le(std::string& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
}

template <class T>
T get_le(const char* p) {
  uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return static_cast<T>(v);
}

/// CRC32 over data of any size (zlib's length argument is 32-bit).
uLong crc_update(uLong crc, const char* p, std::size_t n) {
  while (n > 0) {
    const std::size_t chunk = std::min<std::size_t>(n, std::size_t(1) << 30);
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(p), static_cast<uInt>(chunk));
    p += chunk;
    n -= chunk;
  }
  return crc;
}

bool parse_dtype(std::string_view s, checkpoint_dtype& out) {
  for (auto t : {checkpoint_dtype::f32, checkpoint_dtype::f64, checkpoint_dtype::i64, checkpoint_dtype::u8})
    if (dtype_name(t) == s) {
      out = t;
      return true;
    }
  return false;
}

/// Element count of a shape, or -1 when a dimension is negative or the product overflows.
int64_t checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
  }
  return n;
}

/// True when shape describes exactly `bytes` bytes of dtype t (no overflow anywhere).
bool shape_matches(const std::vector<int64_t>& shape, checkpoint_dtype t, uint64_t bytes) {
  const int64_t n = checked_numel(shape);
  uint64_t total = 0;
  return n >= 0 && !__builtin_mul_overflow(static_cast<uint64_t>(n), dtype_size(t), &total) && total == bytes;
}

}  // namespace

std::string_view dtype_name(checkpoint_dtype t) {
  switch (t) {
    case checkpoint_dtype::f32:
      return "f32";
    case checkpoint_dtype::f64:
      return "f64";
    case checkpoint_dtype::i64:
      return "i64";
    case checkpoint_dtype::u8:
      return "u8";
  }
  return "?";
}

std::size_t dtype_size(checkpoint_dtype t) {
  switch (t) {
    case checkpoint_dtype::f32:
      return 4;
    case checkpoint_dtype::f64:
      return 8;
    case checkpoint_dtype::i64:
      return 8;
    case checkpoint_dtype::u8:
      return 1;
  }
  return 0;
}

std::string checkpoint_array::shape_string() const {
  return fmt::format("{}[{}]", dtype_name(dtype), fmt::join(shape, ", "));
}

void checkpoint_array::check_dtype(checkpoint_dtype want) const {
  if (want != dtype)
    throw data_error(fmt::format("checkpoint array is {}, but was requested as {}", shape_string(), dtype_name(want)));
  if (!shape_matches(shape, dtype, bytes.size()))
    throw data_error(fmt::format("checkpoint array {} holds {} bytes, which does not match its shape", shape_string(),
                                 bytes.size()));
}

const checkpoint_array& checkpoint::array(const std::string& name) const {
  auto it = arrays.find(name);
  if (it == arrays.end()) {
    std::vector<std::string> names;
    for (const auto& [n, a] : arrays) names.push_back(n);
    throw data_error(fmt::format("checkpoint has no array `{}` (it has: {})", name, fmt::join(names, ", ")));
  }
  return it->second;
}

void save_checkpoint(const std::filesystem::path& path, const checkpoint& ck) {
  // Array table, with offsets relative to the data section.
  nlohmann::json table = nlohmann::json::array();
  std::size_t offset = 0;
  for (const auto& [name, a] : ck.arrays) {
    if (!shape_matches(a.shape, a.dtype, a.bytes.size()))
      throw shape_error(
          fmt::format("save_checkpoint `{}`: array `{}` ({}) holds {} bytes, which does not "
                      "match its shape",
                      path.string(), name, a.shape_string(), a.bytes.size()));
    table.push_back({{"name", name},
                     {"dtype", dtype_name(a.dtype)},
                     {"shape", a.shape},
                     {"offset", offset},
                     {"length", a.bytes.size()}});
    offset = align_up(offset + a.bytes.size());
  }
  const std::size_t data_length = offset;
  nlohmann::json header = {{"meta", ck.meta}, {"arrays", std::move(table)}, {"data_length", data_length}};
  std::string header_text = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // Pad with spaces (valid JSON whitespace) so the data section is 8-byte aligned.
  header_text.resize(align_up(kPrefixSize + header_text.size()) - kPrefixSize, ' ');

  std::string prefix(kMagic);
  put_le<uint32_t>(prefix, checkpoint_format_version);
  put_le<uint64_t>(prefix, header_text.size());

  write_file_atomic(path, [&](const atomic_chunk_writer& write) {
    uLong crc = ::crc32(0L, Z_NULL, 0);
    auto emit = [&](const char* p, std::size_t n) {
      crc = crc_update(crc, p, n);
      write(std::string_view(p, n));
    };
    static constexpr std::array<char, kAlign> zeros{};
    emit(prefix.data(), prefix.size());
    emit(header_text.data(), header_text.size());
    for (const auto& [name, a] : ck.arrays) {
      emit(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size());
      emit(zeros.data(), align_up(a.bytes.size()) - a.bytes.size());
    }
    std::string tail;
    put_le<uint32_t>(tail, static_cast<uint32_t>(crc));
    write(tail);
  });
}

checkpoint load_checkpoint(const std::filesystem::path& path) {
  const std::string file = read_file(path);
  auto fail = [&](const std::string& what) -> data_error {
    return data_error(fmt::format("checkpoint `{}`: {}", path.string(), what));
  };
  const std::size_t n_magic = std::min(file.size(), kMagic.size());
  if (std::string_view(file).substr(0, n_magic) != kMagic.substr(0, n_magic))
    throw fail("not an eqprop checkpoint (bad magic bytes)");
  if (file.size() < kPrefixSize + kCrcSize) throw fail(fmt::format("file is truncated ({} bytes)", file.size()));
  const auto version = get_le<uint32_t>(file.data() + 8);
  if (version != checkpoint_format_version)
    throw fail(
        fmt::format("unsupported format version {} (this build reads version {})", version, checkpoint_format_version));
  const auto header_length = get_le<uint64_t>(file.data() + 12);
  if (header_length > file.size() - kPrefixSize - kCrcSize)
    throw fail(fmt::format("file is truncated ({} bytes; the header alone needs {})", file.size(),
                           kPrefixSize + header_length + kCrcSize));
  const std::size_t data_start = kPrefixSize + static_cast<std::size_t>(header_length);
  const std::string_view header_text(file.data() + kPrefixSize, static_cast<std::size_t>(header_length));

  // A header that parses lets a truncated file be reported as such rather than as a CRC error.
  // nlohmann's parser is iterative, but copying, printing and converting a value recurse:
  // the callback refuses a header nested deeper than a config may be (plus the header's own
  // two levels) while parsing, before any deep value exists.
  nlohmann::json header;
  bool header_ok = true;
  struct too_deep {};
  constexpr int max_depth = config_max_depth + 2;
  try {
    header = nlohmann::json::parse(header_text, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > max_depth) throw too_deep{};
      return true;
    });
  } catch (const too_deep&) {
    throw fail(fmt::format("the header JSON nests more than {} levels deep", max_depth));
  } catch (const nlohmann::json::exception&) {
    header_ok = false;
  }
  std::optional<uint64_t> data_length;
  if (header_ok && header.is_object() && header.contains("data_length") && header["data_length"].is_number_unsigned())
    data_length = header["data_length"].get<uint64_t>();
  if (data_length && *data_length > file.size() - data_start - kCrcSize)
    throw fail(
        fmt::format("file is truncated ({} bytes, expected {})", file.size(), data_start + *data_length + kCrcSize));

  const std::size_t body = file.size() - kCrcSize;
  const auto stored_crc = get_le<uint32_t>(file.data() + body);
  const auto actual_crc = static_cast<uint32_t>(crc_update(::crc32(0L, Z_NULL, 0), file.data(), body));
  if (stored_crc != actual_crc)
    throw fail(
        fmt::format("CRC mismatch (stored {:08x}, computed {:08x}): the file is corrupt", stored_crc, actual_crc));

  // The CRC matched, so anything wrong from here on was written that way.
  if (!header_ok || !header.is_object()) throw fail("the header is not a JSON object");
  if (!data_length) throw fail("the header has no valid `data_length`");
  if (data_start % kAlign != 0) throw fail("the data section is not 8-byte aligned");
  if (data_start + *data_length + kCrcSize != file.size())
    throw fail(
        fmt::format("file has {} bytes, the header describes {}", file.size(), data_start + *data_length + kCrcSize));
  if (!header.contains("arrays") || !header["arrays"].is_array()) throw fail("the header has no `arrays` table");

  checkpoint ck;
  ck.meta = header.contains("meta") ? header["meta"] : nlohmann::json::object();
  for (const auto& e : header["arrays"]) {
    try {
      const std::string name = e.at("name").get<std::string>();
      checkpoint_array a;
      if (!parse_dtype(e.at("dtype").get<std::string>(), a.dtype))
        throw fail(fmt::format("array `{}` has unknown dtype `{}`", name, e.at("dtype").dump()));
      a.shape = e.at("shape").get<std::vector<int64_t>>();
      const auto off = e.at("offset").get<uint64_t>();
      const auto len = e.at("length").get<uint64_t>();
      if (!shape_matches(a.shape, a.dtype, len))
        throw fail(fmt::format("array `{}` has length {}, which does not match {}", name, len, a.shape_string()));
      if (off % kAlign != 0) throw fail(fmt::format("array `{}` is not 8-byte aligned", name));
      if (off > *data_length || len > *data_length - off)
        throw fail(fmt::format("array `{}` extends past the data section", name));
      const auto* p = reinterpret_cast<const std::byte*>(file.data() + data_start + off);
      a.bytes.assign(p, p + len);
      if (!ck.arrays.emplace(name, std::move(a)).second) throw fail(fmt::format("duplicate array `{}`", name));
    } catch (const nlohmann::json::exception& ex) {
      throw fail(fmt::format("malformed array table entry {}: {}", e.dump(), ex.what()));
    }
  }
  return ck;
}

std::string rng_state_to_string(const std::mt19937_64& rng) {
  std::ostringstream os;
  os << rng;
  return os.str();
}

void rng_state_from_string(std::mt19937_64& rng, std::string_view state) {
  std::istringstream is{std::string(state)};
  std::mt19937_64 restored;
  is >> restored;
  if (is.fail()) throw data_error("malformed random generator state in checkpoint");
  is >> std::ws;
  if (!is.eof()) throw data_error("malformed random generator state in checkpoint (trailing text)");
  rng = restored;
}

}  // namespace eqprop
