// Downloading data sets over HTTP(S) (libcurl): the files of the registry in
// eqprop/io/fetch.hpp, verified against their checksums and installed atomically, and the
// files derived from them. This is the library eqprop_download, which the command-line
// tool and the tests link; the core library eqprop does not link libcurl. See
// docs/datasets.md, "Downloading datasets: eqprop data fetch".
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "eqprop/io/fetch.hpp"

namespace eqprop {

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
