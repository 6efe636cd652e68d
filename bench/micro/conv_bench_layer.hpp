// The conv layers the conv benchmarks time (conv_ops.cpp: ours; conv_onednn.cpp: oneDNN).
#pragma once
#include "eqprop/dynamics/conv_ops.hpp"

namespace eqprop::bench {

/// A k x k conv (SAME or VALID) from c_in x side x side (HWC states) to c_out channels, no
/// pooling.
inline connection_geometry conv_layer(int c_in, int side, int c_out, int k = 3, bool same = true) {
  network_spec s;
  s.input_shape = {c_in, side, side};
  s.conv = {{c_out, k, same, pool_kind::none}};
  auto g = s.geometry(0);
  g.planar_input = false;
  return g;
}

/// A 3x3 SAME conv from c_in x side x side to c_out channels.
inline connection_geometry conv_layer_3x3(int c_in, int side, int c_out) { return conv_layer(c_in, side, c_out); }

}  // namespace eqprop::bench
