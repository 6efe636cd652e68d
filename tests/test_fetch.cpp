// Data set downloads (eqprop/io/fetch.hpp, `eqprop data`), against a small HTTP/1.0
// server on 127.0.0.1 run by the test itself: no network access is needed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "eqprop/core/atomic_file.hpp"
#include "eqprop/io/download.hpp"

namespace fs = std::filesystem;
using namespace eqprop;

namespace {

// Serves the files under root (GET only; 404 when missing). Bounded: stops after 60 s
// or 200 requests, and when destroyed. A first path component picks a hostile behaviour:
// /slow/F sends F at 20 bytes/s; /endless/F sends bytes until the client hangs up (no
// Content-Length, at most 64 MiB); /long/F and /short/F announce a Content-Length of ten
// times and half the size of F, then send like /endless. While sending, the size of the
// file at `watch` (if set) is sampled into max_watched.
class http_server {
 public:
  enum class mode { normal, corrupt, truncate };
  explicit http_server(fs::path root) : root_(std::move(root)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("test server: cannot listen on 127.0.0.1");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~http_server() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::atomic<mode> serve_mode{mode::normal};
  std::atomic<int> requests{0};
  fs::path watch;  // set before the first request
  std::atomic<int64_t> max_watched{-1};

 private:
  void loop() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!stop_ && requests < 200 && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      ++requests;
      serve(c);
      ::close(c);
    }
  }
  bool send_all(int c, const std::string& out) {
    for (size_t at = 0; at < out.size();) {
      const ssize_t n = ::send(c, out.data() + at, out.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return false;
      at += static_cast<size_t>(n);
    }
    return true;
  }
  // Samples the size of `watch` until it reaches `sent` bytes (the client wrote all it
  // was sent), for at most 500 ms. Returns false once the file is gone or the client
  // closed connection c.
  bool await_watched(int c, int64_t sent) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (std::chrono::steady_clock::now() < until) {
      std::error_code ec;
      const auto n = static_cast<int64_t>(fs::file_size(watch, ec));
      if (ec) return false;
      if (n > max_watched) max_watched = n;
      if (n >= sent) return true;
      pollfd p{c, POLLIN | POLLRDHUP, 0};
      if (::poll(&p, 1, 1) != 0) return false;  // the client hung up (or sent more)
    }
    return true;
  }
  void serve(int c) {
    timeval tv{5, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 16384) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      req.append(buf, static_cast<size_t>(n));
    }
    const size_t a = req.find(' '), b = req.find(' ', a + 1);
    std::string path = req.substr(a + 2, b - a - 2), how;
    for (const char* m : {"slow/", "endless/", "long/", "short/"})
      if (path.rfind(m, 0) == 0) {
        how = m;
        path = path.substr(how.size());
      }
    std::error_code ec;
    const fs::path file = root_ / path;
    if (path.find("..") != std::string::npos || !fs::is_regular_file(file, ec)) {
      send_all(c, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    std::string body = read_file(file);
    const auto t0 = std::chrono::steady_clock::now();
    const auto running = [&](int seconds) {
      return !stop_ && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(seconds);
    };
    if (how == "slow/") {
      if (!send_all(c, "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n")) return;
      for (size_t at = 0; at < body.size() && running(10); at += 4) {
        if (!send_all(c, body.substr(at, 4))) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      return;
    }
    if (!how.empty()) {
      std::string head = "HTTP/1.0 200 OK\r\n";
      if (how == "long/") head += "Content-Length: " + std::to_string(body.size() * 10) + "\r\n";
      if (how == "short/") head += "Content-Length: " + std::to_string(body.size() / 2) + "\r\n";
      if (!send_all(c, head + "\r\n")) return;
      const std::string chunk(65536, 'x');
      for (int64_t sent = 0; sent < (int64_t{64} << 20) && running(10);) {
        if (!send_all(c, chunk)) return;
        sent += static_cast<int64_t>(chunk.size());
        if (!watch.empty() && !await_watched(c, sent)) return;
      }
      return;
    }
    std::string head = "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    if (serve_mode == mode::corrupt) body[body.size() / 2] ^= 0x5a;
    if (serve_mode == mode::truncate) body.resize(body.size() / 2);
    send_all(c, head + body);
  }
  fs::path root_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

fs::path fresh_dir(const std::string& name) {
  const fs::path p = fs::path(::testing::TempDir()) / ("eqprop_fetch_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// A port nothing listens on: bound, then released.
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), len);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A server directory holding payload.bin, and a file entry for it (served at /payload.bin).
struct fixture {
  fs::path root = fresh_dir("srv"), data = fresh_dir("data");
  std::string payload;
  remote_file entry;
  std::vector<std::string> log;
  fetch_options opts;
  fixture() {
    for (int i = 0; i < 300000; ++i) payload += static_cast<char>((static_cast<unsigned>(i) * 7919u) >> 3);
    write_file_atomic(root / "payload.bin", payload);
    entry = {"sub/payload.bin",
             {},
             static_cast<int64_t>(payload.size()),
             checksum_kind::sha256,
             file_digest(root / "payload.bin", checksum_kind::sha256)};
    opts.log = [this](const std::string& s) { log.push_back(s); };
  }
  bool logged(const std::string& text) const {
    for (const auto& l : log)
      if (l.find(text) != std::string::npos) return true;
    return false;
  }
};

#define EXPECT_CONTAINS(hay, needle) EXPECT_NE(std::string(hay).find(needle), std::string::npos) << (hay)

}  // namespace

TEST(Fetch, DigestsMatchKnownVectors) {
  const fs::path f = fresh_dir("digest") / "abc";
  write_file_atomic(f, "abc");
  EXPECT_EQ(file_digest(f, checksum_kind::sha256), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(file_digest(f, checksum_kind::md5), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(apply_base_url("https://h.example/a/b/f.gz", "http://127.0.0.1:9/"), "http://127.0.0.1:9/f.gz");
  EXPECT_EQ(apply_base_url("https://h.example/f.gz", ""), "https://h.example/f.gz");
}

TEST(Fetch, GoodFetchLandsVerifiedThenSkips) {
  fixture fx;
  http_server server(fx.root);
  fx.entry.urls = {server.url() + "/payload.bin"};
  fetch_files({fx.entry}, fx.data, fx.opts);
  EXPECT_EQ(read_file(fx.data / "sub/payload.bin"), fx.payload);
  EXPECT_EQ(check_file(fx.data, fx.entry).state, file_state::verified);
  EXPECT_FALSE(fs::exists(fx.data / "sub/payload.bin.part"));
  const int served = server.requests;
  fetch_files({fx.entry}, fx.data, fx.opts);
  EXPECT_TRUE(fx.logged("ok, already present"));
  EXPECT_EQ(server.requests, served);  // no second download
}

TEST(Fetch, CorruptOrTruncatedContentIsRejected) {
  fixture fx;
  http_server server(fx.root);
  fx.entry.urls = {server.url() + "/payload.bin"};
  server.serve_mode = http_server::mode::corrupt;
  std::string bad = fx.payload;
  bad[bad.size() / 2] ^= 0x5a;
  write_file_atomic(fx.root / "bad.bin", bad);
  try {
    fetch_files({fx.entry}, fx.data, fx.opts);
    ADD_FAILURE() << "corrupt download accepted";
  } catch (const data_error& e) {
    EXPECT_CONTAINS(e.what(), "sub/payload.bin");
    EXPECT_CONTAINS(e.what(), fx.entry.checksum);
    EXPECT_CONTAINS(e.what(), file_digest(fx.root / "bad.bin", checksum_kind::sha256));
  }
  server.serve_mode = http_server::mode::truncate;
  EXPECT_THROW(fetch_files({fx.entry}, fx.data, fx.opts), data_error);
  EXPECT_FALSE(fs::exists(fx.data / "sub/payload.bin"));
  EXPECT_FALSE(fs::exists(fx.data / "sub/payload.bin.part"));
}

TEST(Fetch, FallsBackToTheNextMirrorAfter404) {
  fixture fx;
  http_server server(fx.root);
  fx.entry.urls = {server.url() + "/gone/payload.bin", server.url() + "/payload.bin"};
  fetch_files({fx.entry}, fx.data, fx.opts);
  EXPECT_TRUE(fx.logged("/gone/payload.bin: HTTP 404"));
  EXPECT_EQ(read_file(fx.data / "sub/payload.bin"), fx.payload);
}

TEST(Fetch, UnreachableServersGiveClearErrors) {
  fixture fx;
  const std::string dead = "http://127.0.0.1:" + std::to_string(closed_port()) + "/payload.bin";
  fx.entry.urls = {dead};
  try {
    fetch_files({fx.entry}, fx.data, fx.opts);
    ADD_FAILURE() << "no error";
  } catch (const data_error& e) {
    EXPECT_CONTAINS(e.what(), dead);
    EXPECT_CONTAINS(e.what(), "curl error 7");
  }
  EXPECT_FALSE(fs::exists(fx.data / "sub/payload.bin.part"));
}

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
// Runs fetch_files, expecting data_error; returns its message and the seconds it took.
std::pair<std::string, double> fetch_error(fixture& fx) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    fetch_files({fx.entry}, fx.data, fx.opts);
  } catch (const data_error& e) {
    return {e.what(), seconds_since(t0)};
  }
  ADD_FAILURE() << "fetch succeeded";
  return {"", seconds_since(t0)};
}
}  // namespace

TEST(Fetch, SlowServerStopsAtTheTotalTimeLimit) {
  fixture fx;
  http_server server(fx.root);
  fx.entry.urls = {server.url() + "/slow/payload.bin"};
  fx.opts.timeout_s = 1.0;
  fx.opts.idle_timeout_s = 30;
  const auto [msg, secs] = fetch_error(fx);
  EXPECT_CONTAINS(msg, "sub/payload.bin");
  EXPECT_CONTAINS(msg, "/slow/payload.bin: timed out: not complete within the total limit of 1 s");
  EXPECT_GE(secs, 0.9);
  EXPECT_LT(secs, 3.0);
  EXPECT_FALSE(fs::exists(fx.data / "sub/payload.bin"));
  EXPECT_FALSE(fs::exists(fx.data / "sub/payload.bin.part"));
}

TEST(Fetch, TricklingServerStopsAtTheIdleLimitThenNextMirror) {
  fixture fx;
  http_server server(fx.root);
  fx.entry.urls = {server.url() + "/slow/payload.bin", server.url() + "/payload.bin"};
  fx.opts.idle_timeout_s = 1.0;  // 20 bytes/s is below the default 1000 bytes/s
  const auto t0 = std::chrono::steady_clock::now();
  fetch_files({fx.entry}, fx.data, fx.opts);
  const double secs = seconds_since(t0);
  EXPECT_TRUE(fx.logged("/slow/payload.bin: too slow: ")) << ::testing::PrintToString(fx.log);
  EXPECT_TRUE(fx.logged("over the idle limit of 1 s"));
  EXPECT_LT(secs, 4.0);
  EXPECT_EQ(read_file(fx.data / "sub/payload.bin"), fx.payload);  // from the second address
}

TEST(Fetch, EndlessBodyStopsAtTheKnownSize) {
  fixture fx;
  http_server server(fx.root);
  server.watch = fx.data / "sub/payload.bin.part";
  fx.entry.urls = {server.url() + "/endless/payload.bin"};
  const auto [msg, secs] = fetch_error(fx);
  EXPECT_CONTAINS(msg, "/endless/payload.bin: more than the expected 300000 bytes of sub/payload.bin arrived");
  EXPECT_GT(server.max_watched, 0);  // the sampling saw the download
  EXPECT_LE(server.max_watched, 300000);
  EXPECT_LT(secs, 3.0);
  EXPECT_FALSE(fs::exists(fx.data / "sub/payload.bin.part"));

  // Unknown size: capped at unknown_size_limit instead.
  fx.entry.size = -1;
  fx.opts.unknown_size_limit = 100000;
  server.max_watched = -1;
  EXPECT_CONTAINS(fetch_error(fx).first, "more than 100000 bytes arrived (the limit for a file of unknown size)");
  EXPECT_GT(server.max_watched, 0);
  EXPECT_LE(server.max_watched, 100000);
  EXPECT_FALSE(fs::exists(fx.data / "sub/payload.bin"));
}

TEST(Fetch, WrongContentLengthIsRefusedBeforeDownloading) {
  fixture fx;
  http_server server(fx.root);
  server.watch = fx.data / "sub/payload.bin.part";
  fx.entry.urls = {server.url() + "/long/payload.bin", server.url() + "/short/payload.bin"};
  const auto [msg, secs] = fetch_error(fx);
  EXPECT_CONTAINS(msg,
                  "/long/payload.bin: the server announced Content-Length 3000000 but sub/payload.bin is "
                  "300000 bytes; refused before downloading");
  EXPECT_CONTAINS(msg, "/short/payload.bin: the server announced Content-Length 150000");
  EXPECT_LE(server.max_watched, 0);  // the .part file never received a byte
  EXPECT_LT(secs, 3.0);
  // Unknown size: a Content-Length above the limit is refused too.
  fx.entry.size = -1;
  fx.opts.unknown_size_limit = 1000000;
  fx.entry.urls = {server.url() + "/long/payload.bin"};
  EXPECT_CONTAINS(fetch_error(fx).first, "announced Content-Length 3000000, more than the limit of 1000000 bytes");
  EXPECT_LE(server.max_watched, 0);
}

TEST(Fetch, NeverWritesThroughSymlinks) {
  fixture fx;
  http_server server(fx.root);
  fx.entry.urls = {server.url() + "/payload.bin"};
  const fs::path victims = fresh_dir("victims"), part = fx.data / "sub/payload.bin.part";
  write_file_atomic(victims / "victim", "precious");
  fs::create_directories(fx.data / "sub");
  // A symlink at <file>.part, to an existing file and to a missing one: refused, no request.
  for (const char* target : {"victim", "not_there"}) {
    fs::remove(part);
    fs::create_symlink(victims / target, part);
    try {
      fetch_files({fx.entry}, fx.data, fx.opts);
      ADD_FAILURE() << "fetch through a symlinked .part";
    } catch (const data_error& e) {
      EXPECT_CONTAINS(e.what(), "sub/payload.bin.part exists and is a symbolic link");
    }
    EXPECT_TRUE(fs::is_symlink(part));
    EXPECT_EQ(fs::read_symlink(part), victims / target);
    EXPECT_EQ(read_file(victims / "victim"), "precious");
    EXPECT_FALSE(fs::exists(victims / "not_there"));
    EXPECT_EQ(server.requests, 0);
  }
  // A stale .part that is a hard link to the victim: removed (the link only), not reused.
  fs::remove(part);
  fs::create_hard_link(victims / "victim", part);
  // And a symlink at the final name: replaced by the downloaded file, its target untouched.
  fs::create_symlink(victims / "victim", fx.data / "sub/payload.bin");
  fetch_files({fx.entry}, fx.data, fx.opts);
  EXPECT_EQ(read_file(victims / "victim"), "precious");
  EXPECT_FALSE(fs::is_symlink(fx.data / "sub/payload.bin"));
  EXPECT_EQ(read_file(fx.data / "sub/payload.bin"), fx.payload);
  EXPECT_EQ(check_file(fx.data, fx.entry).state, file_state::verified);
  EXPECT_FALSE(fs::exists(part));
}

TEST(Fetch, InvalidLimitsAreRefusedBeforeAnyRequest) {
  fixture fx;
  http_server server(fx.root);
  fx.entry.urls = {server.url() + "/payload.bin"};
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  struct bad_case {
    std::function<void(fetch_options&)> set;
    const char* key;
  };
  const std::vector<bad_case> cases = {
      {[](fetch_options& o) { o.timeout_s = 0; }, "timeout_s (--timeout)"},
      {[](fetch_options& o) { o.timeout_s = -1; }, "timeout_s (--timeout)"},
      {[&](fetch_options& o) { o.timeout_s = inf; }, "timeout_s (--timeout)"},
      {[&](fetch_options& o) { o.idle_timeout_s = nan; }, "idle_timeout_s (--idle-timeout)"},
      {[](fetch_options& o) { o.idle_timeout_s = 0; }, "idle_timeout_s (--idle-timeout)"},
      {[&](fetch_options& o) { o.connect_timeout_s = -inf; }, "connect_timeout_s (--connect-timeout)"},
      {[&](fetch_options& o) { o.min_rate = nan; }, "min_rate"},
      {[](fetch_options& o) { o.unknown_size_limit = 0; }, "unknown_size_limit"},
  };
  for (const auto& c : cases) {
    fetch_options o = fx.opts;
    c.set(o);
    try {
      fetch_files({fx.entry}, fx.data, o);
      ADD_FAILURE() << c.key << " accepted";
    } catch (const config_error& e) {
      EXPECT_CONTAINS(e.what(), c.key);
    }
  }
  EXPECT_EQ(server.requests, 0);
  EXPECT_EQ(auto_timeout_s(find_remote_dataset("mnist").files[0]), 600.0 + 9912422 / 50e3);
}

TEST(Fetch, RegistryNamesAndSuggestions) {
  EXPECT_EQ(find_remote_dataset("Fashion-MNIST").name, "fashion_mnist");
  try {
    find_remote_dataset("mnsit");
    ADD_FAILURE() << "unknown name accepted";
  } catch (const config_error& e) {
    EXPECT_CONTAINS(e.what(), "Did you mean 'mnist'?");
  }
  for (const auto& d : remote_datasets())
    for (const auto& f : d.files) {
      EXPECT_FALSE(f.urls.empty()) << f.path;
      EXPECT_EQ(f.checksum.size(), f.kind == checksum_kind::sha256 ? 64u : 32u) << f.path;
    }
}

const fs::path shared_mnist = fs::path(EQPROP_SOURCE_DIR) / ".." / "shared" / "data" / "mnist";

TEST(Fetch, RealMnistChecksumsVerifyFromLocalMirror) {
  if (!fs::exists(shared_mnist)) GTEST_SKIP() << "no offline MNIST at " << shared_mnist;
  fixture fx;
  http_server server(shared_mnist);
  fx.opts.base_url = server.url();
  const auto& files = find_remote_dataset("mnist").files;
  ASSERT_EQ(files.size(), 4u);
  fetch_files(files, fx.data, fx.opts);
  for (const auto& f : files) EXPECT_EQ(check_file(fx.data, f).state, file_state::verified) << f.path;
}

namespace {
std::pair<int, std::string> run_cli(const std::string& args) {
  FILE* f = popen((std::string(std::getenv("EQPROP_CLI")) + " " + args + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  const int st = pclose(f);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128, out};
}
}  // namespace

TEST(FetchCli, DataFetchVerifyListEndToEnd) {
  if (!std::getenv("EQPROP_CLI")) GTEST_SKIP() << "EQPROP_CLI not set (run through ctest)";
  if (!fs::exists(shared_mnist)) GTEST_SKIP() << "no offline MNIST";
  http_server server(shared_mnist);
  const std::string dir = fresh_dir("cli").string();
  auto r = run_cli("data fetch mnist --data-dir " + dir + " --base-url " + server.url());
  ASSERT_EQ(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "sha256 verified");
  r = run_cli("data fetch MNIST --data-dir " + dir + " --base-url " + server.url());
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "ok, already present");
  r = run_cli("data verify mnist --data-dir " + dir);
  EXPECT_EQ(r.first, 0) << r.second;
  r = run_cli("data list --data-dir " + dir);
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "cifar-100-binary.tar.gz");
  write_file_atomic(fs::path(dir) / "mnist/t10k-labels-idx1-ubyte.gz", "not the labels");
  r = run_cli("data verify mnist --data-dir " + dir);
  EXPECT_NE(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "MISMATCH");
  r = run_cli("data fetch mnsit --data-dir " + dir);
  EXPECT_NE(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "Did you mean 'mnist'?");
  r = run_cli("data fetch kmnist --data-dir " + dir + " --base-url http://127.0.0.1:" + std::to_string(closed_port()));
  EXPECT_NE(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "train-images-idx3-ubyte.gz");
  EXPECT_CONTAINS(r.second, "curl error 7");
  for (const char* bad : {"--timeout -1", "--timeout 0", "--idle-timeout nan", "--connect-timeout inf"}) {
    r = run_cli("data fetch kmnist --data-dir " + dir + " --base-url " + server.url() + " " + bad);
    EXPECT_NE(r.first, 0) << bad << ": " << r.second;
    EXPECT_CONTAINS(r.second, "must be a positive, finite number of seconds");
  }
  r = run_cli("data fetch mnist --force --timeout 0.5 --data-dir " + dir + " --base-url " + server.url() + "/slow");
  EXPECT_NE(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "timed out: not complete within the total limit of 0.5 s");
}

// MNIST-1D: the pickle is downloaded and converted (fetch), or the 360-step variant is
// generated from it (generate). The offline copy of the pickle is served locally.
namespace {
fs::path shared_mnist1d() {
  const char* env = std::getenv("EQPROP_DATA");
  return (env && *env ? fs::path(env) : fs::path(EQPROP_SOURCE_DIR) / ".." / "shared" / "data") / "mnist-1d";
}
}  // namespace

TEST(Fetch, Mnist1dDownloadsVerifiesAndConverts) {
  if (!fs::exists(shared_mnist1d() / "mnist1d_data.pkl")) GTEST_SKIP() << "no offline MNIST-1D (set EQPROP_DATA)";
  fixture fx;
  http_server server(shared_mnist1d());
  fx.opts.base_url = server.url();
  const remote_dataset& d = find_remote_dataset("MNIST1D");
  ASSERT_EQ(d.name, "mnist1d");
  ASSERT_EQ(d.files.size(), 1u);
  EXPECT_EQ(d.files[0].urls[0],
            "https://raw.githubusercontent.com/greydanus/mnist1d/7878d96082abd200c546a07a4101fa90b30fdf7e/"
            "mnist1d_data.pkl");
  fetch_dataset(d, fx.data, fx.opts);
  EXPECT_EQ(server.requests, 1);
  EXPECT_EQ(check_file(fx.data, d.files[0]).state, file_state::verified);
  ASSERT_EQ(d.derived.size(), 5u);
  for (const remote_file& f : d.derived) {
    EXPECT_TRUE(f.urls.empty()) << f.path;  // made locally, never downloaded
    EXPECT_EQ(f.checksum.size(), 64u) << f.path;
    EXPECT_EQ(check_file(fx.data, f).state, file_state::verified) << f.path;
    EXPECT_TRUE(read_file(fx.data / f.path) == read_file(shared_mnist1d() / "standard" / fs::path(f.path).filename()))
        << f.path << " is not bit-identical to the reference";
    EXPECT_TRUE(fx.logged(f.path + ": ok, sha256 verified (identical to the reference file)")) << f.path;
  }
  // Everything present: nothing downloaded or converted again.
  fx.log.clear();
  fetch_dataset(d, fx.data, fx.opts);
  EXPECT_EQ(server.requests, 1);
  EXPECT_TRUE(fx.logged("mnist-1d/mnist1d_data.pkl: ok, already present"));
  EXPECT_TRUE(fx.logged("mnist-1d/standard/x_train.npy: ok, already present"));
  EXPECT_FALSE(fx.logged("converted"));
  // A damaged converted file is made again from the pickle, still without a download.
  write_file_atomic(fx.data / "mnist-1d/standard/t.npy", "damaged");
  fx.log.clear();
  fetch_dataset(d, fx.data, fx.opts);
  EXPECT_EQ(server.requests, 1);
  EXPECT_TRUE(fx.logged("mnist1d: converted mnist-1d/mnist1d_data.pkl to .npy"));
  EXPECT_EQ(check_file(fx.data, d.derived[4]).state, file_state::verified);
}

TEST(Fetch, Mnist1dPickleCopiedByHandIsConvertedWithoutDownload) {
  if (!fs::exists(shared_mnist1d() / "mnist1d_data.pkl")) GTEST_SKIP() << "no offline MNIST-1D (set EQPROP_DATA)";
  fixture fx;
  fs::create_directories(fx.data / "mnist-1d");
  fs::copy_file(shared_mnist1d() / "mnist1d_data.pkl", fx.data / "mnist-1d/mnist1d_data.pkl");
  fx.opts.base_url = "http://127.0.0.1:" + std::to_string(closed_port());  // a download would fail
  fetch_dataset(find_remote_dataset("mnist1d"), fx.data, fx.opts);
  EXPECT_TRUE(fx.logged("mnist-1d/mnist1d_data.pkl: ok, already present"));
  for (const remote_file& f : find_remote_dataset("mnist1d").derived)
    EXPECT_EQ(check_file(fx.data, f).state, file_state::verified) << f.path;
  // A different pickle at that name is not converted: it is downloaded again (and fails here).
  write_file_atomic(fx.data / "mnist-1d/mnist1d_data.pkl", "not the pickle");
  fs::remove(fx.data / "mnist-1d/standard/x_train.npy");
  try {
    fetch_dataset(find_remote_dataset("mnist1d"), fx.data, fx.opts);
    ADD_FAILURE() << "a wrong pickle was accepted";
  } catch (const data_error& e) {
    EXPECT_CONTAINS(e.what(), "could not download");
    EXPECT_CONTAINS(e.what(), "mnist1d_data.pkl");
  }
  EXPECT_FALSE(fs::exists(fx.data / "mnist-1d/standard/x_train.npy"));
}

TEST(FetchCli, Mnist1dFetchGenerateVerifyList) {
  if (!std::getenv("EQPROP_CLI")) GTEST_SKIP() << "EQPROP_CLI not set (run through ctest)";
  if (!fs::exists(shared_mnist1d() / "mnist1d_data.pkl")) GTEST_SKIP() << "no offline MNIST-1D (set EQPROP_DATA)";
  http_server server(shared_mnist1d());
  const std::string dir = fresh_dir("cli_mnist1d").string();
  auto r = run_cli("data verify mnist1d --data-dir " + dir);
  EXPECT_NE(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "run `eqprop data fetch mnist1d`");
  r = run_cli("data fetch mnist1d --data-dir " + dir + " --base-url " + server.url());
  ASSERT_EQ(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "mnist-1d/mnist1d_data.pkl: ok");
  EXPECT_CONTAINS(r.second, "mnist-1d/standard/x_train.npy: ok, sha256 verified");
  for (const char* name : {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "t.npy"})
    EXPECT_TRUE(read_file(fs::path(dir) / "mnist-1d/standard" / name) ==
                read_file(shared_mnist1d() / "standard" / name))
        << name;
  r = run_cli("data verify mnist1d --data-dir " + dir);
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "mnist1d (1 file, converted to 5 files)");
  // The GLE variant is generated, not fetched; it starts from the pickle already present.
  r = run_cli("data fetch mnist1d_gle --data-dir " + dir);
  EXPECT_NE(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "run `eqprop data generate mnist1d_gle`");
  r = run_cli("data generate mnist1d --data-dir " + dir);
  EXPECT_NE(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "run `eqprop data fetch mnist1d`");
  const int served = server.requests;
  r = run_cli("data generate mnist1d-gle --data-dir " + dir + " --base-url " + server.url());
  ASSERT_EQ(r.first, 0) << r.second;
  EXPECT_EQ(server.requests, served);
  EXPECT_CONTAINS(r.second, "generated 4000 + 1000 samples of 360 steps (seed 42)");
  for (const char* name : {"y_train.npy", "y_test.npy", "x_train_float32.npy", "x_test_float32.npy"})
    EXPECT_TRUE(read_file(fs::path(dir) / "mnist-1d/gle-360" / name) == read_file(shared_mnist1d() / "gle-360" / name))
        << name;
  r = run_cli("data list --data-dir " + dir);
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "mnist1d_gle (1 file, 7 files generated from it: eqprop data generate mnist1d_gle)");
  EXPECT_CONTAINS(r.second, "[generated]");
  r = run_cli("data verify mnist1d_gle --data-dir " + dir);
  EXPECT_EQ(r.first, 0) << r.second;  // all seven identical to the reference on this platform
  write_file_atomic(fs::path(dir) / "mnist-1d/gle-360/y_test.npy", "not the labels");
  r = run_cli("data verify mnist1d_gle --data-dir " + dir);
  EXPECT_NE(r.first, 0) << r.second;
  EXPECT_CONTAINS(r.second, "MISMATCH");
  EXPECT_CONTAINS(r.second, "run `eqprop data generate mnist1d_gle`");
}
