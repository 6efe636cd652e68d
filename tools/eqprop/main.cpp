// eqprop: command-line entry point. Each subcommand lives in its own cmd_<name>.cpp and
// registers itself here.
//
// Exit status: 0 success; 1 a failed check (gradcheck --min-cosine, data verify); 2 an
// error a user can cause (bad config, flag, data; out of memory for an absurd size); 3 not
// converged; 4 a run that diverged; 74 an I/O error (output that could not be written, a
// file system operation that failed); 70 an internal error (a bug). Every error prints
// one line on stderr; a closed or full stderr loses the line but never the exit status,
// and a failed write on stdout is an error even when the command itself succeeded.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <new>
#include <string>
#include <system_error>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "eqprop/core/build_info.hpp"
#include "eqprop/core/error.hpp"

namespace {

// Standard streams closed by the caller (`2>&-`) get /dev/null opened in their place before
// anything else runs, so that no file the program opens later takes descriptor 1 or 2 (text
// meant for the terminal would land in it). stdout's stand-in is read-only, so writing to
// it still fails and is reported; stderr's discards.
void occupy_closed_std_fds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    const int got = ::open("/dev/null", fd == 2 ? O_WRONLY : O_RDONLY);
    if (got >= 0 && got != fd) {
      ::dup2(got, fd);
      ::close(got);
    }
  }
}

int run(int argc, char** argv) {
  CLI::App app{"eqprop: equilibrium propagation and holomorphic EP, with exact reference gradients"};
  app.set_version_flag("--version", [] { return eqprop::build_info_line(); });
  app.require_subcommand(1);
  eqprop::cli::register_info(app);
  eqprop::cli::register_gradcheck(app);
  eqprop::cli::register_train(app);
  eqprop::cli::register_data(app);
  eqprop::cli::register_plot(app);
  eqprop::cli::register_sweep(app);
  eqprop::cli::register_deep(app);
  eqprop::cli::register_gle(app);
  eqprop::cli::register_bench(app);
  eqprop::cli::register_gep(app);
  using eqprop::cli::report_error;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const eqprop::convergence_error& e) {
    report_error(fmt::format("not converged: {}", e.what()));
    return 3;
  } catch (const eqprop::error& e) {
    report_error(fmt::format("error: {}", e.what()));
    return 2;
  } catch (const std::bad_alloc&) {
    report_error("error: out of memory: a size in the config, the data or a checkpoint needs more memory than this "
                 "machine can give");
    return 2;
  } catch (const std::system_error& e) {  // includes std::filesystem::filesystem_error (it names the path)
    report_error(fmt::format("error: {}", e.what()));
    return 74;
  } catch (const std::exception& e) {
    report_error(fmt::format("internal error: {}", e.what()));
    return 70;
  }
  return eqprop::cli::exit_code();
}

}  // namespace

namespace eqprop::cli {

void report_error(const std::string& message) {
  const std::string line = "eqprop: " + message + "\n";
  std::fflush(stderr);  // anything already buffered goes first
  for (std::size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(2, line.data() + done, line.size() - done);
    if (n > 0) done += std::size_t(n);
    else if (n < 0 && errno == EINTR) continue;
    else break;  // closed, full or broken stderr: the exit status still tells
  }
}

}  // namespace eqprop::cli

int main(int argc, char** argv) {
  occupy_closed_std_fds();
  int code = 70;
  try {
    code = run(argc, argv);
  } catch (...) {  // thrown while reporting another error, or not a std::exception
    eqprop::cli::report_error("internal error: unexpected exception");
  }
  // Output that could not be written (a full disk, a closed stdout) is an error even when
  // the command succeeded: the user did not get what it printed.
  errno = 0;
  std::cout.flush();  // shares stdout's buffer: a failure here sets errno and stdout's error flag
  const bool flushed = std::fflush(stdout) == 0;
  const int err = errno;
  if (!flushed || std::ferror(stdout) || !std::cout) {
    eqprop::cli::report_error(fmt::format("error: cannot write to standard output{}",
                                          err ? std::string(": ") + std::strerror(err) : std::string()));
    if (code == 0) code = 74;
  }
  return code;
}
