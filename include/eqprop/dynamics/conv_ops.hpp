// Convolution and pooling kernels of ConvNet connections (model/layered_network.hpp), for
// real and complex states with real (or, for complex-step tests, complex) weights.
//
// Shapes: a "layer-shaped" buffer is a matrix of (size x batch). Inside, conv states are
// HWC (channel fastest), so the same memory is a C x (H*W*B) matrix; only the network
// input may be planar CHW (connection_geometry::planar_input).
//  - z = conv(l): conv_size x B (before pooling); p = P(z): out_size x B.
//  - col = im2col(l): (k*k*C_in) x (H_out*W_out*B), rows ordered C_in fastest, then kx, ky.
// Convolution is one GEMM, W (C_out x k*k*C_in) * col; its transpose is W^T * dz followed
// by col2im (a scatter-add). Dense connections skip im2col (col is l itself). float32
// convolutions run on oneDNN's convolution primitives instead where eqprop was built with
// oneDNN (conv_backend); the col argument is then left alone.
#pragma once
#include "eqprop/core/conv_backend.hpp"
#include "eqprop/core/matmul.hpp"
#include "eqprop/core/scalar.hpp"
#include "eqprop/model/layered_network.hpp"

namespace eqprop {

/// Which float32 convolutions of geometry g at batch B (real states; complex ones run as 2B)
/// take oneDNN's kernels (conv_backend::onednn in use, g not dense, and a fast kernel for the
/// operation); the others take the im2col path.
struct conv_onednn_ops {
  bool forward = false, transpose = false, weight_grad = false;
};
conv_onednn_ops conv_onednn_serves(const connection_geometry& g, long B);

/// A promise, for the lifetime of this object, that the weights of the convolutions this
/// thread runs do not change: wherever a weight matrix W is passed, it holds the same values at
/// every call. The oneDNN kernels then reorder each weight matrix into their format once and
/// reuse it until the outermost such scope of the thread closes; without a scope they reorder
/// it at every call (always correct, slower for small batches). relax_state::relax opens one
/// around its steps, during which the network is const. Scopes nest.
class conv_weights_unchanged {
 public:
  conv_weights_unchanged();
  ~conv_weights_unchanged();
  conv_weights_unchanged(const conv_weights_unchanged&) = delete;
  conv_weights_unchanged& operator=(const conv_weights_unchanged&) = delete;
};

/// col = im2col(l) for connection geometry g (l: in_size x B).
template <class T>
void im2col(const connection_geometry& g, const matrix<T>& l, matrix<T>& col);
/// dl += col2im(col): the transpose of im2col (HWC inputs only).
template <class T>
void col2im_add(const connection_geometry& g, const matrix<T>& col, matrix<T>& dl);

/// z = conv(l) with weights W (C_out x k*k*C_in), no bias, before pooling. col is scratch.
template <class T, class P>
void conv_forward(const connection_geometry& g, const_matrix_map<P> W, const matrix<T>& l, matrix<T>& col, matrix<T>& z,
                  matmul_precision precision = matmul_precision::float32);
/// dl (+)= conv^T(dz): the exact transpose of conv_forward (dl: in_size x B).
template <class T, class P>
void conv_transpose(const connection_geometry& g, const_matrix_map<P> W, const matrix<T>& dz, matrix<T>& col,
                    matrix<T>& dl, bool accumulate, matmul_precision precision = matmul_precision::float32);
/// gW += Re(coef * dz im2col(l)^T): the weight gradient of <dz, conv(l)>.
template <class T, class R>
void conv_weight_grad(const connection_geometry& g, const matrix<T>& dz, const matrix<T>& l, matrix<T>& col, T coef,
                      matrix_map<R> gW);
/// gb += Re(coef * sum of u over positions and samples), per channel (u: out_size x B).
template <class T, class R>
void channel_sum_grad(const connection_geometry& g, const matrix<T>& u, T coef, vector_map<R> gb);
/// out(:, channel) += b per channel: adds the bias to a layer-shaped buffer.
template <class T, class P>
void add_channel_bias(const connection_geometry& g, const_vector_map<P> b, matrix<T>& out);

// Pooling P over ps x ps windows (stride ps, VALID), per channel; see pool_kind. With
// pool_kind::none every function is the identity (or zero for the curvature).
/// p = P(z).
template <class T>
void pool_forward(const connection_geometry& g, const matrix<T>& z, matrix<T>& p);
/// dz = J_P(z)^T u.
template <class T>
void pool_vjp(const connection_geometry& g, const matrix<T>& z, const matrix<T>& u, matrix<T>& dz);
/// out = J_P(z) v.
template <class T>
void pool_jvp(const connection_geometry& g, const matrix<T>& z, const matrix<T>& v, matrix<T>& out);
/// out = sum over outputs o of u_o * Hess(P_o)(z) v (zero unless softmax pooling).
template <class T>
void pool_hvp(const connection_geometry& g, const matrix<T>& z, const matrix<T>& u, const matrix<T>& v, matrix<T>& out);

}  // namespace eqprop
