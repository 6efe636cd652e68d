// MNIST-1D: the pickle conversion and the generator (eqprop/io/mnist1d.hpp). The
// arithmetic follows NumPy's and SciPy's evaluation order operation by operation (this
// file is compiled without FMA contraction), so that the results match arrays made with
// NumPy 1.24 and SciPy 1.10 wherever the math library's exp and log agree.
#include "eqprop/io/mnist1d.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "eqprop/core/atomic_file.hpp"
#include "io_internal.hpp"

namespace eqprop {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------
// NumPy's legacy RandomState.

double numpy_random_state::random_sample() {
  const auto a = static_cast<int32_t>(mt_() >> 5), b = static_cast<int32_t>(mt_() >> 6);
  return (a * 67108864.0 + b) / 9007199254740992.0;
}

double numpy_random_state::standard_normal() {
  if (has_gauss_) {
    has_gauss_ = false;
    return gauss_;
  }
  double x1, x2, r2;
  do {
    x1 = 2.0 * random_sample() - 1.0;
    x2 = 2.0 * random_sample() - 1.0;
    r2 = x1 * x1 + x2 * x2;
  } while (r2 >= 1.0 || r2 == 0.0);
  const double f = std::sqrt(-2.0 * std::log(r2) / r2);
  gauss_ = f * x1;
  has_gauss_ = true;
  return f * x2;
}

uint32_t numpy_random_state::interval(uint32_t max) {
  if (max == 0) return 0;
  uint32_t mask = max;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  uint32_t v;
  while ((v = (static_cast<uint32_t>(mt_()) & mask)) > max) {
  }
  return v;
}

uint32_t numpy_random_state::randint(uint32_t n) {
  if (n == 0) throw config_error("randint(0, n) needs n > 0");
  return interval(n - 1);
}

std::vector<long> numpy_random_state::permutation(long n) {
  if (n < 0 || n > long{UINT32_MAX}) throw config_error(fmt::format("permutation size {} out of range", n));
  std::vector<long> p(static_cast<size_t>(n));
  for (long i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  for (long i = n - 1; i >= 1; --i) {
    const uint32_t j = interval(static_cast<uint32_t>(i));
    std::swap(p[static_cast<size_t>(i)], p[j]);
  }
  return p;
}

namespace {

// ---------------------------------------------------------------------------------
// NumPy's and SciPy's arithmetic.

// np.add.reduce over contiguous doubles: pairwise summation, 8 partial sums per block of
// at most 128 values.
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (size_t j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (size_t j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// np.sum (and the sums inside mean() and std()) of a contiguous float64 array: the
// reduction runs over buffers of 8192 elements, each summed pairwise and added in turn.
double numpy_sum(const std::vector<double>& v) {
  constexpr size_t buffer = 8192;
  double acc = 0;
  for (size_t i = 0; i < v.size(); i += buffer) acc += pairwise_sum(v.data() + i, std::min(buffer, v.size() - i));
  return acc;
}

// np.linspace(start, stop, n) for n >= 2: i * step + start, the last value exactly stop.
std::vector<double> linspace(double start, double stop, int n) {
  std::vector<double> y(static_cast<size_t>(n));
  const double step = (stop - start) / (n - 1);
  for (int i = 0; i < n; ++i) y[static_cast<size_t>(i)] = i * step + start;
  y.back() = stop;
  return y;
}

// np.interp(linspace(0, 1, n_out), linspace(0, 1, in.size()), in): linear resampling of
// a signal (SciPy's interp1d(kind='linear') calls np.interp for 1-D float64 data).
std::vector<double> resample(const std::vector<double>& in, int n_out) {
  const int n_in = static_cast<int>(in.size());
  const std::vector<double> xp = linspace(0.0, 1.0, n_in), x = linspace(0.0, 1.0, n_out);
  std::vector<double> out(static_cast<size_t>(n_out));
  size_t j = 0;
  for (size_t k = 0; k < out.size(); ++k) {
    const double v = x[k];
    while (j + 1 < xp.size() && xp[j + 1] <= v) ++j;  // xp[j] <= v < xp[j + 1]
    if (j + 1 == xp.size() || xp[j] == v) {
      out[k] = in[j];
    } else {
      const double slope = (in[j + 1] - in[j]) / (xp[j + 1] - xp[j]);
      out[k] = slope * (v - xp[j]) + in[j];
    }
  }
  return out;
}

// scipy.ndimage.gaussian_filter1d(x, sigma) with truncate 4 and mode 'reflect'
// (d c b a | a b c d | d c b a): the kernel exp(-x^2 / (2 sigma^2)) over
// x = -r..r, r = int(4 sigma + 0.5), divided by its (pairwise) sum; SciPy's correlation
// of a symmetric kernel adds the centre term, then (left + right) * weight from the
// outermost pair inwards.
std::vector<double> gaussian_filter(const std::vector<double>& x, double sigma) {
  const int r = static_cast<int>(4.0 * sigma + 0.5);
  std::vector<double> w(static_cast<size_t>(2 * r + 1));
  const double c = -0.5 / (sigma * sigma);
  for (int i = -r; i <= r; ++i) w[static_cast<size_t>(i + r)] = std::exp(c * static_cast<double>(i * i));
  const double sum = pairwise_sum(w.data(), w.size());
  for (double& v : w) v = v / sum;
  const long n = static_cast<long>(x.size());
  std::vector<double> line(static_cast<size_t>(n + 2 * r));
  for (long i = 0; i < n + 2 * r; ++i) {
    long s = i - r;
    while (s < 0 || s >= n) s = s < 0 ? -s - 1 : 2 * n - s - 1;  // half-sample reflection
    line[static_cast<size_t>(i)] = x[static_cast<size_t>(s)];
  }
  std::vector<double> out(x.size());
  const double* fw = w.data() + r;
  for (long k = 0; k < n; ++k) {
    const double* il = line.data() + k + r;
    double acc = il[0] * fw[0];
    for (int j = -r; j < 0; ++j) acc += (il[j] + il[-j]) * fw[j];
    out[static_cast<size_t>(k)] = acc;
  }
  return out;
}

// One sample: the template row (length points) through the steps of docs/datasets.md,
// drawing from rng in upstream's order. Returns the dilated signal (before the last
// resampling).
std::vector<double> transform(const double* tmpl, int length, const mnist1d_args& a, numpy_random_state& rng) {
  const int dilated = length + a.pad_max;
  // 1. A small offset (so that the template's zeros are not taken for padding), then a
  // random number of zeros appended.
  const int pad = a.pad_min + static_cast<int>(rng.random_sample() * (a.pad_max - a.pad_min + 1));
  std::vector<double> x(static_cast<size_t>(length + pad), 0.0);
  for (int i = 0; i < length; ++i) x[static_cast<size_t>(i)] = tmpl[i] + 1e-8;
  // 2. Resample to template length + largest padding.
  x = resample(x, dilated);
  // 3. Scale.
  const double scale = 1 + a.scale_coeff * (rng.random_sample() - 0.5);
  for (double& v : x) v *= scale;
  // 4. Circular shift right by k.
  const auto k = static_cast<size_t>(rng.randint(static_cast<uint32_t>(a.max_translation)));
  std::rotate(x.begin(), x.end() - static_cast<std::ptrdiff_t>(k % x.size()), x.end());
  // 5. Correlated noise where the signal is exactly zero.
  std::vector<double> noise(x.size());
  for (double& v : noise) v = a.corr_noise_scale * rng.standard_normal();
  noise = gaussian_filter(noise, 2.0);
  for (size_t i = 0; i < x.size(); ++i)
    if (x[i] == 0) x[i] = noise[i];
  // 6. White noise everywhere.
  for (double& v : x) v = v + a.iid_noise_scale * rng.standard_normal();
  // 7. Shear: subtract a ramp over [-0.5, 0.5].
  const double coeff = a.shear_scale * (rng.random_sample() - 0.5);
  const std::vector<double> ramp = linspace(-0.5, 0.5, dilated);
  for (size_t i = 0; i < x.size(); ++i) x[i] = x[i] - coeff * ramp[i];
  return x;
}

void check_args(const mnist1d_templates& t, const mnist1d_args& a) {
  const auto bad = [](const std::string& what) { throw config_error("MNIST-1D generator: " + what); };
  if (t.n_classes < 1 || t.length < 2 || t.x.size() != size_t(t.n_classes) * size_t(t.length) ||
      t.t.size() != size_t(t.length) || t.y.size() != size_t(t.n_classes))
    bad("the templates are inconsistent (need n_classes rows of at least 2 points, t and y)");
  if (a.num_samples < t.n_classes || a.num_samples > 10'000'000)
    bad(fmt::format("num_samples must be in [{}, 10000000], got {}", t.n_classes, a.num_samples));
  if (!(a.train_split >= 0 && a.train_split <= 1))
    bad(fmt::format("train_split must be in [0, 1], got {}", a.train_split));
  if (a.pad_min < 0 || a.pad_max < a.pad_min || a.pad_max > 100000)
    bad(fmt::format("padding must satisfy 0 <= pad_min <= pad_max <= 100000, got [{}, {}]", a.pad_min, a.pad_max));
  if (a.max_translation < 1 || a.max_translation > t.length + a.pad_max)
    bad(fmt::format("max_translation must be in [1, {}], got {}", t.length + a.pad_max, a.max_translation));
  if (a.final_seq_length < 2 || a.final_seq_length > 100000)
    bad(fmt::format("final_seq_length must be in [2, 100000], got {}", a.final_seq_length));
  const double values = double(a.num_samples) * double(std::max(t.length + a.pad_max, a.final_seq_length));
  if (values > double(1 << 28))
    bad(fmt::format("{} samples of up to {} points are more than 2^28 values", a.num_samples,
                    std::max(t.length + a.pad_max, a.final_seq_length)));
  for (double v : {a.scale_coeff, a.corr_noise_scale, a.iid_noise_scale, a.shear_scale})
    if (!std::isfinite(v)) bad("the noise, scale and shear coefficients must be finite");
}

// Little-endian bytes of a vector of numbers.
template <class T>
std::vector<uint8_t> le_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  if constexpr (std::endian::native == std::endian::big)
    for (size_t i = 0; i < out.size(); i += sizeof(T)) std::reverse(out.begin() + i, out.begin() + i + sizeof(T));
  return out;
}

fs::path write_array(const fs::path& dir, const std::string& name, const std::string& descr,
                     const std::vector<long>& shape, const std::vector<uint8_t>& data) {
  const std::vector<uint8_t> bytes = npy_file_bytes(descr, shape, false, data);
  const fs::path p = dir / name;
  write_file_atomic(p, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  return p;
}

std::vector<double> doubles(const pickled_array& a, const std::string& source) {
  const std::vector<uint8_t> npy = npy_file_bytes(a);
  return parse_npy<double>(npy, source).data;
}

}  // namespace

mnist1d_templates mnist1d_templates_from(const numpy_pickle& p) {
  const pickled_array &x = p.at("templates/x"), &t = p.at("templates/t"), &y = p.at("templates/y");
  const auto bad = [&](const std::string& what) {
    throw data_error(fmt::format("{}: the MNIST-1D templates are not as expected: {}", p.source, what));
  };
  if (x.descr != "<f8" || x.shape.size() != 2 || x.shape[0] < 1 || x.shape[1] < 2)
    bad(fmt::format("templates/x is {} of shape ({}), expected <f8 of shape (classes, points >= 2)", x.descr,
                    fmt::join(x.shape, ", ")));
  if (t.descr != "<f8" || t.shape != std::vector<long>{x.shape[1]})
    bad(fmt::format("templates/t is {} of shape ({}), expected <f8 of shape ({})", t.descr, fmt::join(t.shape, ", "),
                    x.shape[1]));
  if (y.descr != "<i8" || y.shape != std::vector<long>{x.shape[0]})
    bad(fmt::format("templates/y is {} of shape ({}), expected <i8 of shape ({})", y.descr, fmt::join(y.shape, ", "),
                    x.shape[0]));
  if (x.shape[0] > 1000 || x.shape[1] > 100000) bad("implausibly many templates or points");
  mnist1d_templates out;
  out.n_classes = static_cast<int>(x.shape[0]);
  out.length = static_cast<int>(x.shape[1]);
  out.x = doubles(x, p.source + ": templates/x");
  out.t = doubles(t, p.source + ": templates/t");
  const std::vector<uint8_t> ynpy = npy_file_bytes(y);
  out.y = parse_npy<int64_t>(ynpy, p.source + ": templates/y").data;
  for (double v : out.x)
    if (!std::isfinite(v)) bad("templates/x holds a value that is not finite");
  return out;
}

mnist1d_data generate_mnist1d(const mnist1d_templates& tm, const mnist1d_args& a) {
  check_args(tm, a);
  numpy_random_state rng(a.seed);
  const long per_class = a.num_samples / tm.n_classes, n = per_class * tm.n_classes;
  const int dilated = tm.length + a.pad_max, len = a.final_seq_length;
  std::vector<double> xs(static_cast<size_t>(n) * size_t(dilated));
  std::vector<int64_t> ys(static_cast<size_t>(n));
  long row = 0;
  for (int c = 0; c < tm.n_classes; ++c)
    for (long s = 0; s < per_class; ++s, ++row) {
      const std::vector<double> x = transform(tm.x.data() + size_t(c) * size_t(tm.length), tm.length, a, rng);
      std::copy(x.begin(), x.end(), xs.begin() + row * dilated);
      ys[static_cast<size_t>(row)] = tm.y[static_cast<size_t>(c)];
    }
  const std::vector<long> perm = rng.permutation(n);

  mnist1d_data d;
  d.length = len;
  d.dilated_length = dilated;
  d.x_dilated.resize(xs.size());
  std::vector<int64_t> y(ys.size());
  std::vector<double> r(static_cast<size_t>(n) * size_t(len));  // resampled, before z-scoring
  for (long k = 0; k < n; ++k) {
    const auto src = xs.begin() + perm[static_cast<size_t>(k)] * dilated;
    std::copy(src, src + dilated, d.x_dilated.begin() + k * dilated);
    y[static_cast<size_t>(k)] = ys[static_cast<size_t>(perm[static_cast<size_t>(k)])];
    const std::vector<double> s = resample(std::vector<double>(src, src + dilated), len);
    std::copy(s.begin(), s.end(), r.begin() + k * len);
  }
  // NumPy's mean() and std() (ddof 0) of all values, the deviations squared before
  // summing.
  const auto count = static_cast<double>(r.size());
  d.mean = numpy_sum(r) / count;
  std::vector<double> dev(r.size());
  for (size_t i = 0; i < r.size(); ++i) {
    const double v = r[i] - d.mean;
    dev[i] = v * v;
  }
  d.std = std::sqrt(numpy_sum(dev) / count);
  for (double& v : r) v = (v - d.mean) / d.std;
  d.t = resample(resample(tm.t, dilated), len);
  for (double& v : d.t) v = v / d.std;

  d.n_train = static_cast<long>(static_cast<double>(n) * a.train_split);
  d.n_test = n - d.n_train;
  const auto split = r.begin() + d.n_train * len;
  d.x_train.assign(r.begin(), split);
  d.x_test.assign(split, r.end());
  d.y_train.assign(y.begin(), y.begin() + d.n_train);
  d.y_test.assign(y.begin() + d.n_train, y.end());
  return d;
}

std::vector<fs::path> write_mnist1d_npy(const mnist1d_data& d, const fs::path& dir, bool float32) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw data_error(fmt::format("cannot create directory {}: {}", io_detail::display(dir), ec.message()));
  std::vector<fs::path> out;
  const long len = d.length;
  out.push_back(write_array(dir, "x_train.npy", "<f8", {d.n_train, len}, le_bytes(d.x_train)));
  out.push_back(write_array(dir, "y_train.npy", "<i8", {d.n_train}, le_bytes(d.y_train)));
  out.push_back(write_array(dir, "x_test.npy", "<f8", {d.n_test, len}, le_bytes(d.x_test)));
  out.push_back(write_array(dir, "y_test.npy", "<i8", {d.n_test}, le_bytes(d.y_test)));
  out.push_back(write_array(dir, "t.npy", "<f8", {len}, le_bytes(d.t)));
  if (float32) {
    const auto narrow = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
    out.push_back(write_array(dir, "x_train_float32.npy", "<f4", {d.n_train, len}, le_bytes(narrow(d.x_train))));
    out.push_back(write_array(dir, "x_test_float32.npy", "<f4", {d.n_test, len}, le_bytes(narrow(d.x_test))));
  }
  return out;
}

std::vector<fs::path> convert_mnist1d_pickle(const fs::path& pickle, const fs::path& dir) {
  const numpy_pickle p = read_numpy_pickle(pickle);
  const pickled_array &x = p.at("x"), &y = p.at("y"), &xt = p.at("x_test"), &yt = p.at("y_test"), &t = p.at("t");
  const auto bad = [&](const std::string& what) {
    throw data_error(fmt::format("{}: not the MNIST-1D data set: {}", p.source, what));
  };
  const auto shape = [](const pickled_array& a) {
    return fmt::format("{} of shape ({})", a.descr, fmt::join(a.shape, ", "));
  };
  if (x.descr != "<f8" || x.shape.size() != 2 || x.shape[1] < 1)
    bad(fmt::format("x is {}, expected <f8 of shape (n, points)", shape(x)));
  if (xt.descr != "<f8" || xt.shape.size() != 2 || xt.shape[1] != x.shape[1])
    bad(fmt::format("x_test is {}, expected <f8 of shape (n, {})", shape(xt), x.shape[1]));
  if (y.descr != "<i8" || y.shape != std::vector<long>{x.shape[0]})
    bad(fmt::format("y is {}, expected <i8 of shape ({})", shape(y), x.shape[0]));
  if (yt.descr != "<i8" || yt.shape != std::vector<long>{xt.shape[0]})
    bad(fmt::format("y_test is {}, expected <i8 of shape ({})", shape(yt), xt.shape[0]));
  if (t.descr != "<f8" || t.shape != std::vector<long>{x.shape[1]})
    bad(fmt::format("t is {}, expected <f8 of shape ({})", shape(t), x.shape[1]));
  for (const pickled_array* a : {&x, &xt, &t})
    if (a->fortran_order && a->shape.size() > 1) bad("an array is in Fortran order");
  for (const auto& [name, a] : {std::pair{"y", &y}, std::pair{"y_test", &yt}}) {
    const std::vector<uint8_t> npy = npy_file_bytes(*a);
    const std::vector<int64_t> labels = parse_npy<int64_t>(npy, p.source + ": " + name).data;
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0 || labels[i] > 9) bad(fmt::format("{}[{}] = {} is not a digit label 0..9", name, i, labels[i]));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw data_error(fmt::format("cannot create directory {}: {}", io_detail::display(dir), ec.message()));
  std::vector<fs::path> out;
  for (const auto& [file, a] : {std::pair{"x_train.npy", &x}, std::pair{"y_train.npy", &y},
                                std::pair{"x_test.npy", &xt}, std::pair{"y_test.npy", &yt}, std::pair{"t.npy", &t}})
    out.push_back(write_array(dir, file, a->descr, a->shape, a->data));
  return out;
}

}  // namespace eqprop
