// Crash-safe file replacement: a file written with write_file_atomic is, at every moment
// (including after a crash or power loss), either its complete previous content or its
// complete new content, never a mixture or a truncated file.
#pragma once
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "eqprop/core/error.hpp"

namespace eqprop {

/// Sink handed to a streaming producer: call it with successive chunks of the file.
using atomic_chunk_writer = std::function<void(std::string_view chunk)>;

/// Replaces `path` with `bytes` atomically. Writes `<path>.tmp.<pid>` in the same directory
/// (checking every write), fsyncs it, renames it over `path`, then fsyncs the directory.
/// On any failure (ENOSPC, EFBIG, EIO...) the temporary file is removed, the previous
/// content of `path` is untouched, and eqprop::error naming the path and the system error
/// is thrown. Concurrent writers of the same path from one process are not supported.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

/// Streaming variant: `produce` is called once and writes the content through the given
/// writer in as many chunks as it likes (buffered internally). If `produce` throws, the
/// temporary file is removed, `path` is untouched and the exception propagates.
void write_file_atomic(const std::filesystem::path& path,
                       const std::function<void(const atomic_chunk_writer& write)>& produce);

/// Reads a whole file. Throws data_error naming the file when it cannot be opened or read.
std::string read_file(const std::filesystem::path& path);

}  // namespace eqprop
