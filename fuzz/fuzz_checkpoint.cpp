// Checkpoint files: the prefix, the JSON header, the array table and the CRC; a stored
// config is loaded into a config as a resume does.
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/config.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& p = eqprop_fuzz::write_input(data, size, ".eqck");
  eqprop_fuzz::expect_ok_or_error([&] {
    const eqprop::checkpoint ck = eqprop::load_checkpoint(p);
    for (const auto& [name, a] : ck.arrays) {
      switch (a.dtype) {  // every array must convert to its own type
        case eqprop::checkpoint_dtype::f32:
          (void)a.to_vector<float>();
          break;
        case eqprop::checkpoint_dtype::f64:
          (void)a.to_vector<double>();
          break;
        case eqprop::checkpoint_dtype::i64:
          (void)a.to_vector<int64_t>();
          break;
        case eqprop::checkpoint_dtype::u8:
          (void)a.to_vector<uint8_t>();
          break;
      }
    }
    if (ck.meta.is_object() && ck.meta.contains("config")) {
      eqprop::config_schema s;
      s.add("n", int64_t(1), "an integer");
      s.add("net.layers", std::vector<int64_t>{1}, "an integer array");
      eqprop::config c(s);
      c.load_json(ck.meta["config"], p.string());
    }
  });
  return 0;
}
