// .npy files: whole-array reads to each element type, and the limited read of the first row
// that the data set loader uses.
#include "eqprop/io/dataset.hpp"
#include "fuzz_util.hpp"
#include "io_internal.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& p = eqprop_fuzz::write_input(data, size, ".npy");
  eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::read_npy<float>(p); });
  eqprop_fuzz::expect_ok_or_error([&] { (void)eqprop::read_npy<int64_t>(p); });
  eqprop_fuzz::expect_ok_or_error([&] {
    const eqprop::io_detail::npy_file f = eqprop::io_detail::read_npy_file(p, 1);
    const long rows = f.header.shape.empty() ? 1 : std::min(1L, f.header.shape[0]);
    std::vector<double> out(static_cast<size_t>(rows * eqprop::io_detail::npy_row_size(f.header)) + 1);
    eqprop::io_detail::npy_convert<double>(f.header, f.bytes, rows, out.data(), p.string());
  });
  return 0;
}
