// load_dataset: the named data sets, their directory layout and error reporting.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io_internal.hpp"

namespace eqprop {

namespace fs = std::filesystem;
using io_detail::display;

namespace {

const std::vector<std::string>& names() {
  static const std::vector<std::string> n = {"yin_yang",    "mnist",   "fashion_mnist", "kmnist",     "mnist1d",
                                             "mnist1d_gle", "cifar10", "cifar100",      "imagenet32", "npy",
                                             "and",         "or",      "xor",           "not",        "identity"};
  return n;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string canonical_name(const std::string& name) {
  std::string s;
  for (char c : name) s += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Anything but a directory counts as present: the reader then names what is wrong with a
// FIFO or device ("is a FIFO (named pipe), expected a regular file") instead of "missing".
bool is_file(const fs::path& p) {
  std::error_code ec;
  const fs::file_status st = fs::status(p, ec);
  return !ec && fs::exists(st) && !fs::is_directory(st);
}
bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// The first candidate sub-directory of data_dir that exists (else the first candidate).
fs::path pick_dir(const fs::path& data_dir, std::initializer_list<const char*> candidates) {
  for (const char* c : candidates)
    if (is_dir(data_dir / c)) return data_dir / c;
  return data_dir / *candidates.begin();
}

[[noreturn]] void throw_missing(const std::string& dataset_name, const fs::path& data_dir, const fs::path& dir,
                                const std::vector<std::string>& missing, const std::string& layout,
                                const std::string& hint = "") {
  std::string where;
  if (!is_dir(data_dir)) where = fmt::format(" (the data directory {} does not exist)", display(data_dir));
  else if (!is_dir(dir)) where = fmt::format(" (the directory {} does not exist)", display(dir));
  throw data_error(fmt::format(
      "dataset '{}': missing file(s) in {}: {}{}. Expected layout under the data directory: {}. Pass --data-dir or "
      "set EQPROP_DATA to the directory holding the data sets (see docs/datasets.md).{}",
      dataset_name, display(dir), fmt::join(missing, ", "), where, layout, hint));
}

// An IDX file, raw or gzipped, under its canonical name or the dotted variant
// ("train-images.idx3-ubyte") some mirrors use. Empty if none exists.
fs::path find_idx(const fs::path& dir, const std::string& base) {
  std::string dotted = base;
  if (const auto p = dotted.find("-idx"); p != std::string::npos) dotted[p] = '.';
  for (const std::string& n : {base, base + ".gz", dotted, dotted + ".gz"})
    if (is_file(dir / n)) return dir / n;
  return {};
}

std::array<int, 3> shape_from_npy(const std::vector<long>& s, long dim) {
  if (s.size() == 3) return {1, static_cast<int>(s[1]), static_cast<int>(s[2])};
  if (s.size() == 4) return {static_cast<int>(s[1]), static_cast<int>(s[2]), static_cast<int>(s[3])};
  return {1, 1, static_cast<int>(dim)};
}

// Concatenates the samples of several parts (freed as they are copied).
dataset concat(std::vector<dataset>& parts) {
  dataset d;
  if (parts.empty()) return d;
  long total = 0;
  for (const auto& p : parts) total += p.size();
  d.name = parts[0].name;
  d.n_classes = parts[0].n_classes;
  d.shape = parts[0].shape;
  d.x.resize(parts[0].x.rows(), total);
  d.y.reserve(static_cast<size_t>(total));
  long at = 0;
  for (auto& p : parts) {
    d.x.middleCols(at, p.size()) = p.x;
    d.y.insert(d.y.end(), p.y.begin(), p.y.end());
    at += p.size();
    p = dataset{};
  }
  return d;
}

dataset load_idx_pair(const std::string& name, const fs::path& images, const fs::path& labels, long limit) {
  const idx_images im = read_idx_images(images);
  std::vector<int32_t> y = read_idx_labels(labels, 10);
  if (static_cast<long>(y.size()) != im.count)
    throw data_error(
        fmt::format("{} has {} images but {} has {} labels", display(images), im.count, display(labels), y.size()));
  const long n = limit >= 0 ? std::min(limit, im.count) : im.count;
  const long dim = static_cast<long>(im.rows) * im.cols;
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v) / 255.0f;
  dataset d;
  d.name = name;
  d.n_classes = 10;
  d.shape = {1, im.rows, im.cols};
  d.x.resize(dim, n);
  float* out = d.x.data();
  for (long k = 0; k < n * dim; ++k) out[k] = lut[im.pixels[static_cast<size_t>(k)]];
  y.resize(static_cast<size_t>(n));
  d.y = std::move(y);
  return d;
}

// x: (N, ...) numeric, y: (N,) or (N, 1) integers. n_classes < 0: no range check here.
dataset load_npy_pair(const std::string& name, const fs::path& xf, const fs::path& yf, int n_classes, long limit) {
  // Only the samples the limit keeps are read (the header is checked against the whole file).
  const io_detail::npy_file xfile = io_detail::read_npy_file(xf, limit);
  const io_detail::npy_header& h = xfile.header;
  const std::vector<uint8_t>& xb = xfile.bytes;
  if (h.shape.empty()) throw data_error(fmt::format("{}: expected an array of samples, got a scalar", display(xf)));
  if (io_detail::npy_row_size(h) > std::numeric_limits<int>::max())
    throw data_error(fmt::format("{}: {} values per sample (shape ({})) is more than the {} supported", display(xf),
                                 io_detail::npy_row_size(h), fmt::join(h.shape, ", "),
                                 std::numeric_limits<int>::max()));
  const npy_array<int64_t> ya = read_npy<int64_t>(yf);
  if (!(ya.shape.size() == 1 || (ya.shape.size() == 2 && ya.shape[1] == 1)))
    throw data_error(
        fmt::format("{}: labels must be a 1-D array, got shape ({})", display(yf), fmt::join(ya.shape, ", ")));
  const long n_all = h.shape[0];
  if (ya.size() != n_all)
    throw data_error(fmt::format("{} has {} samples but {} has {} labels", display(xf), n_all, display(yf), ya.size()));
  const long n = limit >= 0 ? std::min(limit, n_all) : n_all;
  const long dim = io_detail::npy_row_size(h);
  dataset d;
  d.name = name;
  d.n_classes = n_classes;
  d.shape = shape_from_npy(h.shape, dim);
  d.x.resize(dim, n);
  io_detail::npy_convert<float>(h, xb, n, d.x.data(), display(xf));
  d.y.resize(static_cast<size_t>(n));
  for (long i = 0; i < n_all; ++i) {
    const int64_t l = ya.data[static_cast<size_t>(i)];
    if (l < 0 || (n_classes > 0 && l >= n_classes) || l > 1'000'000)
      throw data_error(fmt::format("{}: label {} at index {} is out of range [0, {})", display(yf), l, i,
                                   n_classes > 0 ? n_classes : 1'000'000));
    if (i < n) d.y[static_cast<size_t>(i)] = static_cast<int32_t>(l);
  }
  return d;
}

dataset_split load_idx_dataset(const std::string& name, const fs::path& data_dir,
                               std::initializer_list<const char*> dirs, const dataset_options& o) {
  const fs::path dir = pick_dir(data_dir, dirs);
  const char* bases[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                          "t10k-labels-idx1-ubyte"};
  fs::path found[4];
  std::vector<std::string> missing;
  for (int k = 0; k < 4; ++k) {
    found[k] = find_idx(dir, bases[k]);
    if (found[k].empty()) missing.push_back(std::string(bases[k]) + "[.gz]");
  }
  if (!missing.empty())
    throw_missing(name, data_dir, dir, missing,
                  fmt::format("{}/{{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                              "t10k-labels-idx1-ubyte}}, each raw or .gz",
                              *dirs.begin()));
  dataset_split s;
  s.train = load_idx_pair(name, found[0], found[1], o.limit_train);
  s.test = load_idx_pair(name, found[2], found[3], o.limit_test);
  s.files.assign(found, found + 4);
  return s;
}

dataset_split load_mnist1d(const std::string& name, const fs::path& data_dir, const char* sub,
                           const dataset_options& o) {
  const fs::path dir = data_dir / sub;
  // Prefer the float32 arrays where present (the gle-360 variant ships both; they are
  // the round-to-nearest float32 of the float64 arrays, i.e. identical after loading).
  auto pick_x = [&](const char* stem) {
    const fs::path f32 = dir / (std::string(stem) + "_float32.npy");
    return is_file(f32) ? f32 : dir / (std::string(stem) + ".npy");
  };
  const fs::path files[4] = {pick_x("x_train"), dir / "y_train.npy", pick_x("x_test"), dir / "y_test.npy"};
  std::vector<std::string> missing;
  for (const auto& f : files)
    if (!is_file(f)) missing.push_back(f.filename().string());
  if (!missing.empty())
    throw_missing(name, data_dir, dir, missing,
                  fmt::format("{}/{{x_train.npy, y_train.npy, x_test.npy, y_test.npy}}", sub),
                  name == "mnist1d_gle" ? " Make them with `eqprop data generate mnist1d_gle`."
                                        : " Get them with `eqprop data fetch mnist1d`.");
  dataset_split s;
  s.train = load_npy_pair(name, files[0], files[1], 10, o.limit_train);
  s.test = load_npy_pair(name, files[2], files[3], 10, o.limit_test);
  s.files.assign(files, files + 4);
  return s;
}

dataset_split load_generic_npy(const fs::path& dir, const dataset_options& o) {
  const fs::path files[4] = {dir / "x_train.npy", dir / "y_train.npy", dir / "x_test.npy", dir / "y_test.npy"};
  std::vector<std::string> missing;
  for (const auto& f : files)
    if (!is_file(f)) missing.push_back(f.filename().string());
  if (!missing.empty())
    throw_missing("npy", dir, dir, missing, "{x_train.npy, y_train.npy, x_test.npy, y_test.npy} directly in it");
  dataset_split s;
  s.train = load_npy_pair("npy", files[0], files[1], -1, o.limit_train);
  s.test = load_npy_pair("npy", files[2], files[3], -1, o.limit_test);
  s.files.assign(files, files + 4);
  if (s.train.dim() != s.test.dim())
    throw data_error(fmt::format("{} has {} values per sample but {} has {}", display(files[0]), s.train.dim(),
                                 display(files[2]), s.test.dim()));
  int32_t max_label = -1;
  for (int32_t l : s.train.y) max_label = std::max(max_label, l);
  for (int32_t l : s.test.y) max_label = std::max(max_label, l);
  s.train.n_classes = s.test.n_classes = max_label + 1;
  return s;
}

dataset_split load_cifar(bool c100, const fs::path& data_dir, const dataset_options& o) {
  const std::string name = c100 ? "cifar100" : "cifar10";
  const fs::path dir = data_dir / (c100 ? "cifar-100-binary" : "cifar-10-batches-bin");
  std::vector<std::string> train_names;
  if (c100) train_names = {"train.bin"};
  else
    for (int k = 1; k <= 5; ++k) train_names.push_back(fmt::format("data_batch_{}.bin", k));
  const std::string test_name = c100 ? "test.bin" : "test_batch.bin";
  std::vector<std::string> missing;
  for (const auto& n : train_names)
    if (!is_file(dir / n)) missing.push_back(n);
  if (!is_file(dir / test_name)) missing.push_back(test_name);
  if (!missing.empty())
    throw_missing(name, data_dir, dir, missing,
                  c100 ? "cifar-100-binary/{train.bin, test.bin}"
                       : "cifar-10-batches-bin/{data_batch_1.bin .. data_batch_5.bin, test_batch.bin}");
  const cifar_variant v = c100 ? cifar_variant::cifar100 : cifar_variant::cifar10;
  std::vector<dataset> parts;
  long have = 0;
  for (const auto& n : train_names) {
    if (o.limit_train >= 0 && have >= o.limit_train) break;
    parts.push_back(read_cifar_binary(dir / n, v, o.limit_train >= 0 ? o.limit_train - have : -1));
    have += parts.back().size();
  }
  dataset_split s;
  for (size_t k = 0; k < parts.size(); ++k) s.files.push_back(dir / train_names[k]);
  s.files.push_back(dir / test_name);
  s.train = concat(parts);
  s.train.name = name;
  io_detail::keep_first(s.train, o.limit_train);
  s.test = read_cifar_binary(dir / test_name, v, o.limit_test);
  io_detail::keep_first(s.test, o.limit_test);
  if (parts.empty()) {  // limit_train == 0
    s.train = dataset{name, matrix<float>(3072, 0), {}, s.test.n_classes, {3, 32, 32}};
  }
  return s;
}

dataset_split load_imagenet32(const fs::path& data_dir, const dataset_options& o) {
  const fs::path dir = data_dir / "imagenet32";
  std::vector<std::string> train_names;
  for (int k = 1; k <= 10; ++k) train_names.push_back(fmt::format("train_data_batch_{}.npz", k));
  std::vector<std::string> missing;
  for (const auto& n : train_names)
    if (!is_file(dir / n)) missing.push_back(n);
  if (!is_file(dir / "val_data.npz")) missing.push_back("val_data.npz");
  if (!missing.empty())
    throw_missing("imagenet32", data_dir, dir, missing,
                  "imagenet32/{train_data_batch_1.npz .. train_data_batch_10.npz, val_data.npz}");
  std::vector<dataset> parts;
  long have = 0;
  for (const auto& n : train_names) {
    if (o.limit_train >= 0 && have >= o.limit_train) break;
    parts.push_back(read_imagenet32_npz(dir / n, o.limit_train >= 0 ? o.limit_train - have : -1));
    have += parts.back().size();
  }
  dataset_split s;
  for (size_t k = 0; k < parts.size(); ++k) s.files.push_back(dir / train_names[k]);
  s.files.push_back(dir / "val_data.npz");
  s.test = read_imagenet32_npz(dir / "val_data.npz", o.limit_test);
  if (parts.empty()) {
    s.train = dataset{"imagenet32", matrix<float>(s.test.x.rows(), 0), {}, 1000, s.test.shape};
  } else {
    s.train = concat(parts);
  }
  if (s.train.dim() != s.test.dim())
    throw data_error(fmt::format("{}: training images have {} values but validation images {}",
                                 display(dir / "val_data.npz"), s.train.dim(), s.test.dim()));
  return s;
}

}  // namespace

std::vector<std::string> dataset_names() { return names(); }

fs::path resolve_data_dir(const std::string& flag_value) {
  if (!flag_value.empty()) return fs::path(flag_value);
  if (const char* env = std::getenv("EQPROP_DATA"); env && *env) return fs::path(env);
  return fs::path("./data");
}

dataset logic_gate_dataset(const std::string& name) {
  dataset d;
  d.name = name;
  d.n_classes = 2;
  if (name == "and" || name == "or" || name == "xor") {
    d.x.resize(2, 4);
    d.x << 0, 0, 1, 1, 0, 1, 0, 1;
    for (int b = 0; b < 4; ++b) {
      const int a = int(d.x(0, b)), c = int(d.x(1, b));
      d.y.push_back(name == "and" ? (a & c) : name == "or" ? (a | c) : (a ^ c));
    }
  } else if (name == "not" || name == "identity") {
    d.x.resize(1, 2);
    d.x << 0, 1;
    d.y = name == "not" ? std::vector<int32_t>{1, 0} : std::vector<int32_t>{0, 1};
  } else {
    throw config_error(fmt::format("unknown logic gate '{}' (expected and | or | xor | not | identity)", name));
  }
  d.shape = {1, 1, int(d.x.rows())};
  return d;
}

dataset_split load_dataset(const std::string& name_in, const fs::path& data_dir, const dataset_options& o) {
  if (o.limit_train < -1 || o.limit_test < -1)
    throw config_error(fmt::format("dataset limits must be >= 0 or -1 (all), got limit_train={} limit_test={}",
                                   o.limit_train, o.limit_test));
  const std::string name = canonical_name(name_in);
  if (name == "yin_yang") {
    if (o.yin_yang_train < 0 || o.yin_yang_test < 0)
      throw config_error(
          fmt::format("yin_yang sample counts must be >= 0, got train={} test={}", o.yin_yang_train, o.yin_yang_test));
    dataset_split s;
    s.train = generate_yin_yang(o.yin_yang_train, o.seed);
    s.test = generate_yin_yang(o.yin_yang_test, io_detail::mix64(o.seed));
    io_detail::keep_first(s.train, o.limit_train);
    io_detail::keep_first(s.test, o.limit_test);
    return s;
  }
  if (name == "and" || name == "or" || name == "xor" || name == "not" || name == "identity") {
    dataset_split s;
    s.train = logic_gate_dataset(name);
    s.test = s.train;
    io_detail::keep_first(s.train, o.limit_train);
    io_detail::keep_first(s.test, o.limit_test);
    return s;
  }
  if (name == "mnist") return load_idx_dataset(name, data_dir, {"mnist", "MNIST/raw"}, o);
  if (name == "fashion_mnist")
    return load_idx_dataset(name, data_dir, {"fashion-mnist", "fashion_mnist", "FashionMNIST/raw"}, o);
  if (name == "kmnist") return load_idx_dataset(name, data_dir, {"kmnist", "KMNIST/raw"}, o);
  if (name == "mnist1d") return load_mnist1d(name, data_dir, "mnist-1d/standard", o);
  if (name == "mnist1d_gle") return load_mnist1d(name, data_dir, "mnist-1d/gle-360", o);
  if (name == "cifar10") return load_cifar(false, data_dir, o);
  if (name == "cifar100") return load_cifar(true, data_dir, o);
  if (name == "imagenet32") return load_imagenet32(data_dir, o);
  if (name == "npy") return load_generic_npy(data_dir, o);

  std::string best;
  size_t best_d = ~size_t(0);
  for (const auto& n : names()) {
    const size_t d = edit_distance(name, n);
    if (d < best_d) best_d = d, best = n;
  }
  const std::string hint =
      best_d <= std::max<size_t>(2, best.size() / 3) ? fmt::format(" Did you mean '{}'?", best) : std::string();
  throw config_error(
      fmt::format("unknown dataset '{}'.{} Known datasets: {}.", name_in, hint, fmt::join(names(), ", ")));
}

}  // namespace eqprop
