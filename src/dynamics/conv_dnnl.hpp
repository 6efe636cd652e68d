// oneDNN convolution primitives for the float32 ConvNet kernels of conv_ops.cpp (internal).
//
// The activations stay in our layouts, declared to oneDNN as they are: a layer-shaped buffer
// (size x B, one HWC image per column) is an nhwc tensor {B, C, H, W}, the planar network
// input nchw. The weights (C_out x k*k*C_in, column-major, im2col order) are hwio; each
// primitive gets them in its preferred (blocked) format, reordered on this thread and kept
// while a conv_weights_unchanged scope is open (see conv_ops.hpp), else reordered at every
// call. Primitives are cached per shape, per thread, and run single-threaded.
//
// Every function returns false, having done nothing, where oneDNN does not serve the call
// (a build without oneDNN, or an error creating the primitive); the caller then takes the
// im2col path. Complex states are two real images (real and imaginary parts side by side
// as a batch of 2B).
#pragma once
#include <complex>

#include "eqprop/model/layered_network.hpp"

namespace eqprop::detail {

/// z = conv(l): l in_size x B, z conv_size x B (both contiguous, z sized by the caller).
template <class T>
bool dnnl_conv_forward(const connection_geometry& g, const float* W, const T* l, long B, T* z);
/// dl = conv^T(dz), or dl += conv^T(dz) when accumulate: dz conv_size x B, dl in_size x B.
template <class T>
bool dnnl_conv_backward_data(const connection_geometry& g, const float* W, const T* dz, long B, T* dl, bool accumulate);
/// gW += Re(coef * dz im2col(l)^T) (gW: C_out x k*k*C_in, column-major).
template <class T>
bool dnnl_conv_backward_weights(const connection_geometry& g, const T* dz, const T* l, long B, T coef, float* gW);

/// Which of the three run on oneDNN for real states of geometry g at batch B.
struct dnnl_ops {
  bool forward = false, backward_data = false, backward_weights = false;
};
dnnl_ops dnnl_conv_serves(const connection_geometry& g, long B);

/// Opens / closes this thread's weights scope (conv_weights_unchanged).
void dnnl_weights_scope_enter();
void dnnl_weights_scope_leave();

}  // namespace eqprop::detail
