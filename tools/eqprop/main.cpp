// eqprop: command-line entry point. Each subcommand lives in its own cmd_<name>.cpp and
// registers itself here.
//
// Exit status: 0 success; 1 a failed check (gradcheck --min-cosine, data verify); 2 an
// error a user can cause (bad config, data; an unknown command or flag, a missing or bad
// argument: every command-line usage error; out of memory for an absurd size); 3 not
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
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "eqprop/core/build_info.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/core/suggest.hpp"
#include "eqprop/train/run_dir.hpp"

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

// After a failed parse: a one-line message about the first command-line word that no
// command took, naming the closest known subcommand or flag of the command it was given to
// ("unknown command 'trian'; did you mean 'train'?"), or "" when every word was taken.
std::string unknown_word_message(CLI::App& app) {
  std::string path = "eqprop";
  for (CLI::App* cur = &app; cur != nullptr;) {
    const auto left = cur->remaining(false);
    if (!left.empty()) {
      const std::string& word = left.front();
      if (word.size() > 1 && word[0] == '-') {
        const std::string flag = word.substr(0, word.find('='));
        std::vector<std::string> names;
        for (const CLI::Option* o : cur->get_options()) {
          for (const auto& l : o->get_lnames()) names.push_back("--" + l);
          for (const auto& s : o->get_snames()) names.push_back("-" + s);
        }
        const std::string bare = flag.substr(flag.find_first_not_of('-'));
        std::vector<std::string> bare_names;
        for (const auto& n : names) bare_names.push_back(n.substr(n.find_first_not_of('-')));
        const std::string best = eqprop::suggest_closest(bare, bare_names);
        const std::string shown = best.empty() ? std::string() : (best.size() == 1 ? "-" : "--") + best;
        return fmt::format("unknown flag '{}' for '{}'{}", flag, path,
                           shown.empty() ? fmt::format(" (see {} --help)", path) : "; did you mean '" + shown + "'?");
      }
      std::vector<std::string> commands;
      for (const CLI::App* sub : cur->get_subcommands([](CLI::App*) { return true; }))
        if (!sub->get_name().empty()) commands.push_back(sub->get_name());
      if (commands.empty()) return fmt::format("unexpected argument '{}' for '{}' (see {} --help)", word, path, path);
      const std::string best = eqprop::suggest_closest(word, commands);
      return fmt::format("unknown command '{}'{}", word,
                         best.empty() ? fmt::format(" (see {} --help)", path) : "; did you mean '" + best + "'?");
    }
    const auto parsed = cur->get_subcommands();
    cur = parsed.empty() ? nullptr : parsed.front();
    if (cur != nullptr) path += " " + cur->get_name();
  }
  return {};
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
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // A usage error: exit status 2 like every other error a user can cause. A word no
    // command took explains the error best (`train --sed 3` takes 3 for the config file).
    const std::string unknown = unknown_word_message(app);
    report_error("error: " + (unknown.empty() ? std::string(e.what()) : unknown));
    return 2;
  } catch (const eqprop::convergence_error& e) {
    report_error(fmt::format("not converged: {}", e.what()));
    return 3;
  } catch (const eqprop::error& e) {
    // A range check of a flag throws while the command line is parsed: an unknown word
    // there (`--epoch 0`) is the better explanation.
    const std::string unknown = unknown_word_message(app);
    report_error(fmt::format("error: {}", unknown.empty() ? e.what() : unknown));
    return 2;
  } catch (const std::bad_alloc&) {
    report_error(
        "error: out of memory: a size in the config, the data or a checkpoint needs more memory than this "
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
  eqprop::confine_stop_signals();  // before any thread starts
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
