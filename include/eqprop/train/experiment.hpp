// The experiment config: every key a training run understands, with defaults that train
// a holomorphic-EP network on the built-in Yin-Yang data, and the builders that turn a
// resolved config into typed settings. One schema serves config files, --set overrides,
// the saved run config and (later) Python keyword arguments.
#pragma once
#include <memory>
#include <string>

#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/cauchy_ep.hpp"
#include "eqprop/learn/continuous_hep.hpp"
#include "eqprop/learn/estimator.hpp"
#include "eqprop/model/activation.hpp"
#include "eqprop/train/config.hpp"
#include "eqprop/train/model_kind.hpp"
#include "eqprop/train/optimizer.hpp"

namespace eqprop {

/// The schema of model.kind = layered (training_schema(model_kind::layered)).
const config_schema& layered_schema();

/// The free (nudged = false) or nudged phase's relaxation from the relax.* keys (steps, tol,
/// stop_early, freeze_converged, order); throws config_error for an unknown order.
relax_options relax_from_config(const config& cfg, bool nudged);

/// Network spec from network.* keys; input size and classes come from the data.
network_spec make_network_spec(const config& cfg, int n_input, int n_classes, std::array<int, 3> input_shape = {});
/// The input and conv part of a network from the network.conv* keys: input_shape, conv,
/// pool_temperature, pool_size and sizes = [C*H*W, conv outputs...] ([n_input] for an MLP).
network_spec conv_spec_from_config(const config& cfg, int n_input, std::array<int, 3> input_shape);
/// Schema keys every kind's training schema shares, with one meaning:
/// model.kind (default k):
void add_model_kind_key(config_schema& s, model_kind k);
/// data.name (default default_name), data.dir, the limits, the Yin-Yang sizes and the image keys:
void add_data_keys(config_schema& s, const char* default_name);
/// run.epochs, batch, eval_batch, seed (these defaults), dir, checkpoint_every(_batches), max_failed_fraction:
void add_run_keys(config_schema& s, long epochs, long batch, long eval_batch, long seed = 0);
/// The keys (or "section.") a resumed run of any kind may not change.
std::vector<std::string> common_fixed_on_resume();
/// The defaults of a kind's optimizer.* and schedule.* keys.
struct optimizer_key_defaults {
  double lr = 0.1;
  const char* schedule = "constant";  ///< schedule.kind
  double momentum = 0.9;
  const char* kind = "sgd";    ///< optimizer.kind
  long plateau_patience = -1;  ///< schedule.plateau_patience (-1: no plateau schedule)
  /// The values of schedule.plateau_on (the first is the default): each names the metric
  /// `<value>_loss` of the epoch's metrics row.
  std::vector<std::string> plateau_on{"test", "train"};
};
/// optimizer.* and schedule.* (the epoch schedule and the plateau schedule: plateau_schedule):
void add_optimizer_keys(config_schema& s, const optimizer_key_defaults& d);
void add_conv_keys(
    config_schema& s);  ///< network.conv, conv_kernel, conv_padding, conv_pool, pool_temperature, pool_size
void add_image_data_keys(config_schema& s);  ///< data.normalize_mean/std, augment_pad, augment_flip
void add_data_limit_keys(config_schema& s);  ///< data.limit_train, data.limit_test (N >= 1, or -1: all)
/// Refuses the old activation names 'sigmoid' and 'hard_sigmoid' for the string key `key`
/// with a message naming what they meant in configs of `family`, and reads saved run
/// configs that used them as that activation (config_schema::renamed_value). An old name
/// whose replacement the key does not allow is left to the key's own error.
void add_activation_renames(config_schema& s, const std::string& key, activation_family family);
/// Per-channel normalisation of both splits from data.normalize_mean / normalize_std (if set).
void normalize_from_config(const config& cfg, dataset_split& split);
/// Estimator from estimator.* and relax.* keys ("classic", "symmetric", "holomorphic",
/// "continuous", "bptt", "implicit").
template <class R>
std::unique_ptr<grad_estimator<R>> make_estimator(const config& cfg);
/// optimizer.* keys; the update's thread count is the caller's (experiments: estimator.threads).
optimizer_options make_optimizer_options(const config& cfg);
schedule_options make_schedule_options(const config& cfg);
/// schedule.plateau_patience, plateau_factor, plateau_on.
plateau_options make_plateau_options(const config& cfg);

}  // namespace eqprop
