// Datasets: in-memory labelled data sets, the file readers that fill them, a
// deterministic mini-batch iterator and image augmentation / normalisation.
//
// Conventions (see docs/datasets.md):
//  * x is dim x n, one column per sample. Images are stored channel-major (C, H, W
//    flattened, i.e. planar RRR..GGG..BBB) with pixel values scaled to [0, 1] (v / 255).
//  * y holds labels in [0, n_classes).
//  * Every failure caused by a file throws eqprop::data_error whose message names the
//    file; bad names or options throw eqprop::config_error. Nothing aborts.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eqprop/core/error.hpp"
#include "eqprop/core/scalar.hpp"

namespace eqprop {

/// A labelled data set held in memory.
struct dataset {
  std::string name;
  matrix<float> x;         ///< dim x n, one column per sample
  std::vector<int32_t> y;  ///< n labels in [0, n_classes)
  int n_classes = 0;
  std::array<int, 3> shape{};  ///< channels, height, width of one sample; {1, 1, dim} for vectors

  long size() const { return static_cast<long>(y.size()); }
  int dim() const { return static_cast<int>(x.rows()); }
};

struct dataset_split {
  dataset train, test;
  /// The files load_dataset read, in reading order (empty for generated data sets).
  std::vector<std::filesystem::path> files;
};

struct dataset_options {
  uint64_t seed = 0;           ///< only used by generated data sets (yin_yang)
  long yin_yang_train = 5000;  ///< yin_yang sample counts
  long yin_yang_test = 1000;
  long limit_train = -1;  ///< keep only the first N samples (-1: all)
  long limit_test = -1;
};

/// A Boolean task as a data set: "and" | "or" | "xor" (the 4 patterns of 2 inputs) or "not" |
/// "identity" (the 2 patterns of 1 input), labels 0/1, 2 classes. load_dataset returns it as
/// both the training and the test split (limits apply).
dataset logic_gate_dataset(const std::string& name);

/// Loads a data set by name (see dataset_names()). File-based data sets are read from
/// their conventional sub-directory of data_dir (docs/datasets.md); "npy" reads
/// data_dir/{x_train,y_train,x_test,y_test}.npy directly. Names are case-insensitive and
/// '-' is accepted for '_'. Throws config_error for an unknown name or bad option,
/// data_error for missing or corrupt files.
dataset_split load_dataset(const std::string& name, const std::filesystem::path& data_dir,
                           const dataset_options& options = {});

/// The data directory: flag_value if non-empty, else $EQPROP_DATA if set and non-empty,
/// else "./data".
std::filesystem::path resolve_data_dir(const std::string& flag_value);

/// All names load_dataset accepts, in a stable order.
std::vector<std::string> dataset_names();

// ---------------------------------------------------------------------------------
// Low-level readers. Each reads one file and checks it completely.

/// An IDX image file (magic 2051, unsigned bytes), raw or gzip-compressed (detected
/// from the 0x1f 0x8b magic, not from the file name).
struct idx_images {
  long count = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  ///< count * rows * cols bytes, row-major per image
};
idx_images read_idx_images(const std::filesystem::path& file);

/// An IDX label file (magic 2049, unsigned bytes), raw or gzip. If n_classes > 0 every
/// label is checked to lie in [0, n_classes).
std::vector<int32_t> read_idx_labels(const std::filesystem::path& file, int n_classes = -1);

/// A .npy array converted to T, always returned in C (row-major) order.
/// Supports format versions 1.0, 2.0 and 3.0; little/big-endian/native/not-applicable
/// byte orders; dtypes b1, i1, i2, i4, i8, u1, u2, u4, u8, f2, f4, f8; C and Fortran
/// order. Converting a non-integral or out-of-range value to an integer T throws.
template <class T>
struct npy_array {
  std::vector<long> shape;
  std::vector<T> data;
  std::string descr;  ///< dtype as stored in the file, e.g. "<f8"
  long size() const { return static_cast<long>(data.size()); }
};
/// T is float, double, int32_t or int64_t.
template <class T>
npy_array<T> read_npy(const std::filesystem::path& file);
/// The same from bytes already in memory (e.g. a .npz member); source names it in errors.
template <class T>
npy_array<T> parse_npy(std::span<const uint8_t> bytes, const std::string& source);

/// Names of the members of a zip archive (e.g. a .npz), in central-directory order.
std::vector<std::string> zip_member_names(const std::filesystem::path& file);
/// The uncompressed bytes of one member (stored or deflated), CRC-checked.
std::vector<uint8_t> read_zip_member(const std::filesystem::path& file, const std::string& member);

enum class cifar_variant { cifar10, cifar100 };
/// A CIFAR binary batch: records of label byte(s) + 3072 pixel bytes (planar R, G, B).
/// CIFAR-10: 1 label byte (0..9); CIFAR-100: coarse (0..19) and fine (0..99) bytes, the
/// fine label is used. Returns shape {3, 32, 32}, values in [0, 1]. A file holds at most
/// 60,000 records. max_samples >= 0 reads (and, for a .gz file, decompresses) only the
/// first max_samples records.
dataset read_cifar_binary(const std::filesystem::path& file, cifar_variant variant, long max_samples = -1);

/// One downsampled-ImageNet .npz batch (train_data_batch_K.npz / val_data.npz): members
/// data.npy (N x 3*s*s uint8, planar) and labels.npy (1-based). Returns 0-based labels,
/// 1000 classes, shape {3, s, s}, values in [0, 1]. max_samples >= 0 keeps only the first
/// max_samples rows.
dataset read_imagenet32_npz(const std::filesystem::path& file, long max_samples = -1);

/// The Yin-Yang data set (Kriener et al. 2021): n samples with 4 inputs (x, y, 1-x, 1-y)
/// in [0, 1] and 3 balanced classes (0, 1, 2 = dot). Bit-identical for a given seed on
/// every platform.
dataset generate_yin_yang(long n, uint64_t seed);
/// Class of the point (x, y) in [0,1]^2 inside the big circle (exposed for tests).
int yin_yang_class(double x, double y);

// ---------------------------------------------------------------------------------
// Batches, normalisation, augmentation.

/// Iterates over a data set in mini-batches. The order of an epoch is a deterministic
/// function of (seed, epoch) alone, so a resumed run sees the same batches.
/// The data set must outlive the iterator.
class batch_iterator {
 public:
  batch_iterator(const dataset& data, long batch_size, uint64_t seed, bool shuffle, bool drop_last);
  /// Sets the sample order for this epoch (identity if shuffle is off).
  void start_epoch(long epoch);
  long n_batches() const;
  /// Number of samples in batch i (batch_size except possibly the last one).
  long batch_length(long i) const;
  /// Copies batch i into x (dim x b, resized only if its shape differs) and y.
  void fill(long i, matrix<float>& x, std::vector<int32_t>& y) const;
  /// The current epoch's order (sample indices).
  const std::vector<long>& order() const { return order_; }

 private:
  const dataset* data_;
  long batch_size_;
  uint64_t seed_;
  bool shuffle_, drop_last_;
  std::vector<long> order_;
};

/// x[c] = (x[c] - mean[c]) / std[c] for each channel c of every sample.
void normalize_per_channel(dataset& data, std::span<const float> mean, std::span<const float> std);
/// Per-channel mean and population standard deviation over all samples and pixels.
void channel_mean_std(const dataset& data, std::vector<float>& mean, std::vector<float>& std);

/// In place, per sample (column) of x laid out as shape (C, H, W): with probability 1/2 a
/// horizontal flip (if flip), then zero-padding by pad pixels on each side and a uniformly
/// random H x W crop. Random draws per sample, in order: flip bit (if flip), then row and
/// column offsets (if pad > 0).
void augment_batch(matrix<float>& x, std::array<int, 3> shape, int pad, bool flip, std::mt19937_64& rng);

/// Uniform integer in [0, n) from a 64-bit engine, unbiased and platform-independent.
uint64_t uniform_index(std::mt19937_64& rng, uint64_t n);
/// Uniform double in [0, 1) with 53 random bits: (rng() >> 11) * 2^-53.
inline double uniform_unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace eqprop
