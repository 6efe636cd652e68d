// Run configuration: a flat set of dotted keys ("optimizer.lr") declared in a schema,
// filled from defaults, then TOML files, then command-line overrides (later sources win).
// The schema fixes each key's type (the type of its default) and its allowed values (a
// config_constraint); every value given by a file, an override, set() or a saved run config
// is checked against both, and unknown keys are rejected with a suggestion.
#pragma once
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "eqprop/core/error.hpp"
#include "eqprop/core/suggest.hpp"

namespace eqprop {

/// The value types a config key may have. The alternative held by a key's default is its type.
using config_value = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>, std::vector<double>,
                                  std::vector<std::string>>;

/// Human-readable name of a config value's type: "bool", "integer", "float", "string",
/// "integer array", "float array", "string array".
std::string config_type_name(const config_value& v);
/// A value written as a TOML value ("0.05", "[784, 256, 10]", "\"holo\""). Floats always
/// carry a '.', an exponent, inf or nan, and are printed with round-trip precision.
std::string format_config_value(const config_value& v);

/// The values a key accepts beyond its type. Checked on every assignment (files, overrides,
/// set(), load_json) and against the key's own default when the key is declared.
///  - Numbers (integer and float keys, and each element of an integer or float array): within
///    [lo, hi], each end open or closed (infinite ends: unbounded), or equal to one of
///    `special` (values with a meaning outside the range, e.g. -1 for "all"). Floats must be
///    finite unless `nonfinite` is set.
///  - Strings (and each element of a string array): one of `choices` (empty: any string).
///  - Arrays: between min_size and max_size elements.
/// Built with the static helpers and refined with the chainable ones:
/// `config_constraint::at_least(1).at_most(1 << 16).or_value(-1)`.
struct config_constraint {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
  std::vector<double> special;
  bool nonfinite = false;
  std::vector<std::string> choices;
  std::size_t min_size = 0, max_size = std::numeric_limits<std::size_t>::max();

  static config_constraint any() { return {}; }
  static config_constraint at_least(double lo);           ///< [lo, inf)
  static config_constraint greater_than(double lo);       ///< (lo, inf)
  static config_constraint closed(double lo, double hi);  ///< [lo, hi]
  static config_constraint open(double lo, double hi);    ///< (lo, hi)
  static config_constraint one_of(std::vector<std::string> choices);
  config_constraint at_most(double hi) const;                       ///< upper end hi, closed
  config_constraint below(double hi) const;                         ///< upper end hi, open
  config_constraint or_value(double v) const;                       ///< also accept v
  config_constraint sizes(std::size_t min, std::size_t max) const;  ///< array size range
  config_constraint allow_nonfinite() const;                        ///< NaN and +-inf accepted

  /// The allowed values in words for a key of v's type: "an integer >= 1", "a float in (0, 2)",
  /// "one of sgd, adam, adamw", "2 elements, each a float > 0". Empty when any value of the
  /// type is allowed (bool keys, free strings).
  std::string describe(const config_value& v) const;
  /// Empty when v satisfies the constraint, else why not ("element 2 (0) is out of range: must
  /// be ...", "must be an integer >= 1").
  std::string violation(const config_value& v) const;
  /// The number rule alone, for command-line flags and other callers: empty or "must be ...".
  std::string number_violation(double v, bool integer) const;
};

/// Upper bounds the schemas use for sizes and counts, so that an absurd value is a
/// config_error naming the key rather than an allocation failure or a run that never ends.
namespace config_limits {
inline constexpr double layer_size = 1 << 16;  ///< neurons (or channels) of one layer
inline constexpr std::size_t layers = 64;      ///< layers of a network
inline constexpr double batch = 1 << 16;       ///< samples of one batch
inline constexpr double steps = 1e6;           ///< relaxation / time steps of one phase
inline constexpr double epochs = 1e6;
inline constexpr double threads = 1024;
inline constexpr double samples = 1e9;  ///< generated or selected samples
}  // namespace config_limits

/// One declared key.
struct config_key {
  std::string key;             ///< dotted name, e.g. "optimizer.lr"
  config_value default_value;  ///< also fixes the key's type
  std::string doc;             ///< one-line description (written as a comment by to_toml)
  config_constraint allowed;   ///< values accepted beyond the type
};

/// The set of keys a config accepts, in declaration order.
class config_schema {
 public:
  /// Declares a key. Throws config_error for a malformed name (components must be
  /// non-empty [A-Za-z0-9_-]), a duplicate, or a key that is also a prefix of another
  /// ("a" and "a.b"), which TOML cannot represent.
  /// Also throws config_error when the default violates `allowed`.
  config_schema& add(std::string key, config_value default_value, config_constraint allowed, std::string doc);
  /// A key whose values are limited by its type only (bool keys, free strings).
  config_schema& add(std::string key, config_value default_value, std::string doc) {
    return add(std::move(key), std::move(default_value), config_constraint::any(), std::move(doc));
  }
  /// Declares the keys a resumed run may not change (checkpoint layout, data, identity):
  /// exact key names, or "section." for every key under a section.
  config_schema& fixed_on_resume(std::vector<std::string> keys_or_sections);
  /// Retires the value `old_value` of the string key `key`: user input giving it (files,
  /// overrides, set(), load_json) is refused with `message`; a saved run config read by
  /// config::load_saved_json is read with `replacement`, what the old value meant when the
  /// run was written. Throws config_error unless key is a declared string key and
  /// replacement one of its allowed values.
  config_schema& renamed_value(std::string key, std::string old_value, std::string replacement, std::string message);
  /// Retires the key `old_key` in favour of the declared `new_key`: user input naming
  /// old_key is refused with a message naming new_key; config::load_saved_json reads it as
  /// new_key. Throws config_error when old_key is declared or new_key is not.
  config_schema& renamed_key(std::string old_key, std::string new_key);
  /// A saved run config without `key` was written before the key existed, when the
  /// behaviour was `value`: config::load_saved_json sets it. Defaults and user input are
  /// unaffected. Throws config_error unless key is declared and value allowed for it.
  config_schema& saved_default(std::string key, config_value value);
  /// The message refusing `value` for `key` (renamed_value), or nullptr.
  const std::string* renamed_value_message(std::string_view key, std::string_view value) const;
  /// The key old_key was renamed to (renamed_key), or nullptr.
  const std::string* renamed_key_target(std::string_view old_key) const;
  /// True when `key` is covered by fixed_on_resume.
  bool is_fixed_on_resume(std::string_view key) const;
  const std::vector<std::string>& fixed_on_resume() const { return fixed_on_resume_; }
  /// The declaration of `key`, or nullptr.
  const config_key* find(std::string_view key) const;
  const std::vector<config_key>& keys() const { return keys_; }
  /// Every declared key name, in declaration order.
  std::vector<std::string> key_names() const;

 private:
  std::vector<config_key> keys_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::vector<std::string> fixed_on_resume_;
  struct retired_value {
    std::string key, old_value, replacement, message;
  };
  std::vector<retired_value> renamed_values_;
  std::map<std::string, std::string, std::less<>> renamed_keys_;
  std::vector<std::pair<std::string, config_value>> saved_defaults_;
  friend class config;
};

/// The deepest nesting accepted in a config from a TOML document (tables, dotted-key parts,
/// arrays, inline tables), a JSON object (a checkpoint's header) or a Python dict. Deeper
/// input is an error naming the source and this limit, checked before anything recursive
/// (parser, printer, conversion, destructor) runs; real configs nest 2 to 4 levels.
inline constexpr int config_max_depth = 64;

/// The string value of the dotted `key` in a TOML file (a table or dotted key), or nullopt
/// when the file cannot be read (a FIFO or device is refused, never waited on), nests
/// deeper than config_max_depth, does not parse, or has no such string. For looking at one
/// key before the schema is known; config::load_toml_file reports the errors.
std::optional<std::string> peek_toml_string(const std::filesystem::path& file, std::string_view key);

/// A resolved configuration. Holds a copy of its schema.
class config {
 public:
  /// Every key at its default.
  explicit config(const config_schema& schema);

  /// Loads a TOML file: tables map to dotted keys ([optimizer] lr = 0.1 is optimizer.lr),
  /// dotted keys are accepted too. Throws config_error on a missing/unreadable file, a parse
  /// error (file:line:col), an unknown key or a wrongly typed value. Values later loaded
  /// (files or overrides) replace earlier ones.
  void load_toml_file(const std::filesystem::path& file);
  /// Same as load_toml_file for a document held in memory; source_name is used in messages.
  void load_toml_string(std::string_view toml, std::string_view source_name);
  /// Loads values from a JSON object as produced by to_json() (nested objects map to dotted
  /// keys; dotted member names are accepted too). Used to restore a run's saved config.
  void load_json(const nlohmann::json& j, std::string_view source_name);
  /// Restores a run's saved config (a checkpoint's meta.config) as load_json does, first
  /// reading keys and values the schema retired (renamed_key, renamed_value) as their
  /// replacements and then setting the schema's saved_default keys the document lacks.
  /// The only place retired names are accepted: configs written before a rename still
  /// resume and evaluate.
  void load_saved_json(const nlohmann::json& j, std::string_view source_name);
  /// Applies "key=value". The value is parsed as a TOML value ("0.05", "[784,256,10]",
  /// "\"x\""); for a string key unparsable text (or text that is not a TOML string) is taken
  /// verbatim, so "estimator.kind=holo" works. For array keys the brackets may be left out
  /// ("network.layers=784,256,10") and bare words are accepted in string arrays.
  void set_override(std::string_view assignment);
  /// Sets one key programmatically (same type rules as files); source_name for messages.
  void set(std::string_view key, const config_value& value, std::string_view source_name = "code");

  /// Typed access. T may be bool, any integer type (range-checked), float/double,
  /// std::string, or std::vector of those (e.g. std::vector<int>). Throws config_error for
  /// an unknown key or a T that does not match the key's declared type.
  template <class T>
  T get(std::string_view key) const;
  /// Resuming a run: this config holds the run's saved config; `requested` was built by the
  /// resuming command from its overrides. Every key the user set in `requested` to a value
  /// different from this config's is copied here (with its source); a key the schema declares
  /// fixed_on_resume is refused with a config_error naming it (nothing is changed then).
  /// Returns one line per applied change: "run.epochs: 30 -> 40 (--epochs)".
  std::vector<std::string> apply_resume_changes(const config& requested);

  /// The raw value of a key (throws config_error for an unknown key).
  const config_value& value(std::string_view key) const;
  /// True when a file, override or set() gave the key a value (even one equal to the default).
  bool is_set_by_user(std::string_view key) const;
  /// Where the key's value came from: "default", "file.toml:3:1", "override `a=1`"...
  const std::string& source_of(std::string_view key) const;

  /// The resolved config as a TOML document: every key, in schema order, grouped in one
  /// table per first component, each preceded by its doc comment. Loading it back gives
  /// the same values.
  std::string to_toml() const;
  /// The resolved config as nested JSON objects ({"optimizer": {"lr": 0.05}, ...}).
  nlohmann::json to_json() const;

  const config_schema& schema() const { return schema_; }

 private:
  std::size_t index_of(std::string_view key, std::string_view source) const;
  void assign(std::size_t index, config_value v, std::string source);
  /// Throws config_error when v violates the key's constraint (names key, value, range, source).
  void check_allowed(std::size_t index, const config_value& v, std::string_view source) const;
  [[noreturn]] void type_mismatch(std::string_view key, const char* requested) const;

  bool get_bool(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_double(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  const std::vector<int64_t>& get_int_array(std::string_view key) const;
  const std::vector<double>& get_double_array(std::string_view key) const;
  const std::vector<std::string>& get_string_array(std::string_view key) const;
  [[noreturn]] void int_out_of_range(std::string_view key, int64_t v, const char* type) const;

  template <class T>
  static constexpr bool is_int_v = std::is_integral_v<T> && !std::is_same_v<T, bool>;

  template <class I>
  I narrow_int(std::string_view key, int64_t v) const {
    if constexpr (std::is_signed_v<I>) {
      if (v < static_cast<int64_t>(std::numeric_limits<I>::min()) ||
          v > static_cast<int64_t>(std::numeric_limits<I>::max()))
        int_out_of_range(key, v, "the requested integer type");
    } else {
      if (v < 0 || static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<I>::max()))
        int_out_of_range(key, v, "the requested unsigned integer type");
    }
    return static_cast<I>(v);
  }

  template <class>
  struct is_vector : std::false_type {};
  template <class E, class A>
  struct is_vector<std::vector<E, A>> : std::true_type {};

  config_schema schema_;
  std::vector<config_value> values_;
  std::vector<std::string> sources_;  // "default" when not set by the user
  std::vector<bool> user_set_;
};

template <class T>
T config::get(std::string_view key) const {
  if constexpr (std::is_same_v<T, bool>) {
    return get_bool(key);
  } else if constexpr (is_int_v<T>) {
    return narrow_int<T>(key, get_int(key));
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(get_double(key));
  } else if constexpr (std::is_same_v<T, std::string>) {
    return get_string(key);
  } else if constexpr (is_vector<T>::value) {
    using E = typename T::value_type;
    if constexpr (std::is_same_v<E, std::string>) {
      return get_string_array(key);
    } else if constexpr (is_int_v<E>) {
      const auto& src = get_int_array(key);
      T out;
      out.reserve(src.size());
      for (int64_t x : src) out.push_back(narrow_int<E>(key, x));
      return out;
    } else if constexpr (std::is_floating_point_v<E>) {
      const auto& src = get_double_array(key);
      return T(src.begin(), src.end());
    } else {
      static_assert(sizeof(E) == 0, "config::get: unsupported array element type");
    }
  } else {
    static_assert(sizeof(T) == 0, "config::get: unsupported type");
  }
}

}  // namespace eqprop
