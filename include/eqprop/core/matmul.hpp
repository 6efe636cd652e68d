#pragma once
// Dense matrix products of the relaxation, in one place so that the backend can be chosen by
// measurement (docs/linear-algebra.md): float32 products go to oneDNN's matmul where the
// library was built with it (EQPROP_HAVE_DNNL), and so do float32 weights times complex<float>
// states (as one real product over the states' stacked real and imaginary parts); everything
// else, and products below a size where oneDNN's fixed cost dominates, goes to Eigen.

#include <string_view>

#include "eqprop/core/scalar.hpp"

namespace eqprop {

/// Precision of the float32 products' operands. bfloat16 rounds both operands to 8-bit
/// mantissas (relative error about 2e-3 per product) and accumulates in float32: about twice
/// the speed where the CPU has AVX512-BF16. float64 and complex products ignore it.
enum class matmul_precision { float32, bfloat16 };

/// Y = op(W) X, or Y += op(W) X when accumulate; op(W) is W or W^T. W: column-major (a map
/// into the parameters); X (cols(op W) x n) and Y (rows(op W) x n): contiguous column-major.
/// Single-threaded: the callers parallelise over samples. Deterministic for a given n.
template <class T, class P>
void matmul(const_matrix_map<P> W, bool transpose, const T* X, long n, T* Y, bool accumulate,
            matmul_precision precision = matmul_precision::float32);

/// The best float32 rate of matmul (GFLOP/s) on n x n matrices, the columns split over
/// `threads` threads, over about `seconds` of repeats: the peak the bench reports against.
double matmul_peak_gflops(int n, int threads, double seconds);

/// "onednn" where float32 products use oneDNN, else "eigen" (also when the environment has
/// EQPROP_MATMUL=eigen, which sends every product to Eigen); whether bfloat16 products are
/// available (oneDNN and a CPU with AVX512-BF16 or AMX; otherwise they are refused).
const char* matmul_backend();
bool bfloat16_available();
/// "float32" | "bfloat16" (config key relax.precision) for a network of scalar type dtype
/// (network.dtype); config_error for another name, or for bfloat16 with a dtype other than
/// "float32" or where bfloat16_available() is false.
matmul_precision parse_matmul_precision(std::string_view name, std::string_view dtype);

}  // namespace eqprop
