// Crash-safe file replacement (write temp, fsync, rename, fsync directory).
#include "eqprop/core/atomic_file.hpp"

#include <cerrno>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace eqprop {

namespace {

std::string errno_text(int err) { return std::generic_category().message(err); }

/// The temporary file: closed and removed on destruction unless committed.
class temp_file {
 public:
  explicit temp_file(const std::filesystem::path& target)
      : target_(target), tmp_(target.string() + ".tmp." + std::to_string(::getpid())) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) fail(errno, "creating the temporary file");
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  ~temp_file() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }

  void write(std::string_view chunk) {
    if (chunk.size() >= kBufferSize) {
      flush_buffer();
      write_raw(chunk.data(), chunk.size());
      return;
    }
    if (buffer_.size() + chunk.size() > kBufferSize) flush_buffer();
    buffer_.append(chunk);
  }

  void commit() {
    flush_buffer();
    if (::fsync(fd_) != 0) fail(errno, "syncing the temporary file");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail(errno, "closing the temporary file");
    if (::rename(tmp_.c_str(), target_.c_str()) != 0) fail(errno, "renaming the temporary file over it");
    committed_ = true;
    // Make the rename itself durable.
    std::filesystem::path dir = target_.parent_path();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) fail(errno, "opening its directory to sync it");
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    // Some file systems cannot sync directories (EINVAL): nothing more can be done there.
    if (rc != 0 && err != EINVAL && err != ENOTSUP) fail(err, "syncing its directory");
  }

 private:
  static constexpr std::size_t kBufferSize = std::size_t(1) << 20;

  [[noreturn]] void fail(int err, const char* doing) const {
    throw error(fmt::format("cannot write `{}`: {} ({})", target_.string(), errno_text(err), doing));
  }

  void flush_buffer() {
    if (buffer_.empty()) return;
    write_raw(buffer_.data(), buffer_.size());
    buffer_.clear();
  }

  void write_raw(const char* p, std::size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail(errno, "writing the temporary file");
      }
      if (w == 0) fail(ENOSPC, "writing the temporary file");
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }

  std::filesystem::path target_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
  std::string buffer_;
};

}  // namespace

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  temp_file f(path);
  f.write(bytes);  // large content goes straight to write(2), without a copy
  f.commit();
}

void write_file_atomic(const std::filesystem::path& path,
                       const std::function<void(const atomic_chunk_writer& write)>& produce) {
  temp_file f(path);
  const atomic_chunk_writer writer = [&f](std::string_view chunk) { f.write(chunk); };
  produce(writer);
  f.commit();
}

std::string read_file(const std::filesystem::path& path) {
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; only regular files are read.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw data_error(fmt::format("cannot open `{}`: {}", path.string(), errno_text(errno)));
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } guard{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw data_error(fmt::format("cannot read `{}`: {}", path.string(), errno_text(errno)));
  if (S_ISDIR(st.st_mode)) throw data_error(fmt::format("cannot read `{}`: it is a directory", path.string()));
  if (!S_ISREG(st.st_mode))
    throw data_error(
        fmt::format("cannot read `{}`: it is not a regular file (a FIFO, device or socket)", path.string()));
  std::string out;
  if (st.st_size > 0) out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw data_error(fmt::format("cannot read `{}`: {}", path.string(), errno_text(errno)));
    }
    if (r == 0) break;
    out.append(buf, static_cast<std::size_t>(r));
  }
  return out;
}

}  // namespace eqprop
