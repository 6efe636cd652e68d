// Which kernels run the float32 convolutions of ConvNet layers (a process-wide choice).
#pragma once

namespace eqprop {

/// The kernels of the float32 convolutions (float or complex<float> states, float weights,
/// float32 products) of conv_forward, conv_transpose and conv_weight_grad:
///  - onednn: oneDNN's convolution primitives on our buffers, the weights in the primitives'
///    blocked format (see conv_weights_unchanged in dynamics/conv_ops.hpp); the default where
///    eqprop was built with oneDNN, unless the environment has EQPROP_CONV=im2col;
///  - im2col: im2col + matmul (then col2im), the path of float64, complex<double>, bfloat16
///    products and dense connections, and of any shape oneDNN has no kernel for.
/// Both give the same results up to float rounding.
enum class conv_backend { im2col, onednn };
/// The backend in use (process-wide).
conv_backend conv_backend_in_use();
/// Sets it for the whole process (A/B runs, tests); onednn without oneDNN stays im2col.
void set_conv_backend(conv_backend b);
/// "onednn" or "im2col".
const char* conv_backend_name();

}  // namespace eqprop
