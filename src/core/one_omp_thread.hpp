// OpenMP's thread count pinned to 1 around oneDNN calls (internal; files built with oneDNN).
#pragma once
#include <omp.h>

namespace eqprop::detail {

/// OpenMP's thread count at 1 for the object's lifetime. oneDNN reads it when it creates and
/// when it runs a primitive; eqprop runs every oneDNN kernel single-threaded, its callers
/// parallelising over samples (outside our parallel regions the caller asked for one thread).
struct one_omp_thread {
  const int before = omp_get_max_threads();
  one_omp_thread() {
    if (before != 1) omp_set_num_threads(1);
  }
  ~one_omp_thread() {
    if (before != 1) omp_set_num_threads(before);
  }
  one_omp_thread(const one_omp_thread&) = delete;
  one_omp_thread& operator=(const one_omp_thread&) = delete;
};

}  // namespace eqprop::detail
