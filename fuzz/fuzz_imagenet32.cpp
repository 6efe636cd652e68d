// Downsampled-ImageNet .npz batches, whole and limited to the first sample.
#include "eqprop/io/dataset.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& p = eqprop_fuzz::write_input(data, size, ".npz");
  eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::read_imagenet32_npz(p); });
  eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::read_imagenet32_npz(p, 1); });
  return 0;
}
