#include "conv_dnnl.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#ifdef EQPROP_HAVE_DNNL
#include <fmt/format.h>

#include <oneapi/dnnl/dnnl.hpp>

#include "../core/one_omp_thread.hpp"
#include "eqprop/core/aligned.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/core/scalar.hpp"
#endif

namespace eqprop::detail {

#ifdef EQPROP_HAVE_DNNL
namespace {
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
enum class op : long { forward, backward_data, backward_weights };

using detail::one_omp_thread;

// An activation operand of a primitive: our layout (user) and the primitive's; when they
// differ, the reorders between them (from_user; to_user, and to_user_add, which adds).
struct operand {
  int arg = 0;
  dnnl::memory::desc user, prim;
  bool reordered = false;
  dnnl::reorder from_user, to_user, to_user_add;
  void init(int a, const dnnl::memory::desc& u, const dnnl::memory::desc& p, const dnnl::engine& e, bool output) {
    arg = a, user = u, prim = p;
    reordered = !(u == p);
    if (!reordered) return;
    if (!output) {
      from_user = dnnl::reorder(dnnl::reorder::primitive_desc(e, u, e, p));
      return;
    }
    to_user = dnnl::reorder(dnnl::reorder::primitive_desc(e, p, e, u));
    dnnl::post_ops po;
    po.append_sum(1.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    to_user_add = dnnl::reorder(dnnl::reorder::primitive_desc(e, p, e, u, attr));
  }
};

// One convolution primitive of a shape: an input and an output activation operand (forward:
// src -> dst; backward-data: diff_dst -> diff_src; backward-weights: src and diff_dst ->
// the weight gradient, whose format is wei), and the format of its weights.
struct conv_primitive {
  bool ok = false;  // false: no fast oneDNN kernel (the caller takes the im2col path)
  dnnl::primitive prim;
  operand in, in2, out;
  dnnl::memory::desc wei;
};

// A blocked copy of the weights at `source`, valid while `scope` is this thread's open scope.
struct blocked_weights {
  const float* source = nullptr;
  dnnl::memory::desc md;
  dnnl::memory mem;
  uint64_t scope = 0;
};

// Which operations take oneDNN, and with which activation layout: measured on AVX2 (Zen 3,
// oneDNN 2.6's jit:avx2 kernels; docs/dev/linear-algebra.md). Its kernels lose to im2col +
// GEMM on images of fewer than 16 pixels (VGG-4's last conv: 4x4 -> 2x2), and its
// backward-data kernel on the transpose of a VALID convolution (a "full" convolution, k - 1
// pixels of padding on each side). They are faster on activations in their blocked layout
// (nChw8c, reordered from and to ours at every call) once both sides have 128 channels or
// more, slower below. With AVX-512 (brgconv kernels, built for nhwc) our layout is kept.
bool dnnl_takes(op o, const connection_geometry& g) {
  if (std::min(long(g.ho) * g.wo, long(g.h) * g.w) < 16) return false;
  return o != op::backward_data || (g.ho == g.h && g.wo == g.w);
}
bool blocked_activations(const connection_geometry& g) {
  static const bool avx512 = [] {  // the ISA values are nested bit sets
    const auto core = unsigned(dnnl::cpu_isa::avx512_core);
    return (unsigned(dnnl::get_effective_cpu_isa()) & core) == core;
  }();
  return !avx512 && std::min(g.cin, g.cout) >= 128;
}

struct conv_thread {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<std::array<long, 11>, conv_primitive> prims;
  std::vector<blocked_weights> weights;
  int depth = 0;          // open conv_weights_unchanged scopes
  uint64_t scope = 0;     // id of the outermost open scope (0: none open)
  uint64_t n_scopes = 0;  // scopes opened so far: the id of the last one
  // Scratch: complex operands split into real ones (a: input, b: second input, c: output),
  // activations in the primitive's layout (p_in, p_in2, p_out).
  aligned_vector<float> a, b, c, p_in, p_in2, p_out;

  const conv_primitive& get(op o, const connection_geometry& g, long B);
  // W (of geometry g) in format md.
  const dnnl::memory& blocked(const float* W, const connection_geometry& g, const dnnl::memory::desc& md);
  // The memory of operand x, whose data in our layout is at `data`: that buffer itself, or
  // `scratch` in the primitive's layout (filled from `data` for an input).
  dnnl::memory bind(const operand& x, float* data, aligned_vector<float>& scratch, bool input);
  // Writes (or adds) an output operand in the primitive's layout back to `data`.
  void finish(const operand& x, dnnl::memory m, float* data, bool accumulate);
};

conv_thread& this_thread() {
  thread_local conv_thread t;
  return t;
}

dnnl::memory::dims dims(long B, long c, long h, long w) { return {B, c, h, w}; }

dnnl::memory::desc user_weights(const connection_geometry& g) {
  // W(co, ci + C_in (kx + k ky)), column-major: co fastest, then ci, kx, ky.
  return {dims(g.cout, g.cin, g.k, g.k), dt::f32, tag::hwio};
}

const conv_primitive& conv_thread::get(op o, const connection_geometry& g, long B) {
  const std::array<long, 11> key{long(o), g.cin, g.h, g.w, g.k, g.pad, g.cout, g.ho, g.wo, g.planar_input, B};
  auto it = prims.find(key);
  if (it != prims.end()) return it->second;
  if (prims.size() > 1024) prims.clear();  // bounded: a run's shapes are few
  conv_primitive p;
  if (!dnnl_takes(o, g)) return prims.emplace(key, std::move(p)).first->second;
  try {
    const dnnl::memory::desc src(dims(B, g.cin, g.h, g.w), dt::f32, g.planar_input ? tag::nchw : tag::nhwc),
        dst(dims(B, g.cout, g.ho, g.wo), dt::f32, tag::nhwc), any_wei(dims(g.cout, g.cin, g.k, g.k), dt::f32, tag::any);
    const bool any = blocked_activations(g);
    const dnnl::memory::desc src_q = any ? dnnl::memory::desc(src.dims(), dt::f32, tag::any) : src,
                             dst_q = any ? dnnl::memory::desc(dst.dims(), dt::f32, tag::any) : dst;
    const dnnl::memory::dims strides{1, 1}, pad_l{g.pad, g.pad},
        pad_r{g.ho - 1 + g.k - g.pad - g.h, g.wo - 1 + g.k - g.pad - g.w};
    const auto algo = dnnl::algorithm::convolution_direct;
    const auto kind = o == op::forward ? dnnl::prop_kind::forward_inference : dnnl::prop_kind::forward_training;
    const dnnl::convolution_forward::primitive_desc fwd(
        dnnl::convolution_forward::desc(kind, algo, src_q, any_wei, dst_q, strides, pad_l, pad_r), engine);
    std::string impl;
    if (o == op::forward) {
      p.prim = dnnl::convolution_forward(fwd);
      p.in.init(DNNL_ARG_SRC, src, fwd.src_desc(), engine, false);
      p.out.init(DNNL_ARG_DST, dst, fwd.dst_desc(), engine, true);
      p.wei = fwd.weights_desc();
      impl = fwd.impl_info_str();
    } else if (o == op::backward_data) {
      const dnnl::convolution_backward_data::primitive_desc pd(
          dnnl::convolution_backward_data::desc(algo, src_q, any_wei, dst_q, strides, pad_l, pad_r), engine, fwd);
      p.prim = dnnl::convolution_backward_data(pd);
      p.in.init(DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), engine, false);
      p.out.init(DNNL_ARG_DIFF_SRC, src, pd.diff_src_desc(), engine, true);
      p.wei = pd.weights_desc();
      impl = pd.impl_info_str();
    } else {
      const dnnl::convolution_backward_weights::primitive_desc pd(
          dnnl::convolution_backward_weights::desc(algo, src_q, any_wei, dst_q, strides, pad_l, pad_r), engine, fwd);
      p.prim = dnnl::convolution_backward_weights(pd);
      p.in.init(DNNL_ARG_SRC, src, pd.src_desc(), engine, false);
      p.in2.init(DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), engine, false);
      p.out.init(DNNL_ARG_DIFF_WEIGHTS, user_weights(g), pd.diff_weights_desc(), engine, true);
      impl = pd.impl_info_str();
    }
    // oneDNN's reference kernels (e.g. for a planar input with nhwc output) and its own
    // im2col + GEMM kernels are no faster than the im2col path, often far slower.
    p.ok = impl.rfind("ref", 0) != 0 && impl.find("gemm") == std::string::npos;
  } catch (const dnnl::error&) {
    p.ok = false;
  }
  return prims.emplace(key, std::move(p)).first->second;
}

const dnnl::memory& conv_thread::blocked(const float* W, const connection_geometry& g, const dnnl::memory::desc& md) {
  blocked_weights* slot = nullptr;
  for (auto& w : weights)
    if (w.source == W && w.md == md) {
      if (scope != 0 && w.scope == scope) return w.mem;
      slot = &w;
      break;
    }
  if (!slot) {
    if (weights.size() >= 64) weights.clear();  // bounded: a network's layers are few
    weights.push_back({W, md, dnnl::memory(md, engine), 0});
    slot = &weights.back();
  }
  dnnl::memory user(user_weights(g), engine, const_cast<float*>(W));
  dnnl::reorder(user, slot->mem).execute(stream, user, slot->mem);
  slot->scope = scope;
  return slot->mem;
}

dnnl::memory conv_thread::bind(const operand& x, float* data, aligned_vector<float>& scratch, bool input) {
  dnnl::memory user(x.user, engine, data);
  if (!x.reordered) return user;
  scratch.resize(x.prim.get_size() / sizeof(float) + 1);
  dnnl::memory m(x.prim, engine, scratch.data());
  if (input) x.from_user.execute(stream, user, m);
  return m;
}

void conv_thread::finish(const operand& x, dnnl::memory m, float* data, bool accumulate) {
  dnnl::memory user(x.user, engine, data);
  (accumulate ? x.to_user_add : x.to_user).execute(stream, m, user);
}

// The n x B complex matrix x as a real n x 2B one: the real parts, then the imaginary parts.
void split(const std::complex<float>* x, long n, long B, aligned_vector<float>& out) {
  out.resize(size_t(2 * n * B));
  float* re = out.data();
  float* im = re + n * B;
  for (long i = 0; i < n * B; ++i) {
    re[i] = x[i].real();
    im[i] = x[i].imag();
  }
}

// x (n x B complex) = or += the real n x 2B matrix r read as real parts, then imaginary parts.
void merge(const float* r, long n, long B, std::complex<float>* x, bool accumulate) {
  const float* im = r + n * B;
  if (accumulate)
    for (long i = 0; i < n * B; ++i) x[i] += std::complex<float>(r[i], im[i]);
  else
    for (long i = 0; i < n * B; ++i) x[i] = std::complex<float>(r[i], im[i]);
}

[[noreturn]] void fail(const char* what, const connection_geometry& g, long B, const dnnl::error& err) {
  throw internal_error(
      fmt::format("oneDNN convolution {} ({}x{}x{} -> {}, kernel {}, batch {}): {} (set "
                  "EQPROP_CONV=im2col to bypass it)",
                  what, g.cin, g.h, g.w, g.cout, g.k, B, err.what()));
}

// out = or += conv(in) (o = forward) or conv^T(in) (o = backward_data) with weights W, for
// real or complex (as 2B real columns) states; false where oneDNN has no fast kernel.
template <class T>
bool run(op o, const connection_geometry& g, const float* W, const T* in, long B, T* out, bool accumulate) {
  if (B == 0 || (o == op::backward_data && g.planar_input)) return false;
  constexpr bool cplx = is_complex_v<T>;
  auto& th = this_thread();
  const long nb = cplx ? 2 * B : B;
  const one_omp_thread guard;  // before get(): primitives plan their threads when created
  const auto& p = th.get(o, g, nb);
  if (!p.ok) return false;
  const long n_in = o == op::forward ? g.in_size() : g.conv_size(),
             n_out = o == op::forward ? g.conv_size() : g.in_size();
  try {
    const float* x;
    float* y;
    if constexpr (cplx) {
      split(in, n_in, B, th.a);
      x = th.a.data();
      th.c.resize(size_t(2 * n_out * B));
      y = th.c.data();
    } else {
      x = in, y = out;
    }
    // A real output in our layout, to be added to: computed in scratch, then added.
    const bool add_here = !cplx && accumulate && !p.out.reordered;
    if (add_here) {
      th.c.resize(size_t(n_out * B));
      y = th.c.data();
    }
    const dnnl::memory src = th.bind(p.in, const_cast<float*>(x), th.p_in, true),
                       dst = th.bind(p.out, y, th.p_out, false);
    p.prim.execute(th.stream, {{p.in.arg, src}, {DNNL_ARG_WEIGHTS, th.blocked(W, g, p.wei)}, {p.out.arg, dst}});
    if (p.out.reordered) th.finish(p.out, dst, y, accumulate && !cplx);
    if constexpr (cplx) {
      merge(y, n_out, B, out, accumulate);
    } else if (add_here) {
      const long n = n_out * B;
      for (long i = 0; i < n; ++i) out[i] += y[i];
    }
  } catch (const dnnl::error& err) {
    fail(o == op::forward ? "forward" : "backward-data", g, nb, err);
  }
  return true;
}
}  // namespace

template <class T>
bool dnnl_conv_forward(const connection_geometry& g, const float* W, const T* l, long B, T* z) {
  return run(op::forward, g, W, l, B, z, false);
}

template <class T>
bool dnnl_conv_backward_data(const connection_geometry& g, const float* W, const T* dz, long B, T* dl,
                             bool accumulate) {
  return run(op::backward_data, g, W, dz, B, dl, accumulate);
}

template <class T>
bool dnnl_conv_backward_weights(const connection_geometry& g, const T* dz, const T* l, long B, T coef, float* gW) {
  if (B == 0) return false;
  auto& th = this_thread();
  const long nb = is_complex_v<T> ? 2 * B : B;
  const one_omp_thread guard;  // before get(): primitives plan their threads when created
  const auto& p = th.get(op::backward_weights, g, nb);
  if (!p.ok) return false;
  try {
    const float *src, *ddst;
    float scale = 1;
    if constexpr (is_complex_v<T>) {
      // Re(coef dz l^T) = sum over samples of Re(u) Re(l)^T - Im(u) Im(l)^T with u = coef dz:
      // one real gradient over the batch [Re l | Im l] against [Re u | -Im u].
      split(l, g.in_size(), B, th.a);
      const long n = g.conv_size() * B;
      th.b.resize(size_t(2 * n));
      for (long i = 0; i < n; ++i) {
        const std::complex<float> v = coef * dz[i];
        th.b[size_t(i)] = v.real();
        th.b[size_t(n + i)] = -v.imag();
      }
      src = th.a.data(), ddst = th.b.data();
    } else {
      src = l, ddst = dz, scale = coef;
    }
    const long n_w = long(g.cout) * g.patch();
    th.c.resize(size_t(n_w));
    const dnnl::memory s = th.bind(p.in, const_cast<float*>(src), th.p_in, true),
                       d = th.bind(p.in2, const_cast<float*>(ddst), th.p_in2, true),
                       dw = th.bind(p.out, th.c.data(), th.p_out, false);
    p.prim.execute(th.stream, {{p.in.arg, s}, {p.in2.arg, d}, {p.out.arg, dw}});
    if (p.out.reordered) th.finish(p.out, dw, th.c.data(), false);
    for (long i = 0; i < n_w; ++i) gW[i] += scale * th.c[size_t(i)];
  } catch (const dnnl::error& err) {
    fail("backward-weights", g, nb, err);
  }
  return true;
}

dnnl_ops dnnl_conv_serves(const connection_geometry& g, long B) {
  if (B <= 0) return {};
  auto& th = this_thread();
  const one_omp_thread guard;
  return {th.get(op::forward, g, B).ok, !g.planar_input && th.get(op::backward_data, g, B).ok,
          th.get(op::backward_weights, g, B).ok};
}

void dnnl_weights_scope_enter() {
  auto& th = this_thread();
  if (th.depth++ == 0) th.scope = ++th.n_scopes;
}

void dnnl_weights_scope_leave() {
  auto& th = this_thread();
  if (--th.depth == 0) th.scope = 0;
}

#else  // no oneDNN: every call takes the im2col path

template <class T>
bool dnnl_conv_forward(const connection_geometry&, const float*, const T*, long, T*) {
  return false;
}
template <class T>
bool dnnl_conv_backward_data(const connection_geometry&, const float*, const T*, long, T*, bool) {
  return false;
}
template <class T>
bool dnnl_conv_backward_weights(const connection_geometry&, const T*, const T*, long, T, float*) {
  return false;
}
dnnl_ops dnnl_conv_serves(const connection_geometry&, long) { return {}; }
void dnnl_weights_scope_enter() {}
void dnnl_weights_scope_leave() {}

#endif

#define EQPROP_CONV_DNNL(T)                                                                                     \
  template bool dnnl_conv_forward<T>(const connection_geometry&, const float*, const T*, long, T*);             \
  template bool dnnl_conv_backward_data<T>(const connection_geometry&, const float*, const T*, long, T*, bool); \
  template bool dnnl_conv_backward_weights<T>(const connection_geometry&, const T*, const T*, long, T, float*);
EQPROP_CONV_DNNL(float)
EQPROP_CONV_DNNL(std::complex<float>)

}  // namespace eqprop::detail
