// CIFAR-10/100 binary batches, raw or gzip-compressed, whole and limited to one record.
#include "eqprop/io/dataset.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& p = eqprop_fuzz::write_input(data, size, ".bin");
  using eqprop::cifar_variant;
  for (cifar_variant v : {cifar_variant::cifar10, cifar_variant::cifar100}) {
    eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::read_cifar_binary(p, v); });
    eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::read_cifar_binary(p, v, 1); });
  }
  return 0;
}
