// Data set registry and digests (Nettle's SHA-256 and MD5). The downloads themselves are in
// download.cpp, the eqprop_download library (libcurl).
#include "eqprop/io/fetch.hpp"

#include <fcntl.h>
#include <nettle/md5.h>
#include <nettle/sha2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "eqprop/build_info.hpp"
#include "eqprop/core/suggest.hpp"
#include "eqprop/io/mnist1d.hpp"
#include "io_internal.hpp"

namespace eqprop {

namespace fs = std::filesystem;
using io_detail::display;

namespace {

// One file of a registry entry: {file name, size, checksum}.
struct file_entry {
  const char* name;
  int64_t size;
  const char* digest;
};
// The four IDX files of an MNIST-like data set.
std::vector<remote_file> idx_files(const std::string& dir, std::vector<std::string> bases, checksum_kind kind,
                                   std::initializer_list<file_entry> entries) {
  std::vector<remote_file> out;
  for (const file_entry& e : entries) {
    std::vector<std::string> urls;
    for (const auto& b : bases) urls.push_back(b + e.name);
    out.push_back({dir + "/" + e.name, urls, e.size, kind, e.digest});
  }
  return out;
}

// The frozen MNIST-1D data set: the pickle at the upstream commit that the offline
// copy was taken from (SHA-256 and size from ../shared/data/README.md, section 3).
remote_file mnist1d_pickle() {
  const std::string commit = "7878d96082abd200c546a07a4101fa90b30fdf7e";
  return {"mnist-1d/mnist1d_data.pkl",
          {"https://raw.githubusercontent.com/greydanus/mnist1d/" + commit + "/mnist1d_data.pkl",
           "https://github.com/greydanus/mnist1d/raw/" + commit + "/mnist1d_data.pkl"},
          1642012,
          checksum_kind::sha256,
          "e95257676e9fb04568e46dda007da22cc8664ccba1451456afde55d7f6dd6aa5"};
}

// Files made locally, with the SHA-256 of the reference files (no addresses).
std::vector<remote_file> derived_files(const std::string& dir, std::initializer_list<file_entry> entries) {
  std::vector<remote_file> out;
  for (const file_entry& e : entries) out.push_back({dir + "/" + e.name, {}, e.size, checksum_kind::sha256, e.digest});
  return out;
}

std::string canonical(const std::string& name) {
  std::string s;
  for (char c : name) s += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

struct digest::impl {
  checksum_kind kind;
  sha256_ctx sha;
  md5_ctx md5;
};

digest::digest(checksum_kind kind) : p_(std::make_unique<impl>()) {
  if (kind != checksum_kind::sha256 && kind != checksum_kind::md5)
    throw internal_error("digest: the checksum kind must be sha256 or md5");
  p_->kind = kind;
  if (kind == checksum_kind::sha256) sha256_init(&p_->sha);
  else md5_init(&p_->md5);
}
digest::~digest() = default;
digest::digest(digest&&) noexcept = default;
digest& digest::operator=(digest&&) noexcept = default;

void digest::update(const void* data, std::size_t n) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  if (p_->kind == checksum_kind::sha256) sha256_update(&p_->sha, n, bytes);
  else md5_update(&p_->md5, n, bytes);
}

std::string digest::hex() {
  uint8_t md[SHA256_DIGEST_SIZE];
  const std::size_t len = p_->kind == checksum_kind::sha256 ? SHA256_DIGEST_SIZE : MD5_DIGEST_SIZE;
  if (p_->kind == checksum_kind::sha256) sha256_digest(&p_->sha, len, md);
  else md5_digest(&p_->md5, len, md);
  std::string s;
  for (std::size_t i = 0; i < len; ++i) s += fmt::format("{:02x}", md[i]);
  return s;
}

const std::vector<remote_dataset>& remote_datasets() {
  using k = checksum_kind;
  // MNIST / Fashion-MNIST: SHA-256 and sizes of the canonical files (docs/datasets.md). KMNIST and CIFAR: only MD5s are
  // published (KMNIST: the authors' files as listed by torchvision and the Mila mirror; CIFAR: the dataset page).
  static const std::vector<remote_dataset> r = {
      {"mnist",
       idx_files(
           "mnist", {"https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"}, k::sha256,
           {{"train-images-idx3-ubyte.gz", 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"},
            {"train-labels-idx1-ubyte.gz", 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"},
            {"t10k-images-idx3-ubyte.gz", 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"},
            {"t10k-labels-idx1-ubyte.gz", 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"}}),
       "",
       {},
       derive_kind::none},
      {"fashion_mnist",
       idx_files(
           "fashion-mnist",
           {"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"},
           k::sha256,
           {{"train-images-idx3-ubyte.gz", 26421880,
             "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"},
            {"train-labels-idx1-ubyte.gz", 29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"},
            {"t10k-images-idx3-ubyte.gz", 4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"},
            {"t10k-labels-idx1-ubyte.gz", 5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"}}),
       "",
       {},
       derive_kind::none},
      {"kmnist",
       idx_files("kmnist", {"http://codh.rois.ac.jp/kmnist/dataset/kmnist/"}, k::md5,
                 {{"train-images-idx3-ubyte.gz", -1, "bdb82020997e1d708af4cf47b453dcf7"},
                  {"train-labels-idx1-ubyte.gz", -1, "e144d726b3acfaa3e44228e80efcd344"},
                  {"t10k-images-idx3-ubyte.gz", -1, "5c965bf0a639b31b8f53240b1b52f4d7"},
                  {"t10k-labels-idx1-ubyte.gz", -1, "7320c461ea6c1c855c0b718fb2a4b134"}}),
       "",
       {},
       derive_kind::none},
      {"cifar10",
       {{"cifar-10-binary.tar.gz",
         {"https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"},
         170052171,
         k::md5,
         "c32a1d4ab5d03f1284b67883e8d87530"}},
       "extract it with: tar -xzf DATA/cifar-10-binary.tar.gz -C DATA (gives cifar-10-batches-bin/)",
       {},
       derive_kind::none},
      {"cifar100",
       {{"cifar-100-binary.tar.gz",
         {"https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"},
         168513733,
         k::md5,
         "03b5dce01913d631647c71ecec9e9cb8"}},
       "extract it with: tar -xzf DATA/cifar-100-binary.tar.gz -C DATA (gives cifar-100-binary/)",
       {},
       derive_kind::none},
      {"mnist1d",
       {mnist1d_pickle()},
       "",
       derived_files("mnist-1d/standard",
                     {{"x_train.npy", 1280128, "c8161f942dad247d3ccf2fe40226ebac948db19efbac2e36aebb33f94f38f8df"},
                      {"y_train.npy", 32128, "c718026182802e01693cbbad83b2af62a4e717da302e71815ac77fdbed4c5dde"},
                      {"x_test.npy", 320128, "3678f56357c618af4fdf17702129d49319d043d474da771ae5eeafc35d9c6145"},
                      {"y_test.npy", 8128, "4134144e011c5abc45fc2a1f8fcad9556a4addd3bab819f191c3245d7018c243"},
                      {"t.npy", 448, "487aa1be630dd93f1cd503f04d22d05dcaec44b16e98e3b0afcfa64e5ffcf466"}}),
       derive_kind::convert},
      {"mnist1d_gle",
       {mnist1d_pickle()},
       "",
       derived_files(
           "mnist-1d/gle-360",
           {{"x_train.npy", 11520128, "14c01bcd780db7795638b9e6b0dab2172e6eae021e8a340b298c3053f36231c6"},
            {"y_train.npy", 32128, "c718026182802e01693cbbad83b2af62a4e717da302e71815ac77fdbed4c5dde"},
            {"x_test.npy", 2880128, "e6aab7513959461c11ef78c6ccbceccff0ac087dcf2aceb0f4bae3250154f7cf"},
            {"y_test.npy", 8128, "4134144e011c5abc45fc2a1f8fcad9556a4addd3bab819f191c3245d7018c243"},
            {"t.npy", 3008, "30d33f8331a89c12ca5d23c7b3cd1ba645acba3fe00638f473d68a740a1a8e6c"},
            {"x_train_float32.npy", 5760128, "a89ee3ebef6a53ba7703da2d0304ac41fbff6bc8c940926e84326ca254f139c0"},
            {"x_test_float32.npy", 1440128, "3b21c76701341a0b61f2266022b3315f41ae1700dcd1c2f0ac0dbd75a36141dc"}}),
       derive_kind::generate},
  };
  return r;
}

const remote_dataset& find_remote_dataset(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& d : remote_datasets()) {
    if (d.name == canonical(name)) return d;
    names.push_back(d.name);
  }
  const std::string best = suggest_closest(canonical(name), names);
  throw config_error(fmt::format("unknown downloadable dataset '{}'.{} Known: {}.", name,
                                 best.empty() ? "" : fmt::format(" Did you mean '{}'?", best), fmt::join(names, ", ")));
}

std::string_view checksum_name(checksum_kind kind) {
  return kind == checksum_kind::sha256 ? "sha256" : kind == checksum_kind::md5 ? "md5" : "none";
}

std::string file_digest(const fs::path& file, checksum_kind kind) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(file.c_str(), "rb"), std::fclose);
  if (!f) throw data_error(fmt::format("cannot open {}: {}", display(file), std::strerror(errno)));
  digest h(kind);
  std::vector<char> buf(1 << 20);
  while (const size_t n = std::fread(buf.data(), 1, buf.size(), f.get())) h.update(buf.data(), n);
  if (std::ferror(f.get())) throw data_error(fmt::format("error reading {}", display(file)));
  return h.hex();
}

std::string bytes_digest(const void* data, std::size_t n, checksum_kind kind) {
  digest h(kind);
  h.update(static_cast<const char*>(data), n);
  return h.hex();
}

file_check check_file(const fs::path& data_dir, const remote_file& file) {
  const fs::path p = data_dir / file.path;
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return {file_state::missing, ""};
  if (file.kind == checksum_kind::none) return {file_state::unverified, ""};
  std::string actual = file_digest(p, file.kind);
  return {actual == file.checksum ? file_state::verified : file_state::mismatch, actual};
}

std::string apply_base_url(const std::string& url, const std::string& base) {
  if (base.empty()) return url;
  std::string b = base;
  while (!b.empty() && b.back() == '/') b.pop_back();
  return b + "/" + url.substr(url.rfind('/') + 1);
}

}  // namespace eqprop
