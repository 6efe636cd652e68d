// Deterministic mini-batch iteration, per-channel normalisation and image augmentation.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "io_internal.hpp"

namespace eqprop {

batch_iterator::batch_iterator(const dataset& data, long batch_size, uint64_t seed, bool shuffle, bool drop_last)
    : data_(&data), batch_size_(batch_size), seed_(seed), shuffle_(shuffle), drop_last_(drop_last) {
  if (batch_size <= 0) throw config_error(fmt::format("batch size must be positive, got {}", batch_size));
  if (data.x.cols() != data.size())
    throw shape_error(
        fmt::format("dataset '{}' has {} samples in x but {} labels", data.name, data.x.cols(), data.size()));
  start_epoch(0);
}

void batch_iterator::start_epoch(long epoch) {
  const long n = data_->size();
  order_.resize(static_cast<size_t>(n));
  std::iota(order_.begin(), order_.end(), 0L);
  if (!shuffle_ || n < 2) return;
  // The permutation depends on (seed, epoch) only: Fisher-Yates with our own unbiased
  // bounded integers, so it is the same on every platform and after a resume.
  std::mt19937_64 rng(io_detail::mix64(seed_ ^ io_detail::mix64(static_cast<uint64_t>(epoch))));
  for (long i = n - 1; i > 0; --i) {
    const long j = static_cast<long>(uniform_index(rng, static_cast<uint64_t>(i) + 1));
    std::swap(order_[static_cast<size_t>(i)], order_[static_cast<size_t>(j)]);
  }
}

long batch_iterator::n_batches() const {
  const long n = static_cast<long>(order_.size());
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

long batch_iterator::batch_length(long i) const {
  if (i < 0 || i >= n_batches()) throw config_error(fmt::format("batch index {} out of range [0, {})", i, n_batches()));
  return std::min(batch_size_, static_cast<long>(order_.size()) - i * batch_size_);
}

void batch_iterator::fill(long i, matrix<float>& x, std::vector<int32_t>& y) const {
  const long b = batch_length(i);
  const long dim = data_->x.rows();
  if (x.rows() != dim || x.cols() != b) x.resize(dim, b);
  y.resize(static_cast<size_t>(b));
  for (long k = 0; k < b; ++k) {
    const long s = order_[static_cast<size_t>(i * batch_size_ + k)];
    x.col(k) = data_->x.col(s);
    y[static_cast<size_t>(k)] = data_->y[static_cast<size_t>(s)];
  }
}

namespace {

void check_image_shape(long rows, std::array<int, 3> shape, const char* who) {
  if (shape[0] <= 0 || shape[1] <= 0 || shape[2] <= 0 || static_cast<long>(shape[0]) * shape[1] * shape[2] != rows)
    throw shape_error(fmt::format("{}: sample shape ({}, {}, {}) does not match {} values per sample", who, shape[0],
                                  shape[1], shape[2], rows));
}

}  // namespace

void normalize_per_channel(dataset& data, std::span<const float> mean, std::span<const float> std) {
  check_image_shape(data.x.rows(), data.shape, "normalize_per_channel");
  const int c = data.shape[0];
  if (static_cast<int>(mean.size()) != c || static_cast<int>(std.size()) != c)
    throw config_error(
        fmt::format("normalize_per_channel: dataset '{}' has {} channels but {} means and {} stds "
                    "were given",
                    data.name, c, mean.size(), std.size()));
  for (int k = 0; k < c; ++k)
    if (!(std[static_cast<size_t>(k)] > 0.0f) || !std::isfinite(std[static_cast<size_t>(k)]) ||
        !std::isfinite(mean[static_cast<size_t>(k)]))
      throw config_error(
          fmt::format("normalize_per_channel: channel {} has mean {} and std {}; std must be a "
                      "positive finite number",
                      k, mean[static_cast<size_t>(k)], std[static_cast<size_t>(k)]));
  const long plane = static_cast<long>(data.shape[1]) * data.shape[2];
  for (int k = 0; k < c; ++k) {
    const float m = mean[static_cast<size_t>(k)], inv = 1.0f / std[static_cast<size_t>(k)];
    data.x.middleRows(k * plane, plane).array() = (data.x.middleRows(k * plane, plane).array() - m) * inv;
  }
}

void channel_mean_std(const dataset& data, std::vector<float>& mean, std::vector<float>& std) {
  check_image_shape(data.x.rows(), data.shape, "channel_mean_std");
  const int c = data.shape[0];
  const long plane = static_cast<long>(data.shape[1]) * data.shape[2];
  mean.assign(static_cast<size_t>(c), 0.0f);
  std.assign(static_cast<size_t>(c), 0.0f);
  const double count = static_cast<double>(plane) * static_cast<double>(data.x.cols());
  if (count == 0) return;
  for (int k = 0; k < c; ++k) {
    const auto block = data.x.middleRows(k * plane, plane);
    const double m = block.cast<double>().sum() / count;
    const double v = (block.cast<double>().array() - m).square().sum() / count;
    mean[static_cast<size_t>(k)] = static_cast<float>(m);
    std[static_cast<size_t>(k)] = static_cast<float>(std::sqrt(v));
  }
}

void augment_batch(matrix<float>& x, std::array<int, 3> shape, int pad, bool flip, std::mt19937_64& rng) {
  check_image_shape(x.rows(), shape, "augment_batch");
  if (pad < 0) throw config_error(fmt::format("augment_batch: padding must be >= 0, got {}", pad));
  const int c = shape[0], h = shape[1], w = shape[2];
  std::vector<float> src(static_cast<size_t>(x.rows()));
  for (long s = 0; s < x.cols(); ++s) {
    const bool do_flip = flip && uniform_index(rng, 2) == 1;
    const int dy = pad > 0 ? static_cast<int>(uniform_index(rng, 2 * static_cast<uint64_t>(pad) + 1)) - pad : 0;
    const int dx = pad > 0 ? static_cast<int>(uniform_index(rng, 2 * static_cast<uint64_t>(pad) + 1)) - pad : 0;
    if (!do_flip && dy == 0 && dx == 0) continue;
    float* col = x.col(s).data();
    std::copy(col, col + x.rows(), src.begin());
    // out(ch, i, j) = flipped(ch, i + dy, j + dx), zero outside the image.
    for (int ch = 0; ch < c; ++ch) {
      const float* in = src.data() + static_cast<long>(ch) * h * w;
      float* out = col + static_cast<long>(ch) * h * w;
      for (int i = 0; i < h; ++i) {
        const int si = i + dy;
        for (int j = 0; j < w; ++j) {
          const int sj = j + dx;
          float v = 0.0f;
          if (si >= 0 && si < h && sj >= 0 && sj < w) v = in[si * w + (do_flip ? w - 1 - sj : sj)];
          out[i * w + j] = v;
        }
      }
    }
  }
}

}  // namespace eqprop
