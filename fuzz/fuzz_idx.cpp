// IDX image and label files, raw or gzip-compressed (the input is written to a file).
#include "eqprop/io/dataset.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& p = eqprop_fuzz::write_input(data, size);
  eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::read_idx_images(p); });
  eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::read_idx_labels(p, 10); });
  return 0;
}
