// Helpers shared by the test files (header-only; the tests are one binary).
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include "eqprop/core/rng.hpp"
#include "eqprop/dynamics/relax.hpp"   // one_hot
#include "eqprop/io/numpy_pickle.hpp"  // npy_file_bytes

namespace eqprop::test {

/// A random float64 batch: x (n_in x batch) uniform in [0, 1), then uniform labels over
/// n_classes as one-hot columns y, both drawn from `rng` in that order.
inline void random_batch(rng_t& rng, long n_in, long batch, int n_classes, matrix<double>& x, matrix<double>& y) {
  x.resize(n_in, batch);
  for (long i = 0; i < x.size(); ++i) x.data()[i] = uniform01(rng);
  std::vector<int32_t> labels(batch);
  for (auto& l : labels) l = int32_t(random_index(rng, uint64_t(n_classes)));
  y = one_hot<double>(labels, n_classes);
}

/// A run's metrics.jsonl rows without the timing columns (time_s, samples_per_s), which
/// differ between runs of the same numbers.
inline std::vector<nlohmann::json> metrics_rows(const std::filesystem::path& run_dir) {
  std::ifstream f(run_dir / "metrics.jsonl");
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    for (const char* k : {"time_s", "train_time_s", "samples_per_s"}) j.erase(k);
    rows.push_back(std::move(j));
  }
  return rows;
}

/// A .npy file (C order, as numpy.save writes it) of raw little-endian data of the given shape.
inline void write_npy(const std::filesystem::path& p, const std::string& descr, const std::vector<long>& shape,
                      const void* data, std::size_t bytes) {
  const auto file =
      eqprop::npy_file_bytes(descr, shape, false, std::span<const uint8_t>(static_cast<const uint8_t*>(data), bytes));
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(file.data()), std::streamsize(file.size()));
}

/// The eqprop command-line tool under test: $EQPROP_CLI (set by ctest), empty if unset.
inline std::string cli() {
  const char* p = std::getenv("EQPROP_CLI");
  return p ? p : "";
}

struct cli_result {
  int status;          ///< exit status, or 128 + signal number when killed by a signal
  std::string output;  ///< what the command wrote to the captured stream(s)
};

/// Runs `eqprop <args> <redirect>` through the shell and captures its stdout. The default
/// redirect also captures stderr; e.g. "2>&1 >/dev/full" captures only stderr.
inline cli_result run_cli(const std::string& args, const std::string& redirect = "2>&1") {
  const std::string cmd = cli() + " " + args + " " + redirect;
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  const int st = pclose(f);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), out};
}

/// A fresh, empty directory under the test temporary directory, unique to this process.
inline std::filesystem::path temp_dir(const std::string& name) {
  std::filesystem::path p =
      std::filesystem::path(::testing::TempDir()) / ("eqprop_cli_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

/// Appends v big-endian in 4 bytes (IDX headers).
inline void put_be32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}
/// Appends the n low bytes of v, little-endian.
inline void put_le(std::vector<uint8_t>& b, uint64_t v, int n) {
  for (int k = 0; k < n; ++k) b.push_back(static_cast<uint8_t>(v >> (8 * k)));
}
inline void append(std::vector<uint8_t>& b, const std::vector<uint8_t>& more) {
  b.insert(b.end(), more.begin(), more.end());
}
inline void append(std::vector<uint8_t>& b, const std::string& s) { b.insert(b.end(), s.begin(), s.end()); }

/// zlib deflate of `in`: window_bits 15 + 16 gives gzip, -15 a raw deflate stream; level 0
/// writes stored blocks.
inline std::vector<uint8_t> deflate_bytes(const std::vector<uint8_t>& in, int window_bits, int level = 6) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<uint8_t> out(deflateBound(&zs, static_cast<uLong>(in.size())) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

/// The message of the exception E that f throws (a test failure if none, or another type).
template <class E>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "no exception thrown";
  return {};
}

}  // namespace eqprop::test
