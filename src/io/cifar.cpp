// CIFAR-10 / CIFAR-100 binary batches.
#include <string_view>

#include <fmt/format.h>

#include "io_internal.hpp"

namespace eqprop {

dataset read_cifar_binary(const std::filesystem::path& file, cifar_variant variant) {
  const std::string name = io_detail::display(file);
  const bool c100 = variant == cifar_variant::cifar100;
  const size_t label_bytes = c100 ? 2 : 1, pixels = 3 * 32 * 32, record = label_bytes + pixels;
  std::vector<uint8_t> bytes = io_detail::read_file_bytes(file);
  if (io_detail::is_gzip(bytes)) bytes = io_detail::gunzip(bytes, name);
  if (bytes.empty()) throw data_error(fmt::format("{}: empty CIFAR file", name));
  if (bytes.size() > 262 && std::string_view(reinterpret_cast<const char*>(bytes.data()) + 257, 5) == "ustar")
    throw data_error(fmt::format("{}: this is a tar archive; extract it first (tar xzf) and point at the .bin files",
                                 name));
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
