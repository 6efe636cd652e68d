// The kinds of network `eqprop train` trains, and the config schema of each. Every kind's
// schema shares the same keys for the same things (model.kind, data.*, run.*, optimizer.*,
// schedule.*, network.dtype) and adds the keys of its networks and estimators; model.kind
// picks the schema, so a key of another kind is an unknown key with a suggestion.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "eqprop/train/config.hpp"

namespace eqprop {

enum class model_kind {
  layered,       ///< layered energy-based networks (MLPs, ConvNets) with EP / hEP and their references
  vector_field,  ///< vector-field networks without weight symmetry with generalized EP
  graph,         ///< DEEP networks on directed graphs
  gle,           ///< continuous-time GLE networks learning online from sequences
};

std::string_view to_string(model_kind k);
/// "layered" | "vector_field" | "graph" | "gle"; config_error naming the kinds (with a suggestion) otherwise.
model_kind parse_model_kind(std::string_view s);
/// Every kind's name, in declaration order.
const std::vector<std::string>& model_kind_names();

/// The schema of a kind's training configs (layered_schema(), vector_field_schema(), graph_schema(),
/// gle_schema()).
const config_schema& training_schema(model_kind k);

/// The model kind the sources of a training config name, later sources winning: each TOML
/// file's model.kind (a [model] table or a dotted key), then each "model.kind=..."
/// override. layered when none names one. A file that cannot be read or parsed is left to
/// the config loader's own error; an unknown kind is a config_error naming its source.
model_kind model_kind_of(const std::vector<std::filesystem::path>& files, const std::vector<std::string>& overrides);
/// The kind of a saved run config (a checkpoint's meta.config): its model.kind, layered
/// when it has none (runs written before there were kinds).
model_kind saved_model_kind(const nlohmann::json& saved_config);

/// A training config: the schema of the kind the files and overrides name, every file
/// loaded in order, then every override applied (config::set_override).
config load_training_config(const std::vector<std::filesystem::path>& files, const std::vector<std::string>& overrides);

}  // namespace eqprop
