// Zip archives (.npz): the central directory, every member (stored or deflated, CRC-checked)
// and each member parsed as .npy.
#include "eqprop/io/dataset.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& p = eqprop_fuzz::write_input(data, size, ".npz");
  eqprop_fuzz::expect_ok_or_error([&] {
    for (const std::string& m : eqprop::zip_member_names(p)) {
      eqprop_fuzz::expect_ok_or_error([&] {
        const std::vector<uint8_t> bytes = eqprop::read_zip_member(p, m);
        (void)eqprop::parse_npy<float>(bytes, m);
      });
    }
  });
  return 0;
}
