// Tests for the dataset layer: every reader is fed small files in the real formats,
// written here, and the real offline data are checked when present.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "eqprop/io/dataset.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/trainer.hpp"
#include "eqprop/train/vf_experiment.hpp"

#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace eqprop;

namespace {

using bytes_t = std::vector<uint8_t>;

fs::path scratch_root() { return fs::path(::testing::TempDir()) / ("eqprop_datasets_" + std::to_string(::getpid())); }

// Removes this process's scratch files after the last test.
class scratch_cleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(scratch_root(), ec);
  }
};
[[maybe_unused]] ::testing::Environment* const scratch_env = ::testing::AddGlobalTestEnvironment(new scratch_cleanup);

// A fresh, empty scratch directory for one test.
fs::path scratch(const std::string& name) {
  const fs::path dir = scratch_root() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_file(const fs::path& p, const bytes_t& b) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

using eqprop::test::append;
using eqprop::test::put_be32;
using eqprop::test::put_le;

bytes_t gzip(const bytes_t& in) { return eqprop::test::deflate_bytes(in, 15 + 16); }

uint32_t crc_of(const bytes_t& b) { return static_cast<uint32_t>(crc32(0, b.data(), static_cast<uInt>(b.size()))); }

bytes_t idx_images_bytes(uint32_t n, uint32_t rows, uint32_t cols, const std::function<uint8_t(size_t)>& pixel) {
  bytes_t b;
  put_be32(b, 2051);
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  for (size_t k = 0; k < size_t(n) * rows * cols; ++k) b.push_back(pixel(k));
  return b;
}
bytes_t idx_labels_bytes(const std::vector<uint8_t>& labels) {
  bytes_t b;
  put_be32(b, 2049);
  put_be32(b, static_cast<uint32_t>(labels.size()));
  append(b, bytes_t(labels.begin(), labels.end()));
  return b;
}

// A .npy file with the given header fields and raw data bytes.
bytes_t npy_bytes(const std::string& descr, const std::vector<long>& shape, bool fortran, const bytes_t& data,
                  int major = 1) {
  std::string dims;
  for (long s : shape) dims += std::to_string(s) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  if (shape.size() == 1) dims.resize(dims.size() - 1);
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': (" + dims + "), }";
  const size_t pre = major == 1 ? 10 : 12;
  while ((pre + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  bytes_t b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  put_le(b, header.size(), major == 1 ? 2 : 4);
  append(b, header);
  append(b, data);
  return b;
}
template <class T>
bytes_t raw_of(const std::vector<T>& v, bool big_endian = false) {
  bytes_t b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  if (big_endian)
    for (size_t k = 0; k < v.size(); ++k) std::reverse(b.begin() + k * sizeof(T), b.begin() + (k + 1) * sizeof(T));
  return b;
}

struct zip_member {
  std::string name;
  bytes_t data;
  bool deflate;
};
// A real zip archive. zip64: every size/offset goes through zip64 extra fields and a
// zip64 end record (as Python's zipfile does with force_zip64).
bytes_t zip_bytes(const std::vector<zip_member>& members, bool zip64 = false) {
  bytes_t out, central;
  for (const auto& m : members) {
    const bytes_t payload = m.deflate ? eqprop::test::deflate_bytes(m.data, -15) : m.data;
    const uint32_t crc = crc_of(m.data);
    const uint64_t offset = out.size();
    bytes_t local_extra;
    if (zip64) {
      put_le(local_extra, 1, 2);
      put_le(local_extra, 16, 2);
      put_le(local_extra, m.data.size(), 8);
      put_le(local_extra, payload.size(), 8);
    }
    put_le(out, 0x04034b50, 4);
    put_le(out, zip64 ? 45 : 20, 2);
    put_le(out, 0, 2);
    put_le(out, m.deflate ? 8 : 0, 2);
    put_le(out, 0, 4);  // time, date
    put_le(out, crc, 4);
    put_le(out, zip64 ? 0xFFFFFFFFu : payload.size(), 4);
    put_le(out, zip64 ? 0xFFFFFFFFu : m.data.size(), 4);
    put_le(out, m.name.size(), 2);
    put_le(out, local_extra.size(), 2);
    append(out, m.name);
    append(out, local_extra);
    append(out, payload);

    bytes_t cextra;
    if (zip64) {
      put_le(cextra, 1, 2);
      put_le(cextra, 24, 2);
      put_le(cextra, m.data.size(), 8);
      put_le(cextra, payload.size(), 8);
      put_le(cextra, offset, 8);
    }
    put_le(central, 0x02014b50, 4);
    put_le(central, zip64 ? 45 : 20, 2);
    put_le(central, zip64 ? 45 : 20, 2);
    put_le(central, 0, 2);
    put_le(central, m.deflate ? 8 : 0, 2);
    put_le(central, 0, 4);
    put_le(central, crc, 4);
    put_le(central, zip64 ? 0xFFFFFFFFu : payload.size(), 4);
    put_le(central, zip64 ? 0xFFFFFFFFu : m.data.size(), 4);
    put_le(central, m.name.size(), 2);
    put_le(central, cextra.size(), 2);
    put_le(central, 0, 2);  // comment
    put_le(central, 0, 2);  // disk
    put_le(central, 0, 2);  // internal attributes
    put_le(central, 0, 4);  // external attributes
    put_le(central, zip64 ? 0xFFFFFFFFu : offset, 4);
    append(central, m.name);
    append(central, cextra);
  }
  const uint64_t cd_offset = out.size();
  append(out, central);
  if (zip64) {
    const uint64_t end64 = out.size();
    put_le(out, 0x06064b50, 4);
    put_le(out, 44, 8);
    put_le(out, 45, 2);
    put_le(out, 45, 2);
    put_le(out, 0, 4);
    put_le(out, 0, 4);
    put_le(out, members.size(), 8);
    put_le(out, members.size(), 8);
    put_le(out, central.size(), 8);
    put_le(out, cd_offset, 8);
    put_le(out, 0x07064b50, 4);
    put_le(out, 0, 4);
    put_le(out, end64, 8);
    put_le(out, 1, 4);
  }
  put_le(out, 0x06054b50, 4);
  put_le(out, 0, 2);
  put_le(out, 0, 2);
  put_le(out, zip64 ? 0xFFFF : members.size(), 2);
  put_le(out, zip64 ? 0xFFFF : members.size(), 2);
  put_le(out, zip64 ? 0xFFFFFFFFu : central.size(), 4);
  put_le(out, zip64 ? 0xFFFFFFFFu : cd_offset, 4);
  put_le(out, 0, 2);
  return out;
}

// Runs f, expects a data_error whose message contains every fragment; returns the message.
template <class E = data_error, class F>
std::string expect_error(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments)
      EXPECT_NE(msg.find(frag), std::string::npos) << "'" << frag << "' not in: " << msg;
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "no exception thrown";
  return {};
}

uint8_t test_pixel(size_t k) { return static_cast<uint8_t>((k * 37 + 11) % 256); }

fs::path shared_data() { return fs::path(EQPROP_SOURCE_DIR "/../shared/data"); }

}  // namespace

// ------------------------------------------------------------------------- IDX

TEST(IdxTest, ReadsRawImagesAndLabels) {
  const fs::path dir = scratch("idx_raw");
  write_file(dir / "img", idx_images_bytes(3, 2, 4, test_pixel));
  write_file(dir / "lbl", idx_labels_bytes({7, 0, 9}));
  const idx_images im = read_idx_images(dir / "img");
  EXPECT_EQ(im.count, 3);
  EXPECT_EQ(im.rows, 2);
  EXPECT_EQ(im.cols, 4);
  ASSERT_EQ(im.pixels.size(), 24u);
  for (size_t k = 0; k < 24; ++k) EXPECT_EQ(im.pixels[k], test_pixel(k));
  EXPECT_EQ(read_idx_labels(dir / "lbl", 10), (std::vector<int32_t>{7, 0, 9}));
}

TEST(IdxTest, ReadsGzipDetectedByMagic) {
  const fs::path dir = scratch("idx_gz");
  const bytes_t img = idx_images_bytes(5, 3, 3, test_pixel);
  write_file(dir / "img.gz", gzip(img));
  write_file(dir / "gzipped-without-suffix", gzip(img));
  write_file(dir / "lbl.gz", gzip(idx_labels_bytes({1, 2, 3, 4, 5})));
  const idx_images a = read_idx_images(dir / "img.gz");
  const idx_images b = read_idx_images(dir / "gzipped-without-suffix");
  EXPECT_EQ(a.count, 5);
  EXPECT_EQ(a.pixels, bytes_t(img.begin() + 16, img.end()));
  EXPECT_EQ(b.pixels, a.pixels);
  EXPECT_EQ(read_idx_labels(dir / "lbl.gz"), (std::vector<int32_t>{1, 2, 3, 4, 5}));
  // Two concatenated gzip members decode as one stream, as with gunzip.
  const bytes_t lbl = idx_labels_bytes({4, 4, 2});
  bytes_t two = gzip(bytes_t(lbl.begin(), lbl.begin() + 5));
  append(two, gzip(bytes_t(lbl.begin() + 5, lbl.end())));
  write_file(dir / "two.gz", two);
  EXPECT_EQ(read_idx_labels(dir / "two.gz"), (std::vector<int32_t>{4, 4, 2}));
}

TEST(IdxTest, BadMagicNamesFile) {
  const fs::path dir = scratch("idx_magic");
  write_file(dir / "labels-as-images", idx_labels_bytes({1, 2}));
  expect_error([&] { read_idx_images(dir / "labels-as-images"); },
               {"labels-as-images", "bad magic number", "2049", "2051", "label file"});
  write_file(dir / "junk.bin", bytes_t{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '!', 0, 0, 0, 0});
  expect_error([&] { read_idx_labels(dir / "junk.bin"); }, {"junk.bin", "bad magic"});
}

TEST(IdxTest, TruncatedRawAndGzip) {
  const fs::path dir = scratch("idx_trunc");
  bytes_t img = idx_images_bytes(4, 5, 5, test_pixel);
  img.resize(img.size() - 7);
  write_file(dir / "short-images", img);
  expect_error([&] { read_idx_images(dir / "short-images"); },
               {"short-images", "truncated", "4 images of 5x5", "116 bytes", "109 bytes"});
  write_file(dir / "short-labels", bytes_t{0, 0, 8, 1, 0, 0, 0, 9, 1, 2});
  expect_error([&] { read_idx_labels(dir / "short-labels"); }, {"short-labels", "truncated", "9 labels"});
  write_file(dir / "tiny", bytes_t{0, 0, 8});
  expect_error([&] { read_idx_labels(dir / "tiny"); }, {"tiny", "truncated"});

  const bytes_t gz = gzip(idx_images_bytes(20, 10, 10, test_pixel));
  write_file(dir / "cut.gz", bytes_t(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2)));
  expect_error([&] { read_idx_images(dir / "cut.gz"); }, {"cut.gz", "truncated gzip"});
  write_file(dir / "no-trailer.gz", bytes_t(gz.begin(), gz.end() - 4));
  expect_error([&] { read_idx_images(dir / "no-trailer.gz"); }, {"no-trailer.gz", "truncated gzip"});
}

TEST(IdxTest, CorruptGzipCrc) {
  const fs::path dir = scratch("idx_crc");
  bytes_t gz = gzip(idx_labels_bytes({1, 2, 3, 4}));
  gz[gz.size() - 6] ^= 0x55;  // inside the CRC-32 of the trailer
  write_file(dir / "bad-crc.gz", gz);
  expect_error([&] { read_idx_labels(dir / "bad-crc.gz"); }, {"bad-crc.gz", "corrupt gzip", "incorrect data check"});
  bytes_t gz2 = gzip(idx_images_bytes(8, 8, 8, test_pixel));
  for (size_t k = 12; k < gz2.size() - 8; k += 3) gz2[k] ^= 0xA5;  // garble the deflate stream
  write_file(dir / "garbled.gz", gz2);
  expect_error([&] { read_idx_images(dir / "garbled.gz"); }, {"garbled.gz"});
}

TEST(IdxTest, LabelOutOfRangeAndExtraBytes) {
  const fs::path dir = scratch("idx_range");
  write_file(dir / "lbl", idx_labels_bytes({1, 10, 3}));
  EXPECT_EQ(read_idx_labels(dir / "lbl").size(), 3u);  // no range given: accepted
  expect_error([&] { read_idx_labels(dir / "lbl", 10); }, {"lbl", "label 10 at index 1", "out of range [0, 10)"});
  bytes_t img = idx_images_bytes(1, 2, 2, test_pixel);
  img.push_back(0);
  write_file(dir / "long-images", img);
  expect_error([&] { read_idx_images(dir / "long-images"); }, {"long-images", "1 more than"});
}

TEST(IdxTest, MissingFile) {
  const fs::path dir = scratch("idx_missing");
  expect_error([&] { read_idx_images(dir / "nope-idx3-ubyte"); }, {"nope-idx3-ubyte", "not found"});
  expect_error([&] { read_idx_labels(dir); }, {"directory"});
}

// ------------------------------------------------------------------------- NPY

TEST(NpyTest, ReadsFloatAndIntDtypesVersions) {
  const fs::path dir = scratch("npy_dtypes");
  const std::vector<float> f4 = {1.5f, -2.25f, 3.0f, 1e-3f, 0.0f, -7.0f};
  write_file(dir / "f4.npy", npy_bytes("<f4", {2, 3}, false, raw_of(f4)));
  const auto a = read_npy<float>(dir / "f4.npy");
  EXPECT_EQ(a.shape, (std::vector<long>{2, 3}));
  EXPECT_EQ(a.descr, "<f4");
  EXPECT_EQ(a.data, f4);

  const std::vector<double> f8 = {-0.3320056673693902, 1e300, 0.5};
  write_file(dir / "f8.npy", npy_bytes("<f8", {3}, false, raw_of(f8)));
  EXPECT_EQ(read_npy<double>(dir / "f8.npy").data, f8);
  const auto f8f = read_npy<float>(dir / "f8.npy");
  EXPECT_EQ(f8f.data[0], static_cast<float>(f8[0]));
  EXPECT_TRUE(std::isinf(f8f.data[1]));

  const std::vector<int64_t> i8 = {2, 6, 4, -1, int64_t(1) << 40};
  write_file(dir / "i8.npy", npy_bytes("<i8", {5}, false, raw_of(i8)));
  EXPECT_EQ(read_npy<int64_t>(dir / "i8.npy").data, i8);
  expect_error([&] { read_npy<int32_t>(dir / "i8.npy"); }, {"i8.npy", "element 4", "out of range"});

  const std::vector<int32_t> i4 = {-5, 0, 123456};
  write_file(dir / "i4.npy", npy_bytes("<i4", {3, 1}, false, raw_of(i4), 2));  // version 2.0
  EXPECT_EQ(read_npy<int32_t>(dir / "i4.npy").data, i4);
  EXPECT_EQ(read_npy<float>(dir / "i4.npy").data, (std::vector<float>{-5.f, 0.f, 123456.f}));

  const std::vector<uint8_t> u1 = {0, 255, 128, 7};
  write_file(dir / "u1.npy", npy_bytes("|u1", {2, 2}, false, u1, 3));  // version 3.0
  EXPECT_EQ(read_npy<float>(dir / "u1.npy").data, (std::vector<float>{0.f, 255.f, 128.f, 7.f}));
  write_file(dir / "u1b.npy", npy_bytes("<u1", {4}, false, u1));
  EXPECT_EQ(read_npy<int64_t>(dir / "u1b.npy").data, (std::vector<int64_t>{0, 255, 128, 7}));

  const std::vector<uint16_t> u2 = {1, 65535};
  write_file(dir / "u2.npy", npy_bytes("<u2", {2}, false, raw_of(u2)));
  EXPECT_EQ(read_npy<int32_t>(dir / "u2.npy").data, (std::vector<int32_t>{1, 65535}));

  const std::vector<int16_t> i2 = {-300, 300};
  write_file(dir / "i2.npy", npy_bytes("<i2", {2}, false, raw_of(i2)));
  EXPECT_EQ(read_npy<int64_t>(dir / "i2.npy").data, (std::vector<int64_t>{-300, 300}));

  write_file(dir / "b1.npy", npy_bytes("|b1", {3}, false, bytes_t{1, 0, 1}));
  EXPECT_EQ(read_npy<int32_t>(dir / "b1.npy").data, (std::vector<int32_t>{1, 0, 1}));

  // float16: 1.0 = 0x3c00, -2.5 = 0xc100, 65504 = 0x7bff, smallest subnormal 0x0001.
  const std::vector<uint16_t> f2 = {0x3c00, 0xc100, 0x7bff, 0x0001};
  write_file(dir / "f2.npy", npy_bytes("<f2", {4}, false, raw_of(f2)));
  EXPECT_EQ(read_npy<float>(dir / "f2.npy").data, (std::vector<float>{1.0f, -2.5f, 65504.f, 0x1.0p-24f}));
}

TEST(NpyTest, BigEndianAndScalar) {
  const fs::path dir = scratch("npy_be");
  const std::vector<double> f8 = {3.25, -1.0 / 3.0};
  write_file(dir / "be.npy", npy_bytes(">f8", {2}, false, raw_of(f8, true)));
  EXPECT_EQ(read_npy<double>(dir / "be.npy").data, f8);
  const std::vector<int32_t> i4 = {-2, 1 << 20};
  write_file(dir / "be4.npy", npy_bytes(">i4", {2}, false, raw_of(i4, true)));
  EXPECT_EQ(read_npy<int64_t>(dir / "be4.npy").data, (std::vector<int64_t>{-2, 1 << 20}));
  write_file(dir / "scalar.npy", npy_bytes("<f8", {}, false, raw_of(std::vector<double>{42.5})));
  const auto s = read_npy<float>(dir / "scalar.npy");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.data, (std::vector<float>{42.5f}));
  write_file(dir / "empty.npy", npy_bytes("<f4", {0, 3}, false, {}));
  EXPECT_EQ(read_npy<float>(dir / "empty.npy").size(), 0);
}

TEST(NpyTest, FortranOrderIsReturnedInCOrder) {
  const fs::path dir = scratch("npy_fortran");
  // C-order a[i][j] = 10*i + j for shape (2, 3); Fortran stores columns first.
  const std::vector<int32_t> fdata = {0, 10, 1, 11, 2, 12};
  write_file(dir / "f2d.npy", npy_bytes("<i4", {2, 3}, true, raw_of(fdata)));
  EXPECT_EQ(read_npy<int64_t>(dir / "f2d.npy").data, (std::vector<int64_t>{0, 1, 2, 10, 11, 12}));
  // 3-D: a[i][j][k] = 100 i + 10 j + k, shape (2, 3, 4).
  std::vector<float> f3;
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 3; ++j)
      for (int i = 0; i < 2; ++i) f3.push_back(static_cast<float>(100 * i + 10 * j + k));
  write_file(dir / "f3d.npy", npy_bytes("<f4", {2, 3, 4}, true, raw_of(f3)));
  const auto a = read_npy<float>(dir / "f3d.npy");
  ASSERT_EQ(a.size(), 24);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_EQ(a.data[size_t(i * 12 + j * 4 + k)], 100.f * i + 10.f * j + k);
}

TEST(NpyTest, ErrorsNameTheFile) {
  const fs::path dir = scratch("npy_errors");
  const bytes_t good = npy_bytes("<f8", {4}, false, raw_of(std::vector<double>{1, 2, 3, 4}));
  write_file(dir / "trunc.npy", bytes_t(good.begin(), good.end() - 5));
  expect_error([&] { read_npy<float>(dir / "trunc.npy"); }, {"trunc.npy", "truncated", "needs 32 data bytes", "27"});
  bytes_t bad = good;
  bad[1] = 'X';
  write_file(dir / "magic.npy", bad);
  expect_error([&] { read_npy<float>(dir / "magic.npy"); }, {"magic.npy", "not a .npy file"});
  bytes_t v9 = good;
  v9[6] = 9;
  write_file(dir / "v9.npy", v9);
  expect_error([&] { read_npy<float>(dir / "v9.npy"); }, {"v9.npy", "version 9.0"});
  write_file(dir / "obj.npy", npy_bytes("|O", {1}, false, bytes_t(8)));
  expect_error([&] { read_npy<float>(dir / "obj.npy"); }, {"obj.npy", "unsupported dtype '|O'"});
  write_file(dir / "str.npy", npy_bytes("<U3", {1}, false, bytes_t(12)));
  expect_error([&] { read_npy<float>(dir / "str.npy"); }, {"str.npy", "unsupported dtype"});
  write_file(dir / "frac.npy", npy_bytes("<f4", {2}, false, raw_of(std::vector<float>{1.0f, 2.5f})));
  expect_error([&] { read_npy<int64_t>(dir / "frac.npy"); }, {"frac.npy", "element 1 is 2.5, not an integer"});
  write_file(dir / "long.npy", npy_bytes("<f4", {1}, false, raw_of(std::vector<float>{1.0f, 2.0f})));
  expect_error([&] { read_npy<float>(dir / "long.npy"); }, {"long.npy", "4 more"});
  bytes_t hdr = good;
  hdr[10] = '[';
  write_file(dir / "header.npy", hdr);
  expect_error([&] { read_npy<float>(dir / "header.npy"); }, {"header.npy", "bad .npy header"});
  expect_error([&] { read_npy<float>(dir / "absent.npy"); }, {"absent.npy", "not found"});
}

// ------------------------------------------------------------------------- CIFAR

namespace {
bytes_t cifar_records(const std::vector<std::vector<uint8_t>>& labels) {
  bytes_t b;
  for (size_t i = 0; i < labels.size(); ++i) {
    append(b, bytes_t(labels[i].begin(), labels[i].end()));
    for (size_t k = 0; k < 3072; ++k) b.push_back(test_pixel(i * 3072 + k));
  }
  return b;
}
}  // namespace

TEST(CifarTest, ReadsCifar10) {
  const fs::path dir = scratch("cifar10");
  write_file(dir / "data_batch_1.bin", cifar_records({{6}, {9}, {0}}));
  const dataset d = read_cifar_binary(dir / "data_batch_1.bin", cifar_variant::cifar10);
  EXPECT_EQ(d.size(), 3);
  EXPECT_EQ(d.dim(), 3072);
  EXPECT_EQ(d.n_classes, 10);
  EXPECT_EQ(d.shape, (std::array<int, 3>{3, 32, 32}));
  EXPECT_EQ(d.y, (std::vector<int32_t>{6, 9, 0}));
  for (long i = 0; i < 3; ++i)
    for (long k : {0L, 1L, 1023L, 1024L, 2048L, 3071L})
      EXPECT_EQ(d.x(k, i), static_cast<float>(test_pixel(size_t(i) * 3072 + size_t(k))) / 255.0f);
}

TEST(CifarTest, ReadsCifar100FineLabel) {
  const fs::path dir = scratch("cifar100");
  write_file(dir / "train.bin", cifar_records({{19, 99}, {3, 42}}));
  const dataset d = read_cifar_binary(dir / "train.bin", cifar_variant::cifar100);
  EXPECT_EQ(d.n_classes, 100);
  EXPECT_EQ(d.y, (std::vector<int32_t>{99, 42}));
  EXPECT_EQ(d.x(0, 1), static_cast<float>(test_pixel(3072)) / 255.0f);
  EXPECT_EQ(d.x(3071, 1), static_cast<float>(test_pixel(2 * 3072 - 1)) / 255.0f);
}

TEST(CifarTest, Errors) {
  const fs::path dir = scratch("cifar_errors");
  bytes_t b = cifar_records({{1}, {2}});
  b.resize(b.size() - 100);
  write_file(dir / "cut.bin", b);
  expect_error([&] { read_cifar_binary(dir / "cut.bin", cifar_variant::cifar10); },
               {"cut.bin", "not a multiple of the 3073-byte record", "1 whole records"});
  write_file(dir / "label.bin", cifar_records({{1}, {10}}));
  expect_error([&] { read_cifar_binary(dir / "label.bin", cifar_variant::cifar10); },
               {"label.bin", "label 10 of record 1", "out of range [0, 10)"});
  write_file(dir / "c100.bin", cifar_records({{1, 5}, {25, 5}}));
  expect_error([&] { read_cifar_binary(dir / "c100.bin", cifar_variant::cifar100); }, {"c100.bin", "coarse label 25"});
  write_file(dir / "empty.bin", {});
  expect_error([&] { read_cifar_binary(dir / "empty.bin", cifar_variant::cifar10); }, {"empty.bin", "empty"});
  expect_error([&] { read_cifar_binary(dir / "none.bin", cifar_variant::cifar10); }, {"none.bin", "not found"});
}

TEST(DatasetTest, Cifar10LayoutWithLimits) {
  const fs::path dir = scratch("cifar10_layout");
  for (int k = 1; k <= 5; ++k)
    write_file(dir / "cifar-10-batches-bin" / ("data_batch_" + std::to_string(k) + ".bin"),
               cifar_records({{uint8_t(k)}, {uint8_t(k + 1)}}));
  write_file(dir / "cifar-10-batches-bin" / "test_batch.bin", cifar_records({{3}, {4}, {5}}));
  const dataset_split s = load_dataset("cifar10", dir);
  EXPECT_EQ(s.train.size(), 10);
  EXPECT_EQ(s.train.y, (std::vector<int32_t>{1, 2, 2, 3, 3, 4, 4, 5, 5, 6}));
  EXPECT_EQ(s.test.size(), 3);
  EXPECT_EQ(s.train.name, "cifar10");
  dataset_options o;
  o.limit_train = 3;
  o.limit_test = 1;
  const dataset_split l = load_dataset("cifar10", dir, o);
  EXPECT_EQ(l.train.y, (std::vector<int32_t>{1, 2, 2}));
  EXPECT_EQ(l.test.y, (std::vector<int32_t>{3}));
  EXPECT_EQ(l.train.x.col(2), s.train.x.col(2));
  fs::remove(dir / "cifar-10-batches-bin" / "data_batch_4.bin");
  expect_error([&] { load_dataset("cifar10", dir); }, {"cifar10", "data_batch_4.bin", "--data-dir", "EQPROP_DATA"});
  write_file(dir / "cifar-100-binary" / "train.bin", cifar_records({{1, 77}}));
  write_file(dir / "cifar-100-binary" / "test.bin", cifar_records({{2, 11}, {2, 12}}));
  const dataset_split c = load_dataset("cifar100", dir);
  EXPECT_EQ(c.train.y, (std::vector<int32_t>{77}));
  EXPECT_EQ(c.test.y, (std::vector<int32_t>{11, 12}));
  EXPECT_EQ(c.test.n_classes, 100);
}

// ------------------------------------------------------------------------- ImageNet32

namespace {
// data (n x 3*side*side uint8, planar) and 1-based labels, as in the downsampled ImageNet batches.
bytes_t imagenet_npz(const std::vector<int64_t>& labels, int side, bool deflate_data, bool deflate_labels,
                     bool zip64 = false) {
  const size_t n = labels.size(), cols = 3 * size_t(side) * side;
  bytes_t data;
  for (size_t k = 0; k < n * cols; ++k) data.push_back(test_pixel(k));
  const bytes_t data_npy = npy_bytes("|u1", {long(n), long(cols)}, false, data);
  const bytes_t labels_npy = npy_bytes("<i8", {long(n)}, false, raw_of(labels));
  const bytes_t mean_npy = npy_bytes("<f8", {long(cols)}, false, raw_of(std::vector<double>(cols, 0.5)));
  return zip_bytes(
      {{"data.npy", data_npy, deflate_data}, {"labels.npy", labels_npy, deflate_labels}, {"mean.npy", mean_npy, true}},
      zip64);
}
}  // namespace

TEST(ImageNetTest, ReadsStoredAndDeflatedMembers) {
  const fs::path dir = scratch("imagenet");
  const std::vector<int64_t> labels = {1, 1000, 500};
  for (int variant = 0; variant < 4; ++variant) {
    const fs::path f = dir / ("batch" + std::to_string(variant) + ".npz");
    write_file(f, imagenet_npz(labels, 32, variant & 1, variant & 2, variant == 3));
    const dataset d = read_imagenet32_npz(f);
    EXPECT_EQ(d.size(), 3);
    EXPECT_EQ(d.dim(), 3072);
    EXPECT_EQ(d.shape, (std::array<int, 3>{3, 32, 32}));
    EXPECT_EQ(d.n_classes, 1000);
    EXPECT_EQ(d.y, (std::vector<int32_t>{0, 999, 499}));
    for (long i = 0; i < 3; ++i)
      for (long k : {0L, 5L, 1024L, 3071L})
        EXPECT_EQ(d.x(k, i), static_cast<float>(test_pixel(size_t(i) * 3072 + size_t(k))) / 255.0f) << variant;
  }
  EXPECT_EQ(zip_member_names(dir / "batch3.npz"), (std::vector<std::string>{"data.npy", "labels.npy", "mean.npy"}));
  const auto mean = parse_npy<double>(read_zip_member(dir / "batch1.npz", "mean.npy"), "mean");
  EXPECT_EQ(mean.shape, (std::vector<long>{3072}));
  EXPECT_EQ(mean.data[17], 0.5);
  const dataset two = read_imagenet32_npz(dir / "batch1.npz", 2);
  EXPECT_EQ(two.size(), 2);
  EXPECT_EQ(two.y, (std::vector<int32_t>{0, 999}));
  // Other resolutions (Imagenet16) work too.
  write_file(dir / "small.npz", imagenet_npz({7}, 16, true, false));
  EXPECT_EQ(read_imagenet32_npz(dir / "small.npz").shape, (std::array<int, 3>{3, 16, 16}));
}

TEST(ImageNetTest, CorruptTruncatedAndBadContent) {
  const fs::path dir = scratch("imagenet_errors");
  bytes_t z = imagenet_npz({1, 2}, 32, false, false);
  z[200] ^= 0xFF;  // a pixel byte of the stored data.npy member
  write_file(dir / "crc.npz", z);
  expect_error([&] { read_imagenet32_npz(dir / "crc.npz"); }, {"crc.npz", "data.npy", "CRC mismatch"});

  bytes_t zd = imagenet_npz({1, 2}, 32, true, true);
  for (size_t k = 100; k < 140; ++k) zd[k] ^= 0x5A;  // inside the deflated data.npy
  write_file(dir / "deflate.npz", zd);
  expect_error([&] { read_imagenet32_npz(dir / "deflate.npz"); }, {"deflate.npz", "data.npy"});

  const bytes_t full = imagenet_npz({1, 2}, 32, true, true);
  write_file(dir / "cut.npz", bytes_t(full.begin(), full.begin() + static_cast<long>(full.size() / 2)));
  expect_error([&] { read_imagenet32_npz(dir / "cut.npz"); }, {"cut.npz", "truncated"});
  write_file(dir / "notzip.npz", bytes_t(100, 7));
  expect_error([&] { read_imagenet32_npz(dir / "notzip.npz"); }, {"notzip.npz", "not a zip archive"});

  write_file(dir / "label0.npz", imagenet_npz({1, 0}, 32, false, true));
  expect_error([&] { read_imagenet32_npz(dir / "label0.npz"); },
               {"label0.npz", "labels.npy", "label 0 at index 1", "1-based"});
  write_file(dir / "nolabels.npz", zip_bytes({{"data.npy", npy_bytes("|u1", {1, 3072}, false, bytes_t(3072)), true}}));
  expect_error([&] { read_imagenet32_npz(dir / "nolabels.npz"); }, {"nolabels.npz", "labels.npy"});
  write_file(dir / "mismatch.npz",
             zip_bytes({{"data.npy", npy_bytes("|u1", {2, 3072}, false, bytes_t(2 * 3072)), false},
                        {"labels.npy", npy_bytes("<i8", {3}, false, raw_of(std::vector<int64_t>{1, 2, 3})), false}}));
  expect_error([&] { read_imagenet32_npz(dir / "mismatch.npz"); }, {"mismatch.npz", "2 images but 3 labels"});
  expect_error([&] { read_zip_member(dir / "mismatch.npz", "mean.npy"); }, {"mismatch.npz", "no member 'mean.npy'"});
  expect_error([&] { read_imagenet32_npz(dir / "absent.npz"); }, {"absent.npz", "not found"});
}

TEST(DatasetTest, ImageNet32Layout) {
  const fs::path dir = scratch("imagenet_layout");
  for (int k = 1; k <= 10; ++k)
    write_file(dir / "imagenet32" / ("train_data_batch_" + std::to_string(k) + ".npz"),
               imagenet_npz({k, k + 1}, 32, k % 2 == 0, true));
  write_file(dir / "imagenet32" / "val_data.npz", imagenet_npz({5}, 32, false, false));
  dataset_options o;
  o.limit_train = 5;
  const dataset_split s = load_dataset("imagenet32", dir, o);
  EXPECT_EQ(s.train.y, (std::vector<int32_t>{0, 1, 1, 2, 2}));
  EXPECT_EQ(s.test.y, (std::vector<int32_t>{4}));
  EXPECT_EQ(s.train.dim(), 3072);
  EXPECT_EQ(load_dataset("imagenet32", dir).train.size(), 20);
  fs::remove(dir / "imagenet32" / "val_data.npz");
  expect_error([&] { load_dataset("imagenet32", dir); }, {"val_data.npz", "imagenet32"});
}

// ------------------------------------------------------------------------- Yin-Yang

TEST(YinYangTest, BalancedInRangeAndConsistent) {
  const dataset d = generate_yin_yang(6000, 42);
  EXPECT_EQ(d.size(), 6000);
  EXPECT_EQ(d.dim(), 4);
  EXPECT_EQ(d.n_classes, 3);
  EXPECT_EQ(d.shape, (std::array<int, 3>{1, 1, 4}));
  long count[3] = {0, 0, 0};
  for (long i = 0; i < d.size(); ++i) {
    const int c = d.y[size_t(i)];
    ASSERT_TRUE(c >= 0 && c < 3);
    ++count[c];
    const float x = d.x(0, i), y = d.x(1, i);
    ASSERT_TRUE(x >= 0.f && x <= 1.f && y >= 0.f && y <= 1.f);
    EXPECT_NEAR(d.x(2, i), 1.0 - x, 1e-7);  // 1 - x is computed in double, then rounded
    EXPECT_NEAR(d.x(3, i), 1.0 - y, 1e-7);
    EXPECT_LE((x - 0.5) * (x - 0.5) + (y - 0.5) * (y - 0.5), 0.25 + 1e-6);
    EXPECT_EQ(yin_yang_class(x, y), c) << x << "," << y;  // float rounding never crosses a boundary here
  }
  for (long c : count) EXPECT_NEAR(double(c) / 6000.0, 1.0 / 3.0, 0.03);
}

TEST(YinYangTest, DeterministicPerSeed) {
  const dataset a = generate_yin_yang(500, 7), b = generate_yin_yang(500, 7), c = generate_yin_yang(500, 8);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.y, b.y);
  EXPECT_NE(a.x, c.x);
  // A prefix of a longer draw is the shorter draw.
  const dataset longer = generate_yin_yang(600, 7);
  EXPECT_EQ(longer.x.leftCols(500), a.x);
  const dataset_split s = load_dataset("yin_yang", "/nonexistent");
  EXPECT_EQ(s.train.size(), 5000);
  EXPECT_EQ(s.test.size(), 1000);
  EXPECT_NE(s.train.x.leftCols(1000), s.test.x);
  EXPECT_EQ(s.train.x, generate_yin_yang(5000, 0).x);
  dataset_options o;
  o.seed = 3;
  o.yin_yang_train = 100;
  o.yin_yang_test = 50;
  o.limit_test = 20;
  const dataset_split t = load_dataset("YIN-YANG", "", o);
  EXPECT_EQ(t.train.size(), 100);
  EXPECT_EQ(t.test.size(), 20);
  EXPECT_EQ(t.train.x, generate_yin_yang(100, 3).x);
  EXPECT_THROW(generate_yin_yang(-1, 0), config_error);
}

TEST(YinYangTest, ClassGeometry) {
  // R = 0.5, r = 0.1; dots at (0.25, 0.5) and (0.75, 0.5).
  EXPECT_EQ(yin_yang_class(0.25, 0.5), 2);
  EXPECT_EQ(yin_yang_class(0.75, 0.5), 2);
  EXPECT_EQ(yin_yang_class(0.75 + 0.09, 0.5), 2);
  EXPECT_EQ(yin_yang_class(0.25, 0.5 - 0.09), 2);
  EXPECT_EQ(yin_yang_class(0.5, 0.9), 1);   // upper half, far from the right lobe
  EXPECT_EQ(yin_yang_class(0.5, 0.1), 0);   // lower half, far from the left lobe
  EXPECT_EQ(yin_yang_class(0.25, 0.7), 1);  // left lobe (around the left dot) is class 1
  EXPECT_EQ(yin_yang_class(0.25, 0.3), 1);
  EXPECT_EQ(yin_yang_class(0.75, 0.7), 0);  // right lobe is class 0
  EXPECT_EQ(yin_yang_class(0.75, 0.3), 0);
  EXPECT_EQ(yin_yang_class(0.1, 0.6), 1);
  EXPECT_EQ(yin_yang_class(0.9, 0.4), 0);
  // Areas: classes 0 and 1 cover equal shares of the disk, the dots 2 * 0.01 / 0.25 = 8%.
  std::mt19937_64 rng(1);
  long in = 0, cnt[3] = {0, 0, 0};
  for (int k = 0; k < 200000; ++k) {
    const double x = uniform_unit(rng), y = uniform_unit(rng);
    if ((x - 0.5) * (x - 0.5) + (y - 0.5) * (y - 0.5) > 0.25) continue;
    ++in;
    ++cnt[yin_yang_class(x, y)];
  }
  EXPECT_NEAR(double(cnt[2]) / in, 0.08, 0.005);
  EXPECT_NEAR(double(cnt[0]) / in, 0.46, 0.01);
  EXPECT_NEAR(double(cnt[1]) / in, 0.46, 0.01);
}

TEST(YinYangTest, UniformHelpers) {
  std::mt19937_64 a(5), b(5);
  const double u = uniform_unit(a);
  EXPECT_EQ(u, static_cast<double>(b() >> 11) * 0x1.0p-53);
  long hist[7] = {};
  for (int k = 0; k < 7000; ++k) ++hist[uniform_index(a, 7)];
  for (long h : hist) EXPECT_NEAR(h, 1000, 150);
  // std::mt19937_64 is fully specified: the 10000th output of a default engine is fixed.
  std::mt19937_64 ref;
  ref.discard(9999);
  EXPECT_EQ(ref(), 9981545732273789042ULL);
}

// ------------------------------------------------------------------------- load_dataset

namespace {
void write_fake_mnist(const fs::path& dir, bool gz, uint32_t n_train, uint32_t n_test) {
  auto put = [&](const std::string& name, const bytes_t& b) {
    write_file(dir / (gz ? name + ".gz" : name), gz ? gzip(b) : b);
  };
  std::vector<uint8_t> ltr, lte;
  for (uint32_t i = 0; i < n_train; ++i) ltr.push_back(uint8_t(i % 10));
  for (uint32_t i = 0; i < n_test; ++i) lte.push_back(uint8_t((i * 3) % 10));
  put("train-images-idx3-ubyte", idx_images_bytes(n_train, 28, 28, test_pixel));
  put("train-labels-idx1-ubyte", idx_labels_bytes(ltr));
  put("t10k-images-idx3-ubyte", idx_images_bytes(n_test, 28, 28, [](size_t k) { return uint8_t(255 - k % 256); }));
  put("t10k-labels-idx1-ubyte", idx_labels_bytes(lte));
}
}  // namespace

TEST(DatasetTest, LoadsIdxLayouts) {
  const fs::path dir = scratch("mnist_layout");
  write_fake_mnist(dir / "mnist", true, 12, 5);
  write_fake_mnist(dir / "fashion-mnist", false, 3, 2);
  write_fake_mnist(dir / "kmnist", true, 4, 4);
  const dataset_split s = load_dataset("mnist", dir);
  EXPECT_EQ(s.train.name, "mnist");
  EXPECT_EQ(s.train.size(), 12);
  EXPECT_EQ(s.test.size(), 5);
  EXPECT_EQ(s.train.dim(), 784);
  EXPECT_EQ(s.train.shape, (std::array<int, 3>{1, 28, 28}));
  EXPECT_EQ(s.train.n_classes, 10);
  EXPECT_EQ(s.train.y[11], 1);
  EXPECT_EQ(s.test.y, (std::vector<int32_t>{0, 3, 6, 9, 2}));
  EXPECT_EQ(s.train.x(5, 3), float(test_pixel(3 * 784 + 5)) / 255.0f);
  EXPECT_EQ(s.test.x(0, 0), 1.0f);
  EXPECT_GE(s.train.x.minCoeff(), 0.0f);
  EXPECT_LE(s.train.x.maxCoeff(), 1.0f);
  const dataset_split f = load_dataset("Fashion-MNIST", dir);
  EXPECT_EQ(f.train.size(), 3);
  EXPECT_EQ(f.train.name, "fashion_mnist");
  EXPECT_EQ(load_dataset("kmnist", dir).test.size(), 4);
  dataset_options o;
  o.limit_train = 2;
  o.limit_test = 0;
  const dataset_split l = load_dataset("mnist", dir, o);
  EXPECT_EQ(l.train.size(), 2);
  EXPECT_EQ(l.train.x.cols(), 2);
  EXPECT_EQ(l.test.size(), 0);
  EXPECT_EQ(l.train.x, s.train.x.leftCols(2));
}

TEST(DatasetTest, IdxCountMismatchAndBadLabel) {
  const fs::path dir = scratch("mnist_mismatch");
  write_fake_mnist(dir / "mnist", false, 6, 3);
  write_file(dir / "mnist" / "t10k-labels-idx1-ubyte", idx_labels_bytes({1, 2}));
  expect_error([&] { load_dataset("mnist", dir); },
               {"t10k-images-idx3-ubyte", "3 images", "t10k-labels-idx1-ubyte", "2 labels"});
  write_file(dir / "mnist" / "t10k-labels-idx1-ubyte", idx_labels_bytes({1, 2, 12}));
  expect_error([&] { load_dataset("mnist", dir); }, {"t10k-labels-idx1-ubyte", "label 12", "out of range"});
}

TEST(DatasetTest, MissingFilesExplainLayout) {
  const fs::path dir = scratch("missing");
  const std::string msg = expect_error(
      [&] { load_dataset("mnist", dir); },
      {"mnist", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "--data-dir", "EQPROP_DATA", "does not exist"});
  expect_error([&] { load_dataset("fashion_mnist", dir / "nowhere"); }, {"fashion-mnist", "data directory"});
  expect_error([&] { load_dataset("mnist1d", dir); }, {"mnist-1d/standard", "x_train.npy", "EQPROP_DATA"});
  expect_error([&] { load_dataset("cifar100", dir); }, {"cifar-100-binary", "train.bin", "test.bin"});
  expect_error([&] { load_dataset("npy", dir); }, {"x_train.npy", "y_test.npy"});
  write_fake_mnist(dir / "mnist", false, 2, 2);
  fs::remove(dir / "mnist" / "train-labels-idx1-ubyte");
  const std::string one = expect_error([&] { load_dataset("mnist", dir); }, {"train-labels-idx1-ubyte[.gz]"});
  EXPECT_EQ(one.find("train-images-idx3-ubyte[.gz],"), std::string::npos) << one;
}

TEST(DatasetTest, UnknownNameSuggests) {
  const std::string msg = expect_error<config_error>(
      [] { load_dataset("mnsit", "."); },
      {"unknown dataset 'mnsit'", "Did you mean 'mnist'?", "yin_yang", "cifar100", "imagenet32"});
  expect_error<config_error>([] { load_dataset("cifar-11", "."); }, {"Did you mean 'cifar10'?"});
  const std::string far =
      expect_error<config_error>([] { load_dataset("zzzzzzzzzzzzzzzzzz", "."); }, {"Known datasets"});
  EXPECT_EQ(far.find("Did you mean"), std::string::npos);
  expect_error<config_error>([] { load_dataset("yin_yang", ".", dataset_options{0, 10, 10, -5, -1}); }, {"limit"});
  const auto names = dataset_names();
  for (const char* n : {"yin_yang", "mnist", "fashion_mnist", "kmnist", "mnist1d", "mnist1d_gle", "cifar10", "cifar100",
                        "imagenet32", "npy"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
}

TEST(DatasetTest, ResolveDataDir) {
  const char* old = std::getenv("EQPROP_DATA");
  const std::string saved = old ? old : "";
  ::setenv("EQPROP_DATA", "/from/env", 1);
  EXPECT_EQ(resolve_data_dir("/from/flag"), fs::path("/from/flag"));
  EXPECT_EQ(resolve_data_dir(""), fs::path("/from/env"));
  ::unsetenv("EQPROP_DATA");
  EXPECT_EQ(resolve_data_dir(""), fs::path("./data"));
  ::setenv("EQPROP_DATA", "", 1);
  EXPECT_EQ(resolve_data_dir(""), fs::path("./data"));
  if (old) ::setenv("EQPROP_DATA", saved.c_str(), 1);
  else ::unsetenv("EQPROP_DATA");
}

TEST(DatasetTest, NpyLayouts) {
  const fs::path dir = scratch("npy_layout");
  // mnist-1d layout: (N, 40) float64 signals, int64 labels.
  const fs::path m = dir / "mnist-1d" / "standard";
  std::vector<double> xtr(3 * 40), xte(2 * 40);
  for (size_t k = 0; k < xtr.size(); ++k) xtr[k] = 0.01 * double(k) - 0.5;
  for (size_t k = 0; k < xte.size(); ++k) xte[k] = -0.02 * double(k);
  write_file(m / "x_train.npy", npy_bytes("<f8", {3, 40}, false, raw_of(xtr)));
  write_file(m / "y_train.npy", npy_bytes("<i8", {3}, false, raw_of(std::vector<int64_t>{2, 6, 4})));
  write_file(m / "x_test.npy", npy_bytes("<f8", {2, 40}, false, raw_of(xte)));
  write_file(m / "y_test.npy", npy_bytes("<i8", {2}, false, raw_of(std::vector<int64_t>{9, 0})));
  const dataset_split s = load_dataset("mnist1d", dir);
  EXPECT_EQ(s.train.size(), 3);
  EXPECT_EQ(s.train.dim(), 40);
  EXPECT_EQ(s.train.shape, (std::array<int, 3>{1, 1, 40}));
  EXPECT_EQ(s.train.n_classes, 10);
  EXPECT_EQ(s.train.y, (std::vector<int32_t>{2, 6, 4}));
  EXPECT_EQ(s.train.x(7, 2), static_cast<float>(xtr[2 * 40 + 7]));
  EXPECT_EQ(s.test.x(39, 1), static_cast<float>(xte[79]));
  write_file(m / "y_test.npy", npy_bytes("<i8", {2}, false, raw_of(std::vector<int64_t>{9, 10})));
  expect_error([&] { load_dataset("mnist1d", dir); }, {"y_test.npy", "label 10 at index 1"});
  write_file(m / "y_test.npy", npy_bytes("<i8", {3}, false, raw_of(std::vector<int64_t>{9, 1, 2})));
  expect_error([&] { load_dataset("mnist1d", dir); }, {"x_test.npy has 2 samples", "y_test.npy has 3 labels"});

  // gle-360 layout prefers the float32 arrays.
  const fs::path g = dir / "mnist-1d" / "gle-360";
  write_file(g / "x_train.npy", npy_bytes("<f8", {1, 4}, false, raw_of(std::vector<double>{9, 9, 9, 9})));
  write_file(g / "x_train_float32.npy", npy_bytes("<f4", {1, 4}, false, raw_of(std::vector<float>{1, 2, 3, 4})));
  write_file(g / "y_train.npy", npy_bytes("<i8", {1}, false, raw_of(std::vector<int64_t>{3})));
  write_file(g / "x_test.npy", npy_bytes("<f8", {1, 4}, false, raw_of(std::vector<double>{5, 6, 7, 8})));
  write_file(g / "y_test.npy", npy_bytes("<i8", {1}, false, raw_of(std::vector<int64_t>{4})));
  const dataset_split gs = load_dataset("mnist1d_gle", dir);
  EXPECT_EQ(gs.train.x(3, 0), 4.0f);
  EXPECT_EQ(gs.test.x(0, 0), 5.0f);

  // Generic npy directory: image-shaped x, Fortran-order test set, int32/uint8 labels.
  const fs::path n = dir / "generic";
  std::vector<float> img(2 * 3 * 2 * 2);
  for (size_t k = 0; k < img.size(); ++k) img[k] = float(k);
  write_file(n / "x_train.npy", npy_bytes("<f4", {2, 3, 2, 2}, false, raw_of(img)));
  write_file(n / "y_train.npy", npy_bytes("<i4", {2}, false, raw_of(std::vector<int32_t>{0, 4})));
  write_file(n / "x_test.npy", npy_bytes("<f4", {1, 12}, true, raw_of(std::vector<float>(12, 0.25f))));
  write_file(n / "y_test.npy", npy_bytes("|u1", {1}, false, bytes_t{6}));
  const dataset_split gn = load_dataset("npy", n);
  EXPECT_EQ(gn.train.shape, (std::array<int, 3>{3, 2, 2}));
  EXPECT_EQ(gn.train.n_classes, 7);
  EXPECT_EQ(gn.train.x(11, 1), 23.0f);
  EXPECT_EQ(gn.test.x(5, 0), 0.25f);
  write_file(n / "y_test.npy", npy_bytes("<f4", {1}, false, raw_of(std::vector<float>{1.5f})));
  expect_error([&] { load_dataset("npy", n); }, {"y_test.npy", "not an integer"});
}

// ------------------------------------------------------------------------- batches, normalisation, augmentation

namespace {
dataset counting_dataset(long n, std::array<int, 3> shape) {
  dataset d;
  d.name = "count";
  d.shape = shape;
  d.n_classes = 1000;
  const long dim = long(shape[0]) * shape[1] * shape[2];
  d.x.resize(dim, n);
  for (long i = 0; i < n; ++i)
    for (long k = 0; k < dim; ++k) d.x(k, i) = float(i * 1000 + k);
  for (long i = 0; i < n; ++i) d.y.push_back(int32_t(i));
  return d;
}
}  // namespace

TEST(DatasetTest, BatchIteratorDeterministicPermutation) {
  const dataset d = counting_dataset(10, {1, 1, 3});
  batch_iterator it(d, 3, 99, true, false);
  EXPECT_EQ(it.n_batches(), 4);
  EXPECT_EQ(it.batch_length(3), 1);
  EXPECT_THROW(it.batch_length(4), config_error);
  batch_iterator dl(d, 3, 99, true, true);
  EXPECT_EQ(dl.n_batches(), 3);

  it.start_epoch(5);
  const std::vector<long> order5 = it.order();
  std::vector<long> sorted = order5;
  std::sort(sorted.begin(), sorted.end());
  for (long i = 0; i < 10; ++i) EXPECT_EQ(sorted[size_t(i)], i);
  // A fresh iterator (a resumed run) sees the same order for the same (seed, epoch).
  batch_iterator again(d, 3, 99, true, false);
  again.start_epoch(5);
  EXPECT_EQ(again.order(), order5);
  it.start_epoch(6);
  EXPECT_NE(it.order(), order5);
  it.start_epoch(5);
  EXPECT_EQ(it.order(), order5);
  batch_iterator other_seed(d, 3, 100, true, false);
  other_seed.start_epoch(5);
  EXPECT_NE(other_seed.order(), order5);

  matrix<float> x;
  std::vector<int32_t> y;
  std::set<int32_t> seen;
  const float* storage = nullptr;
  for (long b = 0; b < it.n_batches(); ++b) {
    it.fill(b, x, y);
    EXPECT_EQ(x.cols(), it.batch_length(b));
    EXPECT_EQ(x.rows(), 3);
    if (b == 1) {
      EXPECT_EQ(x.data(), storage);  // same shape: no reallocation
    }
    storage = x.data();
    for (long k = 0; k < x.cols(); ++k) {
      EXPECT_EQ(y[size_t(k)], order5[size_t(b * 3 + k)]);
      EXPECT_EQ(x(2, k), float(y[size_t(k)] * 1000 + 2));
      seen.insert(y[size_t(k)]);
    }
  }
  EXPECT_EQ(seen.size(), 10u);

  batch_iterator plain(d, 4, 1, false, false);
  plain.start_epoch(3);
  for (long i = 0; i < 10; ++i) EXPECT_EQ(plain.order()[size_t(i)], i);
  EXPECT_THROW(batch_iterator(d, 0, 1, true, false), config_error);
}

TEST(DatasetTest, NormalizePerChannel) {
  dataset d = counting_dataset(5, {2, 2, 2});
  std::vector<float> mean, sd;
  channel_mean_std(d, mean, sd);
  ASSERT_EQ(mean.size(), 2u);
  EXPECT_FLOAT_EQ(mean[0], 2001.5f);  // (1000 i + k), k in 0..3, i in 0..4
  EXPECT_FLOAT_EQ(mean[1], 2005.5f);
  normalize_per_channel(d, mean, sd);
  std::vector<float> m2, s2;
  channel_mean_std(d, m2, s2);
  for (int c = 0; c < 2; ++c) {
    EXPECT_NEAR(m2[size_t(c)], 0.0f, 1e-5f);
    EXPECT_NEAR(s2[size_t(c)], 1.0f, 1e-5f);
  }
  dataset e = counting_dataset(1, {2, 1, 1});
  const float mu[2] = {1.0f, 2.0f}, sg[2] = {2.0f, 0.5f};
  normalize_per_channel(e, mu, sg);
  EXPECT_EQ(e.x(0, 0), (0.0f - 1.0f) / 2.0f);
  EXPECT_EQ(e.x(1, 0), (1.0f - 2.0f) / 0.5f);
  const float bad[2] = {1.0f, 0.0f};
  EXPECT_THROW(normalize_per_channel(e, mu, bad), config_error);
  EXPECT_THROW(normalize_per_channel(e, std::span<const float>(mu, 1), sg), config_error);
}

TEST(DatasetTest, AugmentFlipAndCrop) {
  const int c = 2, h = 4, w = 5;
  const dataset d = counting_dataset(64, {c, h, w});
  auto at = [&](const matrix<float>& m, long s, int ch, int i, int j) {
    return m(long(ch) * h * w + long(i) * w + j, s);
  };
  // Flip only: every sample is either unchanged or exactly mirrored; both occur.
  {
    matrix<float> x = d.x;
    std::mt19937_64 rng(3);
    augment_batch(x, {c, h, w}, 0, true, rng);
    int flipped = 0;
    for (long s = 0; s < x.cols(); ++s) {
      bool same = true, mirror = true;
      for (int ch = 0; ch < c; ++ch)
        for (int i = 0; i < h; ++i)
          for (int j = 0; j < w; ++j) {
            same &= at(x, s, ch, i, j) == at(d.x, s, ch, i, j);
            mirror &= at(x, s, ch, i, j) == at(d.x, s, ch, i, w - 1 - j);
          }
      EXPECT_TRUE(same || mirror);
      flipped += mirror && !same;
    }
    EXPECT_GT(flipped, 10);
    EXPECT_LT(flipped, 54);
  }
  // Pad + crop: every sample is a shift by (dy, dx) in [-2, 2]^2 with zeros filled in.
  {
    matrix<float> x = d.x, x2 = d.x;
    std::mt19937_64 rng(4), rng2(4);
    augment_batch(x, {c, h, w}, 2, false, rng);
    augment_batch(x2, {c, h, w}, 2, false, rng2);
    EXPECT_EQ(x, x2);  // deterministic given the engine state
    std::set<std::pair<int, int>> shifts;
    for (long s = 0; s < x.cols(); ++s) {
      bool found = false;
      for (int dy = -2; dy <= 2 && !found; ++dy)
        for (int dx = -2; dx <= 2 && !found; ++dx) {
          bool ok = true;
          for (int ch = 0; ch < c; ++ch)
            for (int i = 0; i < h; ++i)
              for (int j = 0; j < w; ++j) {
                const int si = i + dy, sj = j + dx;
                const float want = (si >= 0 && si < h && sj >= 0 && sj < w) ? at(d.x, s, ch, si, sj) : 0.0f;
                ok &= at(x, s, ch, i, j) == want;
              }
          if (ok) {
            found = true;
            shifts.insert({dy, dx});
          }
        }
      EXPECT_TRUE(found) << "sample " << s;
    }
    EXPECT_GT(shifts.size(), 10u);
  }
  matrix<float> wrong(7, 2);
  std::mt19937_64 rng(1);
  EXPECT_THROW(augment_batch(wrong, {c, h, w}, 1, true, rng), shape_error);
  matrix<float> ok = d.x;
  EXPECT_THROW(augment_batch(ok, {c, h, w}, -1, true, rng), config_error);
}

// ------------------------------------------------------------------------- real data (when present)

TEST(DatasetTest, RealMnist) {
  const fs::path root = shared_data();
  if (!fs::exists(root / "mnist" / "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "no offline data at " << root;
  const dataset_split s = load_dataset("mnist", root);
  EXPECT_EQ(s.train.size(), 60000);
  EXPECT_EQ(s.test.size(), 10000);
  EXPECT_EQ(s.train.dim(), 784);
  EXPECT_EQ(s.train.x.cols(), 60000);
  EXPECT_EQ(s.train.n_classes, 10);
  EXPECT_EQ(s.train.shape, (std::array<int, 3>{1, 28, 28}));
  EXPECT_GE(s.train.x.minCoeff(), 0.0f);
  EXPECT_EQ(s.train.x.maxCoeff(), 1.0f);
  EXPECT_GE(s.test.x.minCoeff(), 0.0f);
  EXPECT_LE(s.test.x.maxCoeff(), 1.0f);
  const long train_counts[10] = {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949};
  const long test_counts[10] = {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009};
  long ctr[10] = {}, cte[10] = {};
  for (int32_t l : s.train.y) ++ctr[l];
  for (int32_t l : s.test.y) ++cte[l];
  for (int c = 0; c < 10; ++c) {
    EXPECT_EQ(ctr[c], train_counts[c]) << c;
    EXPECT_EQ(cte[c], test_counts[c]) << c;
  }
  EXPECT_EQ(s.train.y[0], 5);  // the famous first training digit
}

TEST(DatasetTest, RealMnist1d) {
  const fs::path root = shared_data();
  if (!fs::exists(root / "mnist-1d" / "standard" / "x_train.npy")) GTEST_SKIP() << "no offline data at " << root;
  const dataset_split s = load_dataset("mnist1d", root);
  EXPECT_EQ(s.train.size(), 4000);
  EXPECT_EQ(s.test.size(), 1000);
  EXPECT_EQ(s.train.dim(), 40);
  EXPECT_EQ(s.train.x(0, 0), static_cast<float>(-0.3320056673693902));
  EXPECT_EQ(s.train.x(2, 0), static_cast<float>(-0.778697076293495));
  EXPECT_EQ(s.train.y[0], 2);
  EXPECT_EQ(s.train.y[1], 6);
  EXPECT_EQ(s.train.y[2], 4);
  long c2 = 0;
  for (int32_t l : s.test.y) c2 += l == 2;
  EXPECT_EQ(c2, 89);
  if (!fs::exists(root / "mnist-1d" / "gle-360" / "x_train.npy")) return;
  const dataset_split g = load_dataset("mnist1d_gle", root);
  EXPECT_EQ(g.train.size(), 4000);
  EXPECT_EQ(g.test.size(), 1000);
  EXPECT_EQ(g.train.dim(), 360);
  EXPECT_EQ(g.train.x(0, 0), -0.3321620523929596f);
  EXPECT_EQ(g.train.x(1, 0), static_cast<float>(-0.30999689356649485));
  EXPECT_EQ(g.train.y, s.train.y);
  // The float32 file equals the float64 file rounded to float.
  const auto x64 = read_npy<float>(root / "mnist-1d" / "gle-360" / "x_test.npy");
  EXPECT_TRUE(std::equal(x64.data.begin(), x64.data.end(), g.test.x.data()));
}

// ------------------------------------------------------------------------- robustness

TEST(DatasetTest, CorruptedFilesLoadOrThrowDataError) {
  // Every truncation point (sampled) and many random byte flips of each format must
  // either load or throw data_error: no crash, no other exception, no huge allocation.
  const fs::path dir = scratch("fuzz");
  struct format_case {
    std::string file;
    bytes_t bytes;
    std::function<void(const fs::path&)> read;
  };
  std::vector<format_case> cases;
  cases.push_back(
      {"img.gz", gzip(idx_images_bytes(3, 4, 4, test_pixel)), [](const fs::path& p) { read_idx_images(p); }});
  cases.push_back({"lbl", idx_labels_bytes({1, 2, 3, 9}), [](const fs::path& p) { read_idx_labels(p, 10); }});
  cases.push_back({"a.npy", npy_bytes("<f8", {2, 3}, true, raw_of(std::vector<double>{1, 2, 3, 4, 5, 6})),
                   [](const fs::path& p) { read_npy<int64_t>(p); }});
  cases.push_back({"b.npz", imagenet_npz({3, 4}, 4, true, false), [](const fs::path& p) { read_imagenet32_npz(p); }});
  cases.push_back(
      {"c.npz", imagenet_npz({3}, 4, false, true, true), [](const fs::path& p) { read_imagenet32_npz(p); }});
  cases.push_back({"d.bin", cifar_records({{1, 2}, {3, 4}}),
                   [](const fs::path& p) { read_cifar_binary(p, cifar_variant::cifar100); }});
  std::mt19937_64 rng(2024);
  long loaded = 0, rejected = 0;
  for (const auto& c : cases) {
    const fs::path f = dir / c.file;
    auto attempt = [&](const bytes_t& b, const std::string& what) {
      write_file(f, b);
      try {
        c.read(f);
        ++loaded;
      } catch (const data_error& e) {
        ++rejected;
        EXPECT_NE(std::string(e.what()).find(c.file), std::string::npos) << e.what();
      } catch (const std::exception& e) {
        ADD_FAILURE() << c.file << " " << what << ": unexpected exception " << e.what();
      }
    };
    const size_t step = std::max<size_t>(1, c.bytes.size() / 40);
    for (size_t cut = 0; cut < c.bytes.size(); cut += step)
      attempt(bytes_t(c.bytes.begin(), c.bytes.begin() + static_cast<long>(cut)), "cut at " + std::to_string(cut));
    for (int k = 0; k < 60; ++k) {
      bytes_t b = c.bytes;
      const int flips = 1 + static_cast<int>(uniform_index(rng, 3));
      for (int j = 0; j < flips; ++j)
        b[uniform_index(rng, b.size())] ^= static_cast<uint8_t>(1 + uniform_index(rng, 255));
      attempt(b, "flip " + std::to_string(k));
    }
  }
  EXPECT_GT(rejected, 250);
  EXPECT_GT(loaded, 0);
}

// The papers' ConvNet configs (VGG-4 on CIFAR-10/100 and ImageNet32, VGG-6 and its
// non-holomorphic control, the BP twin) run end-to-end on small synthetic files in the
// standard formats. Only the schedule is cut down (1 epoch, 2 free steps, 1 nudged step),
// so the networks, data paths, normalisation and augmentation are the real ones.
namespace {
// Small CIFAR-10, CIFAR-100 and ImageNet32 files in their standard formats under dir.
void write_paper_image_files(const fs::path& dir) {
  for (int k = 1; k <= 5; ++k)
    write_file(dir / "cifar-10-batches-bin" / ("data_batch_" + std::to_string(k) + ".bin"),
               cifar_records({{uint8_t(k)}, {uint8_t(9 - k)}}));
  write_file(dir / "cifar-10-batches-bin" / "test_batch.bin", cifar_records({{3}, {4}}));
  write_file(dir / "cifar-100-binary" / "train.bin", cifar_records({{1, 99}, {2, 3}, {7, 50}}));
  write_file(dir / "cifar-100-binary" / "test.bin", cifar_records({{4, 42}, {5, 0}}));
  for (int k = 1; k <= 10; ++k)
    write_file(dir / "imagenet32" / ("train_data_batch_" + std::to_string(k) + ".npz"),
               imagenet_npz({k, 1000 - k}, 32, true, false));
  write_file(dir / "imagenet32" / "val_data.npz", imagenet_npz({1, 500}, 32, true, false));
}
}  // namespace

TEST(PaperConvNets, ConfigsRunOnSyntheticFilesSlow) {
  const fs::path dir = scratch("paper_convnets");
  write_paper_image_files(dir);
  for (const char* name : {"vgg4_cifar10_hep", "vgg4_cifar10_bp", "vgg4_cifar100_hep", "vgg4_imagenet32_hep",
                           "vgg6_cifar10_hep", "vgg6_cifar10_nonholo"}) {
    config cfg(layered_schema());
    cfg.load_toml_file(fs::path(EQPROP_SOURCE_DIR) / "configs" / (std::string(name) + ".toml"));
    for (const char* o : {"run.epochs=1", "relax.free_steps=2", "relax.nudged_steps=1", "run.batch=2",
                          "run.eval_batch=2", "estimator.on_failure=keep"})
      cfg.set_override(o);
    cfg.set("data.dir", (dir).string());
    train_options t;
    t.run_dir = dir / (std::string("run_") + name);
    t.quiet = true;
    std::ostringstream log;
    t.out = &log;
    const train_result r = train(cfg, t);
    EXPECT_EQ(r.epochs_done, 1) << name << ": " << r.message << "\n" << log.str();
    EXPECT_TRUE(std::isfinite(r.test_loss)) << name;
    EXPECT_TRUE(fs::exists(t.run_dir / "checkpoint.eqck")) << name;
  }
}

// The generalized-EP ConvNet configs (spec generalized-ep.md §7.2) train end to end on the
// same synthetic files: untied conv feedback, homeostasis probes at the free states,
// per-layer rates, cosine schedule, augmentation, probe diagnostics and the checkpoint.
TEST(PaperConvNets, GepConfigsRunOnSyntheticFilesSlow) {
  const fs::path dir = scratch("gep_convnets");
  write_paper_image_files(dir);
  for (const char* name : {"gep_cifar10_exact_homeo", "gep_cifar10_n2_homeo", "gep_cifar10_rbp_homeo",
                           "gep_cifar100_exact", "gep_imagenet32_exact_homeo"}) {
    config cfg = load_training_config({fs::path(EQPROP_SOURCE_DIR) / "configs" / (std::string(name) + ".toml")}, {});
    for (const char* o : {"run.epochs=1", "relax.free_steps=2", "relax.nudged_steps=1", "estimator.rbp_steps=2",
                          "run.batch=2", "run.eval_batch=2", "data.limit_train=2", "diagnostics.samples=1",
                          "homeostasis.probes=1", "estimator.fail_residual=1e30"})
      cfg.set_override(o);
    cfg.set("data.dir", dir.string());
    train_options t;
    t.run_dir = dir / (std::string("run_") + name);
    t.quiet = true;
    std::ostringstream log;
    t.out = &log;
    std::vector<nlohmann::ordered_json> rows;
    t.on_epoch = [&](const nlohmann::ordered_json& r) { rows.push_back(r); };
    const train_result r = train(cfg, t);
    EXPECT_EQ(r.epochs_done, 1) << name << ": " << r.message << "\n" << log.str();
    EXPECT_TRUE(std::isfinite(r.test_loss)) << name;
    ASSERT_EQ(rows.size(), 2u) << name;
    EXPECT_GT(rows[1]["symmetry_index"].get<double>(), 0.0) << name;     // probe estimate at the free states
    EXPECT_NEAR(rows[0]["angle_deg"].get<double>(), 0.0, 1e-3) << name;  // alpha = 0: kernels copied
    EXPECT_TRUE(fs::exists(t.run_dir / "checkpoint.eqck")) << name;
    const auto net = saved_network<vector_field_network<double>>(load_saved_run(t.run_dir, ""));
    EXPECT_TRUE(net.spec().is_convnet()) << name;
  }
}

// Every shipped config loads under its command's schema: no unknown key, no wrong type.
TEST(ShippedConfigs, EveryConfigLoadsUnderItsSchema) {
  int checked = 0;
  for (const auto& e : fs::directory_iterator(fs::path(EQPROP_SOURCE_DIR) / "configs")) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".toml") continue;
    EXPECT_NO_THROW(load_training_config({e.path()}, {})) << name;
    // The generalized-EP configs say they are vector_field configs, the GLE configs gle configs.
    const std::string kind = load_training_config({e.path()}, {}).get<std::string>("model.kind");
    if (name.rfind("gep_", 0) == 0) {
      EXPECT_EQ(kind, "vector_field") << name;
    }
    if (name.rfind("gle_", 0) == 0) {
      EXPECT_EQ(kind, "gle") << name;
    }
    ++checked;
  }
  EXPECT_GE(checked, 20);
}
