// Downloads of data set files over HTTP(S) with libcurl, verified against the registry's
// checksums (eqprop/io/download.hpp). A library of its own, eqprop_download, so that the
// core library does not link libcurl.
#include "eqprop/io/download.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "eqprop/build_info.hpp"
#include "eqprop/io/mnist1d.hpp"
#include "io_internal.hpp"

namespace eqprop {

namespace fs = std::filesystem;
using io_detail::display;

namespace {

std::string human(double bytes) {
  if (bytes >= 1e9) return fmt::format("{:.2f} GB", bytes / 1e9);
  if (bytes >= 1e6) return fmt::format("{:.1f} MB", bytes / 1e6);
  if (bytes >= 1e3) return fmt::format("{:.1f} kB", bytes / 1e3);
  return fmt::format("{:.0f} B", bytes);
}

// State of one transfer, shared with the curl callbacks.
struct transfer {
  CURL* curl = nullptr;
  int fd = -1;  // the .part file
  digest* hash = nullptr;
  std::string file;                  // the destination, relative to the data directory
  int64_t bytes = 0, expected = -1;  // expected: the registry's size (-1: unknown)
  int64_t cap = 0;                   // most bytes accepted: expected, or unknown_size_limit
  bool announced_checked = false;    // Content-Length compared with expected before the body
  int write_errno = 0;               // set when writing the .part file failed
  std::string abort;                 // set when a limit stopped the transfer: why
  double idle_s = 60, min_rate = 0;
  int64_t window_bytes = 0;  // bytes at the start of the current idle window
  bool bar = false;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), last_draw{}, window_start = start;
};

// Compares the Content-Length of a successful response with the known size (or the cap
// when the size is unknown). Returns false (and sets t.abort) when they disagree. Called
// at the end of each header block and again before the first byte of the body is written.
bool check_announced(transfer& t) {
  long status = 0;
  curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) return true;  // a redirect or an error: not the file
  curl_off_t announced = -1;
  if (curl_easy_getinfo(t.curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) != CURLE_OK || announced < 0)
    return true;
  if (t.expected >= 0 && announced != t.expected)
    t.abort = fmt::format("the server announced Content-Length {} but {} is {} bytes; refused before downloading",
                          int64_t(announced), t.file, t.expected);
  else if (t.expected < 0 && announced > t.cap)
    t.abort = fmt::format(
        "the server announced Content-Length {}, more than the limit of {} bytes for a file of unknown size; "
        "refused before downloading",
        int64_t(announced), t.cap);
  return t.abort.empty();
}

size_t on_header(char* p, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  const size_t len = size * n;
  const std::string_view line(p, len);
  if ((line == "\r\n" || line == "\n") && !check_announced(*t)) return 0;  // end of a header block
  return len;
}

size_t on_data(char* p, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  const size_t len = size * n;
  if (!t->announced_checked) {
    t->announced_checked = true;
    if (!check_announced(*t)) return 0;
  }
  if (t->bytes + static_cast<int64_t>(len) > t->cap) {  // nothing of this chunk is written
    t->abort = t->expected >= 0
                   ? fmt::format("more than the expected {} bytes of {} arrived; stopped at {} bytes", t->expected,
                                 t->file, t->bytes)
                   : fmt::format(
                         "more than {} bytes arrived (the limit for a file of unknown size); stopped at {} "
                         "bytes",
                         t->cap, t->bytes);
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  for (size_t at = 0; at < len;) {
    const ssize_t w = ::write(t->fd, p + at, len - at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      t->write_errno = w < 0 ? errno : EIO;
      return 0;
    }
    at += static_cast<size_t>(w);
  }
  t->hash->update(p, len);
  t->bytes += static_cast<int64_t>(len);
  return len;
}

int on_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* t = static_cast<transfer*>(user);
  const auto tnow = std::chrono::steady_clock::now();
  // Idle limit, over consecutive windows of idle_s seconds from the start.
  const double window = std::chrono::duration<double>(tnow - t->window_start).count();
  if (window >= t->idle_s) {
    const int64_t got = t->bytes - t->window_bytes;
    if (double(got) < t->idle_s * t->min_rate) {
      t->abort = fmt::format("too slow: {} bytes in {:.1f} s, less than {} bytes/s over the idle limit of {} s", got,
                             window, t->min_rate, t->idle_s);
      return 1;  // makes curl stop with CURLE_ABORTED_BY_CALLBACK
    }
    t->window_start = tnow;
    t->window_bytes = t->bytes;
  }
  if (!t->bar || tnow - t->last_draw < std::chrono::milliseconds(200)) return 0;
  t->last_draw = tnow;
  if (total <= 0 && t->expected > 0) total = t->expected;
  const double secs = std::chrono::duration<double>(tnow - t->start).count();
  const std::string pct = total > 0 ? fmt::format(" {:3.0f}%", 100.0 * double(now) / double(total)) : "";
  fmt::print(stderr, "\r{}: {} / {}{}  {}/s   ", t->file, human(double(now)), total > 0 ? human(double(total)) : "?",
             pct, human(secs > 0 ? double(now) / secs : 0.0));
  std::fflush(stderr);
  return 0;
}

// Creates `part` for writing without following a link there: a stale regular file is
// removed first; a symlink or any other non-regular file is refused (left untouched).
int open_part(const fs::path& part) {
  struct stat st {};
  if (::lstat(part.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode))
      throw data_error(fmt::format(
          "{} exists and is {}, not a regular file; refusing to download through it (it and anything it points to "
          "were left untouched; remove it and try again)",
          display(part),
          S_ISLNK(st.st_mode)   ? "a symbolic link"
          : S_ISDIR(st.st_mode) ? "a directory"
                                : "special"));
    if (::unlink(part.c_str()) != 0 && errno != ENOENT)
      throw data_error(fmt::format("cannot remove the stale {}: {}", display(part), std::strerror(errno)));
  } else if (errno != ENOENT) {
    throw data_error(fmt::format("cannot inspect {}: {}", display(part), std::strerror(errno)));
  }
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0)
    throw data_error(fmt::format("cannot create {}: {}{}", display(part), std::strerror(errno),
                                 errno == EEXIST ? " (something else created it meanwhile)" : ""));
  return fd;
}

// Downloads url into t.fd (closed on return) while hashing it. Returns "" on success,
// else why this address failed; throws data_error when the .part file cannot be written.
std::string download(const std::string& url, const fs::path& part, transfer& t, const fetch_options& o,
                     double total_s) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  const auto close_fd = [&] {  // 0, or the errno of a failed fsync/close
    const int synced = ::fsync(t.fd) == 0 ? 0 : errno;
    const int closed = ::close(t.fd) == 0 ? 0 : errno;
    t.fd = -1;
    return synced ? synced : closed;
  };
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    close_fd();
    throw internal_error("curl_easy_init failed");
  }
  char err[CURL_ERROR_SIZE] = {};
  const std::string agent = fmt::format("eqprop/{}", build::version);
  CURL* c = t.curl = curl.get();
  const auto ms = [](double s) { return static_cast<long>(std::min(s * 1000.0, 1e12)); };
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, agent.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::max(1L, ms(o.connect_timeout_s)));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, std::max(1L, ms(total_s)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  t.start = t.window_start = std::chrono::steady_clock::now();
  const CURLcode rc = curl_easy_perform(c);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t.start).count();
  if (t.bar) fmt::print(stderr, "\r\033[K");
  const int close_errno = close_fd();
  if (t.write_errno != 0 || (rc == CURLE_OK && close_errno != 0))
    throw data_error(
        fmt::format("cannot write {}: {}", display(part), std::strerror(t.write_errno ? t.write_errno : close_errno)));
  if (!t.abort.empty()) return t.abort;
  if (rc == CURLE_HTTP_RETURNED_ERROR) {
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return fmt::format("HTTP {}", status);
  }
  if (rc == CURLE_OPERATION_TIMEDOUT && secs >= total_s * 0.98)
    return fmt::format("timed out: not complete within the total limit of {} s ({} bytes received)", total_s, t.bytes);
  if (rc != CURLE_OK) return fmt::format("curl error {}: {}", int(rc), *err ? err : curl_easy_strerror(rc));
  return "";
}

void remove_quietly(const fs::path& p) {
  std::error_code ec;
  fs::remove(p, ec);
}

// Makes the rename of a file in dir durable (best effort: not every file system can).
void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void fetch_one(const remote_file& f, const fs::path& data_dir, const fetch_options& o) {
  const auto log = [&](const std::string& s) { o.log ? o.log(s) : fmt::print(stderr, "{}\n", s); };
  const fs::path dest = data_dir / f.path;
  if (!o.force) {
    const file_check c = check_file(data_dir, f);
    if (c.state == file_state::verified) return log(fmt::format("{}: ok, already present", f.path));
    if (c.state == file_state::unverified)
      return log(
          fmt::format("{}: present (no published checksum, not verified); use --force to download again", f.path));
    if (c.state == file_state::mismatch)
      log(fmt::format("{}: present but its {} is {} (expected {}); downloading again", f.path, checksum_name(f.kind),
                      c.actual, f.checksum));
  }
  std::error_code ec;
  fs::create_directories(dest.parent_path(), ec);
  if (ec) throw data_error(fmt::format("cannot create directory {}: {}", display(dest.parent_path()), ec.message()));
  const fs::path part = dest.string() + ".part";
  const double total_s = o.timeout_s ? *o.timeout_s : auto_timeout_s(f);
  std::vector<std::string> failures, tried;
  for (const std::string& raw : f.urls) {
    const std::string url = apply_base_url(raw, o.base_url);
    if (std::find(tried.begin(), tried.end(), url) != tried.end()) continue;  // mirrors under one --base-url
    tried.push_back(url);
    if (!o.progress_bar) log(fmt::format("{}: downloading {}", f.path, url));
    digest hash(f.kind);
    transfer t;
    t.hash = &hash;
    t.bar = o.progress_bar;
    t.file = f.path;
    t.expected = f.size;
    t.cap = f.size >= 0 ? f.size : o.unknown_size_limit;
    t.idle_s = o.idle_timeout_s;
    t.min_rate = o.min_rate;
    t.fd = open_part(part);  // throws, leaving a non-regular .part alone
    std::string why;
    try {
      why = download(url, part, t, o, total_s);
    } catch (...) {
      remove_quietly(part);
      throw;
    }
    if (!why.empty()) {
      remove_quietly(part);
      log(fmt::format("{}: {}: {}", f.path, url, why));
      failures.push_back(fmt::format("{}: {}", url, why));
      continue;
    }
    const std::string actual = hash.hex();
    if (f.kind != checksum_kind::none && actual != f.checksum) {
      remove_quietly(part);
      throw data_error(
          fmt::format("{}: checksum mismatch for the file downloaded from {}: expected {} {}, got {} ({} bytes{}). The "
                      "partial file was removed; the mirror may be corrupt or the download was altered.",
                      display(dest), url, checksum_name(f.kind), f.checksum, actual, t.bytes,
                      f.size >= 0 ? fmt::format(", expected {}", f.size) : ""));
    }
    if (f.kind == checksum_kind::none && f.size >= 0 && t.bytes != f.size) {
      remove_quietly(part);
      throw data_error(
          fmt::format("{}: downloaded {} bytes from {} but expected {}", display(dest), t.bytes, url, f.size));
    }
    // rename(2) replaces the directory entry at dest (a symlink there included) and never
    // writes through it.
    fs::rename(part, dest, ec);
    if (ec) {
      remove_quietly(part);
      throw data_error(fmt::format("cannot move {} to {}: {}", display(part), display(dest), ec.message()));
    }
    sync_dir(dest.parent_path());
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t.start).count();
    const std::string rate = secs > 0 ? human(double(t.bytes) / secs) + "/s" : "";
    if (f.kind == checksum_kind::none)
      log(
          fmt::format("{}: WARNING: no published checksum for this file, so it was NOT verified (sha256 {}); "
                      "{} in {:.1f} s",
                      f.path, actual, human(double(t.bytes)), secs));
    else
      log(fmt::format("{}: ok, {} in {:.1f} s ({}), {} verified", f.path, human(double(t.bytes)), secs, rate,
                      checksum_name(f.kind)));
    return;
  }
  throw data_error(
      fmt::format("could not download {}; every address failed:\n  {}", display(dest), fmt::join(failures, "\n  ")));
}

}  // namespace

void fetch_options::validate() const {
  const auto seconds = [](const char* key, const char* flag, double v) {
    if (!(std::isfinite(v) && v > 0))
      throw config_error(
          fmt::format("fetch option {} ({}) must be a positive, finite number of seconds; got {}", key, flag, v));
  };
  seconds("connect_timeout_s", "--connect-timeout", connect_timeout_s);
  if (timeout_s) seconds("timeout_s", "--timeout", *timeout_s);
  seconds("idle_timeout_s", "--idle-timeout", idle_timeout_s);
  if (!(std::isfinite(min_rate) && min_rate >= 0))
    throw config_error(
        fmt::format("fetch option min_rate must be a finite number of bytes per second >= 0; got {}", min_rate));
  if (unknown_size_limit <= 0)
    throw config_error(fmt::format("fetch option unknown_size_limit must be > 0 bytes; got {}", unknown_size_limit));
}

double auto_timeout_s(const remote_file& file) { return file.size >= 0 ? 600.0 + double(file.size) / 50e3 : 3600.0; }

void fetch_files(const std::vector<remote_file>& files, const fs::path& data_dir, const fetch_options& options) {
  options.validate();
  for (const remote_file& f : files) fetch_one(f, data_dir, options);
}

namespace {

// Makes the derived files of d from its (verified) downloaded files.
void derive(const remote_dataset& d, const fs::path& data_dir, const std::function<void(const std::string&)>& log) {
  const fs::path source = data_dir / d.files.front().path;
  const fs::path dir = data_dir / fs::path(d.derived.front().path).parent_path();
  const auto t0 = std::chrono::steady_clock::now();
  const auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  if (d.name == "mnist1d") {
    convert_mnist1d_pickle(source, dir);
    log(fmt::format("{}: converted {} to .npy in {:.1f} s", d.name, d.files.front().path, secs()));
  } else if (d.name == "mnist1d_gle") {
    mnist1d_args args;
    args.final_seq_length = 360;
    const mnist1d_data data = generate_mnist1d(mnist1d_templates_from(read_numpy_pickle(source)), args);
    write_mnist1d_npy(data, dir, true);
    log(fmt::format("{}: generated {} + {} samples of {} steps (seed {}) from the templates in {} in {:.1f} s", d.name,
                    data.n_train, data.n_test, data.length, args.seed, d.files.front().path, secs()));
  } else {
    throw internal_error(fmt::format("no way to make the derived files of '{}'", d.name));
  }
}

}  // namespace

void fetch_dataset(const remote_dataset& d, const fs::path& data_dir, const fetch_options& options) {
  fetch_files(d.files, data_dir, options);
  if (d.derived.empty()) return;
  const auto log = [&](const std::string& s) { options.log ? options.log(s) : fmt::print(stderr, "{}\n", s); };
  if (!options.force) {
    bool all = true;
    for (const remote_file& f : d.derived) all = all && check_file(data_dir, f).state == file_state::verified;
    if (all) {
      for (const remote_file& f : d.derived) log(fmt::format("{}: ok, already present", f.path));
      return;
    }
  }
  derive(d, data_dir, log);
  for (const remote_file& f : d.derived) {
    const file_check c = check_file(data_dir, f);
    if (c.state == file_state::verified) {
      log(fmt::format("{}: ok, {} verified (identical to the reference file)", f.path, checksum_name(f.kind)));
    } else if (d.derive == derive_kind::convert) {
      throw data_error(fmt::format("{}: the converted file differs from the reference: expected {} {}, got {}",
                                   display(data_dir / f.path), checksum_name(f.kind), f.checksum,
                                   c.actual.empty() ? std::string("no file") : c.actual));
    } else {
      log(fmt::format(
          "{}: differs from the reference file ({} {}, reference {}): generated float64 values depend in their "
          "last bits on the math library's exp and log (see docs/datasets.md)",
          f.path, checksum_name(f.kind), c.actual, f.checksum));
    }
  }
}

}  // namespace eqprop
