#include "eqprop/dynamics/conv_ops.hpp"

#include <algorithm>
#include <cmath>

#include "conv_dnnl.hpp"
#include "eqprop/core/error.hpp"
#include "eqprop/core/matmul.hpp"

namespace eqprop {

namespace {
// Strides of the input image of g: element (c, y, x) of sample b is at c*sc + y*sy + x*sx + b*in_size.
struct strides {
  long sc, sy, sx;
};
strides input_strides(const connection_geometry& g) {
  if (g.planar_input) return {long(g.h) * g.w, g.w, 1};
  return {1, long(g.w) * g.cin, g.cin};
}

template <class T>
void check_rows(const matrix<T>& m, long rows, const char* who) {
  if (m.rows() != rows)
    throw shape_error(std::string(who) + ": buffer has " + std::to_string(m.rows()) + " rows, expected " +
                      std::to_string(rows));
}

// The patches of samples [b0, b0 + nb) of the input at `in` (in_size x B, column-major) as
// the columns of col (patch x ho*wo*nb).
template <class T>
void im2col_samples(const connection_geometry& g, const T* in_all, long b0, long nb, T* col) {
  const long K = g.patch();
  const auto s = input_strides(g);
  for (long b = 0; b < nb; ++b) {
    const T* in = in_all + (b0 + b) * g.in_size();
    for (int yo = 0; yo < g.ho; ++yo)
      for (int xo = 0; xo < g.wo; ++xo) {
        T* c = col + K * (xo + long(g.wo) * (yo + long(g.ho) * b));
        for (int ky = 0; ky < g.k; ++ky) {
          const int yi = yo + ky - g.pad;
          for (int kx = 0; kx < g.k; ++kx, c += g.cin) {
            const int xi = xo + kx - g.pad;
            if (yi < 0 || yi >= g.h || xi < 0 || xi >= g.w) {
              std::fill(c, c + g.cin, T(0));
            } else if (s.sc == 1) {
              std::copy_n(in + yi * s.sy + xi * s.sx, g.cin, c);
            } else {
              const T* p = in + yi * s.sy + xi * s.sx;
              for (int ci = 0; ci < g.cin; ++ci) c[ci] = p[ci * s.sc];
            }
          }
        }
      }
  }
}

// The adjoint of im2col_samples: adds the columns of col into samples [b0, b0 + nb) of out.
template <class T>
void col2im_add_samples(const connection_geometry& g, const T* col, long b0, long nb, T* out_all) {
  if (g.planar_input) throw internal_error("col2im_add: the planar network input is never differentiated");
  const long K = g.patch();
  const auto s = input_strides(g);
  for (long b = 0; b < nb; ++b) {
    T* out = out_all + (b0 + b) * g.in_size();
    for (int yo = 0; yo < g.ho; ++yo)
      for (int xo = 0; xo < g.wo; ++xo) {
        const T* c = col + K * (xo + long(g.wo) * (yo + long(g.ho) * b));
        for (int ky = 0; ky < g.k; ++ky) {
          const int yi = yo + ky - g.pad;
          for (int kx = 0; kx < g.k; ++kx, c += g.cin) {
            const int xi = xo + kx - g.pad;
            if (yi < 0 || yi >= g.h || xi < 0 || xi >= g.w) continue;
            T* p = out + yi * s.sy + xi * s.sx;
            for (int ci = 0; ci < g.cin; ++ci) p[ci] += c[ci];
          }
        }
      }
  }
}

// Samples per im2col chunk in conv_forward / conv_transpose: the patch matrix of a whole batch
// of a large layer (VGG-4's second conv: 295 k entries per sample) does not fit any cache, and
// the products run at less than half the speed of cache-sized chunks (docs/dev/performance.md).
long conv_chunk(const connection_geometry& g, long B) {
  constexpr long budget = 1L << 20;  // patch-matrix entries per chunk (2^18 and 2^21 measured slower)
  const long per_sample = g.patch() * long(g.ho) * g.wo;
  return std::clamp(budget / std::max(per_sample, 1L), 1L, B);
}
}  // namespace

namespace {

// Whether the convolutions of states T, weights P at this precision try oneDNN first.
template <class T, class P>
bool try_dnnl(const connection_geometry& g, matmul_precision precision) {
  if constexpr ((std::is_same_v<T, float> || std::is_same_v<T, std::complex<float>>)&&std::is_same_v<P, float>)
    return precision == matmul_precision::float32 && !(g.k == 1 && g.h == 1 && g.w == 1) &&
           conv_backend_in_use() == conv_backend::onednn;
  else return false;
}
}  // namespace

conv_onednn_ops conv_onednn_serves(const connection_geometry& g, long B) {
  if (!try_dnnl<float, float>(g, matmul_precision::float32)) return {};
  const auto s = detail::dnnl_conv_serves(g, B);
  return {s.forward, s.backward_data, s.backward_weights};
}

conv_weights_unchanged::conv_weights_unchanged() { detail::dnnl_weights_scope_enter(); }
conv_weights_unchanged::~conv_weights_unchanged() { detail::dnnl_weights_scope_leave(); }

template <class T>
void im2col(const connection_geometry& g, const matrix<T>& l, matrix<T>& col) {
  check_rows(l, g.in_size(), "im2col");
  const long B = l.cols();
  col.resize(g.patch(), long(g.ho) * g.wo * B);
  im2col_samples(g, l.data(), 0, B, col.data());
}

template <class T>
void col2im_add(const connection_geometry& g, const matrix<T>& col, matrix<T>& dl) {
  check_rows(dl, g.in_size(), "col2im_add");
  col2im_add_samples(g, col.data(), 0, dl.cols(), dl.data());
}

template <class T, class P>
void conv_forward(const connection_geometry& g, const_matrix_map<P> W, const matrix<T>& l, matrix<T>& col, matrix<T>& z,
                  matmul_precision precision) {
  check_rows(l, g.in_size(), "conv_forward");
  const long B = l.cols();
  z.resize(g.conv_size(), B);
  if (g.k == 1 && g.h == 1 && g.w == 1) return matmul<T, P>(W, false, l.data(), B, z.data(), false, precision);
  if constexpr (std::is_same_v<P, float>)
    if (try_dnnl<T, P>(g, precision) && detail::dnnl_conv_forward(g, W.data(), l.data(), B, z.data())) return;
  const long per = long(g.ho) * g.wo, K = g.patch(), chunk = conv_chunk(g, B);
  col.resize(K, per * chunk);
  for (long b0 = 0; b0 < B; b0 += chunk) {
    const long nb = std::min(chunk, B - b0);
    im2col_samples(g, l.data(), b0, nb, col.data());
    matmul<T, P>(W, false, col.data(), per * nb, z.data() + b0 * g.conv_size(), false, precision);
  }
}

template <class T, class P>
void conv_transpose(const connection_geometry& g, const_matrix_map<P> W, const matrix<T>& dz, matrix<T>& col,
                    matrix<T>& dl, bool accumulate, matmul_precision precision) {
  check_rows(dz, g.conv_size(), "conv_transpose");
  const long B = dz.cols();
  if (g.k == 1 && g.h == 1 && g.w == 1) {
    if (accumulate) check_rows(dl, g.in_size(), "conv_transpose");
    else dl.resize(g.in_size(), B);
    return matmul<T, P>(W, true, dz.data(), B, dl.data(), accumulate, precision);
  }
  if constexpr (std::is_same_v<P, float>) {
    if (accumulate) check_rows(dl, g.in_size(), "conv_transpose");
    else dl.resize(g.in_size(), B);
    if (try_dnnl<T, P>(g, precision) &&
        detail::dnnl_conv_backward_data(g, W.data(), dz.data(), B, dl.data(), accumulate))
      return;
  }
  if (!accumulate) dl.setZero(g.in_size(), B);
  check_rows(dl, g.in_size(), "conv_transpose");
  const long per = long(g.ho) * g.wo, K = g.patch(), chunk = conv_chunk(g, B);
  col.resize(K, per * chunk);
  for (long b0 = 0; b0 < B; b0 += chunk) {
    const long nb = std::min(chunk, B - b0);
    matmul<T, P>(W, true, dz.data() + b0 * g.conv_size(), per * nb, col.data(), false, precision);
    col2im_add_samples(g, col.data(), b0, nb, dl.data());
  }
}

template <class T, class R>
void conv_weight_grad(const connection_geometry& g, const matrix<T>& dz, const matrix<T>& l, matrix<T>& col, T coef,
                      matrix_map<R> gW) {
  const long B = dz.cols();
  if constexpr (std::is_same_v<R, float>)
    if (try_dnnl<T, R>(g, matmul_precision::float32) &&
        detail::dnnl_conv_backward_weights(g, dz.data(), l.data(), B, coef, gW.data()))
      return;
  const matrix<T>* c = &l;
  if (!(g.k == 1 && g.h == 1 && g.w == 1)) {
    im2col(g, l, col);
    c = &col;
  }
  const const_matrix_map<T> d(dz.data(), g.cout, long(g.ho) * g.wo * B);
  const matrix<T> prod = d * c->transpose();
  if constexpr (is_complex_v<T>) {
    gW.array() += coef.real() * prod.real().array() - coef.imag() * prod.imag().array();
  } else {
    gW.array() += coef * prod.array();
  }
}

template <class T, class R>
void channel_sum_grad(const connection_geometry& g, const matrix<T>& u, T coef, vector_map<R> gb) {
  const vector<T> s = const_matrix_map<T>(u.data(), g.cout, u.size() / g.cout).rowwise().sum();
  if constexpr (is_complex_v<T>) {
    gb.array() += coef.real() * s.real().array() - coef.imag() * s.imag().array();
  } else {
    gb.array() += coef * s.array();
  }
}

template <class T, class P>
void add_channel_bias(const connection_geometry& g, const_vector_map<P> b, matrix<T>& out) {
  matrix_map<T> m(out.data(), g.cout, out.size() / g.cout);
  for (long n = 0; n < m.cols(); ++n)
    for (int c = 0; c < g.cout; ++c) m(c, n) += T(b(c));
}

// ---------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------

namespace {
// Calls f(window offsets into z (ps*ps of them, in units of channels), pooled offset) for
// every window of every sample; offsets point at channel 0, add c for channel c.
template <class F>
void for_each_window(const connection_geometry& g, long B, F&& f) {
  const int ps = g.ps, n = ps * ps;
  long off[64];
  for (long b = 0; b < B; ++b)
    for (int yp = 0; yp < g.hp; ++yp)
      for (int xp = 0; xp < g.wp; ++xp) {
        for (int dy = 0, i = 0; dy < ps; ++dy)
          for (int dx = 0; dx < ps; ++dx, ++i)
            off[i] = long(g.cout) * ((xp * ps + dx) + long(g.wo) * ((yp * ps + dy) + long(g.ho) * b));
        const long po = long(g.cout) * (xp + long(g.wp) * (yp + long(g.hp) * b));
        f(off, n, po);
      }
}

// Softmax-pool quantities of one window: weights w_i, p = sum w z, g_i = dp/dz_i.
template <class T>
struct softmax_window {
  T w[64], grad[64];
  T p;
  void compute(const T* z, const long* off, int n, int c, real_t<T> temp) {
    real_t<T> mx = real_part(z[off[0] + c]);
    for (int i = 1; i < n; ++i) mx = std::max(mx, real_part(z[off[i] + c]));
    const T inv_t = T(real_t<T>(1) / temp);
    T s(0);
    for (int i = 0; i < n; ++i) s += (w[i] = std::exp((z[off[i] + c] - T(mx)) * inv_t));
    p = T(0);
    for (int i = 0; i < n; ++i) p += (w[i] /= s) * z[off[i] + c];
    for (int i = 0; i < n; ++i) grad[i] = w[i] * (T(1) + (z[off[i] + c] - p) * inv_t);
  }
};

template <class T>
int argmax_real(const T* z, const long* off, int n, int c) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (real_part(z[off[i] + c]) > real_part(z[off[best] + c])) best = i;
  return best;
}

void check_pool(const connection_geometry& g) {
  if (g.ps * g.ps > 64) throw config_error("pooling windows larger than 8x8 are not supported");
}
}  // namespace

template <class T>
void pool_forward(const connection_geometry& g, const matrix<T>& z, matrix<T>& p) {
  check_rows(z, g.conv_size(), "pool_forward");
  if (g.pool == pool_kind::none) {
    p = z;
    return;
  }
  check_pool(g);
  p.resize(g.out_size(), z.cols());
  const T* zd = z.data();
  T* pd = p.data();
  const real_t<T> temp = real_t<T>(g.temperature);
  for_each_window(g, z.cols(), [&](const long* off, int n, long po) {
    for (int c = 0; c < g.cout; ++c) {
      T v(0);
      switch (g.pool) {
        case pool_kind::softmax: {
          softmax_window<T> sw;
          sw.compute(zd, off, n, c, temp);
          v = sw.p;
          break;
        }
        case pool_kind::max:
          v = zd[off[argmax_real(zd, off, n, c)] + c];
          break;
        case pool_kind::avg:
          for (int i = 0; i < n; ++i) v += zd[off[i] + c];
          v *= T(real_t<T>(1) / real_t<T>(n));
          break;
        case pool_kind::none:
          break;
      }
      pd[po + c] = v;
    }
  });
}

template <class T>
void pool_vjp(const connection_geometry& g, const matrix<T>& z, const matrix<T>& u, matrix<T>& dz) {
  check_rows(z, g.conv_size(), "pool_vjp");
  check_rows(u, g.out_size(), "pool_vjp");
  if (g.pool == pool_kind::none) {
    dz = u;
    return;
  }
  check_pool(g);
  dz.setZero(g.conv_size(), z.cols());
  const T* zd = z.data();
  const T* ud = u.data();
  T* dd = dz.data();
  const real_t<T> temp = real_t<T>(g.temperature);
  for_each_window(g, z.cols(), [&](const long* off, int n, long po) {
    for (int c = 0; c < g.cout; ++c) {
      const T uo = ud[po + c];
      switch (g.pool) {
        case pool_kind::softmax: {
          softmax_window<T> sw;
          sw.compute(zd, off, n, c, temp);
          for (int i = 0; i < n; ++i) dd[off[i] + c] = uo * sw.grad[i];
          break;
        }
        case pool_kind::max:
          dd[off[argmax_real(zd, off, n, c)] + c] = uo;
          break;
        case pool_kind::avg:
          for (int i = 0; i < n; ++i) dd[off[i] + c] = uo * T(real_t<T>(1) / real_t<T>(n));
          break;
        case pool_kind::none:
          break;
      }
    }
  });
}

template <class T>
void pool_jvp(const connection_geometry& g, const matrix<T>& z, const matrix<T>& v, matrix<T>& out) {
  check_rows(z, g.conv_size(), "pool_jvp");
  check_rows(v, g.conv_size(), "pool_jvp");
  if (g.pool == pool_kind::none) {
    out = v;
    return;
  }
  check_pool(g);
  out.resize(g.out_size(), z.cols());
  const T* zd = z.data();
  const T* vd = v.data();
  T* od = out.data();
  const real_t<T> temp = real_t<T>(g.temperature);
  for_each_window(g, z.cols(), [&](const long* off, int n, long po) {
    for (int c = 0; c < g.cout; ++c) {
      T acc(0);
      switch (g.pool) {
        case pool_kind::softmax: {
          softmax_window<T> sw;
          sw.compute(zd, off, n, c, temp);
          for (int i = 0; i < n; ++i) acc += sw.grad[i] * vd[off[i] + c];
          break;
        }
        case pool_kind::max:
          acc = vd[off[argmax_real(zd, off, n, c)] + c];
          break;
        case pool_kind::avg:
          for (int i = 0; i < n; ++i) acc += vd[off[i] + c];
          acc *= T(real_t<T>(1) / real_t<T>(n));
          break;
        case pool_kind::none:
          break;
      }
      od[po + c] = acc;
    }
  });
}

template <class T>
void pool_hvp(const connection_geometry& g, const matrix<T>& z, const matrix<T>& u, const matrix<T>& v,
              matrix<T>& out) {
  check_rows(z, g.conv_size(), "pool_hvp");
  check_rows(u, g.out_size(), "pool_hvp");
  check_rows(v, g.conv_size(), "pool_hvp");
  out.setZero(g.conv_size(), z.cols());
  if (g.pool != pool_kind::softmax) return;  // piecewise linear: no curvature
  check_pool(g);
  const T* zd = z.data();
  const T* ud = u.data();
  const T* vd = v.data();
  T* od = out.data();
  const T inv_t = T(real_t<T>(1) / real_t<T>(g.temperature));
  const real_t<T> temp = real_t<T>(g.temperature);
  // d2p/dz_i dz_j = (w_i/T) [(delta_ij - w_j)(1 + (z_i - p)/T) + delta_ij - g_j].
  for_each_window(g, z.cols(), [&](const long* off, int n, long po) {
    for (int c = 0; c < g.cout; ++c) {
      softmax_window<T> sw;
      sw.compute(zd, off, n, c, temp);
      T wv(0), gv(0);
      for (int i = 0; i < n; ++i) {
        wv += sw.w[i] * vd[off[i] + c];
        gv += sw.grad[i] * vd[off[i] + c];
      }
      const T uo = ud[po + c];
      for (int i = 0; i < n; ++i) {
        const T vi = vd[off[i] + c];
        const T zi = zd[off[i] + c];
        od[off[i] + c] = uo * sw.w[i] * inv_t * ((vi - wv) * (T(1) + (zi - sw.p) * inv_t) + vi - gv);
      }
    }
  });
}

#define EQPROP_POOL(T)                                                                                        \
  template void im2col<T>(const connection_geometry&, const matrix<T>&, matrix<T>&);                          \
  template void col2im_add<T>(const connection_geometry&, const matrix<T>&, matrix<T>&);                      \
  template void pool_forward<T>(const connection_geometry&, const matrix<T>&, matrix<T>&);                    \
  template void pool_vjp<T>(const connection_geometry&, const matrix<T>&, const matrix<T>&, matrix<T>&);      \
  template void pool_jvp<T>(const connection_geometry&, const matrix<T>&, const matrix<T>&, matrix<T>&);      \
  template void pool_hvp<T>(const connection_geometry&, const matrix<T>&, const matrix<T>&, const matrix<T>&, \
                            matrix<T>&);
EQPROP_POOL(float)
EQPROP_POOL(double)
EQPROP_POOL(std::complex<float>)
EQPROP_POOL(std::complex<double>)

#define EQPROP_CONV(T, P)                                                                                           \
  template void conv_forward<T, P>(const connection_geometry&, const_matrix_map<P>, const matrix<T>&, matrix<T>&,   \
                                   matrix<T>&, matmul_precision);                                                   \
  template void conv_transpose<T, P>(const connection_geometry&, const_matrix_map<P>, const matrix<T>&, matrix<T>&, \
                                     matrix<T>&, bool, matmul_precision);                                           \
  template void add_channel_bias<T, P>(const connection_geometry&, const_vector_map<P>, matrix<T>&);
EQPROP_CONV(float, float)
EQPROP_CONV(double, double)
EQPROP_CONV(std::complex<float>, float)
EQPROP_CONV(std::complex<double>, double)
EQPROP_CONV(std::complex<double>, std::complex<double>)

#define EQPROP_GRAD(T, R)                                                                                             \
  template void conv_weight_grad<T, R>(const connection_geometry&, const matrix<T>&, const matrix<T>&, matrix<T>&, T, \
                                       matrix_map<R>);                                                                \
  template void channel_sum_grad<T, R>(const connection_geometry&, const matrix<T>&, T, vector_map<R>);
EQPROP_GRAD(float, float)
EQPROP_GRAD(double, double)
EQPROP_GRAD(std::complex<float>, float)
EQPROP_GRAD(std::complex<double>, double)

}  // namespace eqprop
