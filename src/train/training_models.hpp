// What the training loop (trainer.cpp) needs from each model kind, one class per kind with
// the same members:
//   real_type, network_type, state_type   the scalar, the network and its relaxation state
//   model(cfg, n_input, n_classes, input_shape)   the config's network (the data gives the sizes)
//   net                          the network being trained
//   estimator()                  the config's gradient estimator
//   n_groups()                   parameter groups of the optimizer (per-layer rates)
//   n_outputs()                  rows of the one-hot targets
//   describe()                   "network 2-120-3 (1234 parameters) | holomorphic EP ..."
//   eval_relax                   the relaxation of an evaluation's free phase
//   log_initial                  log an epoch-0 row (before training) with diagnostics
//   set_diagnostic_batch(train)  the training samples diagnostics() uses
//   diagnostics(row)             extra per-epoch metrics (nothing for most kinds)
//   epoch_note(row)              extra text for the epoch line ("" for most kinds)
#pragma once
#include <array>
#include <cmath>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "eqprop/dynamics/relax.hpp"
#include "eqprop/dynamics/vf_state.hpp"
#include "eqprop/learn/generalized_ep.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/vf_experiment.hpp"

namespace eqprop::detail {

template <class R>
struct layered_model {
  using real_type = R;
  using network_type = layered_network<R>;
  using state_type = relax_state<R>;
  static constexpr bool log_initial = false;

  const config& cfg;
  network_spec spec;
  network_type net;
  relax_options eval_relax;

  layered_model(const config& c, int n_input, int n_classes, std::array<int, 3> shape)
      : cfg(c), spec(make_network_spec(c, n_input, n_classes, shape)), net(spec), eval_relax(relax_from_config(c, false)) {}
  std::unique_ptr<grad_estimator<R, network_type>> estimator() const { return make_estimator<R>(cfg); }
  int n_groups() const { return static_cast<int>(param_group_names(spec).size()); }
  int n_outputs() const { return spec.n_output(); }
  std::string describe() const { return fmt::format("network {} ({} parameters)", fmt::join(spec.sizes, "-"), net.n_params()); }
  void set_diagnostic_batch(const dataset&) {}
  void diagnostics(nlohmann::ordered_json&) {}
  std::string epoch_note(const nlohmann::ordered_json&) const { return {}; }
};

// generalized_ep (with its homeostasis) behind the estimator interface of the loop.
template <class R>
class gep_estimator final : public grad_estimator<R, vector_field_network<R>> {
 public:
  explicit gep_estimator(const gep_options& o) : est_(o) {}
  std::string name() const override { return est_.name(); }
  grad_result estimate(const vector_field_network<R>& net, const matrix<R>& x, const matrix<R>& y,
                       std::span<R> grad) override {
    const gep_result r = est_.estimate(net, x, y, grad);
    grad_result g;
    g.loss = r.loss;
    g.predictions = r.predictions;
    g.free = r.free;
    g.n_dropped = r.n_dropped;
    g.relax_steps = r.relax_steps;
    return g;
  }
  void reseed_noise(uint64_t seed) override { est_.reseed(seed); }
  rng_t* noise_rng() override { return &est_.rng(); }

 private:
  generalized_ep<R> est_;
};

template <class R>
struct vector_field_model {
  using real_type = R;
  using network_type = vector_field_network<R>;
  using state_type = vf_state<R>;
  static constexpr bool log_initial = true;

  const config& cfg;
  gep_options go;
  network_type net;
  relax_options eval_relax;
  matrix<R> xd, yd;  // the diagnostic batch (set_diagnostic_batch)
  bool diag_dense = false;

  vector_field_model(const config& c, int n_input, int n_classes, std::array<int, 3> shape)
      : cfg(c), go(make_gep_options(c)), net(make_vf_spec(c, n_input, n_classes, shape)), eval_relax(go.free_relax()),
        diag_dense(c.get<bool>("diagnostics.rbp_dense")) {}
  std::unique_ptr<grad_estimator<R, network_type>> estimator() const { return std::make_unique<gep_estimator<R>>(go); }
  int n_groups() const { return net.n_layers() + 1; }
  int n_outputs() const { return net.spec().n_classes; }
  std::string describe() const {
    return fmt::format("network {} layers, topology {}, angle {} deg ({} parameters)", net.spec().sizes.size() - 1,
                       to_string(net.spec().topology), net.spec().angle_deg, net.n_params());
  }
  /// The first diagnostics.samples training samples (a ConvNet needs at least one).
  void set_diagnostic_batch(const dataset& train) {
    const long n = std::min<long>(cfg.get<long>("diagnostics.samples"), train.size());
    if (net.spec().is_convnet() && n < 1)
      throw config_error("a ConvNet's symmetry diagnostics need samples: set diagnostics.samples >= 1");
    if (n < 1) return;
    xd = train.x.leftCols(n).template cast<R>();
    yd = one_hot<R>(std::span<const int32_t>(train.y.data(), n), net.spec().n_classes);
  }
  /// The symmetry of the Jacobian and the alignment of the estimate with recurrent backprop
  /// on the diagnostic batch. A ConvNet's Jacobian depends on the state: its symmetry index
  /// and homeostatic loss are probe estimates at the diagnostic batch's free states.
  void diagnostics(nlohmann::ordered_json& row) {
    const bool conv = net.spec().is_convnet();
    const double ang = feedback_angle_deg(net);
    row["angle_deg"] = std::isfinite(ang) ? nlohmann::ordered_json(ang) : nlohmann::ordered_json(nullptr);
    if (!conv) {
      row["symmetry_index"] = jacobian_symmetry_index(net);
      row["homeo_exact"] = homeostatic_loss_exact(net);
    }
    if (xd.cols() > 0) {
      const auto d = gep_diagnose(net, xd, yd, go, diag_dense);
      if (conv) {
        row["symmetry_index"] = d.symmetry_index;
        row["homeo_probe_estimate"] = d.homeo_exact;
      }
      for (size_t i = 0; i < d.layer_cosine.size(); ++i) row[fmt::format("cos_layer{}", i + 1)] = d.layer_cosine[i];
      row["grad_cos_rbp"] = d.grad_cosine;
      row["grad_rel_err_rbp"] = d.grad_rel_error;
      row["diag_not_converged"] = d.n_free_not_converged;
    }
  }
  std::string epoch_note(const nlohmann::ordered_json& row) const {
    const auto& a = row["angle_deg"];
    return fmt::format(" | symmetry index {:.4f}, angle {}", row["symmetry_index"].get<double>(),
                       a.is_number() ? fmt::format("{:.1f} deg", a.get<double>()) : std::string("n/a"));
  }
};

}  // namespace eqprop::detail
