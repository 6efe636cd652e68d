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
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "eqprop/core/atomic_file.hpp"
#include "eqprop/io/fetch.hpp"

namespace fs = std::filesystem;
using namespace eqprop;

namespace {

// Serves the files under root (GET only; 404 when missing). Bounded: stops after 60 s
// or 200 requests, and when destroyed.
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
  void serve(int c) {
    timeval tv{5, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 16384) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      req.append(buf, static_cast<size_t>(n));
    }
    const size_t a = req.find(' '), b = req.find(' ', a + 1);
    const std::string path = req.substr(a + 2, b - a - 2);
    std::error_code ec;
    const fs::path file = root_ / path;
    std::string head = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n", body;
    if (path.find("..") == std::string::npos && fs::is_regular_file(file, ec)) {
      body = read_file(file);
      head = "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
      if (serve_mode == mode::corrupt) body[body.size() / 2] ^= 0x5a;
      if (serve_mode == mode::truncate) body.resize(body.size() / 2);
    }
    const std::string out = head + body;
    for (size_t at = 0; at < out.size();) {
      const ssize_t n = ::send(c, out.data() + at, out.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return;
      at += static_cast<size_t>(n);
    }
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
    entry = {"sub/payload.bin", {}, static_cast<int64_t>(payload.size()), checksum_kind::sha256,
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
}
