// The registry of downloadable data sets: the canonical files of each (where they go under
// the data directory, where to download them, their published checksums), the files
// derived from them, and the digests that check them (Nettle). The downloads themselves
// are in eqprop/io/download.hpp (libcurl, a library of its own). See docs/datasets.md,
// "Downloading datasets: eqprop data fetch".
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eqprop/core/error.hpp"

namespace eqprop {

/// The kind of published checksum a file has. `none`: no checksum is published; such a
/// file is downloaded with a warning and never reported as verified.
enum class checksum_kind { none, sha256, md5 };

/// One downloadable file.
struct remote_file {
  std::string path;               ///< destination, relative to the data directory
  std::vector<std::string> urls;  ///< canonical address first, then mirrors
  int64_t size = -1;              ///< bytes; -1 when not known
  checksum_kind kind = checksum_kind::none;
  std::string checksum;  ///< lower-case hex digest of `kind`
};

/// How the derived files of a data set are made from its downloaded files.
enum class derive_kind {
  none,      ///< no derived files
  convert,   ///< a lossless conversion, part of `eqprop data fetch` (mnist1d: pickle -> .npy)
  generate,  ///< computed by a generator, `eqprop data generate` (mnist1d_gle)
};

/// A named set of files, plus a note printed after fetching (e.g. how to extract).
struct remote_dataset {
  std::string name;
  std::vector<remote_file> files;
  std::string note;
  /// Files made locally from `files` (no addresses). Their checksums are those of the
  /// reference files: a conversion must reproduce them; a generator's float64 output may
  /// differ in the last bits where the math library differs (see docs/datasets.md).
  std::vector<remote_file> derived;
  derive_kind derive = derive_kind::none;
};

/// The registry: mnist, fashion_mnist, kmnist, cifar10, cifar100, mnist1d, mnist1d_gle (in
/// that order).
const std::vector<remote_dataset>& remote_datasets();

/// Looks a data set up by name (case-insensitive, '-' accepted for '_'). Throws
/// config_error naming it, with "did you mean" when a known name is close.
const remote_dataset& find_remote_dataset(const std::string& name);

/// "sha256", "md5" or "none".
std::string_view checksum_name(checksum_kind kind);

/// An incremental digest (Nettle's SHA-256 or MD5; internal_error for kind none).
class digest {
 public:
  explicit digest(checksum_kind kind);
  ~digest();
  digest(digest&&) noexcept;
  digest& operator=(digest&&) noexcept;
  void update(const void* data, std::size_t n);
  /// The lower-case hex digest of everything updated so far; call once.
  std::string hex();

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

/// Hex digest of a whole file. Throws data_error naming the file if it cannot be read.
std::string file_digest(const std::filesystem::path& file, checksum_kind kind);
/// Hex digest of n bytes in memory.
std::string bytes_digest(const void* data, std::size_t n, checksum_kind kind);

/// State of a file under the data directory.
enum class file_state { missing, verified, unverified, mismatch };
struct file_check {
  file_state state = file_state::missing;
  std::string actual;  ///< the digest computed (empty when missing or kind == none)
};
file_check check_file(const std::filesystem::path& data_dir, const remote_file& file);

/// `url` with everything up to its last '/' replaced by `base` (a trailing '/' on base is
/// ignored): apply_base_url("https://h/x/f.gz", "http://127.0.0.1:8000") is
/// "http://127.0.0.1:8000/f.gz". An empty base returns url unchanged.
std::string apply_base_url(const std::string& url, const std::string& base);

}  // namespace eqprop
