// Downloading data sets: a registry of the canonical files of each data set (where they
// go under the data directory, where to download them, their published checksums) and a
// fetcher that downloads over HTTP(S) (libcurl), verifies (OpenSSL) and installs them
// atomically. See docs/datasets.md, "Downloading datasets: eqprop data fetch".
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
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

struct fetch_options {
  std::string base_url;  ///< non-empty: every URL goes through apply_base_url
  bool force = false;    ///< download even when a verified copy is present
  /// Progress on stderr, redrawn in place (set it when stderr is a terminal).
  bool progress_bar = false;
  /// Receives one line per event ("mnist/x.gz: ok, already present"); default: stderr.
  std::function<void(const std::string& line)> log;
  /// Limit on connecting to one address (DNS, TCP, TLS), seconds.
  double connect_timeout_s = 20;
  /// Limit on the whole download of one file from one address (connecting included),
  /// seconds. Unset: auto_timeout_s(file).
  std::optional<double> timeout_s;
  /// An address is abandoned when fewer than `idle_timeout_s * min_rate` bytes arrive
  /// within `idle_timeout_s` seconds (a stalled or trickling server; checked over
  /// consecutive intervals of that length from the start of the transfer).
  double idle_timeout_s = 60;
  double min_rate = 1000;  ///< bytes per second, see idle_timeout_s
  /// Most bytes accepted for a file whose size the registry does not know; a file of
  /// known size is capped at exactly that size.
  int64_t unknown_size_limit = int64_t{1} << 30;

  /// Throws config_error naming the option (and its `eqprop data fetch` flag) unless every
  /// time is positive and finite, min_rate is finite and >= 0 and unknown_size_limit > 0.
  void validate() const;
};

/// The default total time limit for one download of `file`: 600 s plus 1 s per 50 kB of
/// its known size (MNIST training images: 798 s; CIFAR-10: 3,999 s); 3,600 s when the
/// size is unknown.
double auto_timeout_s(const remote_file& file);

/// Makes every file present and verified under data_dir. Per file: a verified copy is
/// kept ("ok, already present") unless options.force; otherwise each URL is tried in
/// turn, downloading to `<dest>.part`, which is checked (size when known, checksum) and
/// renamed into place. A stale regular `<dest>.part` is removed first; a symlink or any
/// other non-regular file there is refused (data_error naming it; it and its target are
/// left untouched), and the .part file is created exclusively without following links.
/// The rename replaces whatever is at `dest` (a symlink there is replaced, its target is
/// never written).
///
/// Per address, the download is abandoned (and the next address tried) on an HTTP or
/// network error, when it exceeds the total or idle time limits, when the announced
/// Content-Length differs from the known size (before any byte is written), or as soon
/// as more bytes arrive than the known size (or unknown_size_limit): the .part file never
/// holds more than that. When no address is left, data_error lists every URL with why it
/// failed (HTTP status, curl error, or which limit was exceeded). A checksum mismatch
/// removes the .part file and throws data_error naming the file and both digests. Files
/// without a published checksum are installed with a warning. Invalid options throw
/// config_error before anything is downloaded.
void fetch_files(const std::vector<remote_file>& files, const std::filesystem::path& data_dir,
                 const fetch_options& options = {});

/// fetch_files(d.files), then the derived files of d, if any: kept when every one is
/// present and verified (unless options.force), else made again from the downloaded
/// files and checked against the reference checksums. A converted file that differs is a
/// data_error (naming it and both digests); a generated file that differs is reported
/// through options.log ("differs from the reference"), not an error. Logs one line per
/// file.
void fetch_dataset(const remote_dataset& d, const std::filesystem::path& data_dir, const fetch_options& options = {});

}  // namespace eqprop
