#include "eqprop/core/build_info.hpp"

#include <thread>

#include <fmt/format.h>
#include "eqprop/core/eigen.hpp"

#include "eqprop/build_info.hpp"
#include "eqprop/core/conv_backend.hpp"
#include "eqprop/core/matmul.hpp"

namespace eqprop {

std::string vector_isa_compiled() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "AVX2+FMA";
#elif defined(__AVX__)
  return "AVX";
#elif defined(__SSE4_2__)
  return "SSE4.2";
#else
  return "SSE2";
#endif
}

std::string vector_isa_cpu() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "AVX-512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "AVX2+FMA";
  if (__builtin_cpu_supports("avx")) return "AVX";
  return "SSE";
#else
  return "unknown";
#endif
}

std::string linalg_backend() {
  return fmt::format("Eigen {}.{}.{} (built-in kernels, {}); float32 products: {}; float32 convolutions: {}",
                     EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, Eigen::SimdInstructionSetsInUse(),
                     matmul_backend(), conv_backend_name());
}

nlohmann::json build_info_json() {
  return {{"version", build::version},
          {"git_commit", build::git_commit},
          {"build_type", build::build_type},
          {"compiler", build::compiler},
          {"vector_isa_compiled", vector_isa_compiled()},
          {"vector_isa_cpu", vector_isa_cpu()},
          {"linalg", linalg_backend()},
          {"hardware_threads", std::thread::hardware_concurrency()}};
}

std::string build_info_line() {
  return fmt::format("eqprop {} ({}, {}), ISA {} (CPU {}), {}", build::version, build::git_commit, build::build_type,
                     vector_isa_compiled(), vector_isa_cpu(), linalg_backend());
}

}  // namespace eqprop
