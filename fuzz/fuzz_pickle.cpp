// Pickles of NumPy arrays: the restricted reader, every array it returns written as .npy
// and read back, and the MNIST-1D templates taken from the result.
#include "eqprop/io/dataset.hpp"
#include "eqprop/io/mnist1d.hpp"
#include "eqprop/io/numpy_pickle.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& p = eqprop_fuzz::write_input(data, size, ".pkl");
  eqprop_fuzz::expect_ok_or_error([&] {
    const eqprop::numpy_pickle pickle = eqprop::read_numpy_pickle(p);
    for (const auto& entry : pickle.arrays) {
      const std::vector<uint8_t> npy = eqprop::npy_file_bytes(entry.second);
      eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::parse_npy<double>(npy, entry.first); });
      eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::parse_npy<int64_t>(npy, entry.first); });
    }
    (void)eqprop::mnist1d_templates_from(pickle);
  });
  return 0;
}
