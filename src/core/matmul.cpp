#include "eqprop/core/matmul.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <map>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "eqprop/core/error.hpp"

#ifdef EQPROP_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>

#include "one_omp_thread.hpp"
#endif

namespace eqprop {

#ifdef EQPROP_HAVE_DNNL
namespace {
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// oneDNN's matmul is row-major: dst {n, m} = src {n, k} x weights {k, m}. Our column-major
// Y (m x n) and X (k x n) are exactly dst and src in format ab; W^T's view is weights {k, m}
// in format ab when op(W) = W (W: m x k), and in format ba when op(W) = W^T (W: k x m).
// One primitive per shape, per thread (a primitive's creation costs tens of microseconds; the
// shapes of a run are few: the batch, its compacted sizes under freezing, the conv chunks).
struct dnnl_products {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  struct entry {
    dnnl::matmul prim;
    dnnl::memory::desc src, wei, dst, wei_bf16, src_bf16;
    dnnl::memory wei_buf, src_buf;  // bfloat16 copies of the operands
  };
  std::map<std::array<long, 6>, entry> cache;

  entry& get(long m, long k, long n, bool transpose, bool accumulate, bool bf16) {
    const std::array<long, 6> key{m, k, n, transpose, accumulate, bf16};
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    if (cache.size() > 1024) cache.clear();  // bounded: a run's shapes are few
    entry e;
    e.src = dnnl::memory::desc({n, k}, dt::f32, tag::ab);
    e.wei = dnnl::memory::desc({k, m}, dt::f32, transpose ? tag::ba : tag::ab);
    e.dst = dnnl::memory::desc({n, m}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    if (bf16) {
      e.src_bf16 = dnnl::memory::desc({n, k}, dt::bf16, tag::ab);
      e.wei_bf16 = dnnl::memory::desc({k, m}, dt::bf16, transpose ? tag::ba : tag::ab);
      e.src_buf = dnnl::memory(e.src_bf16, engine);
      e.wei_buf = dnnl::memory(e.wei_bf16, engine);
    }
    e.prim = dnnl::matmul(dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(bf16 ? e.src_bf16 : e.src, bf16 ? e.wei_bf16 : e.wei, e.dst), attr, engine));
    return cache.emplace(key, std::move(e)).first->second;
  }
};

using detail::one_omp_thread;

void dnnl_matmul(const_matrix_map<float> W, bool transpose, const float* X, long n, float* Y, bool accumulate,
                 bool bf16) {
  thread_local dnnl_products p;
  const long m = transpose ? W.cols() : W.rows(), k = transpose ? W.rows() : W.cols();
  const one_omp_thread guard;
  try {
    auto& e = p.get(m, k, n, transpose, accumulate, bf16);
    dnnl::memory src(e.src, p.engine, const_cast<float*>(X)), wei(e.wei, p.engine, const_cast<float*>(W.data())),
        dst(e.dst, p.engine, Y);
    if (bf16) {
      dnnl::reorder(src, e.src_buf).execute(p.stream, src, e.src_buf);
      dnnl::reorder(wei, e.wei_buf).execute(p.stream, wei, e.wei_buf);
      src = e.src_buf;
      wei = e.wei_buf;
    }
    e.prim.execute(p.stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
  } catch (const dnnl::error& err) {
    throw internal_error(
        fmt::format("oneDNN matmul {}x{}x{}: {} (set EQPROP_MATMUL=eigen to bypass it)", m, k, n, err.what()));
  }
}

// EQPROP_MATMUL=eigen in the environment: every product through Eigen (A/B runs without a rebuild).
bool eigen_only() {
  static const bool yes = [] {
    const char* e = std::getenv("EQPROP_MATMUL");
    return e && std::string_view(e) == "eigen";
  }();
  return yes;
}

// Real W times complex X as float32 products over the stacked parts: X (k x n, interleaved) is
// split into [Re X | Im X] (k x 2n), oneDNN computes op(W) [Re X | Im X] (m x 2n), and the two
// halves are interleaved into Y (added to it when accumulate). Wide X (the conv patches) goes
// in blocks of stack_block columns, so that the copies stay in cache; the copies then cost
// 3-5 % of the product's time. Taken where the product is not small: both dimensions of W at
// least 32 and m k n >= 2^16. Below that, or with a narrow W (a 10-wide readout), Eigen's mixed
// product was as fast or faster.
constexpr long stack_block = 128;

bool stack_complex(long m, long k, long n) {
  return !eigen_only() && std::min(m, k) >= 32 && double(m) * double(k) * double(n) >= double(1 << 16);
}

void stacked_complex_matmul(const_matrix_map<float> W, bool transpose, const std::complex<float>* X, long n,
                            std::complex<float>* Y, bool accumulate) {
  const long m = transpose ? W.cols() : W.rows(), k = transpose ? W.rows() : W.cols();
  const long nb_max = std::min(n, stack_block);
  thread_local std::vector<float> xs, ys;  // per thread: the callers relax slices in parallel
  xs.resize(size_t(k) * size_t(2 * nb_max));
  ys.resize(size_t(m) * size_t(2 * nb_max));
  for (long j0 = 0; j0 < n; j0 += nb_max) {
    const long nb = std::min(nb_max, n - j0);
    const float* x = reinterpret_cast<const float*>(X + k * j0);
    for (long j = 0; j < nb; ++j) {
      const float* xj = x + 2 * k * j;
      float *re = xs.data() + k * j, *im = xs.data() + k * (nb + j);
      for (long i = 0; i < k; ++i) {
        re[i] = xj[2 * i];
        im[i] = xj[2 * i + 1];
      }
    }
    dnnl_matmul(W, transpose, xs.data(), 2 * nb, ys.data(), false, false);
    float* y = reinterpret_cast<float*>(Y + m * j0);
    for (long j = 0; j < nb; ++j) {
      float* yj = y + 2 * m * j;
      const float *re = ys.data() + m * j, *im = ys.data() + m * (nb + j);
      if (accumulate) {
        for (long i = 0; i < m; ++i) {
          yj[2 * i] += re[i];
          yj[2 * i + 1] += im[i];
        }
      } else {
        for (long i = 0; i < m; ++i) {
          yj[2 * i] = re[i];
          yj[2 * i + 1] = im[i];
        }
      }
    }
  }
}
}  // namespace
#endif

template <class T, class P>
void matmul(const_matrix_map<P> W, bool transpose, const T* X, long n, T* Y, bool accumulate,
            matmul_precision precision) {
  if (n == 0) return;
#ifdef EQPROP_HAVE_DNNL
  if constexpr (std::is_same_v<T, float> && std::is_same_v<P, float>) {
    const bool bf16 = precision == matmul_precision::bfloat16;
    if (bf16 && !bfloat16_available()) throw config_error("bfloat16 products need a CPU with AVX512-BF16 (or AMX)");
    // Below about a million multiply-adds (e.g. a 10 x 512 readout) oneDNN's fixed cost per
    // call outweighs its faster kernel (mlp512_symmetric measured 10 % slower without this).
    if (bf16 || (!eigen_only() && double(W.size()) * double(n) >= double(1 << 20)))
      return dnnl_matmul(W, transpose, X, n, Y, accumulate, bf16);
  }
  if constexpr (std::is_same_v<T, std::complex<float>> && std::is_same_v<P, float>) {
    if (stack_complex(W.rows(), W.cols(), n)) return stacked_complex_matmul(W, transpose, X, n, Y, accumulate);
  }
#endif
  if (precision == matmul_precision::bfloat16 && std::is_same_v<T, float>)
    throw config_error("bfloat16 products need eqprop built with oneDNN (libdnnl-dev)");
  const long m = transpose ? W.cols() : W.rows(), k = transpose ? W.rows() : W.cols();
  const Eigen::Map<const matrix<T>> x(X, k, n);
  Eigen::Map<matrix<T>> y(Y, m, n);
  if (transpose) {
    if (accumulate) y.noalias() += W.transpose() * x;
    else y.noalias() = W.transpose() * x;
  } else {
    if (accumulate) y.noalias() += W * x;
    else y.noalias() = W * x;
  }
}

double matmul_peak_gflops(int n, int threads, double seconds) {
  matrix<float> A = matrix<float>::Random(n, n), B = matrix<float>::Random(n, n), C(n, n);
  const const_matrix_map<float> Am(A.data(), n, n);
  double best = 0;
  const auto t_end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  auto run = [&] {
#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (int t = 0; t < threads; ++t) {
      const long c0 = long(n) * t / threads, c1 = long(n) * (t + 1) / threads;
      matmul<float, float>(Am, false, B.data() + c0 * n, c1 - c0, C.data() + c0 * n, false);
    }
  };
  run();  // creates the primitives
  do {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * double(n) / s / 1e9);
  } while (std::chrono::steady_clock::now() < t_end);
  return best;
}

const char* matmul_backend() {
#ifdef EQPROP_HAVE_DNNL
  return eigen_only() ? "eigen (EQPROP_MATMUL=eigen)" : "onednn";
#else
  return "eigen";
#endif
}

bool bfloat16_available() {
#ifdef EQPROP_HAVE_DNNL
  static const bool ok = [] {
    const auto isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }();
  return ok;
#else
  return false;
#endif
}

template void matmul<float, float>(const_matrix_map<float>, bool, const float*, long, float*, bool, matmul_precision);
template void matmul<double, double>(const_matrix_map<double>, bool, const double*, long, double*, bool,
                                     matmul_precision);
template void matmul<std::complex<float>, float>(const_matrix_map<float>, bool, const std::complex<float>*, long,
                                                 std::complex<float>*, bool, matmul_precision);
template void matmul<std::complex<double>, double>(const_matrix_map<double>, bool, const std::complex<double>*, long,
                                                   std::complex<double>*, bool, matmul_precision);
template void matmul<std::complex<double>, std::complex<double>>(const_matrix_map<std::complex<double>>, bool,
                                                                 const std::complex<double>*, long,
                                                                 std::complex<double>*, bool, matmul_precision);

matmul_precision parse_matmul_precision(std::string_view name, std::string_view dtype) {
  if (name == "float32") return matmul_precision::float32;
  if (name != "bfloat16")
    throw config_error(fmt::format("relax.precision must be \"float32\" or \"bfloat16\", got '{}'", name));
  if (dtype != "float32")
    throw config_error("relax.precision = \"bfloat16\" rounds float32 products; it needs network.dtype = \"float32\"");
  if (!bfloat16_available())
    throw config_error(
        fmt::format("relax.precision = \"bfloat16\" needs eqprop built with oneDNN and a CPU with "
                    "AVX512-BF16 (matrix products here: {})",
                    matmul_backend()));
  return matmul_precision::bfloat16;
}

}  // namespace eqprop
