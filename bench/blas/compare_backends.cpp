// compare_backends.cpp -- dense linear-algebra backend comparison for eqprop.
//
// One source, several binaries (built by scripts/compare_blas.sh, no CMake):
//   -DEQ_BENCH_EIGEN               Eigen 3.4 products (optionally -fopenmp)
//   -DEQ_BENCH_CBLAS -DEQ_BENCH_OPENBLAS   OpenBLAS through CBLAS
//   -DEQ_BENCH_CBLAS               any other CBLAS (used for the reference libblas)
//   -DEQ_BENCH_BLIS                BLIS native typed/object API
// Each backend lives in its own executable so that the BLAS symbols of
// OpenBLAS, BLIS and the reference BLAS never clash, and so that
// OPENBLAS_CORETYPE (read once at library load) can be varied per process.
//
// Every binary also understands `--peak` (clock + FMA-throughput probe).
//
// Output: CSV on stdout, one line per measurement
//   label,op,shape,M,N,K,median_us,gflops,min_us,samples,cpu_us,cpu_gflops
// (median_us/gflops: median wall time per call; min_us: fastest sample;
//  cpu_us/cpu_gflops: median process CPU time per call, see time_it)
// and metadata lines starting with '#'.
//
// Flop conventions (useful work only):
//   sgemm/dgemm                : 2*M*N*K
//   cgemm (complex x complex)  : 8*M*N*K
//   rxc_* (real W x complex X) : 4*M*N*K  (re and im each get a real GEMM)
// rxc variants:
//   rxc_mixed       Y(complex) = W(real) * X(complex), both column-major, done
//                   natively by the library (Eigen mixed-scalar product, BLIS
//                   mixed-domain object API).  Not available in CBLAS.
//   rxc_stacked     X kept planar as [Re | Im] (K x 2N real): one sgemm with 2N cols.
//   rxc_interleaved X kept as interleaved complex but *row-major*, which is
//                   bit-identical to a row-major real K x 2N matrix: one sgemm,
//                   zero copies (Y comes out as interleaved row-major complex).
//   The "promote W to complex and call cgemm" route costs exactly the cgemm line
//   of the same shape (plus the promotion), so it is not repeated.

#if defined(EQ_BENCH_EIGEN)
#include <Eigen/Dense>
#endif

#include <immintrin.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if defined(EQ_BENCH_CBLAS)
#include <cblas.h>
#if defined(EQ_BENCH_OPENBLAS)
extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
}
#endif
#elif defined(EQ_BENCH_BLIS)
#include <blis.h>
#elif defined(EQ_BENCH_EIGEN)
#if defined(_OPENMP)
#include <omp.h>
#endif
#else
#error "define one of EQ_BENCH_EIGEN, EQ_BENCH_CBLAS, EQ_BENCH_BLIS"
#endif

using cf = std::complex<float>;
using Clock = std::chrono::steady_clock;

static double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// ---------------------------------------------------------------------------
// Timing harness: warm-up, calibrate an inner repeat count so a sample lasts
// >= ~4 ms, take several samples, report median (and min) time per call.
// ---------------------------------------------------------------------------
struct Stat {
  double median_s, min_s;
  int samples;
  double cpu_median_s;  // process CPU time per call (user+sys, all threads)
};

static double cpu_now_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Besides wall time we record process CPU time.  For the single-threaded
// configurations CPU time does not advance while the process is descheduled,
// so it stays meaningful on a machine that other people are loading (cache
// pollution by the other tasks still shows).  For 2-thread runs only wall time
// is meaningful (CPU time then includes spin-waiting).
static Stat time_it(const std::function<void()>& f) {
  double t0 = now_s();
  f();  // warm-up (page faults, packing buffers, thread pool start)
  t0 = now_s();
  double c0 = cpu_now_s();
  f();
  double t1 = std::max(now_s() - t0, 1e-7);
  double c1 = cpu_now_s() - c0;
  const double sample_target = 4e-3;
  int inner = std::max(1, static_cast<int>(sample_target / t1));
  int samples = t1 > 0.25 ? 3 : (t1 > 0.03 ? 5 : 9);
  std::vector<double> v, c;
  v.reserve(samples + 1);
  if (t1 > 0.25) {  // large calls: reuse the calibration run
    v.push_back(t1);
    c.push_back(c1);
  }
  while (static_cast<int>(v.size()) < samples) {
    t0 = now_s();
    c0 = cpu_now_s();
    for (int i = 0; i < inner; ++i) f();
    c.push_back((cpu_now_s() - c0) / inner);
    v.push_back((now_s() - t0) / inner);
  }
  std::sort(v.begin(), v.end());
  std::sort(c.begin(), c.end());
  return {v[v.size() / 2], v.front(), samples, c[c.size() / 2]};
}

// ---------------------------------------------------------------------------
// Backend abstraction: column-major C(MxN) = op(A) * B, op(A) = A or A^T.
// A is stored as (transA ? K x M : M x K) with leading dimension lda.
// ---------------------------------------------------------------------------
// Which shared object a function really came from: the Debian alternatives
// system (libblas.so.3, libopenblas.so.0, libblis.so.4 are symlinks) decides
// that at run time, not the path that was given to the linker.
[[maybe_unused]] static const char* loaded_from(const void* fn) {
  Dl_info info{};
  if (dladdr(fn, &info) && info.dli_fname) return info.dli_fname;
  return "?";
}

#if defined(EQ_BENCH_EIGEN)
template <class T>
static void gemm(bool transA, int M, int N, int K, const T* A, int lda, const T* B, int ldb, T* C, int ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using S = Eigen::OuterStride<>;
  Eigen::Map<Mat, 0, S> c(C, M, N, S(ldc));
  Eigen::Map<const Mat, 0, S> b(B, K, N, S(ldb));
  if (transA) {
    Eigen::Map<const Mat, 0, S> a(A, K, M, S(lda));
    c.noalias() = a.transpose() * b;
  } else {
    Eigen::Map<const Mat, 0, S> a(A, M, K, S(lda));
    c.noalias() = a * b;
  }
}
// Row-major view of B and C (used for the zero-copy interleaved variant).
static void sgemm_rowmajor_bc(bool transA, int M, int N, int K, const float* A, int lda, const float* B, float* C) {
  using MatC = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
  using MatR = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using S = Eigen::OuterStride<>;
  Eigen::Map<MatR> c(C, M, N);
  Eigen::Map<const MatR> b(B, K, N);
  if (transA) {
    Eigen::Map<const MatC, 0, S> a(A, K, M, S(lda));
    c.noalias() = a.transpose() * b;
  } else {
    Eigen::Map<const MatC, 0, S> a(A, M, K, S(lda));
    c.noalias() = a * b;
  }
}
static constexpr bool kHasMixed = true;
static void rxc_mixed(bool transA, int M, int N, int K, const float* A, int lda, const cf* B, cf* C) {
  using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
  using MatCF = Eigen::Matrix<cf, Eigen::Dynamic, Eigen::Dynamic>;
  using S = Eigen::OuterStride<>;
  Eigen::Map<MatCF> c(C, M, N);
  Eigen::Map<const MatCF> b(B, K, N);
  if (transA) {
    Eigen::Map<const MatF, 0, S> a(A, K, M, S(lda));
    c.noalias() = a.transpose() * b;
  } else {
    Eigen::Map<const MatF, 0, S> a(A, M, K, S(lda));
    c.noalias() = a * b;
  }
}
static void set_threads(int n) {
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
  Eigen::setNbThreads(n);
}
static void print_meta() {
  // Eigen's SimdInstructionSetsInUse() prints "AVX ..." even when AVX2/FMA are used.
  std::printf("# backend=Eigen %d.%d.%d simd=%s%s%s openmp=%s nbThreads=%d\n", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
              EIGEN_MINOR_VERSION, Eigen::SimdInstructionSetsInUse(),
#if defined(EIGEN_VECTORIZE_AVX2)
              " +AVX2",
#else
              "",
#endif
#if defined(EIGEN_VECTORIZE_FMA)
              " +FMA",
#else
              "",
#endif
#if defined(_OPENMP)
              "yes",
#else
              "no",
#endif
              Eigen::nbThreads());
}

#elif defined(EQ_BENCH_CBLAS)
static CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }
template <class T>
static void gemm(bool, int, int, int, const T*, int, const T*, int, T*, int);
template <>
void gemm<float>(bool ta, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  cblas_sgemm(CblasColMajor, tr(ta), CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
}
template <>
void gemm<double>(bool ta, int M, int N, int K, const double* A, int lda, const double* B, int ldb, double* C,
                  int ldc) {
  cblas_dgemm(CblasColMajor, tr(ta), CblasNoTrans, M, N, K, 1.0, A, lda, B, ldb, 0.0, C, ldc);
}
template <>
void gemm<cf>(bool ta, int M, int N, int K, const cf* A, int lda, const cf* B, int ldb, cf* C, int ldc) {
  const cf one(1.0f, 0.0f), zero(0.0f, 0.0f);
  cblas_cgemm(CblasColMajor, tr(ta), CblasNoTrans, M, N, K, &one, A, lda, B, ldb, &zero, C, ldc);
}
static void sgemm_rowmajor_bc(bool ta, int M, int N, int K, const float* A, int lda, const float* B, float* C) {
  // C_rm(MxN) = op(A) B_rm  <=>  C^T (col-major NxM) = B^T (col-major NxK) * op(A)^T
  cblas_sgemm(CblasColMajor, CblasNoTrans, ta ? CblasNoTrans : CblasTrans, N, M, K, 1.0f, B, N, A, lda, 0.0f, C, N);
}
static constexpr bool kHasMixed = false;
static void rxc_mixed(bool, int, int, int, const float*, int, const cf*, cf*) {}
static void set_threads(int n) {
#if defined(EQ_BENCH_OPENBLAS)
  openblas_set_num_threads(n);
#else
  (void)n;
#endif
}
static void print_meta() {
#if defined(EQ_BENCH_OPENBLAS)
  std::printf("# backend=OpenBLAS core=%s threads=%d config=%s\n", openblas_get_corename(), openblas_get_num_threads(),
              openblas_get_config());
#else
  std::printf("# backend=generic CBLAS (whatever libblas.so.3 resolves to)\n");
#endif
  std::printf("# cblas_sgemm loaded from %s\n", loaded_from(reinterpret_cast<const void*>(&cblas_sgemm)));
}

#elif defined(EQ_BENCH_BLIS)
static trans_t tr(bool t) { return t ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE; }
template <class T>
static void gemm(bool, int, int, int, const T*, int, const T*, int, T*, int);
template <>
void gemm<float>(bool ta, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  float one = 1.0f, zero = 0.0f;
  bli_sgemm(tr(ta), BLIS_NO_TRANSPOSE, M, N, K, &one, const_cast<float*>(A), 1, lda, const_cast<float*>(B), 1, ldb,
            &zero, C, 1, ldc);
}
template <>
void gemm<double>(bool ta, int M, int N, int K, const double* A, int lda, const double* B, int ldb, double* C,
                  int ldc) {
  double one = 1.0, zero = 0.0;
  bli_dgemm(tr(ta), BLIS_NO_TRANSPOSE, M, N, K, &one, const_cast<double*>(A), 1, lda, const_cast<double*>(B), 1, ldb,
            &zero, C, 1, ldc);
}
template <>
void gemm<cf>(bool ta, int M, int N, int K, const cf* A, int lda, const cf* B, int ldb, cf* C, int ldc) {
  scomplex one = {1.0f, 0.0f}, zero = {0.0f, 0.0f};
  bli_cgemm(tr(ta), BLIS_NO_TRANSPOSE, M, N, K, &one, reinterpret_cast<scomplex*>(const_cast<cf*>(A)), 1, lda,
            reinterpret_cast<scomplex*>(const_cast<cf*>(B)), 1, ldb, &zero, reinterpret_cast<scomplex*>(C), 1, ldc);
}
static void sgemm_rowmajor_bc(bool ta, int M, int N, int K, const float* A, int lda, const float* B, float* C) {
  float one = 1.0f, zero = 0.0f;
  // BLIS takes general strides: B is K x N with rs=N, cs=1; C is M x N with rs=N, cs=1.
  bli_sgemm(tr(ta), BLIS_NO_TRANSPOSE, M, N, K, &one, const_cast<float*>(A), 1, lda, const_cast<float*>(B), N, 1, &zero,
            C, N, 1);
}
static constexpr bool kHasMixed = true;
static void rxc_mixed(bool ta, int M, int N, int K, const float* A, int lda, const cf* B, cf* C) {
  // BLIS mixed-domain gemm via the object API (real A, complex B and C).
  obj_t a, b, c;
  if (ta)  // stored K x M, view it as its transpose via strides
    bli_obj_create_with_attached_buffer(BLIS_FLOAT, M, K, const_cast<float*>(A), lda, 1, &a);
  else bli_obj_create_with_attached_buffer(BLIS_FLOAT, M, K, const_cast<float*>(A), 1, lda, &a);
  bli_obj_create_with_attached_buffer(BLIS_SCOMPLEX, K, N, const_cast<cf*>(B), 1, K, &b);
  bli_obj_create_with_attached_buffer(BLIS_SCOMPLEX, M, N, C, 1, M, &c);
  bli_gemm(&BLIS_ONE, &a, &b, &BLIS_ZERO, &c);
}
static void set_threads(int n) { bli_thread_set_num_threads(n); }
static void print_meta() {
  std::printf("# backend=BLIS %s arch=%s threading=%s\n", bli_info_get_version_str(),
              bli_arch_string(bli_arch_query_id()),
              bli_info_get_enable_openmp() ? "openmp" : (bli_info_get_enable_pthreads() ? "pthreads" : "none"));
  std::printf("# bli_sgemm loaded from %s\n", loaded_from(reinterpret_cast<const void*>(&bli_sgemm)));
}
#endif

// ---------------------------------------------------------------------------
// Contention probe: how much CPU did *other* processes (and the hypervisor,
// "steal") take while we were measuring?  /proc/stat deltas minus our own
// rusage.  Printed as a '#' line so a loaded run is visible next to its numbers.
// ---------------------------------------------------------------------------
struct CpuSnap {
  double busy = 0, steal = 0, self = 0, wall = 0;
};
static CpuSnap cpu_snap() {
  CpuSnap s;
  std::ifstream in("/proc/stat");
  std::string cpu;
  double v[10] = {0};
  in >> cpu;
  for (double& x : v) in >> x;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  // user nice system idle iowait irq softirq steal guest guest_nice
  s.busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
  s.steal = v[7] / hz;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  s.self = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
  s.wall = now_s();
  return s;
}
static void print_contention(const CpuSnap& a, const CpuSnap& b) {
  const double ncpu = static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));
  const double wall = b.wall - a.wall;
  const double others = std::max(0.0, (b.busy - a.busy) - (b.self - a.self));
  std::printf(
      "# contention: wall %.1f s; this process %.0f%% of one cpu; other processes %.0f%% "
      "of the %d cpus; hypervisor steal %.0f%%\n",
      wall, 100.0 * (b.self - a.self) / wall, 100.0 * others / (wall * ncpu), static_cast<int>(ncpu),
      100.0 * (b.steal - a.steal) / (wall * ncpu));
}

// ---------------------------------------------------------------------------
// Data helpers
// ---------------------------------------------------------------------------
template <class T>
static void fill(std::vector<T>& v, std::mt19937& g) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (auto& x : v) {
    if constexpr (std::is_same_v<T, cf>) x = cf(d(g), d(g));
    else x = static_cast<T>(d(g));
  }
}

struct Shape {
  std::string name;
  int M, N, K;
  bool transA;  // true: A stored K x M (the W^T . X backward products)
};

static std::string label = "unnamed";
static std::string ops_filter = "sgemm,dgemm,cgemm,rxc_mixed,rxc_stacked,rxc_interleaved";
// conv shapes are 5-10 GFLOP per call: keep the default set small (cgemm alone would
// take >1 s per call in Eigen); --big-ops sgemm,dgemm,cgemm,... to widen it.
static std::string big_ops_filter = "sgemm,rxc_mixed,rxc_stacked";

static bool has_op(const std::string& list, const std::string& op) {
  std::string s = "," + list + ",";
  return s.find("," + op + ",") != std::string::npos;
}

static void report(const std::string& op, const Shape& s, double flops, Stat st) {
  std::printf("%s,%s,%s,%d,%d,%d,%.2f,%.2f,%.2f,%d,%.2f,%.2f\n", label.c_str(), op.c_str(), s.name.c_str(), s.M, s.N,
              s.K, st.median_s * 1e6, flops / st.median_s * 1e-9, st.min_s * 1e6, st.samples, st.cpu_median_s * 1e6,
              flops / std::max(st.cpu_median_s, 1e-9) * 1e-9);
  std::fflush(stdout);
}

static double checksum_sink = 0.0;

template <class T>
static void run_gemm(const std::string& op, const Shape& s, std::mt19937& g) {
  std::vector<T> A(static_cast<size_t>(s.M) * s.K), B(static_cast<size_t>(s.K) * s.N),
      C(static_cast<size_t>(s.M) * s.N);
  fill(A, g);
  fill(B, g);
  const int lda = s.transA ? s.K : s.M;
  auto f = [&] { gemm<T>(s.transA, s.M, s.N, s.K, A.data(), lda, B.data(), s.K, C.data(), s.M); };
  Stat st = time_it(f);
  double flops = (std::is_same_v<T, cf> ? 8.0 : 2.0) * s.M * double(s.N) * s.K;
  checksum_sink += std::abs(C[0]);
  report(op, s, flops, st);
}

static void run_rxc(const std::string& op, const Shape& s, std::mt19937& g) {
  const size_t MK = size_t(s.M) * s.K, KN = size_t(s.K) * s.N, MN = size_t(s.M) * s.N;
  std::vector<float> A(MK);
  fill(A, g);
  const int lda = s.transA ? s.K : s.M;
  const double flops = 4.0 * s.M * double(s.N) * s.K;
  Stat st{};
  if (op == "rxc_mixed") {
    std::vector<cf> B(KN), C(MN);
    fill(B, g);
    st = time_it([&] { rxc_mixed(s.transA, s.M, s.N, s.K, A.data(), lda, B.data(), C.data()); });
    checksum_sink += std::abs(C[0]);
  } else if (op == "rxc_stacked") {
    // planar [Re | Im]: K x 2N column-major; result M x 2N = [W Re | W Im]
    std::vector<float> B(2 * KN), C(2 * MN);
    fill(B, g);
    st = time_it([&] { gemm<float>(s.transA, s.M, 2 * s.N, s.K, A.data(), lda, B.data(), s.K, C.data(), s.M); });
    checksum_sink += C[0];
  } else if (op == "rxc_interleaved") {
    // row-major interleaved complex K x N == row-major real K x 2N (zero copy)
    std::vector<cf> B(KN), C(MN);
    fill(B, g);
    st = time_it([&] {
      sgemm_rowmajor_bc(s.transA, s.M, 2 * s.N, s.K, A.data(), lda, reinterpret_cast<const float*>(B.data()),
                        reinterpret_cast<float*>(C.data()));
    });
    checksum_sink += std::abs(C[0]);
  }
  report(op, s, flops, st);
}

// Sanity check: every backend must produce the same numbers for the rxc variants.
static bool self_check() {
  std::mt19937 g(7);
  const int M = 33, K = 47, N = 5;
  for (int ta = 0; ta < 2; ++ta) {
    std::vector<float> W(M * K);
    fill(W, g);
    const int lda = ta ? K : M;
    std::vector<cf> X(K * N);  // column-major complex
    fill(X, g);
    auto w = [&](int i, int k) { return ta ? W[k + i * K] : W[i + k * M]; };
    std::vector<cf> ref(M * N);
    for (int j = 0; j < N; ++j)
      for (int i = 0; i < M; ++i) {
        std::complex<double> acc = 0;
        for (int k = 0; k < K; ++k) acc += double(w(i, k)) * std::complex<double>(X[k + j * K]);
        ref[i + j * M] = cf(acc);
      }
    auto err = [&](auto get) {
      double e = 0;
      for (int j = 0; j < N; ++j)
        for (int i = 0; i < M; ++i) e = std::max(e, double(std::abs(get(i, j) - ref[i + j * M])));
      return e;
    };
    // stacked
    std::vector<float> P(2 * K * N), Q(2 * M * N);
    for (int j = 0; j < N; ++j)
      for (int k = 0; k < K; ++k) {
        P[k + j * K] = X[k + j * K].real();
        P[k + (j + N) * K] = X[k + j * K].imag();
      }
    gemm<float>(ta, M, 2 * N, K, W.data(), lda, P.data(), K, Q.data(), M);
    double e1 = err([&](int i, int j) { return cf(Q[i + j * M], Q[i + (j + N) * M]); });
    // interleaved row-major
    std::vector<cf> XR(K * N), YR(M * N);
    for (int j = 0; j < N; ++j)
      for (int k = 0; k < K; ++k) XR[k * N + j] = X[k + j * K];
    sgemm_rowmajor_bc(ta, M, 2 * N, K, W.data(), lda, reinterpret_cast<float*>(XR.data()),
                      reinterpret_cast<float*>(YR.data()));
    double e2 = err([&](int i, int j) { return YR[i * N + j]; });
    double e3 = 0;
    if (kHasMixed) {
      std::vector<cf> Y(M * N);
      rxc_mixed(ta, M, N, K, W.data(), lda, X.data(), Y.data());
      e3 = err([&](int i, int j) { return Y[i + j * M]; });
    }
    if (e1 > 1e-4 || e2 > 1e-4 || e3 > 1e-4) {
      std::fprintf(stderr, "self-check FAILED (transA=%d): stacked %g interleaved %g mixed %g\n", ta, e1, e2, e3);
      return false;
    }
  }
  std::printf("# self-check ok (rxc_stacked, rxc_interleaved%s agree with a double reference)\n",
              kHasMixed ? ", rxc_mixed" : "");
  return true;
}

// ---------------------------------------------------------------------------
// CPU peak probe: clock by a dependent integer-add chain, FMA throughput by an
// unrolled loop of independent FMA accumulators (256-bit AVX2 and, when the
// binary is built with AVX-512, 512-bit), 1 and 2 threads.
// ---------------------------------------------------------------------------
// Windows are kept short (~2 ms) and repeated many times: on a shared machine a
// short window often runs without being descheduled, and the best window is
// then an honest measurement (interference can only make a window slower).
static double measure_clock_ghz() {
  // 1 add per cycle on every x86 core since P6 (latency 1, dependent chain).
  const long iters = 120'000;  // x 50 adds = 6e6 cycles (~2 ms)
  long x = 0;
  double t0 = now_s();
  for (long i = 0; i < iters; ++i) {
    asm volatile(
        ".rept 50\n\t"
        "add $1, %0\n\t"
        ".endr\n"
        : "+r"(x));
  }
  double t = now_s() - t0;
  return double(iters) * 50 / t * 1e-9;
}

// 12 independent accumulators: FMA latency 4 x 2 FMA pipes = 8 needed in flight.
#define EQ_FMA_KERNEL(NAME, VT, SET1, FMADD, ADD, STORE, ST, BYTES)                    \
  static double NAME(long iters) {                                                     \
    /* distinct start values, otherwise the compiler merges identical chains */        \
    VT a0 = SET1(0.1), a1 = SET1(0.2), a2 = SET1(0.3), a3 = SET1(0.4), a4 = SET1(0.5); \
    VT a5 = SET1(0.6), a6 = SET1(0.7), a7 = SET1(0.8), a8 = SET1(0.9), a9 = SET1(1.0); \
    VT a10 = SET1(1.1), a11 = SET1(1.2);                                               \
    const VT m = SET1(0.999999), c = SET1(1e-6);                                       \
    for (long i = 0; i < iters; ++i) {                                                 \
      a0 = FMADD(a0, m, c);                                                            \
      a1 = FMADD(a1, m, c);                                                            \
      a2 = FMADD(a2, m, c);                                                            \
      a3 = FMADD(a3, m, c);                                                            \
      a4 = FMADD(a4, m, c);                                                            \
      a5 = FMADD(a5, m, c);                                                            \
      a6 = FMADD(a6, m, c);                                                            \
      a7 = FMADD(a7, m, c);                                                            \
      a8 = FMADD(a8, m, c);                                                            \
      a9 = FMADD(a9, m, c);                                                            \
      a10 = FMADD(a10, m, c);                                                          \
      a11 = FMADD(a11, m, c);                                                          \
      /* opaque to the optimiser: every chain must really be computed */               \
      asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));   \
      asm volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11)); \
    }                                                                                  \
    VT s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));          \
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));                                       \
    alignas(BYTES) ST o[BYTES / sizeof(ST)];                                           \
    STORE(o, s);                                                                       \
    return o[0];                                                                       \
  }
EQ_FMA_KERNEL(fma_kernel_sp, __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_store_ps, float, 32)
EQ_FMA_KERNEL(fma_kernel_dp, __m256d, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd, _mm256_store_pd, double, 32)
#if defined(__AVX512F__)
// 512-bit variants: what Eigen's kernels (and a hand-written hot loop) can use
// when compiled with -march=native on an AVX-512 CPU.
#define EQ_HAVE_AVX512_PEAK 1
EQ_FMA_KERNEL(fma_kernel_sp512, __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_store_ps, float, 64)
EQ_FMA_KERNEL(fma_kernel_dp512, __m512d, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd, _mm512_store_pd, double, 64)
#endif
#undef EQ_FMA_KERNEL

static double fma_gflops(bool sp, int threads, bool w512 = false) {
  const int lanes = (sp ? 8 : 4) * (w512 ? 2 : 1);
  const long iters = 500'000;  // 12 FMA per iteration: 6e6 FMA = ~1 ms per thread
  std::vector<std::thread> th;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<double> sink(threads);
  for (int t = 0; t < threads; ++t)
    th.emplace_back([&, t] {
      ready++;
      while (!go.load()) {
      }
#if defined(EQ_HAVE_AVX512_PEAK)
      if (w512) {
        sink[t] = sp ? fma_kernel_sp512(iters) : fma_kernel_dp512(iters);
        return;
      }
#endif
      sink[t] = sp ? fma_kernel_sp(iters) : fma_kernel_dp(iters);
    });
  while (ready.load() < threads) {
  }
  double t0 = now_s();
  go = true;
  for (auto& x : th) x.join();
  double t = now_s() - t0;
  for (double s : sink) checksum_sink += s;
  return double(threads) * iters * 12 * lanes * 2 / t * 1e-9;
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

static int run_peak(int reps) {
  const CpuSnap snap0 = cpu_snap();
  // nominal clock from /proc/cpuinfo
  double mhz = 0;
  std::string model, flags;
  int family = -1, modelno = -1;
  {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      auto val = [&] { return line.substr(line.find(':') + 2); };
      if (line.rfind("cpu MHz", 0) == 0 && mhz == 0) mhz = std::atof(val().c_str());
      if (line.rfind("model name", 0) == 0 && model.empty()) model = val();
      if (line.rfind("cpu family", 0) == 0 && family < 0) family = std::atoi(val().c_str());
      if (line.rfind("model\t", 0) == 0 && modelno < 0) modelno = std::atoi(val().c_str());
      if (line.rfind("flags", 0) == 0 && flags.empty()) {
        flags += ' ';
        flags += val();
        flags += ' ';
      }
    }
  }
  const bool avx512 = flags.find(" avx512f ") != std::string::npos;
  const bool fma = flags.find(" fma ") != std::string::npos;
  // FMA units x vector width: AVX-512 parts: 2 x 512-bit (assumed, server SKUs);
  // Zen1/Zen+ (family 0x17, model < 0x30): 2 x 128-bit = 1 x 256-bit per cycle;
  // Haswell+/Zen2/Zen3/Zen4-with-AVX2-code: 2 x 256-bit.
  int fma_units = 2, vec_bits = avx512 ? 512 : (fma ? 256 : 128);
  bool zen1 = family == 0x17 && modelno < 0x30;
  if (zen1) fma_units = 1;
  // the *_avx2 lines use 256-bit code, the *_avx512 lines 512-bit code
  const int flops_cyc_sp = fma_units * (vec_bits / 32) * 2;
  const int flops_cyc_dp = fma_units * (vec_bits / 64) * 2;
  const int flops_cyc_sp_avx2 = fma_units * 8 * 2;
  const int flops_cyc_dp_avx2 = fma_units * 4 * 2;

  // On a shared machine interference only ever makes things slower, so the
  // best (max) of several runs is the estimate of what the core can do; the
  // median is printed too so that a loaded run is visible.
  std::vector<double> clk, s1, s2, d1, d2, z1, z2, e1, e2;  // z/e: 512-bit fp32/fp64
  measure_clock_ghz();                                      // warm-up / let the frequency settle
  for (int r = 0; r < reps; ++r) {
    clk.push_back(measure_clock_ghz());
    s1.push_back(fma_gflops(true, 1));
    d1.push_back(fma_gflops(false, 1));
    s2.push_back(fma_gflops(true, 2));
    d2.push_back(fma_gflops(false, 2));
#if defined(EQ_HAVE_AVX512_PEAK)
    z1.push_back(fma_gflops(true, 1, true));
    e1.push_back(fma_gflops(false, 1, true));
    z2.push_back(fma_gflops(true, 2, true));
    e2.push_back(fma_gflops(false, 2, true));
#endif
    clk.push_back(measure_clock_ghz());
  }
  auto vmax = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  auto vmin = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
  const double ghz = vmax(clk);
  std::printf("# cpu: %s (family %d model %d) avx512f=%s fma=%s\n", model.c_str(), family, modelno,
              avx512 ? "yes" : "no", fma ? "yes" : "no");
  std::printf(
      "# clock: /proc/cpuinfo %.0f MHz (nominal); measured by a dependent add chain: "
      "best %.3f GHz, median %.3f, min %.3f (%zu runs)\n",
      mhz, ghz, median(clk), vmin(clk), clk.size());
  std::printf("# FMA: %d unit(s) x %d-bit -> %d SP / %d DP flop/cycle (AVX2 code: %d / %d)\n", fma_units, vec_bits,
              flops_cyc_sp, flops_cyc_dp, flops_cyc_sp_avx2, flops_cyc_dp_avx2);
  std::printf(
      "peak,kind,threads,theoretical_gflops,measured_best_gflops,measured_median_gflops,"
      "best_fraction\n");
  auto line = [&](const char* kind, int thr, int fpc, const std::vector<double>& m) {
    double th = fpc * ghz * thr;
    std::printf("peak,%s,%d,%.1f,%.1f,%.1f,%.3f\n", kind, thr, th, vmax(m), median(m), vmax(m) / th);
  };
  line("fp32_avx2", 1, flops_cyc_sp_avx2, s1);
  line("fp32_avx2", 2, flops_cyc_sp_avx2, s2);
  line("fp64_avx2", 1, flops_cyc_dp_avx2, d1);
  line("fp64_avx2", 2, flops_cyc_dp_avx2, d2);
  std::printf("# measured fp32 AVX2 flop/cycle/core (best/best clock) = %.2f (expect %d)\n", vmax(s1) / ghz,
              flops_cyc_sp_avx2);
#if defined(EQ_HAVE_AVX512_PEAK)
  line("fp32_avx512", 1, flops_cyc_sp, z1);
  line("fp32_avx512", 2, flops_cyc_sp, z2);
  line("fp64_avx512", 1, flops_cyc_dp, e1);
  line("fp64_avx512", 2, flops_cyc_dp, e2);
  std::printf(
      "# measured fp32 AVX-512 flop/cycle/core (best/best clock) = %.2f (theoretical "
      "assumes %d)\n",
      vmax(z1) / ghz, flops_cyc_sp);
  std::printf(
      "# measured fp64 AVX-512 flop/cycle/core (best/best clock) = %.2f (theoretical "
      "assumes %d)\n",
      vmax(e1) / ghz, flops_cyc_dp);
#else
  std::printf("# AVX-512 peak not measured (binary not built with AVX-512)\n");
#endif
  print_contention(snap0, cpu_snap());
  return 0;
}

// ---------------------------------------------------------------------------
int main(int argc, char** argv) {
  int threads = 1;
  std::string groups = "square,ep,conv";
  bool peak = false;
  int peak_reps = 60;
  std::string batches = "10,20,50,128";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--label") label = next();
    else if (a == "--groups") groups = next();
    else if (a == "--ops") ops_filter = next();
    else if (a == "--big-ops") big_ops_filter = next();
    else if (a == "--batches") batches = next();
    else if (a == "--peak") peak = true;
    else if (a == "--peak-reps") peak_reps = std::atoi(next().c_str());
    else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--label L] [--groups square,ep,conv] [--ops list]\n"
                   "          [--big-ops list] [--batches 10,20,50,128] | --peak [--peak-reps R]\n",
                   argv[0]);
      return 2;
    }
  }
  if (peak) return run_peak(peak_reps);

  const CpuSnap snap0 = cpu_snap();
  set_threads(threads);
  print_meta();
  if (!self_check()) return 1;

  std::vector<Shape> shapes;
  auto in_group = [&](const std::string& gname) { return has_op(groups, gname); };
  if (in_group("square")) shapes.push_back({"sq1024", 1024, 1024, 1024, false});
  if (in_group("ep")) {
    std::vector<int> bs;
    for (size_t p = 0; p < batches.size();) {
      size_t q = batches.find(',', p);
      if (q == std::string::npos) q = batches.size();
      bs.push_back(std::atoi(batches.substr(p, q - p).c_str()));
      p = q + 1;
    }
    struct W {
      int out, in;
    };
    const W ws[] = {{256, 784}, {256, 256}, {512, 784}};
    for (int B : bs)
      for (auto w : ws) {
        char nm[64];
        std::snprintf(nm, sizeof nm, "W%dx%d.X_B%d", w.out, w.in, B);
        shapes.push_back({nm, w.out, B, w.in, false});
        std::snprintf(nm, sizeof nm, "W%dx%dT.X_B%d", w.out, w.in, B);
        shapes.push_back({nm, w.in, B, w.out, true});
      }
  }
  if (in_group("conv")) {
    shapes.push_back({"conv1_M128K1152N32768", 128, 32768, 1152, false});
    shapes.push_back({"conv2_M512K4608N1024", 512, 1024, 4608, false});
  }

  std::printf("label,op,shape,M,N,K,median_us,gflops,min_us,samples,cpu_us,cpu_gflops\n");
  std::mt19937 g(42);
  for (const auto& s : shapes) {
    const bool big = s.name.rfind("conv", 0) == 0;
    const std::string& ops = big ? big_ops_filter : ops_filter;
    if (has_op(ops, "sgemm")) run_gemm<float>("sgemm", s, g);
    if (has_op(ops, "dgemm")) run_gemm<double>("dgemm", s, g);
    if (has_op(ops, "cgemm")) run_gemm<cf>("cgemm", s, g);
    if (kHasMixed && has_op(ops, "rxc_mixed")) run_rxc("rxc_mixed", s, g);
    if (has_op(ops, "rxc_stacked")) run_rxc("rxc_stacked", s, g);
    if (has_op(ops, "rxc_interleaved")) run_rxc("rxc_interleaved", s, g);
  }
  print_contention(snap0, cpu_snap());
  std::fprintf(stderr, "# checksum %g\n", checksum_sink);
  return 0;
}
