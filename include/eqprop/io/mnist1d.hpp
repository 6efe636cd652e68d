// MNIST-1D (Greydanus & Kobak): conversion of the frozen upstream pickle to .npy arrays,
// and a generator that builds the data set from its ten digit templates, as used for the
// 360-step variant of the GLE experiments. The generator follows the documented steps
// (docs/datasets.md) and reproduces NumPy's legacy RandomState stream, so with the
// default seed it gives the reference arrays; see docs/datasets.md for how exact that is.
#pragma once
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "eqprop/io/numpy_pickle.hpp"

namespace eqprop {

/// NumPy's legacy `numpy.random.RandomState` for an integer seed: MT19937 seeded by
/// init_genrand(seed) (the seeding std::mt19937 specifies), and the legacy samplers.
class numpy_random_state {
 public:
  explicit numpy_random_state(uint32_t seed) : mt_(seed) {}
  /// random_sample(): (a * 2^26 + b) / 2^53 from two 32-bit outputs, a >> 5 and b >> 6.
  double random_sample();
  /// standard_normal() by the legacy polar method, which draws pairs and returns the
  /// second value of a pair on the next call.
  double standard_normal();
  /// randint(0, n) for 0 < n < 2^32: 32-bit outputs masked to the smallest covering
  /// power of two, rejected until below n.
  uint32_t randint(uint32_t n);
  /// permutation(n): an in-place Fisher-Yates shuffle of 0..n-1 from the last position
  /// down, each index from the masked rejection of random_interval.
  std::vector<long> permutation(long n);

 private:
  uint32_t interval(uint32_t max);  // uniform in [0, max]
  std::mt19937 mt_;
  bool has_gauss_ = false;
  double gauss_ = 0;
};

/// The digit templates: n_classes rows of `length` points (x, row-major), the sample
/// positions t (length) and the labels y (n_classes).
struct mnist1d_templates {
  int n_classes = 0, length = 0;
  std::vector<double> x, t;
  std::vector<int64_t> y;
};
/// The templates of the MNIST-1D pickle ("templates/x", "templates/t", "templates/y");
/// data_error naming the pickle when they are missing or have the wrong dtype or shape.
mnist1d_templates mnist1d_templates_from(const numpy_pickle& pickle);

/// Generator arguments; the defaults are upstream's (final_seq_length 40). The GLE
/// variant sets final_seq_length = 360.
struct mnist1d_args {
  long num_samples = 5000;
  double train_split = 0.8;
  int pad_min = 36, pad_max = 60;  ///< zeros appended: uniform in [pad_min, pad_max]
  double scale_coeff = 0.4;
  int max_translation = 48;
  double corr_noise_scale = 0.25, iid_noise_scale = 0.02, shear_scale = 0.75;
  int final_seq_length = 40;
  uint32_t seed = 42;
};

/// A generated data set. Arrays are row-major, one row per sample, in the generator's
/// shuffled order; x values are z-scored with one mean and std over all samples.
struct mnist1d_data {
  long n_train = 0, n_test = 0;
  int length = 0;          ///< points per sample (final_seq_length)
  int dilated_length = 0;  ///< template length + pad_max (72)
  std::vector<double> x_train, x_test, t;
  std::vector<int64_t> y_train, y_test;
  /// The signals before the last resampling and before z-scoring (n x dilated_length),
  /// training rows first.
  std::vector<double> x_dilated;
  double mean = 0, std = 0;  ///< the z-scoring constants
};

/// Builds the data set from the templates: num_samples / n_classes samples per class,
/// each through the steps of docs/datasets.md, then shuffled, z-scored and split.
/// config_error for arguments out of range.
mnist1d_data generate_mnist1d(const mnist1d_templates& templates, const mnist1d_args& args = {});

/// The arrays of a generated data set as .npy files in dir: x_train, y_train, x_test,
/// y_test, t, and with float32 also x_train_float32 and x_test_float32 (the float64 values
/// rounded to nearest). Each file is replaced atomically. Returns the paths written.
std::vector<std::filesystem::path> write_mnist1d_npy(const mnist1d_data& data, const std::filesystem::path& dir,
                                                     bool float32);

/// Converts the frozen MNIST-1D pickle to dir/{x_train,y_train,x_test,y_test,t}.npy, the
/// bytes numpy.save writes for the pickle's x, y, x_test, y_test and t. The arrays are
/// checked first (dtypes, matching shapes, labels in 0..9); data_error names the pickle
/// and the problem. Returns the paths written.
std::vector<std::filesystem::path> convert_mnist1d_pickle(const std::filesystem::path& pickle,
                                                          const std::filesystem::path& dir);

}  // namespace eqprop
