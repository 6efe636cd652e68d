#include "eqprop/train/model_kind.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "eqprop/core/error.hpp"
#include "eqprop/core/suggest.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "eqprop/train/graph_experiment.hpp"
#include "eqprop/train/vf_experiment.hpp"

namespace eqprop {

const std::vector<std::string>& model_kind_names() {
  static const std::vector<std::string> names{"layered", "vector_field", "graph", "gle"};
  return names;
}

std::string_view to_string(model_kind k) { return model_kind_names().at(static_cast<std::size_t>(k)); }

model_kind parse_model_kind(std::string_view s) {
  const auto& names = model_kind_names();
  for (std::size_t i = 0; i < names.size(); ++i)
    if (s == names[i]) return static_cast<model_kind>(i);
  const std::string near = suggest_closest(s, names);
  throw config_error(fmt::format("unknown model.kind '{}'{}: expected one of {}", s,
                                 near.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", near),
                                 fmt::join(names, ", ")));
}

const config_schema& training_schema(model_kind k) {
  switch (k) {
    case model_kind::layered:
      return layered_schema();
    case model_kind::vector_field:
      return vector_field_schema();
    case model_kind::graph:
      return graph_schema();
    case model_kind::gle:
      return gle_schema();
  }
  throw config_error("unknown model kind");
}

namespace {
// "where: msg" for a kind that does not parse.
model_kind parse_kind_from(std::string_view s, std::string_view where) {
  try {
    return parse_model_kind(s);
  } catch (const config_error& e) {
    throw config_error(fmt::format("{}: {}", where, e.what()));
  }
}
}  // namespace

model_kind model_kind_of(const std::vector<std::filesystem::path>& files, const std::vector<std::string>& overrides) {
  model_kind k = model_kind::layered;
  for (const auto& f : files) {
    if (const auto v = peek_toml_string(f, "model.kind")) k = parse_kind_from(*v, f.string());
  }
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos) continue;
    std::string key = o.substr(0, eq), value = o.substr(eq + 1);
    auto trim = [](std::string& s) {
      const auto a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
      s = a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
    };
    trim(key);
    trim(value);
    if (key != "model.kind") continue;
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front())
      value = value.substr(1, value.size() - 2);
    k = parse_kind_from(value, fmt::format("override `{}`", o));
  }
  return k;
}

model_kind saved_model_kind(const nlohmann::json& saved) {
  if (saved.is_object() && saved.contains("model") && saved["model"].is_object() && saved["model"].contains("kind") &&
      saved["model"]["kind"].is_string())
    return parse_model_kind(saved["model"]["kind"].get<std::string>());
  if (saved.is_object() && saved.contains("model.kind") && saved["model.kind"].is_string())
    return parse_model_kind(saved["model.kind"].get<std::string>());
  return model_kind::layered;
}

config load_training_config(const std::vector<std::filesystem::path>& files,
                            const std::vector<std::string>& overrides) {
  config cfg(training_schema(model_kind_of(files, overrides)));
  for (const auto& f : files) cfg.load_toml_file(f);
  for (const auto& o : overrides) cfg.set_override(o);
  return cfg;
}

}  // namespace eqprop
