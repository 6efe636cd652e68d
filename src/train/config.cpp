// Run configuration: schema, TOML/JSON loading, overrides, typed access, serialization.
#include "eqprop/train/config.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "eqprop/core/atomic_file.hpp"

namespace eqprop {

namespace {

template <class>
constexpr bool is_vector_v = false;
template <class E, class A>
constexpr bool is_vector_v<std::vector<E, A>> = true;

// ---------------------------------------------------------------------------------------
// Small string helpers

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_dots(std::string_view key) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    auto dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

bool valid_component(std::string_view c) {
  if (c.empty()) return false;
  return std::all_of(c.begin(), c.end(),
                     [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-'; });
}

// ---------------------------------------------------------------------------------------
// Value formatting

std::string toml_quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04X}", static_cast<unsigned>(c));
        else out += ch;
    }
  }
  out += '"';
  return out;
}

std::string format_double(double d) {
  if (std::isnan(d)) return std::signbit(d) ? "-nan" : "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

template <class V, class F>
std::string format_array(const std::vector<V>& v, F&& f) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ", ";
    out += f(v[i]);
  }
  return out + "]";
}

std::string with_article(const std::string& type) {
  const char c = type.empty() ? 'x' : type[0];
  return (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' ? "an " : "a ") + type;
}

// ---------------------------------------------------------------------------------------
// Conversion of TOML / JSON values to a config_value of a given type.

std::optional<config_value> from_toml(const toml::node& n, const config_value& expected) {
  auto array_of = [&](auto tag) -> std::optional<config_value> {
    using E = typename decltype(tag)::type;
    const toml::array* arr = n.as_array();
    if (!arr) return std::nullopt;
    std::vector<E> out;
    out.reserve(arr->size());
    for (const toml::node& el : *arr) {
      if constexpr (std::is_same_v<E, int64_t>) {
        if (!el.is_integer()) return std::nullopt;
        out.push_back(el.as_integer()->get());
      } else if constexpr (std::is_same_v<E, double>) {
        if (el.is_integer()) out.push_back(static_cast<double>(el.as_integer()->get()));
        else if (el.is_floating_point()) out.push_back(el.as_floating_point()->get());
        else return std::nullopt;
      } else {
        if (!el.is_string()) return std::nullopt;
        out.push_back(el.as_string()->get());
      }
    }
    return config_value(std::move(out));
  };
  switch (expected.index()) {
    case 0:
      if (auto* b = n.as_boolean()) return config_value(b->get());
      return std::nullopt;
    case 1:
      if (auto* i = n.as_integer()) return config_value(i->get());
      return std::nullopt;
    case 2:
      if (auto* f = n.as_floating_point()) return config_value(f->get());
      if (auto* i = n.as_integer()) return config_value(static_cast<double>(i->get()));
      return std::nullopt;
    case 3:
      if (auto* s = n.as_string()) return config_value(s->get());
      return std::nullopt;
    case 4:
      return array_of(std::type_identity<int64_t>{});
    case 5:
      return array_of(std::type_identity<double>{});
    case 6:
      return array_of(std::type_identity<std::string>{});
  }
  return std::nullopt;
}

std::string toml_type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "bool";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    default:
      return "value";
  }
}

std::string toml_text(const toml::node& n) {
  std::ostringstream os;
  n.visit([&](const auto& x) { os << x; });
  std::string s = os.str();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

std::optional<config_value> from_json(const nlohmann::json& j, const config_value& expected) {
  auto as_double = [](const nlohmann::json& x) -> std::optional<double> {
    if (x.is_number()) return x.get<double>();
    if (x.is_null()) return std::numeric_limits<double>::quiet_NaN();  // JSON has no NaN
    return std::nullopt;
  };
  auto as_int = [](const nlohmann::json& x) -> std::optional<int64_t> {
    if (x.is_number_integer() && !x.is_number_unsigned()) return x.get<int64_t>();
    if (x.is_number_unsigned() && x.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX))
      return static_cast<int64_t>(x.get<uint64_t>());
    return std::nullopt;
  };
  switch (expected.index()) {
    case 0:
      if (j.is_boolean()) return config_value(j.get<bool>());
      return std::nullopt;
    case 1:
      if (auto i = as_int(j)) return config_value(*i);
      return std::nullopt;
    case 2:
      if (auto d = as_double(j)) return config_value(*d);
      return std::nullopt;
    case 3:
      if (j.is_string()) return config_value(j.get<std::string>());
      return std::nullopt;
    case 4: {
      if (!j.is_array()) return std::nullopt;
      std::vector<int64_t> out;
      for (const auto& el : j) {
        auto i = as_int(el);
        if (!i) return std::nullopt;
        out.push_back(*i);
      }
      return config_value(std::move(out));
    }
    case 5: {
      if (!j.is_array()) return std::nullopt;
      std::vector<double> out;
      for (const auto& el : j) {
        auto d = as_double(el);
        if (!d) return std::nullopt;
        out.push_back(*d);
      }
      return config_value(std::move(out));
    }
    case 6: {
      if (!j.is_array()) return std::nullopt;
      std::vector<std::string> out;
      for (const auto& el : j) {
        if (!el.is_string()) return std::nullopt;
        out.push_back(el.get<std::string>());
      }
      return config_value(std::move(out));
    }
  }
  return std::nullopt;
}

std::string json_type_name(const nlohmann::json& j) {
  if (j.is_number_integer()) return "integer";
  if (j.is_number_float()) return "float";
  if (j.is_boolean()) return "bool";
  return j.type_name();
}

nlohmann::json to_json_value(const config_value& v) {
  return std::visit([](const auto& x) { return nlohmann::json(x); }, v);
}

std::string where_of(const toml::source_region& src, std::string_view fallback) {
  std::string file = src.path ? std::string(*src.path) : std::string(fallback);
  if (src.begin.line == 0) return file;
  return fmt::format("{}:{}:{}", file, src.begin.line, src.begin.column);
}

}  // namespace

// -----------------------------------------------------------------------------------------
// Free functions

std::string config_type_name(const config_value& v) {
  static const char* const names[] = {"bool",          "integer",     "float",       "string",
                                      "integer array", "float array", "string array"};
  return names[v.index()];
}

std::string format_config_value(const config_value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
        else if constexpr (std::is_same_v<T, int64_t>) return std::to_string(x);
        else if constexpr (std::is_same_v<T, double>) return format_double(x);
        else if constexpr (std::is_same_v<T, std::string>) return toml_quote(x);
        else if constexpr (std::is_same_v<T, std::vector<int64_t>>)
          return format_array(x, [](int64_t i) { return std::to_string(i); });
        else if constexpr (std::is_same_v<T, std::vector<double>>) return format_array(x, format_double);
        else return format_array(x, [](const std::string& s) { return toml_quote(s); });
      },
      v);
}

// -----------------------------------------------------------------------------------------
// config_constraint

config_constraint config_constraint::at_least(double lo) {
  config_constraint c;
  c.lo = lo;
  return c;
}
config_constraint config_constraint::greater_than(double lo) {
  config_constraint c;
  c.lo = lo;
  c.lo_open = true;
  return c;
}
config_constraint config_constraint::closed(double lo, double hi) { return at_least(lo).at_most(hi); }
config_constraint config_constraint::open(double lo, double hi) { return greater_than(lo).below(hi); }
config_constraint config_constraint::one_of(std::vector<std::string> choices) {
  config_constraint c;
  c.choices = std::move(choices);
  return c;
}
config_constraint config_constraint::at_most(double hi) const {
  config_constraint c = *this;
  c.hi = hi;
  c.hi_open = false;
  return c;
}
config_constraint config_constraint::below(double hi) const {
  config_constraint c = *this;
  c.hi = hi;
  c.hi_open = true;
  return c;
}
config_constraint config_constraint::or_value(double v) const {
  config_constraint c = *this;
  c.special.push_back(v);
  return c;
}
config_constraint config_constraint::sizes(std::size_t min, std::size_t max) const {
  config_constraint c = *this;
  c.min_size = min;
  c.max_size = max;
  return c;
}
config_constraint config_constraint::allow_nonfinite() const {
  config_constraint c = *this;
  c.nonfinite = true;
  return c;
}

namespace {

std::string format_bound(double x) {
  if (std::isfinite(x) && x == std::trunc(x) && std::fabs(x) < 1e15) return std::to_string(static_cast<int64_t>(x));
  return fmt::format("{}", x);
}

// "in (0, 2)", ">= 1", "<= 5" (with " or -1" for special values); empty when unbounded.
std::string range_text(const config_constraint& c) {
  std::string r;
  const bool has_lo = std::isfinite(c.lo), has_hi = std::isfinite(c.hi);
  if (has_lo && has_hi)
    r = fmt::format("in {}{}, {}{}", c.lo_open ? "(" : "[", format_bound(c.lo), format_bound(c.hi),
                    c.hi_open ? ")" : "]");
  else if (has_lo) r = fmt::format("{} {}", c.lo_open ? ">" : ">=", format_bound(c.lo));
  else if (has_hi) r = fmt::format("{} {}", c.hi_open ? "<" : "<=", format_bound(c.hi));
  if (!r.empty())
    for (double v : c.special) r += fmt::format(" or {}", format_bound(v));
  return r;
}

// The rule for one scalar of the given type (index into config_value: 1 int, 2 float, 3 string).
std::string scalar_text(const config_constraint& c, std::size_t type) {
  if (type == 3) return c.choices.empty() ? std::string() : fmt::format("one of {}", fmt::join(c.choices, ", "));
  const std::string r = range_text(c);
  if (type == 1) return r.empty() ? std::string() : "an integer " + r;
  if (c.nonfinite) return r.empty() ? std::string() : "a float " + r;
  return r.empty() ? std::string("a finite float") : "a float " + r;
}

bool number_ok(const config_constraint& c, double x) {
  if (!std::isfinite(x)) return c.nonfinite;
  if (std::find(c.special.begin(), c.special.end(), x) != c.special.end()) return true;
  if (x < c.lo || (c.lo_open && x == c.lo)) return false;
  if (x > c.hi || (c.hi_open && x == c.hi)) return false;
  return true;
}

std::string size_text(const config_constraint& c) {
  constexpr auto unbounded = std::numeric_limits<std::size_t>::max();
  if (c.min_size == c.max_size) return fmt::format("exactly {} element{}", c.min_size, c.min_size == 1 ? "" : "s");
  if (c.max_size == unbounded) return c.min_size == 0 ? std::string() : fmt::format("at least {} elements", c.min_size);
  if (c.min_size == 0) return fmt::format("at most {} elements", c.max_size);
  return fmt::format("{} to {} elements", c.min_size, c.max_size);
}

}  // namespace

std::string config_constraint::describe(const config_value& v) const {
  const std::size_t type = v.index();
  if (type == 0) return {};
  if (type <= 3) return scalar_text(*this, type);
  const std::string each = scalar_text(*this, type - 3);
  const std::string size = size_text(*this);
  if (each.empty()) return size;
  return size.empty() ? "each element " + each : size + ", each " + each;
}

std::string config_constraint::number_violation(double v, bool integer) const {
  if (number_ok(*this, v)) return {};
  const std::string rule = scalar_text(*this, integer ? 1 : 2);
  return "must be " + (rule.empty() ? std::string("a number") : rule);
}

std::string config_constraint::violation(const config_value& v) const {
  const std::size_t type = v.index();
  auto element_violation = [&](const auto& x, std::size_t element_type) -> std::string {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_same_v<T, std::string>) {
      if (choices.empty() || std::find(choices.begin(), choices.end(), x) != choices.end()) return {};
      std::string msg = "must be " + scalar_text(*this, 3);
      const std::string near = suggest_closest(x, choices);
      if (!near.empty()) msg += fmt::format(" (did you mean `{}`?)", near);
      return msg;
    } else {
      return number_violation(static_cast<double>(x), element_type == 1);
    }
  };
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          return {};
        } else if constexpr (is_vector_v<T>) {
          if (x.size() < min_size || x.size() > max_size)
            return fmt::format("has {} element{}; must have {}", x.size(), x.size() == 1 ? "" : "s", size_text(*this));
          for (std::size_t i = 0; i < x.size(); ++i) {
            std::string e = element_violation(x[i], type - 3);
            if (!e.empty()) {
              std::string shown = format_config_value(config_value(std::in_place_type<typename T::value_type>, x[i]));
              return fmt::format("element {} ({}) {}", i, shown, e);
            }
          }
          return {};
        } else {
          return element_violation(x, type);
        }
      },
      v);
}

// -----------------------------------------------------------------------------------------
// config_schema

config_schema& config_schema::add(std::string key, config_value default_value, config_constraint allowed,
                                  std::string doc) {
  for (std::string_view part : split_dots(key))
    if (!valid_component(part))
      throw config_error(
          fmt::format("config schema: invalid key `{}` (dotted names of [A-Za-z0-9_-] components)", key));
  if (index_.count(key)) throw config_error(fmt::format("config schema: duplicate key `{}`", key));
  for (const config_key& k : keys_) {
    const std::string& a = k.key.size() < key.size() ? k.key : key;
    const std::string& b = k.key.size() < key.size() ? key : k.key;
    if (b.size() > a.size() && b.compare(0, a.size(), a) == 0 && b[a.size()] == '.')
      throw config_error(fmt::format("config schema: key `{}` is both a value and the section of `{}`", a, b));
  }
  if (const std::string why = allowed.violation(default_value); !why.empty())
    throw config_error(
        fmt::format("config schema: the default of `{}` ({}) {}", key, format_config_value(default_value), why));
  index_.emplace(key, keys_.size());
  keys_.push_back(config_key{std::move(key), std::move(default_value), std::move(doc), std::move(allowed)});
  return *this;
}

config_schema& config_schema::fixed_on_resume(std::vector<std::string> keys_or_sections) {
  for (const std::string& k : keys_or_sections) {
    const bool section = !k.empty() && k.back() == '.';
    const bool known = std::any_of(keys_.begin(), keys_.end(), [&](const config_key& c) {
      return section ? c.key.compare(0, k.size(), k) == 0 : c.key == k;
    });
    if (!known) throw config_error(fmt::format("config schema: fixed_on_resume names `{}`, which declares no key", k));
  }
  fixed_on_resume_ = std::move(keys_or_sections);
  return *this;
}

config_schema& config_schema::renamed_value(std::string key, std::string old_value, std::string replacement,
                                            std::string message) {
  const config_key* k = find(key);
  if (!k || k->default_value.index() != 3)
    throw config_error(fmt::format("config schema: renamed_value names `{}`, which is not a string key", key));
  if (const std::string why = k->allowed.violation(replacement); !why.empty())
    throw config_error(
        fmt::format("config schema: the replacement \"{}\" of `{}` = \"{}\" {}", replacement, key, old_value, why));
  renamed_values_.push_back({std::move(key), std::move(old_value), std::move(replacement), std::move(message)});
  return *this;
}

config_schema& config_schema::renamed_key(std::string old_key, std::string new_key) {
  if (find(old_key)) throw config_error(fmt::format("config schema: renamed key `{}` is still declared", old_key));
  if (!find(new_key))
    throw config_error(fmt::format("config schema: `{}` is renamed to `{}`, which declares no key", old_key, new_key));
  renamed_keys_[std::move(old_key)] = std::move(new_key);
  return *this;
}

config_schema& config_schema::saved_default(std::string key, config_value value) {
  const config_key* k = find(key);
  if (!k) throw config_error(fmt::format("config schema: saved_default names `{}`, which declares no key", key));
  if (k->default_value.index() != value.index() || !k->allowed.violation(value).empty())
    throw config_error(
        fmt::format("config schema: saved_default {} does not fit `{}`", format_config_value(value), key));
  saved_defaults_.emplace_back(std::move(key), std::move(value));
  return *this;
}

const std::string* config_schema::renamed_value_message(std::string_view key, std::string_view value) const {
  for (const auto& r : renamed_values_)
    if (r.key == key && r.old_value == value) return &r.message;
  return nullptr;
}

const std::string* config_schema::renamed_key_target(std::string_view old_key) const {
  auto it = renamed_keys_.find(old_key);
  return it == renamed_keys_.end() ? nullptr : &it->second;
}

bool config_schema::is_fixed_on_resume(std::string_view key) const {
  return std::any_of(fixed_on_resume_.begin(), fixed_on_resume_.end(), [&](const std::string& k) {
    return !k.empty() && k.back() == '.' ? key.substr(0, k.size()) == k : key == k;
  });
}

const config_key* config_schema::find(std::string_view key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &keys_[it->second];
}

std::vector<std::string> config_schema::key_names() const {
  std::vector<std::string> out;
  out.reserve(keys_.size());
  for (const auto& k : keys_) out.push_back(k.key);
  return out;
}

// -----------------------------------------------------------------------------------------
// config

config::config(const config_schema& schema) : schema_(schema) {
  for (const config_key& k : schema_.keys()) {
    values_.push_back(k.default_value);
    sources_.emplace_back("default");
    user_set_.push_back(false);
  }
}

std::size_t config::index_of(std::string_view key, std::string_view source) const {
  if (const config_key* k = schema_.find(key)) return static_cast<std::size_t>(k - schema_.keys().data());

  const std::string where = source.empty() ? std::string() : fmt::format(" ({})", source);
  if (const std::string* renamed = schema_.renamed_key_target(key))
    throw config_error(fmt::format("config key `{}` was renamed: use `{}`{}", key, *renamed, where));
  const std::vector<std::string> names = schema_.key_names();
  // A known value used as a table, or a known section used as a value.
  {
    std::string prefix;
    for (std::string_view part : split_dots(key)) {
      if (!prefix.empty()) {
        if (schema_.find(prefix))
          throw config_error(
              fmt::format("config key `{}` is a value, not a table, so `{}` does not exist{}", prefix, key, where));
        prefix += '.';
      }
      prefix += part;
    }
  }
  std::vector<std::string> under;
  const std::string section = std::string(key) + ".";
  for (const auto& n : names)
    if (n.compare(0, section.size(), section) == 0) under.push_back(n.substr(section.size()));
  if (!under.empty())
    throw config_error(fmt::format("config key `{}` is a section, not a value{}; its keys are: {}", key, where,
                                   fmt::join(under, ", ")));

  std::string msg = fmt::format("unknown config key `{}`{}", key, where);
  std::string suggestion = suggest_closest(key, names);
  if (!suggestion.empty()) {
    msg += fmt::format("; did you mean `{}`?", suggestion);
  } else {
    // List the keys of the closest existing section, if any.
    std::string sect(key);
    while (true) {
      auto dot = sect.rfind('.');
      if (dot == std::string::npos) break;
      sect.resize(dot);
      std::vector<std::string> known;
      for (const auto& n : names)
        if (n.size() > sect.size() && n.compare(0, sect.size(), sect) == 0 && n[sect.size()] == '.') known.push_back(n);
      if (!known.empty()) {
        if (known.size() > 12) known.resize(12), known.back() = "...";
        msg += fmt::format("; known keys in `{}`: {}", sect, fmt::join(known, ", "));
        break;
      }
    }
  }
  throw config_error(msg);
}

void config::check_allowed(std::size_t index, const config_value& v, std::string_view source) const {
  const config_key& k = schema_.keys()[index];
  if (const auto* text = std::get_if<std::string>(&v))
    if (const std::string* renamed = schema_.renamed_value_message(k.key, *text))
      throw config_error(fmt::format("config key `{}` = \"{}\": {} ({})", k.key, *text, *renamed, source));
  const std::string why = k.allowed.violation(v);
  if (why.empty()) return;
  std::string shown = format_config_value(v);
  if (shown.size() > 80) shown = shown.substr(0, 77) + "...";
  const bool text = v.index() == 3 || v.index() == 6;
  throw config_error(fmt::format("config key `{}` = {} is {}: {} ({})", k.key, shown,
                                 text ? "not allowed" : "out of range", why, source));
}

void config::assign(std::size_t index, config_value v, std::string source) {
  check_allowed(index, v, source);
  values_[index] = std::move(v);
  sources_[index] = std::move(source);
  user_set_[index] = true;
}

namespace {

/// An upper bound of the nesting toml++ builds from a TOML document: open arrays and inline
/// tables, plus the dotted parts of the table header and of the keys in effect (each part
/// is one more table level). Comments and strings (basic, literal, multi-line) are skipped.
/// Linear time and no recursion, so it is safe to run on any input before parsing.
std::size_t toml_nesting_bound(std::string_view t) {
  std::size_t max_depth = 0, dots = 0, header_dots = 0, key_dots = 0;
  std::vector<std::size_t> levels;  // key dots in effect at each open [ or {
  std::size_t level_dots = 0;       // their sum
  bool in_header = false, at_line_start = true;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c == '#') {
      while (i + 1 < t.size() && t[i + 1] != '\n') ++i;
      continue;
    }
    if (c == '"' || c == '\'') {
      const std::string triple_quote(3, c);
      const bool triple = t.substr(i, 3) == triple_quote;
      const std::size_t open = triple ? 3 : 1;
      std::size_t j = i + open;
      while (j < t.size()) {
        if (c == '"' && t[j] == '\\') {
          j += 2;
          continue;
        }
        if (t[j] == c && (!triple || t.substr(j, 3) == triple_quote)) break;
        if (!triple && t[j] == '\n') break;
        ++j;
      }
      i = std::min(t.size(), j + open) - 1;
      continue;
    }
    const bool line_start = at_line_start;
    if (c == '\n') at_line_start = true;
    else if (c != ' ' && c != '\t' && c != '\r') at_line_start = false;
    switch (c) {
      case '[':
      case '{':
        if (c == '[' && line_start && levels.empty()) {
          in_header = true;  // a [table] or [[array of tables]] header
          dots = 0;
        }
        levels.push_back(key_dots);
        level_dots += key_dots;
        key_dots = 0;
        break;
      case ']':
      case '}':
        if (!levels.empty()) {
          level_dots -= levels.back();
          levels.pop_back();
        }
        if (levels.empty() && in_header) {
          header_dots = dots;
          in_header = false;
          dots = 0;
        }
        break;
      case '.':
        ++dots;
        break;
      case '=':
        key_dots = dots;
        dots = 0;
        break;
      case ',':
      case '\n':
        if (!in_header) dots = 0;
        if (c == '\n' && levels.empty()) key_dots = 0;
        break;
      default:
        break;
    }
    max_depth = std::max(max_depth, levels.size() + level_dots + header_dots + dots + key_dots);
  }
  return max_depth;
}

}  // namespace

std::optional<std::string> peek_toml_string(const std::filesystem::path& file, std::string_view key) {
  try {
    const std::string text = read_file(file);  // refuses a FIFO or device without blocking
    if (toml_nesting_bound("v = " + text) > config_max_depth) return std::nullopt;
    const toml::table root = toml::parse(text, file.string());
    if (const auto v = root.at_path(key).value<std::string>()) return *v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

void config::load_toml_file(const std::filesystem::path& file) {
  // read_file refuses a FIFO or device (it never blocks on one) and a directory.
  std::string text;
  try {
    text = read_file(file);
  } catch (const data_error& e) {
    throw config_error(fmt::format("config file: {}", e.what()));
  }
  load_toml_string(text, file.string());
}

void config::load_toml_string(std::string_view text, std::string_view source_name) {
  // toml++ parses, prints and destroys nested values recursively: refuse deep documents
  // before it sees them.
  // Scanned as the document parse_value hands toml++ below, so that dots in numbers are
  // not taken for dotted keys.
  if (const std::size_t depth = toml_nesting_bound("v = " + std::string(text)); depth > config_max_depth)
    throw config_error(
        fmt::format("{}: the TOML document nests {} levels deep (tables, dotted keys, arrays); the "
                    "limit is {}",
                    source_name, depth, config_max_depth));
  toml::table root;
  try {
    root = toml::parse(text, std::string(source_name));
  } catch (const toml::parse_error& e) {
    throw config_error(fmt::format("{}: TOML parse error: {}", where_of(e.source(), source_name), e.description()));
  }
  // Validate everything first, then apply: a bad file changes nothing.
  std::vector<std::pair<std::size_t, std::pair<config_value, std::string>>> pending;
  auto walk = [&](auto&& self, const toml::table& tbl, const std::string& prefix) -> void {
    for (const auto& [k, node] : tbl) {
      const std::string full = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (const toml::table* sub = node.as_table()) {
        self(self, *sub, full);
        continue;
      }
      const std::size_t idx = index_of(full, where_of(k.source(), source_name));
      const std::string where = where_of(node.source(), source_name);
      const config_value& expected = schema_.keys()[idx].default_value;
      auto v = from_toml(node, expected);
      if (!v)
        throw config_error(fmt::format("config key `{}` expects {}, got {} `{}` ({})", full,
                                       with_article(config_type_name(expected)), toml_type_name(node), toml_text(node),
                                       where));
      check_allowed(idx, *v, where);  // a rejected file changes nothing
      pending.push_back({idx, {std::move(*v), where}});
    }
  };
  walk(walk, root, "");
  for (auto& [idx, vs] : pending) assign(idx, std::move(vs.first), std::move(vs.second));
}

void config::load_json(const nlohmann::json& j, std::string_view source_name) {
  if (!j.is_object())
    throw config_error(fmt::format("{}: config must be a JSON object, got {}", source_name, j.type_name()));
  std::vector<std::pair<std::size_t, config_value>> pending;
  auto walk = [&](auto&& self, const nlohmann::json& obj, const std::string& prefix) -> void {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      const std::string full = prefix.empty() ? it.key() : prefix + "." + it.key();
      if (it->is_object()) {
        self(self, *it, full);
        continue;
      }
      const std::size_t idx = index_of(full, source_name);
      const config_value& expected = schema_.keys()[idx].default_value;
      auto v = from_json(*it, expected);
      if (!v) {
        std::string text = it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        if (text.size() > 80) text = text.substr(0, 77) + "...";
        throw config_error(fmt::format("config key `{}` expects {}, got {} `{}` ({})", full,
                                       with_article(config_type_name(expected)), json_type_name(*it), text,
                                       source_name));
      }
      check_allowed(idx, *v, source_name);  // a rejected document changes nothing
      pending.push_back({idx, std::move(*v)});
    }
  };
  walk(walk, j, "");
  for (auto& [idx, v] : pending) assign(idx, std::move(v), std::string(source_name));
}

void config::load_saved_json(const nlohmann::json& j, std::string_view source_name) {
  if (!j.is_object())
    throw config_error(fmt::format("{}: config must be a JSON object, got {}", source_name, j.type_name()));
  // Flattened to dotted member names (load_json accepts them), retired names replaced.
  nlohmann::json flat = nlohmann::json::object();
  auto walk = [&](auto&& self, const nlohmann::json& obj, const std::string& prefix) -> void {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      std::string full = prefix.empty() ? it.key() : prefix + "." + it.key();
      if (it->is_object()) {
        self(self, *it, full);
        continue;
      }
      if (const std::string* renamed = schema_.renamed_key_target(full)) full = *renamed;
      nlohmann::json value = *it;
      if (value.is_string())
        for (const auto& r : schema_.renamed_values_)
          if (r.key == full && r.old_value == value.get<std::string>()) value = r.replacement;
      flat[full] = std::move(value);
    }
  };
  walk(walk, j, "");
  load_json(flat, source_name);
  for (const auto& [key, value] : schema_.saved_defaults_)
    if (!flat.contains(key)) set(key, value, fmt::format("{} (written before `{}` existed)", source_name, key));
}

void config::set_override(std::string_view assignment) {
  // Messages quote at most 200 characters of the assignment.
  const std::string source = assignment.size() <= 200 ? fmt::format("override `{}`", assignment)
                                                      : fmt::format("override `{}...` ({} characters)",
                                                                    assignment.substr(0, 200), assignment.size());
  const auto eq = assignment.find('=');
  if (eq == std::string_view::npos) throw config_error(fmt::format("{} is not of the form key=value", source));
  const std::string_view key = trim(assignment.substr(0, eq));
  const std::string_view text = trim(assignment.substr(eq + 1));
  // Scanned as the document parse_value hands toml++ below, so that dots in numbers are
  // not taken for dotted keys.
  if (const std::size_t depth = toml_nesting_bound("v = " + std::string(text)); depth > config_max_depth)
    throw config_error(
        fmt::format("{}: the value nests {} levels deep; the limit is {}", source, depth, config_max_depth));
  if (key.empty()) throw config_error(fmt::format("{} has an empty key", source));
  const std::size_t idx = index_of(key, source);
  const config_value& expected = schema_.keys()[idx].default_value;

  auto parse_value = [](std::string_view t) -> std::optional<toml::table> {
    try {
      toml::table tbl = toml::parse("v = " + std::string(t) + "\n");
      if (tbl.size() != 1 || !tbl.contains("v")) return std::nullopt;
      return tbl;
    } catch (const toml::parse_error&) {
      return std::nullopt;
    }
  };
  auto split_words = [](std::string_view t) {
    if (t.size() >= 2 && t.front() == '[' && t.back() == ']') t = trim(t.substr(1, t.size() - 2));
    std::vector<std::string> words;
    if (t.empty()) return words;
    std::size_t start = 0;
    while (true) {
      auto comma = t.find(',', start);
      std::string_view w =
          trim(t.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
      if (w.size() >= 2 && (w.front() == '"' || w.front() == '\'') && w.back() == w.front())
        w = w.substr(1, w.size() - 2);
      words.emplace_back(w);
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return words;
  };

  const bool is_array = expected.index() >= 4;
  std::optional<toml::table> parsed;
  if (is_array && (text.empty() || text.front() != '[')) parsed = parse_value("[" + std::string(text) + "]");
  else parsed = parse_value(text);

  if (expected.index() == 3) {  // string: a TOML string, or the raw text
    const toml::node* n = parsed ? parsed->get("v") : nullptr;
    if (n && n->is_string()) assign(idx, n->as_string()->get(), source);
    else assign(idx, std::string(text), source);
    return;
  }
  if (!parsed) {
    if (expected.index() == 6) {
      assign(idx, split_words(text), source);
      return;
    }
    throw config_error(fmt::format("config key `{}` expects {}, got `{}`, which is not a valid value ({})", key,
                                   with_article(config_type_name(expected)), text, source));
  }
  const toml::node& node = *parsed->get("v");
  auto v = from_toml(node, expected);
  if (!v)
    throw config_error(fmt::format("config key `{}` expects {}, got {} `{}` ({})", key,
                                   with_article(config_type_name(expected)), toml_type_name(node), text, source));
  assign(idx, std::move(*v), source);
}

void config::set(std::string_view key, const config_value& value, std::string_view source_name) {
  const std::size_t idx = index_of(key, source_name);
  const config_value& expected = schema_.keys()[idx].default_value;
  config_value v = value;
  if (expected.index() == 2 && v.index() == 1) v = static_cast<double>(std::get<int64_t>(v));
  if (expected.index() == 5 && v.index() == 4) {
    const auto& src = std::get<std::vector<int64_t>>(v);
    v = std::vector<double>(src.begin(), src.end());
  }
  if (v.index() != expected.index())
    throw config_error(fmt::format("config key `{}` expects {}, got {} `{}` ({})", key,
                                   with_article(config_type_name(expected)), config_type_name(v),
                                   format_config_value(v), source_name));
  assign(idx, std::move(v), std::string(source_name));
}

std::vector<std::string> config::apply_resume_changes(const config& requested) {
  const auto& keys = schema_.keys();
  if (requested.schema_.key_names() != schema_.key_names())
    throw config_error("apply_resume_changes: the requested config has a different schema");
  std::vector<std::size_t> changed;
  std::vector<std::string> refused;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (!requested.user_set_[i] || requested.values_[i] == values_[i]) continue;
    if (schema_.is_fixed_on_resume(keys[i].key))
      refused.push_back(fmt::format("`{}` (the run has {}, {} gives {})", keys[i].key, format_config_value(values_[i]),
                                    requested.sources_[i], format_config_value(requested.values_[i])));
    else changed.push_back(i);
  }
  if (!refused.empty()) {
    std::vector<std::string> fixed;
    for (const std::string& k : schema_.fixed_on_resume()) fixed.push_back(k.back() == '.' ? k + "*" : k);
    throw config_error(fmt::format(
        "cannot change {} when resuming: the checkpoint's network, data and seed stay fixed ({}); start a new run "
        "to change them",
        fmt::join(refused, ", "), fmt::join(fixed, ", ")));
  }
  std::vector<std::string> lines;
  for (std::size_t i : changed) {
    lines.push_back(fmt::format("{}: {} -> {} ({})", keys[i].key, format_config_value(values_[i]),
                                format_config_value(requested.values_[i]), requested.sources_[i]));
    assign(i, requested.values_[i], requested.sources_[i]);
  }
  return lines;
}

const config_value& config::value(std::string_view key) const { return values_[index_of(key, "")]; }

bool config::is_set_by_user(std::string_view key) const { return user_set_[index_of(key, "")]; }

const std::string& config::source_of(std::string_view key) const { return sources_[index_of(key, "")]; }

void config::type_mismatch(std::string_view key, const char* requested) const {
  throw config_error(fmt::format("config key `{}` has type {}, but was requested as {}", key,
                                 config_type_name(value(key)), requested));
}

void config::int_out_of_range(std::string_view key, int64_t v, const char* type) const {
  throw config_error(fmt::format("config key `{}` = {} does not fit in {} ({})", key, v, type, source_of(key)));
}

bool config::get_bool(std::string_view key) const {
  const auto& v = value(key);
  if (auto* p = std::get_if<bool>(&v)) return *p;
  type_mismatch(key, "bool");
}
int64_t config::get_int(std::string_view key) const {
  const auto& v = value(key);
  if (auto* p = std::get_if<int64_t>(&v)) return *p;
  type_mismatch(key, "integer");
}
double config::get_double(std::string_view key) const {
  const auto& v = value(key);
  if (auto* p = std::get_if<double>(&v)) return *p;
  type_mismatch(key, "float");
}
const std::string& config::get_string(std::string_view key) const {
  const auto& v = value(key);
  if (auto* p = std::get_if<std::string>(&v)) return *p;
  type_mismatch(key, "string");
}
const std::vector<int64_t>& config::get_int_array(std::string_view key) const {
  const auto& v = value(key);
  if (auto* p = std::get_if<std::vector<int64_t>>(&v)) return *p;
  type_mismatch(key, "integer array");
}
const std::vector<double>& config::get_double_array(std::string_view key) const {
  const auto& v = value(key);
  if (auto* p = std::get_if<std::vector<double>>(&v)) return *p;
  type_mismatch(key, "float array");
}
const std::vector<std::string>& config::get_string_array(std::string_view key) const {
  const auto& v = value(key);
  if (auto* p = std::get_if<std::vector<std::string>>(&v)) return *p;
  type_mismatch(key, "string array");
}

namespace {
// A key's doc line, then its allowed values (generated from the constraint) when the key
// declares more than its type's rule.
std::string doc_with_allowed(const config_key& k) {
  const config_constraint& c = k.allowed;
  const bool declared = std::isfinite(c.lo) || std::isfinite(c.hi) || !c.choices.empty() || c.min_size > 0 ||
                        c.max_size != std::numeric_limits<std::size_t>::max();
  const std::string allowed = declared ? c.describe(k.default_value) : std::string();
  if (allowed.empty()) return k.doc;
  return k.doc.empty() ? "allowed: " + allowed : k.doc + "\nallowed: " + allowed;
}
}  // namespace

std::string config::to_toml() const {
  auto comment = [](std::string& out, const std::string& doc) {
    if (doc.empty()) return;
    std::size_t start = 0;
    while (start <= doc.size()) {
      auto nl = doc.find('\n', start);
      out += "# ";
      out += doc.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      out += '\n';
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
  };
  const auto& keys = schema_.keys();
  std::string out = "# eqprop run configuration (every key, resolved)\n";
  // Keys without a section first: after a [table] header they would belong to it.
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].key.find('.') != std::string::npos) continue;
    comment(out, doc_with_allowed(keys[i]));
    out += fmt::format("{} = {}\n", keys[i].key, format_config_value(values_[i]));
  }
  std::vector<std::string> sections;
  for (const auto& k : keys) {
    auto dot = k.key.find('.');
    if (dot == std::string::npos) continue;
    std::string s = k.key.substr(0, dot);
    if (std::find(sections.begin(), sections.end(), s) == sections.end()) sections.push_back(s);
  }
  for (const std::string& s : sections) {
    out += fmt::format("\n[{}]\n", s);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::string& k = keys[i].key;
      if (k.size() <= s.size() || k.compare(0, s.size(), s) != 0 || k[s.size()] != '.') continue;
      comment(out, doc_with_allowed(keys[i]));
      out += fmt::format("{} = {}\n", k.substr(s.size() + 1), format_config_value(values_[i]));
    }
  }
  return out;
}

nlohmann::json config::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  const auto& keys = schema_.keys();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    nlohmann::json* node = &j;
    const auto parts = split_dots(keys[i].key);
    for (std::size_t p = 0; p + 1 < parts.size(); ++p) node = &(*node)[std::string(parts[p])];
    (*node)[std::string(parts.back())] = to_json_value(values_[i]);
  }
  return j;
}

}  // namespace eqprop
