#include "eqprop/core/conv_backend.hpp"

#include <atomic>
#include <cstdlib>
#include <string_view>

namespace eqprop {

namespace {
// The best backend of this build: src/dynamics/conv_dnnl.cpp is compiled with oneDNN exactly
// when this file is (CMakeLists.txt).
constexpr conv_backend built_best() {
#ifdef EQPROP_HAVE_DNNL
  return conv_backend::onednn;
#else
  return conv_backend::im2col;
#endif
}

std::atomic<conv_backend>& backend_setting() {
  static std::atomic<conv_backend> b = [] {
    const char* e = std::getenv("EQPROP_CONV");
    return e && std::string_view(e) == "im2col" ? conv_backend::im2col : built_best();
  }();
  return b;
}
}  // namespace

conv_backend conv_backend_in_use() { return backend_setting().load(std::memory_order_relaxed); }
void set_conv_backend(conv_backend b) { backend_setting().store(b == conv_backend::onednn ? built_best() : b); }
const char* conv_backend_name() { return conv_backend_in_use() == conv_backend::onednn ? "onednn" : "im2col"; }

}  // namespace eqprop
