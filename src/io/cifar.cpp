// CIFAR-10 / CIFAR-100 binary batches.
#include <string_view>

#include <fmt/format.h>

#include "io_internal.hpp"

namespace eqprop {

namespace {
/// The most records one CIFAR file may hold (the largest official one, CIFAR-100 train.bin,
/// has 50,000).
constexpr uint64_t kMaxCifarRecords = 60000;
}  // namespace

dataset read_cifar_binary(const std::filesystem::path& file, cifar_variant variant, long max_samples) {
  const std::string name = io_detail::display(file);
  const bool c100 = variant == cifar_variant::cifar100;
  const size_t label_bytes = c100 ? 2 : 1, pixels = 3 * 32 * 32, record = label_bytes + pixels;
  const uint64_t max_bytes = kMaxCifarRecords * record;
  // A limit of the record cap or more reads everything (and keeps the products below small).
  if (max_samples >= static_cast<long>(kMaxCifarRecords)) max_samples = -1;
  const io_detail::input_file in(file);
  std::vector<uint8_t> bytes = in.read(0, std::min<uint64_t>(in.size(), 2), "header");
  if (io_detail::is_gzip(bytes)) {
    const std::vector<uint8_t> compressed = in.read(0, in.size(), "file contents");
    // A CIFAR file has no header: the size is bounded by the record limit, and with
    // max_samples only the records needed are decompressed (the rest is not checked).
    if (max_samples >= 0) bytes = io_detail::gunzip_prefix(compressed, name, static_cast<size_t>(max_samples) * record);
    else
      bytes = io_detail::gunzip(compressed, name, max_bytes,
                                fmt::format("a CIFAR file holds at most {} records", kMaxCifarRecords));
  } else {
    if (in.size() > max_bytes)
      throw data_error(fmt::format("{}: {} bytes is more than the {} records a CIFAR file may hold", name, in.size(),
                                   kMaxCifarRecords));
    const uint64_t want = max_samples >= 0 && in.size() % record == 0
                              ? std::min<uint64_t>(in.size(), static_cast<uint64_t>(max_samples) * record)
                              : in.size();
    bytes = in.read(0, want, "records");
  }
  if (bytes.empty() && max_samples != 0) throw data_error(fmt::format("{}: empty CIFAR file", name));
  if (bytes.size() > 262 && std::string_view(reinterpret_cast<const char*>(bytes.data()) + 257, 5) == "ustar")
    throw data_error(
        fmt::format("{}: this is a tar archive; extract it first (tar xzf) and point at the .bin files", name));
  if (bytes.size() % record != 0)
    throw data_error(fmt::format(
        "{}: truncated or wrong CIFAR-{} file: {} bytes is not a multiple of the {}-byte record ({} label byte{} + "
        "3072 pixels); {} whole records and {} stray bytes",
        name, c100 ? 100 : 10, bytes.size(), record, label_bytes, c100 ? "s" : "", bytes.size() / record,
        bytes.size() % record));
  const size_t n = bytes.size() / record;
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v) / 255.0f;

  dataset d;
  d.name = c100 ? "cifar100" : "cifar10";
  d.n_classes = c100 ? 100 : 10;
  d.shape = {3, 32, 32};
  d.x.resize(static_cast<long>(pixels), static_cast<long>(n));
  d.y.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* r = bytes.data() + i * record;
    if (c100 && r[0] >= 20)
      throw data_error(fmt::format("{}: coarse label {} of record {} is out of range [0, 20)", name, r[0], i));
    const int label = r[label_bytes - 1];
    if (label >= d.n_classes)
      throw data_error(fmt::format("{}: {}label {} of record {} is out of range [0, {})", name, c100 ? "fine " : "",
                                   label, i, d.n_classes));
    d.y[i] = label;
    float* col = d.x.data() + i * pixels;
    for (size_t k = 0; k < pixels; ++k) col[k] = lut[r[label_bytes + k]];
  }
  return d;
}

}  // namespace eqprop
