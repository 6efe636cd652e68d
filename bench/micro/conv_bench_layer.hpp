// The conv layer both conv benchmarks time (conv_ops.cpp: ours; conv_onednn.cpp: oneDNN).
#pragma once
#include "eqprop/dynamics/conv_ops.hpp"

namespace eqprop::bench {

/// A 3x3 SAME conv from c_in x side x side (HWC states) to c_out channels, no pooling.
inline connection_geometry conv_layer_3x3(int c_in, int side, int c_out) {
  network_spec s;
  s.input_shape = {c_in, side, side};
  s.conv = {{c_out, 3, true, pool_kind::none}};
  auto g = s.geometry(0);
  g.planar_input = false;
  return g;
}

}  // namespace eqprop::bench
