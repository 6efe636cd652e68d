// TOML config documents against a schema with a key of every value type, nested tables
// included; a loaded config is printed back (to_toml, to_json) and re-read.
#include "eqprop/train/config.hpp"
#include "fuzz_util.hpp"

namespace {
const eqprop::config_schema& schema() {
  static const eqprop::config_schema s = [] {
    eqprop::config_schema c;
    c.add("flag", false, "a bool");
    c.add("n", int64_t(1), "an integer");
    c.add("x", 0.5, "a float");
    c.add("name", std::string("a"), "a string");
    c.add("net.layers", std::vector<int64_t>{1, 2}, "an integer array");
    c.add("net.w", std::vector<double>{0.1}, "a float array");
    c.add("net.sub.kinds", std::vector<std::string>{"a"}, "a string array");
    return c;
  }();
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  eqprop_fuzz::expect_ok_or_error([&] {
    eqprop::config c(schema());
    c.load_toml_string(text, "fuzz.toml");
    eqprop::config again(schema());
    again.load_toml_string(c.to_toml(), "printed.toml");
    again.load_json(c.to_json(), "printed.json");
  });
  return 0;
}
