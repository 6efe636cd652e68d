// The vector_field kind of training config (docs/generalized-ep.md): its schema and the
// builders that turn a resolved config into a vector-field network and generalized-EP
// options. The training loop is the one of every kind (eqprop/train/trainer.hpp).
#pragma once
#include <array>
#include <filesystem>
#include <string>

#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/generalized_ep.hpp"
#include "eqprop/train/config.hpp"

namespace eqprop {

/// The schema of model.kind = vector_field (training_schema(model_kind::vector_field)).
const config_schema& vector_field_schema();

/// The network of a vector_field config; input_shape (channels, height, width) is needed with network.conv.
vf_spec make_vf_spec(const config& cfg, int n_input, int n_classes, std::array<int, 3> input_shape = {});
/// The config's data set, normalised per channel if data.normalize_* are set (limits >= 0
/// override data.limit_train / data.limit_test).
dataset_split gep_load_data(const config& cfg, const std::string& flag_dir, long limit_train = -1,
                            long limit_test = -1);
/// Generalized-EP options from estimator.*, relax.*, homeostasis.* and run.seed.
gep_options make_gep_options(const config& cfg);

}  // namespace eqprop
