// Hostile inputs for every file parser: nesting depth, decompression bombs, oversized
// header values, reads bounded by limit_*, and FIFOs/devices where a regular file is
// expected. Each input is generated here and small; each rejection must be quick.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "eqprop/io/dataset.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/config.hpp"

#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
using namespace eqprop;
using bytes = std::vector<uint8_t>;

fs::path scratch_dir(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / ("eqprop_trust_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_bytes(const fs::path& p, const bytes& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(out.good()) << p;
}

using eqprop::test::append;
using eqprop::test::error_of;
using eqprop::test::put_be32;
using eqprop::test::put_le;

#define EXPECT_HAS(msg, frag) EXPECT_NE((msg).find(frag), std::string::npos) << "'" << (frag) << "' not in: " << (msg)

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A field of /proc/self/status in KiB (VmRSS: resident now, VmHWM: peak), -1 if absent.
long status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return -1;
}

// Growth of the peak resident set (KiB) while f runs (its exceptions swallowed): the peak
// is reset first through /proc/self/clear_refs, so earlier tests do not mask it. -1 where
// the kernel does not allow the reset.
long peak_rss_growth_kib(const std::function<void()>& f) {
  {
    std::ofstream reset("/proc/self/clear_refs");
    reset << "5";
    if (!reset.good()) return -1;
  }
  const long before = status_kib("VmRSS");
  if (before < 0 || status_kib("VmHWM") > before + 1024) return -1;  // the reset did not happen
  try {
    f();
  } catch (...) {
  }
  return status_kib("VmHWM") - before;
}

// ---------------------------------------------------------------- nesting depth

config one_key_config() {
  static const config_schema s = [] {
    config_schema c;
    c.add("v", std::vector<int64_t>{1}, "an array");
    c.add("t.x", 0.5, "a float in a table");
    return c;
  }();
  return config(s);
}

TEST(TrustParsers, DeepTomlRejectedBeforeParsing) {
  const int n = 8900;  // about the 17.8 KB document of nested arrays that overflowed the stack
  std::string dotted, header = "[";
  for (int k = 0; k < n; ++k) dotted += "a.", header += "a.";
  std::string inline_tables = "v = ";
  for (int k = 0; k < n; ++k) inline_tables += "{a=";
  inline_tables += "1" + std::string(n, '}') + "\n";
  const std::vector<std::pair<const char*, std::string>> docs = {
      {"arrays", "v = " + std::string(n, '[') + std::string(n, ']') + "\n"},
      {"dotted key", dotted + "b = 1\n"},
      {"table header", header + "b]\nx = 1\n"},
      {"array-of-tables header", "[" + header + "b]]\nx = 1\n"},
      {"inline tables", inline_tables},
      {"dotted key, 100k parts",
       [] {
         std::string s;
         for (int k = 0; k < 100000; ++k) s += "a.";
         return s + "b = 1\n";
       }()},
  };
  for (const auto& [what, doc] : docs) {
    SCOPED_TRACE(what);
    config c = one_key_config();
    const std::string msg = error_of<config_error>([&] { c.load_toml_string(doc, "deep.toml"); });
    EXPECT_HAS(msg, "deep.toml");
    EXPECT_HAS(msg, "the limit is 64");
  }
  // Ordinary nesting, comments and strings full of brackets and dots are not counted.
  config c = one_key_config();
  c.load_toml_string("# [[[[ a.b.c.d.e.f.g.h\nv = [1, 2] # {{{{\n[t]\nx = 0.25\n", "ok.toml");
  EXPECT_EQ(c.get<double>("t.x"), 0.25);
  const std::string brackets = "\"" + std::string(200, '[') + "\"";
  config s = [] {
    config_schema sc;
    sc.add("name", std::string("a"), "a string");
    return config(sc);
  }();
  s.load_toml_string("name = " + brackets + "\n", "str.toml");
  EXPECT_EQ(s.get<std::string>("name").size(), 200u);
  // Just inside the limit is accepted by the depth check (and then fails on its type only).
  const std::string msg = error_of<config_error>([&] {
    one_key_config().load_toml_string("v = " + std::string(60, '[') + std::string(60, ']') + "\n", "ok.toml");
  });
  EXPECT_EQ(msg.find("limit is"), std::string::npos) << msg;
}

// An override value (`--set key=value`, Python overrides) is bounded the same way, and its
// message quotes only the start of a huge assignment.
TEST(TrustParsers, DeepOverrideValueRejectedBeforeParsing) {
  for (const std::string& value : {std::string(20000, '[') + std::string(20000, ']'), [] {
                                     std::string v;
                                     for (int k = 0; k < 20000; ++k) v += "{a=";
                                     return v + "1" + std::string(20000, '}');
                                   }()}) {
    config c = one_key_config();
    const std::string msg = error_of<config_error>([&] { c.set_override("v=" + value); });
    EXPECT_HAS(msg, "the limit is 64");
    EXPECT_LT(msg.size(), 400u) << msg.substr(0, 400);
    EXPECT_EQ(c.get<std::vector<int64_t>>("v"), std::vector<int64_t>{1});
  }
}

// A checkpoint file with the given header text (valid prefix and CRC).
bytes checkpoint_with_header(std::string header) {
  while ((20 + header.size()) % 8 != 0) header += ' ';
  bytes b;
  append(b, std::string("EQPROPCK"));
  put_le(b, 1, 4);
  put_le(b, header.size(), 8);
  append(b, header);
  put_le(b, crc32(0, b.data(), static_cast<uInt>(b.size())), 4);
  return b;
}

TEST(TrustParsers, DeepCheckpointHeaderRejected) {
  const fs::path dir = scratch_dir("deep_ck");
  write_bytes(dir / "deep.eqck",
              checkpoint_with_header(R"({"meta": {"config": )" + std::string(8000, '[') + std::string(8000, ']') +
                                     R"(}, "arrays": [], "data_length": 0})"));
  const std::string msg = error_of<data_error>([&] { load_checkpoint(dir / "deep.eqck"); });
  EXPECT_HAS(msg, "deep.eqck");
  EXPECT_HAS(msg, "nests more than 66 levels");
  // A config of ordinary depth in the same framing loads.
  write_bytes(dir / "ok.eqck", checkpoint_with_header(R"({"meta": {"config": {"t": {"x": 0.125}}}, "arrays": [], )"
                                                      R"("data_length": 0})"));
  const checkpoint ck = load_checkpoint(dir / "ok.eqck");
  config c = one_key_config();
  c.load_json(ck.meta.at("config"), "ok.eqck");
  EXPECT_EQ(c.get<double>("t.x"), 0.125);
}

TEST(TrustParsers, CheckpointShapeProductOverflowRejected) {
  // 2^61 f64 elements are 2^64 bytes: a product that wraps to the recorded length 0.
  const fs::path dir = scratch_dir("ck_overflow");
  write_bytes(
      dir / "wrap.eqck",
      checkpoint_with_header(R"({"meta": {}, "arrays": [{"name": "a", "dtype": "f64", "shape": [2305843009213693952], )"
                             R"("offset": 0, "length": 0}], "data_length": 0})"));
  const std::string msg = error_of<data_error>([&] { load_checkpoint(dir / "wrap.eqck"); });
  EXPECT_HAS(msg, "wrap.eqck");
  EXPECT_HAS(msg, "does not match");
}

// ---------------------------------------------------------------- decompression bombs

bytes idx_header(uint32_t n, uint32_t rows, uint32_t cols) {
  bytes b;
  put_be32(b, 2051);
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  return b;
}

TEST(TrustParsers, GzipBombStopsAtTheSizeTheHeaderAnnounces) {
  // One 28x28 image announced (800 bytes), then 512 gzip members of 1 MiB of zeros each:
  // a 0.5 MB file that inflates to 512 MiB.
  const fs::path dir = scratch_dir("bomb");
  bytes first = idx_header(1, 28, 28);
  first.resize(800, 7);
  bytes file = eqprop::test::deflate_bytes(first, 15 + 16);
  const bytes zeros_member = eqprop::test::deflate_bytes(bytes(size_t(1) << 20, 0), 15 + 16, 9);
  for (int k = 0; k < 512; ++k) append(file, zeros_member);
  ASSERT_LT(file.size(), 1u << 20);
  write_bytes(dir / "bomb-images.gz", file);

  std::string msg;
  const double s = seconds_of([&] { msg = error_of<data_error>([&] { read_idx_images(dir / "bomb-images.gz"); }); });
  EXPECT_HAS(msg, "bomb-images.gz");
  EXPECT_HAS(msg, "more than 800 bytes");
  EXPECT_HAS(msg, "1 images of 28x28");
  EXPECT_LT(s, 1.0);
  // Memory: reading the bomb raises the peak resident set by far less than the 512 MiB it
  // would inflate to (the compressed file itself is 0.5 MB).
  const long growth = peak_rss_growth_kib([&] { read_idx_images(dir / "bomb-images.gz"); });
  if (growth >= 0) {
    EXPECT_LT(growth, 32 * 1024) << "peak RSS grew by " << growth << " KiB";
    // Control: the measurement does see 64 MiB being touched.
    const long control = peak_rss_growth_kib([] {
      std::vector<char> v(size_t(64) << 20, 1);
      EXPECT_EQ(v[v.size() / 2], 1);
    });
    EXPECT_GT(control, 48 * 1024);
  }

  // A header that announces more than the compressed size can hold is refused before inflating.
  write_bytes(dir / "claims.gz", eqprop::test::deflate_bytes(idx_header(2000000000, 28, 28), 15 + 16));
  msg = error_of<data_error>([&] { read_idx_images(dir / "claims.gz"); });
  EXPECT_HAS(msg, "cannot expand to more than");
  // A raw IDX file whose header announces 2^31 - 1 images is refused from its size alone.
  write_bytes(dir / "claims-raw", idx_header(0x7fffffff, 65536, 65536));
  msg = error_of<data_error>([&] { read_idx_images(dir / "claims-raw"); });
  EXPECT_HAS(msg, "truncated");
}

// ---------------------------------------------------------------- oversized npy headers

bytes npy_with_header(const std::string& dict, const bytes& data = {}) {
  bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  std::string h = dict;
  while ((10 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  put_le(b, h.size(), 2);
  append(b, h);
  append(b, data);
  return b;
}

TEST(TrustParsers, OversizedNpyHeaderValuesRejected) {
  const fs::path dir = scratch_dir("npy_huge");
  struct case_t {
    const char* file;
    std::string dict;
    const char* expect;
  };
  const std::vector<case_t> cases = {
      {"shape.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (281474976710655, 281474976710655), }",
       "implausible"},
      {"rows.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 281474976710655, 281474976710655), }",
       "implausible"},
      {"count.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }", "truncated"},
      {"dtype.npy", "{'descr': '<f99999999999', 'fortran_order': False, 'shape': (2,), }", "unsupported dtype"},
      {"dtype2.npy", "{'descr': '<i2147483648', 'fortran_order': False, 'shape': (2,), }", "unsupported dtype"},
      {"dim.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }", "too large"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    write_bytes(dir / c.file, npy_with_header(c.dict, bytes(16, 0)));
    const std::string msg = error_of<data_error>([&] { read_npy<float>(dir / c.file); });
    EXPECT_HAS(msg, c.file);
    EXPECT_HAS(msg, c.expect);
  }
  // The data set loader checks the header against the file before reading samples.
  fs::create_directories(dir / "set");
  write_bytes(dir / "set" / "x_train.npy", npy_with_header(cases[1].dict));
  for (const char* f : {"y_train.npy", "x_test.npy", "y_test.npy"})
    write_bytes(dir / "set" / f, npy_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (0,), }"));
  const std::string msg = error_of<data_error>([&] { load_dataset("npy", dir / "set"); });
  EXPECT_HAS(msg, "x_train.npy");
}

// ---------------------------------------------------------------- reads bounded by limits

struct zip_part {
  std::string name;
  bytes data;
};
// A zip archive whose members are deflated as stored blocks (level 0): bytes changed inside
// the data leave the stream structure intact, so only the CRC can notice them.
bytes stored_deflate_zip(const std::vector<zip_part>& parts, size_t corrupt_from_end = 0) {
  bytes out, central;
  for (size_t i = 0; i < parts.size(); ++i) {
    const auto& m = parts[i];
    bytes payload = eqprop::test::deflate_bytes(m.data, -15, 0);
    const uint32_t crc = crc32(0, m.data.data(), static_cast<uInt>(m.data.size()));
    if (i == 0 && corrupt_from_end > 0) payload[payload.size() - corrupt_from_end] ^= 0x5a;
    const size_t offset = out.size();
    put_le(out, 0x04034b50, 4);
    put_le(out, 20, 2);
    put_le(out, 0, 2);
    put_le(out, 8, 2);
    put_le(out, 0, 4);
    put_le(out, crc, 4);
    put_le(out, payload.size(), 4);
    put_le(out, m.data.size(), 4);
    put_le(out, m.name.size(), 2);
    put_le(out, 0, 2);
    append(out, m.name);
    append(out, payload);
    put_le(central, 0x02014b50, 4);
    put_le(central, 20, 2);
    put_le(central, 20, 2);
    put_le(central, 0, 2);
    put_le(central, 8, 2);
    put_le(central, 0, 4);
    put_le(central, crc, 4);
    put_le(central, payload.size(), 4);
    put_le(central, m.data.size(), 4);
    put_le(central, m.name.size(), 2);
    put_le(central, 0, 8);  // extra and comment lengths, disk, internal attributes
    put_le(central, 0, 4);  // external attributes
    put_le(central, offset, 4);
    append(central, m.name);
  }
  const size_t cd_offset = out.size();
  append(out, central);
  put_le(out, 0x06054b50, 4);
  put_le(out, 0, 4);
  put_le(out, parts.size(), 2);
  put_le(out, parts.size(), 2);
  put_le(out, central.size(), 4);
  put_le(out, cd_offset, 4);
  put_le(out, 0, 2);
  return out;
}

TEST(TrustParsers, NpzLimitDecompressesOnlyTheRowsItKeeps) {
  // 300 images of 3x2x2; the last stored bytes of data.npy are changed. A full read must
  // notice (CRC); a read limited to 2 samples decompresses only the header and 24 bytes, so
  // it never reaches them and succeeds with the right values.
  const fs::path dir = scratch_dir("npz_limit");
  const long n = 300, cols = 12;
  bytes pixels(static_cast<size_t>(n * cols));
  for (size_t k = 0; k < pixels.size(); ++k) pixels[k] = static_cast<uint8_t>(k * 7);
  const bytes data_npy = npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (300, 12), }", pixels);
  bytes labels;
  for (long i = 0; i < n; ++i) put_le(labels, static_cast<uint64_t>(1 + i % 1000), 8);
  const bytes labels_npy = npy_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (300,), }", labels);
  write_bytes(dir / "batch.npz", stored_deflate_zip({{"data.npy", data_npy}, {"labels.npy", labels_npy}}, 10));

  const std::string msg = error_of<data_error>([&] { read_imagenet32_npz(dir / "batch.npz"); });
  EXPECT_HAS(msg, "CRC mismatch");
  const dataset two = read_imagenet32_npz(dir / "batch.npz", 2);
  ASSERT_EQ(two.size(), 2);
  EXPECT_EQ(two.y, (std::vector<int32_t>{0, 1}));
  EXPECT_FLOAT_EQ(two.x(5, 1), static_cast<float>(static_cast<uint8_t>((12 + 5) * 7)) / 255.0f);
}

TEST(TrustParsers, CifarGzipLimitDecompressesOnlyTheRecordsItKeeps) {
  // Two CIFAR-10 records, gzip-compressed with stored blocks, the second record's bytes
  // (and the CRC) changed: reading one record succeeds, reading all fails.
  const fs::path dir = scratch_dir("cifar_limit");
  bytes recs;
  for (int r = 0; r < 2; ++r) {
    recs.push_back(static_cast<uint8_t>(r + 3));
    for (int k = 0; k < 3072; ++k) recs.push_back(static_cast<uint8_t>(k + r));
  }
  bytes gz = eqprop::test::deflate_bytes(recs, 15 + 16, 0);
  gz[gz.size() - 100] ^= 0x5a;
  write_bytes(dir / "data_batch_1.bin", gz);
  const std::string msg =
      error_of<data_error>([&] { read_cifar_binary(dir / "data_batch_1.bin", cifar_variant::cifar10); });
  EXPECT_HAS(msg, "data_batch_1.bin");
  const dataset one = read_cifar_binary(dir / "data_batch_1.bin", cifar_variant::cifar10, 1);
  ASSERT_EQ(one.size(), 1);
  EXPECT_EQ(one.y[0], 3);
  EXPECT_FLOAT_EQ(one.x(100, 0), 100.0f / 255.0f);
}

// ---------------------------------------------------------------- FIFOs and devices

// Runs f on another thread; fails the test (and unblocks a reader stuck opening the FIFO)
// if it has not finished within 5 s. Returns f's error message.
std::string error_within_5s(const fs::path& fifo, const std::function<void()>& f) {
  auto fut = std::async(std::launch::async, [f] {
    try {
      f();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  });
  if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "reading " << fifo << " blocked";
    const int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);  // lets a blocked open/read see EOF
    if (w >= 0) ::close(w);
  }
  return fut.get();
}

TEST(TrustParsers, FifoOrDeviceGivenAsAFileRejectedWithoutBlocking) {
  const fs::path dir = scratch_dir("fifo");
  const fs::path fifo = dir / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::vector<std::pair<const char*, std::function<void()>>> readers = {
      {"idx", [&] { read_idx_images(fifo); }},
      {"npy", [&] { read_npy<float>(fifo); }},
      {"npz", [&] { read_imagenet32_npz(fifo); }},
      {"cifar", [&] { read_cifar_binary(fifo, cifar_variant::cifar10); }},
      {"checkpoint", [&] { load_checkpoint(fifo); }},
      {"toml", [&] { one_key_config().load_toml_file(fifo); }},
  };
  for (const auto& [what, f] : readers) {
    SCOPED_TRACE(what);
    const std::string msg = error_within_5s(fifo, f);
    EXPECT_HAS(msg, "pipe");
    EXPECT_TRUE(msg.find("FIFO") != std::string::npos || msg.find("not a regular file") != std::string::npos) << msg;
  }
  // Through the data set loader: a FIFO in place of an MNIST file is named as such.
  const fs::path mnist = dir / "data" / "mnist";
  fs::create_directories(mnist);
  for (const char* f :
       {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    ASSERT_EQ(::mkfifo((mnist / f).c_str(), 0600), 0);
  const std::string loader =
      error_within_5s(mnist / "train-images-idx3-ubyte", [&] { load_dataset("mnist", dir / "data"); });
  EXPECT_HAS(loader, "train-images-idx3-ubyte");
  EXPECT_HAS(loader, "is a FIFO");
  // /dev/zero would never end; it is refused for what it is.
  const std::string msg = error_within_5s(fifo, [] { read_cifar_binary("/dev/zero", cifar_variant::cifar10); });
  EXPECT_HAS(msg, "character device");
}

}  // namespace
