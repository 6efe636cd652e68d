// Shared by the libFuzzer harnesses: the input as a file (the readers take paths) and the
// rule that every eqprop::error is an expected outcome while anything else (another
// exception, a crash, a sanitizer report, a leak, a timeout, memory over -rss_limit_mb)
// is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "eqprop/core/error.hpp"

namespace eqprop_fuzz {

/// A per-process scratch file holding the current input: in $EQPROP_FUZZ_TMP (set by
/// scripts/fuzz.sh, which removes it afterwards), else /dev/shm, else /tmp.
inline const std::filesystem::path& input_path(const char* suffix) {
  static const std::filesystem::path p = [&] {
    const char* env = std::getenv("EQPROP_FUZZ_TMP");
    const std::filesystem::path dir = env && *env                                 ? env
                                      : std::filesystem::is_directory("/dev/shm") ? "/dev/shm"
                                                                                  : "/tmp";
    return dir / ("eqprop_fuzz_" + std::to_string(::getpid()) + suffix);
  }();
  return p;
}

/// Writes data to input_path(suffix) and returns the path.
inline const std::filesystem::path& write_input(const uint8_t* data, size_t size, const char* suffix = "") {
  const std::filesystem::path& p = input_path(suffix);
  std::FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return p;
}

/// Runs f; an eqprop::error is the expected way to reject bad input.
template <class F>
void expect_ok_or_error(F&& f) {
  try {
    f();
  } catch (const eqprop::error&) {
  }
}

}  // namespace eqprop_fuzz
