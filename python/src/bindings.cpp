// eqprop._core: the C++ library from Python (pybind11). The pure-Python package
// python/eqprop re-exports it and adds gradcheck() and the figures.
//
// Array convention: a batch is a NumPy array of shape (batch, features). A C-contiguous
// (batch, n) array has exactly the memory layout of the library's column-major n x batch
// matrix, so it is read without any transposition (one contiguous copy into the library's
// matrix; other layouts/dtypes are converted first). States, gradients and datasets come
// back the same way: (batch, n_j), (n_params,), (n_samples, dim).
//
// Errors: eqprop::error subclasses become eqprop.Error subclasses with the same message
// (ShapeError and ConfigError are also ValueErrors); a non-float array is a TypeError.
// Long calls release the GIL; train() checks for Ctrl-C before every batch.
#include <pybind11/complex.h>
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>
#include <tuple>
#include <utility>
#include <variant>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "eqprop/build_info.hpp"
#include "eqprop/core/atomic_file.hpp"
#include "eqprop/core/build_info.hpp"
#include "eqprop/core/suggest.hpp"
#include "eqprop/dynamics/vf_state.hpp"
#include "eqprop/io/dataset.hpp"
#include "eqprop/learn/cauchy_ep.hpp"
#include "eqprop/learn/continuous_hep.hpp"
#include "eqprop/learn/deep.hpp"
#include "eqprop/learn/reference.hpp"
#include "eqprop/train/checkpoint.hpp"
#include "eqprop/train/experiment.hpp"
#include "eqprop/train/gle_tasks.hpp"
#include "eqprop/train/graph_experiment.hpp"
#include "eqprop/train/trainer.hpp"
#include "eqprop/train/vf_experiment.hpp"

namespace py = pybind11;
using namespace py::literals;
using namespace eqprop;

namespace {

// ---------------------------------------------------------------- compute sections
// SIGINT and SIGTERM as a blocked set.
sigset_t stop_signals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

// The GIL released and SIGINT/SIGTERM blocked in this thread (so in the threads it starts,
// e.g. the OpenMP pool) for the lifetime of the object: a signal frame pushed on a thread
// inside a oneDNN 2.x JIT GEMM kernel corrupts the heap (see confine_stop_signals). A signal
// that arrives meanwhile stays pending; it is delivered, to Python's handler, when the section
// ends (or at python_interrupted), and Python raises KeyboardInterrupt.
class compute_section {
 public:
  compute_section() {
    const sigset_t s = stop_signals();
    pthread_sigmask(SIG_BLOCK, &s, &old_);
    nogil_.emplace();
  }
  ~compute_section() {
    nogil_.reset();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  compute_section(const compute_section&) = delete;
  compute_section& operator=(const compute_section&) = delete;

 private:
  sigset_t old_{};
  std::optional<py::gil_scoped_release> nogil_;
};

// ---------------------------------------------------------------- exceptions
PyObject *exc_error, *exc_config, *exc_shape, *exc_data, *exc_convergence;

PyObject* make_exception(py::module_& m, const char* name, py::object bases, const char* doc) {
  PyObject* e = PyErr_NewExceptionWithDoc((std::string("eqprop.") + name).c_str(), doc, bases.ptr(), nullptr);
  if (!e) throw py::error_already_set();
  m.add_object(name, py::handle(e));  // the module holds a reference; e is kept for the translator
  // inspect.signature(eqprop.Error): raised with one positional message.
  py::object inspect = py::module_::import("inspect"), param = inspect.attr("Parameter");
  py::handle(e).attr("__signature__") =
      inspect.attr("Signature")(py::make_tuple(param("message", param.attr("POSITIONAL_ONLY"))));
  return e;
}

void register_exceptions(py::module_& m) {
  const py::handle exception(PyExc_Exception), value_error(PyExc_ValueError);
  exc_error = make_exception(m, "Error", py::reinterpret_borrow<py::object>(exception),
                             "Any error a user can cause (eqprop::error).");
  const py::handle base(exc_error);
  exc_config =
      make_exception(m, "ConfigError", py::make_tuple(base, value_error), "An invalid configuration value or option.");
  exc_shape = make_exception(m, "ShapeError", py::make_tuple(base, value_error), "Array shapes do not match.");
  exc_data = make_exception(m, "DataError", py::make_tuple(base), "A data file is missing, truncated or corrupt.");
  exc_convergence = make_exception(m, "ConvergenceError", py::make_tuple(base),
                                   "The dynamics did not reach a fixed point (attributes residual, iterations).");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const convergence_error& e) {
      py::object inst = py::reinterpret_borrow<py::object>(exc_convergence)(e.what());
      inst.attr("residual") = e.residual;
      inst.attr("iterations") = e.iterations;
      PyErr_SetObject(exc_convergence, inst.ptr());
    } catch (const shape_error& e) {
      PyErr_SetString(exc_shape, e.what());
    } catch (const config_error& e) {
      PyErr_SetString(exc_config, e.what());
    } catch (const data_error& e) {
      PyErr_SetString(exc_data, e.what());
    } catch (const error& e) {
      PyErr_SetString(exc_error, e.what());
    }
  });
}

// ---------------------------------------------------------------- signatures
// inspect.signature and help() read a builtin's parameters from its __text_signature__,
// which CPython takes from a docstring that starts "name(a, b=1)\n--\n\n". pybind11 2.10
// writes its own first line instead ("name(a: int, b: int = 1) -> int", without the "--"
// marker), and inspect.signature raises ValueError on every function of the module. So
// PYBIND11_MODULE turns pybind11's line off (py::options) and def_fn writes CPython's line,
// made from the same py::arg list that pybind11 binds: names and defaults have one source.
// Defaults are written as their repr (numbers, strings, lists, None), which inspect parses.
// A method's first parameter is a plain `self`, not CPython's `$self`: pybind11 binds
// methods to a capsule, which inspect would strip as a bound `$self`, and then drop the
// first real parameter of a bound method (net.block) as well.
void add_param(std::string& s, const py::arg& a) { s += a.name; }
void add_param(std::string& s, const py::arg_v& a) {
  s += a.name;
  s += '=';
  s += a.value ? py::repr(a.value).cast<std::string>() : std::string("...");
}
/// "name(self, a, b=1)\n--\n\n", self "self" for a method and "" for a function.
template <class... A>
std::string text_signature(const char* name, const char* self, const A&... args) {
  std::string s = std::string(name) + "(" + self;
  ((s += s.back() == '(' ? "" : ", ", add_param(s, args)), ...);
  return s + ")\n--\n\n";
}
/// Calls def(doc, args...) with doc = the text signature of name(self, args...) followed by
/// the docstring, the last of `extra`; the others are py::arg / py::arg_v, in order.
template <class Def, class... E>
void def_with_signature(const char* name, const char* self, Def&& def, const E&... extra) {
  constexpr std::size_t n = sizeof...(E) - 1;
  static_assert(std::is_convertible_v<std::tuple_element_t<n, std::tuple<E...>>, const char*>,
                "the last argument is the docstring");
  const auto all = std::forward_as_tuple(extra...);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    const std::string doc = text_signature(name, self, std::get<I>(all)...) + std::get<n>(all);
    def(doc.c_str(), std::get<I>(all)...);  // pybind11 copies doc
  }
  (std::make_index_sequence<n>{});
}
/// target.def(name, f, args..., doc) for a module's function or a class's method.
template <class T, class F, class... E>
void def_fn(T& target, const char* name, F&& f, const E&... extra) {
  def_with_signature(
      name, std::is_same_v<T, py::module_> ? "" : "self",
      [&](const char* doc, const auto&... a) { target.def(name, std::forward<F>(f), a..., doc); }, extra...);
}
/// cls.def(init, args..., doc): a constructor, documented as __init__(self, args...).
template <class C, class Init, class... E>
void def_init(C& cls, Init&& init, const E&... extra) {
  def_with_signature(
      "__init__", "self", [&](const char* doc, const auto&... a) { cls.def(std::forward<Init>(init), a..., doc); },
      extra...);
}

// ---------------------------------------------------------------- conversions
py::object json_to_py(const nlohmann::ordered_json& j) { return py::module_::import("json").attr("loads")(j.dump()); }
py::object json_to_py(const nlohmann::json& j) { return py::module_::import("json").attr("loads")(j.dump()); }

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }
std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

/// A float array of shape (batch, n) as the library's n x batch matrix of R.
template <class R>
matrix<R> to_batch(const py::handle& obj, long n, const char* what) {
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(fmt::format("{} must be a NumPy array of floats", what));
  if (a.dtype().kind() != 'f')
    throw py::type_error(fmt::format("{} must be a float32 or float64 array, got dtype {}", what, dtype_str(a)));
  if (a.ndim() != 2 || a.shape(1) != n || a.shape(0) < 1)
    throw shape_error(
        fmt::format("{} must have shape (batch, {}) with batch >= 1, got shape {}", what, n, shape_str(a)));
  auto c = py::array_t<R, py::array::c_style | py::array::forcecast>::ensure(a);
  return const_matrix_map<R>(c.data(), n, a.shape(0));
}

/// Targets: integer class labels of shape (batch,) (one-hot encoded) or floats (batch, n_out).
template <class R>
matrix<R> to_targets(const py::handle& obj, long batch, int n_out) {
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error("y must be a NumPy array: integer labels (batch,) or float targets (batch, n_out)");
  const char k = a.dtype().kind();
  if (k == 'i' || k == 'u') {
    if (a.ndim() != 1 || a.shape(0) != batch)
      throw shape_error(
          fmt::format("integer labels y must have shape ({},) to match x, got shape {}", batch, shape_str(a)));
    // Checked at full width: a label outside [0, n_out) is an error, never wrapped to a class.
    std::vector<int32_t> labels(static_cast<std::size_t>(batch));
    auto check = [&](long i, auto v) {
      if (v < 0 || static_cast<uint64_t>(v) >= static_cast<uint64_t>(n_out))
        throw shape_error(
            fmt::format("y[{}] = {} is not a class label: labels must be integers in [0, {})", i, v, n_out));
      labels[static_cast<std::size_t>(i)] = static_cast<int32_t>(v);
    };
    if (k == 'u') {
      auto l = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(a);
      for (long i = 0; i < batch; ++i) check(i, l.data()[i]);
    } else {
      auto l = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
      for (long i = 0; i < batch; ++i) check(i, l.data()[i]);
    }
    return one_hot<R>(labels, n_out);
  }
  if (k != 'f')
    throw py::type_error(fmt::format("y must hold integer labels or float targets, got dtype {}", dtype_str(a)));
  if (a.ndim() != 2)
    throw shape_error(fmt::format("float targets y must have shape ({}, {}), got shape {} (integer labels are 1-D)",
                                  batch, n_out, shape_str(a)));
  if (a.shape(0) != batch) throw shape_error(fmt::format("y has {} samples but x has {}", a.shape(0), batch));
  return to_batch<R>(a, n_out, "y");
}

/// Copies an n x batch matrix into a new (batch, n) array.
template <class S>
py::array rows_of(const matrix<S>& m) {
  py::array_t<S> out({m.cols(), m.rows()});
  if (m.size()) std::memcpy(out.mutable_data(), m.data(), sizeof(S) * m.size());
  return out;
}
template <class T, class A>
py::array vec_to_numpy(const std::vector<T, A>& v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), sizeof(T) * v.size());
  return out;
}
std::vector<double> to_doubles(const py::handle& obj, const char* what) {
  py::array a = py::array::ensure(obj);
  if (!a || (a.dtype().kind() != 'f' && a.dtype().kind() != 'i'))
    throw py::type_error(fmt::format("{} must be a real numeric array", what));
  auto c = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
  return {c.data(), c.data() + c.size()};
}

py::dict report_dict(const relax_report& r) {
  return py::dict("steps"_a = r.steps, "max_residual"_a = r.max_residual, "mean_residual"_a = r.mean_residual,
                  "n_not_converged"_a = r.n_not_converged, "n_non_finite"_a = r.n_non_finite,
                  "converged"_a = r.converged(), "sample_steps"_a = r.sample_steps, "seconds"_a = r.seconds);
}
py::dict result_dict(const grad_result& g, const std::string& name) {
  py::list pts;
  for (const auto& p : g.points) pts.append(report_dict(p));
  return py::dict("estimator"_a = name, "loss"_a = g.loss, "predictions"_a = vec_to_numpy(g.predictions),
                  "free"_a = report_dict(g.free), "points"_a = pts, "n_dropped"_a = g.n_dropped,
                  "relax_steps"_a = g.relax_steps, "relax_sample_steps"_a = g.relax_sample_steps,
                  "grad_seconds"_a = g.grad_seconds);
}

nonconvergence_policy parse_policy(const std::string& s) {
  if (s == "drop") return nonconvergence_policy::drop;
  if (s == "error") return nonconvergence_policy::error;
  if (s == "keep") return nonconvergence_policy::keep;
  throw config_error(fmt::format("on_failure must be drop, error or keep, got '{}'", s));
}

// ---------------------------------------------------------------- the network
/// The scalar of a network type (references and const allowed).
template <class N>
struct real_of_network {
  using type = std::remove_cvref_t<decltype(std::declval<N&>().params()[0])>;
};
template <class R>
struct real_of_network<graph_network<R>> {
  using type = R;
};
template <class N>
using real_of = typename real_of_network<std::remove_cvref_t<N>>::type;

struct py_network {
  std::variant<layered_network<float>, layered_network<double>> v;
  const network_spec& spec() const {
    return std::visit([](auto& n) -> const network_spec& { return n.spec(); }, v);
  }
  const std::vector<param_block>& layout() const {
    return std::visit([](auto& n) -> const std::vector<param_block>& { return n.layout(); }, v);
  }
  std::string dtype() const { return v.index() == 0 ? "float32" : "float64"; }
  long n_params() const {
    return std::visit([](auto& n) { return n.n_params(); }, v);
  }
  void* data() {
    return std::visit([](auto& n) { return static_cast<void*>(n.params().data()); }, v);
  }
  /// The parameters cast to float64 (the exact references always run in float64).
  layered_network<double> as_double() const {
    return std::visit([](auto& n) { return n.template cast<double>(); }, v);
  }
};

/// eqprop.VectorFieldNetwork: a vector-field network (generalized EP) with float32 or float64 parameters.
struct py_vf_network {
  std::variant<vector_field_network<float>, vector_field_network<double>> v;
  const vf_spec& spec() const {
    return std::visit([](auto& n) -> const vf_spec& { return n.spec(); }, v);
  }
  std::string dtype() const { return v.index() == 0 ? "float32" : "float64"; }
  long n_params() const {
    return std::visit([](auto& n) { return n.n_params(); }, v);
  }
  void* data() {
    return std::visit([](auto& n) { return static_cast<void*>(n.params().data()); }, v);
  }
};

/// eqprop.GraphNetwork: a DEEP network on a directed graph with float32 or float64 parameters.
struct py_graph_network {
  std::variant<graph_network<float>, graph_network<double>> v;
  std::string dtype() const { return v.index() == 0 ? "float32" : "float64"; }
  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), v);
  }
};

/// eqprop.GleNetwork: a GLE network (model.kind = gle) with float32 or float64 parameters,
/// and how it is fed sequences (its lag bank).
struct py_gle_network {
  std::variant<gle_network<float>, gle_network<double>> v;
  gle_sequence_setup seq;
  std::string dtype() const { return v.index() == 0 ? "float32" : "float64"; }
  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), v);
  }
  template <class F>
  decltype(auto) visit(F&& f) {
    return std::visit(std::forward<F>(f), v);
  }
};

}  // namespace

// A network object whose __init__ never ran (eqprop.Network.__new__(eqprop.Network)) holds
// no C++ object: pybind11 would hand out uninitialised storage for it, so every conversion
// of such an object to its C++ type (self of every method, arguments of every function)
// raises TypeError instead.
namespace pybind11::detail {
template <class T>
struct initialised_caster : type_caster_base<T> {
  bool load(handle src, bool convert) {
    if (src && isinstance<T>(src) &&
        !reinterpret_cast<instance*>(src.ptr())->get_value_and_holder().holder_constructed())
      throw type_error(fmt::format("this eqprop.{} was never initialised (created by __new__ without __init__)",
                                   handle(src.get_type()).attr("__name__").cast<std::string>()));
    return type_caster_base<T>::load(src, convert);
  }
};
template <>
struct type_caster<py_network> : initialised_caster<py_network> {};
template <>
struct type_caster<py_vf_network> : initialised_caster<py_vf_network> {};
template <>
struct type_caster<py_graph_network> : initialised_caster<py_graph_network> {};
template <>
struct type_caster<py_gle_network> : initialised_caster<py_gle_network> {};
}  // namespace pybind11::detail

namespace {

/// The network Net<float> or Net<double> of spec, as the variant holder P, for dtype
/// 'float32' | 'float64' (ConfigError otherwise).
template <template <class> class Net, class P, class Spec>
P network_of_dtype(const std::string& dtype, const Spec& spec) {
  if (dtype == "float32") return {Net<float>(spec)};
  if (dtype == "float64") return {Net<double>(spec)};
  throw config_error(fmt::format("dtype must be float32 or float64, got '{}'", dtype));
}

py_network make_network(std::vector<int> sizes, int readout, const std::string& output, const std::string& activation,
                        double init_scale, uint64_t seed, const std::string& dtype, std::vector<int> conv,
                        std::optional<std::vector<int>> input_shape, std::vector<int> conv_kernel,
                        std::vector<std::string> conv_padding, std::vector<std::string> conv_pool,
                        double pool_temperature, bool feedforward) {
  network_spec s;
  s.sizes = std::move(sizes);
  if (!conv.empty()) {
    if (!input_shape || input_shape->size() != 3)
      throw config_error("a ConvNet (conv=[...]) needs input_shape=(channels, height, width)");
    s.input_shape = {(*input_shape)[0], (*input_shape)[1], (*input_shape)[2]};
    s.conv = make_conv_layers(conv, conv_kernel, conv_padding, conv_pool);
    s.pool_temperature = pool_temperature;
    std::vector<int> dense = std::move(s.sizes);  // for a ConvNet, sizes are the dense layers after the convs
    s.sizes = s.conv_sizes();
    s.sizes.insert(s.sizes.end(), dense.begin(), dense.end());
  }
  s.feedforward = feedforward;
  s.output = parse_output(output);
  s.n_readout = s.output == output_kind::readout ? readout : 0;
  s.activation = parse_activation(activation);
  s.init_scale = init_scale;
  s.seed = seed;
  return network_of_dtype<layered_network, py_network>(dtype, s);
}

/// A writable array viewing `count` parameters at `offset`, shaped `shape` with `strides`
/// (in elements); `owner` (a Network or VectorFieldNetwork, the Python type of N) is kept
/// alive by the array.
template <class N = py_network>
py::array param_view(py::object owner, long offset, std::vector<py::ssize_t> shape, std::vector<py::ssize_t> strides) {
  auto& n = owner.cast<N&>();
  const py::ssize_t item = n.v.index() == 0 ? sizeof(float) : sizeof(double);
  for (auto& s : strides) s *= item;
  auto* p = static_cast<char*>(n.data()) + offset * item;
  if (n.v.index() == 0) return py::array_t<float>(shape, strides, reinterpret_cast<float*>(p), owner);
  return py::array_t<double>(shape, strides, reinterpret_cast<double*>(p), owner);
}

// ---------------------------------------------------------------- relaxation and estimators
template <class S, class R>
py::tuple relax_impl(const layered_network<R>& net, const matrix<R>& x, const matrix<R>& y, S beta,
                     const relax_options& o) {
  relax_state<S> st;
  relax_report rep;
  double loss;
  std::vector<int32_t> pred;
  matrix<R> scores;
  {
    compute_section nogil;
    st.set_input(net, x, y);
    rep = st.relax(net, beta, o);
    loss = st.mean_cost(net);
    pred = st.predictions(net);
    st.output_scores(net, scores);
  }
  py::list states;
  for (const auto& h : st.h()) states.append(rows_of(h));
  py::dict r = report_dict(rep);
  r["loss"] = loss;
  r["predictions"] = vec_to_numpy(pred);
  r["outputs"] = rows_of(scores);
  return py::make_tuple(states, r);
}

struct estimate_args {
  std::string kind;
  int n_points;
  double beta;
  long free_steps, nudged_steps;
  double tol;
  bool stop_early;
  std::string start;
  double noise_std;
  uint64_t noise_seed;
  bool noise_free_phase;
  int average_last;
  std::string on_failure;
  double fail_residual;
  int periods;
  bool smooth;
  double alpha;
  long truncate;
  std::string order;
  double omega;
};

template <class R>
std::unique_ptr<grad_estimator<R>> make_est(const estimate_args& a) {
  relax_options free{a.free_steps, a.tol, a.stop_early}, nudged{a.nudged_steps, a.tol, a.stop_early};
  free.order = nudged.order = parse_relax_order(a.order);
  free.omega = nudged.omega = a.omega;
  if (a.kind == "bptt") return std::make_unique<bptt_gradient<R>>(a.free_steps, a.truncate);
  if (a.kind == "implicit") {
    implicit_options io;
    io.free = free;
    io.policy = parse_policy(a.on_failure);
    return std::make_unique<implicit_gradient<R>>(io);
  }
  if (a.kind == "continuous") {
    continuous_options c;
    c.n_points = a.n_points;
    c.beta = a.beta;
    c.steps_per_point = a.nudged_steps;
    c.periods = a.periods;
    c.smooth = a.smooth;
    c.alpha = a.alpha;
    c.noise_std = a.noise_std;
    c.noise_seed = a.noise_seed;
    c.on_failure = parse_policy(a.on_failure);
    c.fail_residual = a.fail_residual;
    return std::make_unique<continuous_hep<R>>(c);
  }
  ep_options o;
  if (a.kind == "classic" || a.kind == "ep") o.n_points = 1;
  else if (a.kind == "symmetric") o.n_points = 2;
  else if (a.kind == "holomorphic" || a.kind == "hep") o.n_points = a.n_points;
  else {
    const auto near =
        suggest_closest(a.kind, {"classic", "symmetric", "holomorphic", "continuous", "bptt", "implicit"});
    throw config_error(
        fmt::format("unknown estimator kind '{}': expected classic, symmetric, holomorphic, continuous, bptt or "
                    "implicit{}",
                    a.kind, near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
  }
  if (a.start != "free" && a.start != "warm")
    throw config_error(fmt::format("start must be free or warm, got '{}'", a.start));
  o.beta = a.beta;
  o.free = free;
  o.nudged = nudged;
  o.start = a.start == "warm" ? ep_start::warm : ep_start::free_state;
  o.on_failure = parse_policy(a.on_failure);
  o.fail_residual = a.fail_residual;
  o.noise_std = a.noise_std;
  o.noise_in_free_phase = a.noise_free_phase;
  o.noise_seed = a.noise_seed;
  o.average_last = a.average_last;
  return std::make_unique<cauchy_ep<R>>(o);
}

template <class R, class Net>
py::tuple run_estimator(grad_estimator<R, Net>& est, const Net& net, const matrix<R>& x, const matrix<R>& y) {
  aligned_vector<R> g(net.n_params());
  grad_result res;
  {
    compute_section nogil;
    res = est.estimate(net, x, y, g);
  }
  return py::make_tuple(vec_to_numpy(g), result_dict(res, est.name()));
}

// Shared prologue of the float64 references: parameters cast to float64, x and y as float64.
struct ref_inputs {
  layered_network<double> net;
  matrix<double> x, y;
};
ref_inputs ref_in(const py_network& n, const py::handle& x, const py::handle& y) {
  ref_inputs r{n.as_double(), to_batch<double>(x, n.spec().sizes[0], "x"), {}};
  r.y = to_targets<double>(y, r.x.cols(), n.spec().n_output());
  return r;
}
std::vector<long> indices_of(const std::optional<std::vector<long>>& idx) { return idx ? *idx : std::vector<long>{}; }
bool fixed_point_target(const std::string& t) {
  if (t == "fixed_point") return true;
  if (t == "steps") return false;
  throw config_error(fmt::format("target must be 'fixed_point' or 'steps', got '{}'", t));
}

// ---------------------------------------------------------------- config and training
/// Sets one key from a Python value, converted to the key's declared type.
void set_key(config& cfg, const std::string& key, const py::handle& v, const std::string& source) {
  const config_key* k = cfg.schema().find(key);
  if (!k) {
    cfg.set(key, false, source);  // throws config_error naming the key, with a suggestion
    return;
  }
  config_value val;
  try {
    val = std::visit(
        [&](const auto& def) -> config_value {
          using T = std::decay_t<decltype(def)>;
          if constexpr (std::is_same_v<T, bool>) {
            if (!py::isinstance<py::bool_>(v)) throw py::cast_error();
            return v.cast<bool>();
          } else if constexpr (std::is_same_v<T, int64_t>) {
            if (py::isinstance<py::bool_>(v) || py::isinstance<py::float_>(v)) throw py::cast_error();
            return v.cast<int64_t>();
          } else if constexpr (std::is_same_v<T, std::string>) {
            if (!py::isinstance<py::str>(v)) throw py::cast_error();
            return v.cast<std::string>();
          } else {
            if (py::isinstance<py::str>(v)) throw py::cast_error();
            return v.cast<T>();
          }
        },
        k->default_value);
  } catch (const py::cast_error&) {
    throw config_error(
        fmt::format("{}: {} must be of type {}, got {} {}", source, key, config_type_name(k->default_value),
                    py::str(v.get_type().attr("__name__")).cast<std::string>(), py::repr(v).cast<std::string>()));
  }
  cfg.set(key, val, source);
}
/// Sets every key of a (nested) dict; nesting deeper than config_max_depth is a
/// config_error, raised before the recursion could exhaust the stack.
void set_keys(config& cfg, const py::dict& d, const std::string& prefix, const std::string& source, int depth = 1) {
  if (depth > config_max_depth)
    throw config_error(fmt::format("{}: the dict nests more than {} levels deep (at `{}...`)", source, config_max_depth,
                                   prefix.substr(0, 60)));
  for (auto [k, v] : d) {
    const std::string key = prefix + py::str(k).cast<std::string>();
    if (py::isinstance<py::dict>(v)) set_keys(cfg, v.cast<py::dict>(), key + ".", source, depth + 1);
    else set_key(cfg, key, v, source);
  }
}

/// cfg_in: None, a dict (nested or dotted keys) or a TOML path; overrides: None, a dict of
/// dotted keys or a list of "key=value".
void load_py_config(config& cfg, const py::object& cfg_in, const py::object& overrides) {
  if (!cfg_in.is_none()) {
    if (py::isinstance<py::dict>(cfg_in)) set_keys(cfg, cfg_in.cast<py::dict>(), "", "config dict");
    else cfg.load_toml_file(cfg_in.cast<std::filesystem::path>());
  }
  if (!overrides.is_none()) {
    if (py::isinstance<py::dict>(overrides)) set_keys(cfg, overrides.cast<py::dict>(), "", "overrides");
    else
      for (auto s : overrides) cfg.set_override(s.cast<std::string>());
  }
}

/// A training loop's should_stop hook: Ctrl-C raises KeyboardInterrupt out of the C++ call.
bool python_interrupted() {
  py::gil_scoped_acquire gil;
  // Inside a compute_section the signals wait as pending: deliver them to Python's handler
  // here, on this thread, between two batches.
  sigset_t pending, stop = stop_signals(), old;
  if (sigpending(&pending) == 0 && (sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1)) {
    pthread_sigmask(SIG_UNBLOCK, &stop, &old);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  return false;
}

/// Every key of a schema: {key: (default as TOML, description with the allowed values)}.
py::dict schema_keys(const config_schema& schema) {
  py::dict d;
  for (const auto& k : schema.keys()) {
    const std::string allowed = k.allowed.describe(k.default_value);
    d[py::str(k.key)] = py::make_tuple(format_config_value(k.default_value),
                                       allowed.empty() ? k.doc : fmt::format("{} (allowed: {})", k.doc, allowed));
  }
  return d;
}

/// The model.kind that cfg_in and overrides (as load_py_config takes them) name; layered when none does.
model_kind py_model_kind(const py::object& cfg_in, const py::object& overrides) {
  std::optional<model_kind> kind;
  auto from_dict = [&](const py::dict& d) {
    if (d.contains("model.kind")) kind = parse_model_kind(py::str(d["model.kind"]).cast<std::string>());
    if (d.contains("model") && py::isinstance<py::dict>(d["model"])) {
      const auto m = d["model"].cast<py::dict>();
      if (m.contains("kind")) kind = parse_model_kind(py::str(m["kind"]).cast<std::string>());
    }
  };
  if (!cfg_in.is_none()) {
    if (py::isinstance<py::dict>(cfg_in)) from_dict(cfg_in.cast<py::dict>());
    else kind = model_kind_of({cfg_in.cast<std::filesystem::path>()}, {});
  }
  if (!overrides.is_none()) {
    if (py::isinstance<py::dict>(overrides)) from_dict(overrides.cast<py::dict>());
    else {
      std::vector<std::string> sets;
      for (auto s : overrides) sets.push_back(s.cast<std::string>());
      if (std::any_of(sets.begin(), sets.end(), [](const std::string& s) { return s.rfind("model.kind", 0) == 0; }))
        kind = model_kind_of({}, sets);
    }
  }
  return kind.value_or(model_kind::layered);
}

/// One split from NumPy: x of shape (n, dim) or (n, C, H, W) (any real dtype, converted to
/// float32), y integer labels (n,) in [0, n_classes).
dataset py_split(const char* what, py::handle xh, py::handle yh, int n_classes) {
  const auto x = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(xh);
  const auto y = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(yh);
  if (!x || !y) throw shape_error(fmt::format("data: {} arrays must be numeric", what));
  if (x.ndim() != 2 && x.ndim() != 4)
    throw shape_error(
        fmt::format("data: x_{} must have shape (n, dim) or (n, C, H, W), got {} dimensions", what, x.ndim()));
  if (y.ndim() != 1 || y.shape(0) != x.shape(0))
    throw shape_error(fmt::format("data: y_{} must have shape ({},), one label per sample", what, x.shape(0)));
  dataset d;
  d.name = "in-memory";
  d.n_classes = n_classes;
  const long n = long(x.shape(0)), dim = long(x.size() / std::max<py::ssize_t>(1, x.shape(0)));
  d.shape = x.ndim() == 4 ? std::array<int, 3>{int(x.shape(1)), int(x.shape(2)), int(x.shape(3))}
                          : std::array<int, 3>{1, 1, int(dim)};
  d.x = Eigen::Map<const matrix<float>>(x.data(), dim, n);  // row-major (n, dim) is column-major (dim, n)
  d.y.resize(std::size_t(n));
  for (long i = 0; i < n; ++i) {
    const int64_t v = y.at(i);
    if (v < 0 || v >= n_classes)
      throw data_error(fmt::format("data: y_{}[{}] = {} is not a class label in [0, {})", what, i, v, n_classes));
    d.y[std::size_t(i)] = int32_t(v);
  }
  return d;
}

/// data = (x_train, y_train, x_test, y_test); the classes are 0 .. the largest label.
std::shared_ptr<const dataset_split> py_data(const py::object& data) {
  const auto t = data.cast<py::tuple>();
  if (t.size() != 4) throw shape_error("data must be (x_train, y_train, x_test, y_test)");
  int64_t top = 0;
  for (int k : {1, 3}) {
    const auto y = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(t[k]);
    for (py::ssize_t i = 0; y && i < y.size(); ++i) top = std::max(top, y.data()[i]);
  }
  auto split = std::make_shared<dataset_split>();
  split->train = py_split("train", t[0], t[1], int(top + 1));
  split->test = py_split("test", t[2], t[3], int(top + 1));
  if (split->train.dim() != split->test.dim())
    throw shape_error(fmt::format("data: x_train has {} features, x_test {}", split->train.dim(), split->test.dim()));
  return split;
}

py::dict train_py(py::object cfg_in, py::object overrides, py::object run_dir, py::object on_epoch, py::object data_dir,
                  py::object name, bool verbose, bool resume, py::object data, py::object on_batch) {
  train_options opt;
  opt.name = "python";
  if (!cfg_in.is_none() && !py::isinstance<py::dict>(cfg_in))
    opt.name = cfg_in.cast<std::filesystem::path>().stem().string();
  if (!name.is_none()) opt.name = name.cast<std::string>();
  if (!run_dir.is_none()) opt.run_dir = run_dir.cast<std::filesystem::path>();
  if (!data_dir.is_none()) opt.data_dir = data_dir.cast<std::filesystem::path>().string();
  opt.resume = resume;
  std::vector<std::string> resume_changes;
  std::optional<config> chosen;
  if (resume) {
    // The run's saved config with config/overrides on top, read with the run's schema, as
    // `eqprop train --resume` (model.kind is fixed on resume).
    if (opt.run_dir.empty()) throw config_error("resume=True needs run_dir");
    const auto ck_file = opt.run_dir / "checkpoint.eqck";
    chosen = saved_run_config(load_checkpoint(ck_file), ck_file);
    config requested(chosen->schema());
    load_py_config(requested, cfg_in, overrides);
    resume_changes = chosen->apply_resume_changes(requested);
    if (!resume_changes.empty()) write_file_atomic(opt.run_dir / "config.toml", chosen->to_toml());
  } else {
    chosen.emplace(training_schema(py_model_kind(cfg_in, overrides)));
    load_py_config(*chosen, cfg_in, overrides);
  }
  const config& cfg = *chosen;
  std::ostringstream sink;
  opt.quiet = !verbose;
  if (!verbose) opt.out = &sink;
  for (const auto& c : resume_changes) (opt.out ? *opt.out : std::cout) << "resume: " << c << "\n";
  if (!on_epoch.is_none()) {
    opt.on_epoch = [on_epoch](const nlohmann::ordered_json& row) {
      py::gil_scoped_acquire gil;
      on_epoch(json_to_py(row));  // a Python exception propagates out of train()
    };
  }
  if (!on_batch.is_none()) {
    opt.on_batch = [on_batch](long epoch, long batch, long n_batches, double loss, double acc) {
      py::gil_scoped_acquire gil;
      on_batch(epoch, batch, n_batches, loss, acc);
    };
  }
  if (!data.is_none()) opt.data = py_data(data);
  opt.should_stop = python_interrupted;
  train_result r;
  {
    compute_section nogil;
    r = train(cfg, opt);
  }
  return py::dict("run_dir"_a = r.run_dir.string(), "epochs_done"_a = r.epochs_done,
                  "test_accuracy"_a = r.test_accuracy, "test_top5"_a = r.test_top5, "test_loss"_a = r.test_loss,
                  "train_accuracy"_a = r.train_accuracy, "diverged"_a = r.diverged, "interrupted"_a = r.interrupted,
                  "message"_a = r.message);
}

py::array checkpoint_array_to_numpy(const checkpoint_array& a) {
  const char* fmt_ = a.dtype == checkpoint_dtype::f32   ? "float32"
                     : a.dtype == checkpoint_dtype::f64 ? "float64"
                     : a.dtype == checkpoint_dtype::i64 ? "int64"
                                                        : "uint8";
  py::array out(py::dtype(fmt_), std::vector<py::ssize_t>(a.shape.begin(), a.shape.end()));
  if (!a.bytes.empty()) std::memcpy(out.mutable_data(), a.bytes.data(), a.bytes.size());
  return out;
}

/// A dataset's x (dim x n, column-major) as a zero-copy (n, dim) array owning the matrix.
py::tuple dataset_arrays(dataset&& d) {
  auto* x = new matrix<float>(std::move(d.x));
  py::capsule owner(x, [](void* p) { delete static_cast<matrix<float>*>(p); });
  py::array_t<float> xa({x->cols(), x->rows()}, {x->rows() * py::ssize_t(sizeof(float)), py::ssize_t(sizeof(float))},
                        x->data(), owner);
  return py::make_tuple(xa, vec_to_numpy(d.y));
}

// ---------------------------------------------------------------- GLE
py::array doubles(const std::vector<double>& v) { return vec_to_numpy(v); }

/// A numeric argument outside its range is a ConfigError naming it (the CLI's flags have the same ranges).
void check_arg(const char* name, double v, const config_constraint& allowed, bool integer = false) {
  if (std::string why = allowed.number_violation(v, integer); !why.empty())
    throw config_error(fmt::format("{} = {} is out of range: {}", name, v, why));
}

void register_gle(py::module_& m) {
  def_fn(
      m, "gle_operator",
      [](double tau_m, double tau_r, double omega, double dt) {
        using cc = config_constraint;
        check_arg("tau_m", tau_m, cc::greater_than(0).at_most(1e6));
        check_arg("tau_r", tau_r, cc::greater_than(0).at_most(1e6));
        check_arg("omega", omega, cc::greater_than(0).at_most(1e6));
        check_arg("dt", dt, cc::greater_than(0).at_most(1));
        const auto r = gle_operator_response(tau_m, tau_r, omega, dt);
        return py::dict("forward"_a = py::make_tuple(r.forward_gain, r.forward_phase),
                        "gle_error"_a = py::make_tuple(r.gle_gain, r.gle_phase),
                        "adjoint"_a = py::make_tuple(r.adjoint_gain, r.adjoint_phase),
                        "theory_H"_a = py::make_tuple(r.theory_gain, r.theory_phase));
      },
      "tau_m"_a = 1.0, "tau_r"_a = 0.2, "omega"_a = 2.0, "dt"_a = 1e-3,
      "(gain, phase) of one neuron's forward operator, GLE error neuron and adjoint on a sine of frequency omega;\n"
      "theory_H = (|H|, arg H) with H = (1 + i omega tau_r)/(1 + i omega tau_m).");
  def_fn(
      m, "gle_lagline",
      [](const std::string& rule, double window, double t_train, double lr, uint64_t seed, long record_every) {
        using cc = config_constraint;
        check_arg("window", window, cc::greater_than(0).at_most(1e4));
        check_arg("t_train", t_train, cc::greater_than(0).at_most(1e6));
        check_arg("lr", lr, cc::greater_than(0));
        check_arg("record_every", double(record_every), cc::closed(1, 1e9), true);
        lagline_options o;
        o.rule = parse_gle_rule(rule);
        o.window = window;
        o.t_train = t_train;
        o.lr = lr;
        o.seed = seed;
        o.record_every = record_every;
        lagline_result r;
        {
          compute_section nogil;
          r = run_lagline(o);
        }
        std::vector<double> t, loss, w1, w2, t1, t2;
        for (const auto& row : r.trace) {
          t.push_back(row.t), loss.push_back(row.loss), w1.push_back(row.w1), w2.push_back(row.w2);
          t1.push_back(row.tau1), t2.push_back(row.tau2);
        }
        return py::dict("rule"_a = rule, "t"_a = doubles(t), "loss"_a = doubles(loss), "w1"_a = doubles(w1),
                        "w2"_a = doubles(w2), "tau_m1"_a = doubles(t1), "tau_m2"_a = doubles(t2),
                        "final_loss"_a = r.final_loss, "w_rel_error"_a = r.w_rel_error,
                        "tau_rel_error"_a = r.tau_rel_error, "seconds"_a = r.seconds);
      },
      "rule"_a = "gle", "window"_a = 1.0, "t_train"_a = 4000.0, "lr"_a = 1e-4, "seed"_a = 1, "record_every"_a = 1000,
      "LagLine teacher-student chain (`eqprop gle lagline`): rule gle | bp | bptt | adjoint (window in time units).\n"
      "Returns the trace (t, loss, w1, w2, tau_m1, tau_m2 as arrays) and the final errors against the teacher.");
  def_fn(
      m, "gle_lagnet",
      [](double window, bool train, uint64_t seed) {
        lagnet_options o;
        check_arg("window", window, config_constraint::greater_than(o.t_tail).at_most(1e5));
        o.t_window = window;
        o.train = train;
        o.seed = seed;
        lagnet_result r;
        {
          compute_section nogil;
          r = run_lagnet(o);
        }
        py::list neurons;
        py::dict e, lam;
        for (std::size_t n = 0; n < r.neurons.size(); ++n) {
          const auto& c = r.neurons[n];
          neurons.append(py::dict("name"_a = c.name, "tau_m"_a = c.tau_m, "tau_r"_a = c.tau_r, "omega"_a = c.omega,
                                  "gain"_a = c.gain, "phase"_a = c.phase, "theory_gain"_a = c.theory_gain,
                                  "correlation"_a = c.correlation));
          e[py::str(c.name)] = doubles(r.e[n]);
          lam[py::str(c.name)] = doubles(r.lambda[n]);
        }
        return py::dict("neurons"_a = neurons, "t"_a = doubles(r.t), "e"_a = e, "lambda"_a = lam,
                        "train_t"_a = doubles(r.train_t), "train_w00"_a = doubles(r.train_w00),
                        "train_loss"_a = doubles(r.train_loss), "final_w00"_a = r.final_w00,
                        "teacher_w00"_a = r.teacher_w00);
      },
      "window"_a = 200.0, "train"_a = true, "seed"_a = 1,
      "LagNet 1-2-2-1 (`eqprop gle lagnet`): GLE errors e against the adjoint's lambda per hidden neuron (traces and\n"
      "per-frequency gain/phase of e/lambda), then GLE training of hid_1 towards the teacher's w[0][0] = -0.5.");
}

// ---------------------------------------------------------------- vector-field networks
/// The blocks of a network's params: [{name, group, shape (rows, cols), offset}].
py::list layout_list(const std::vector<param_block>& layout) {
  py::list l;
  for (const auto& b : layout)
    l.append(py::dict("name"_a = b.name, "group"_a = b.group, "shape"_a = py::make_tuple(b.rows, b.cols),
                      "offset"_a = b.offset));
  return l;
}

/// inspect.signature(cls): its __init__'s signature without self.
void set_class_signature(py::object cls) {
  py::object sig = py::module_::import("inspect").attr("signature")(cls.attr("__init__"));
  py::list params(sig.attr("parameters").attr("values")());
  params.attr("pop")(0);  // self
  cls.attr("__signature__") = sig.attr("replace")("parameters"_a = params);
}

py_vf_network make_vf_network(std::vector<int> sizes, int n_classes, const std::string& topology, double angle,
                              const std::string& activation, double init_scale, uint64_t seed,
                              const std::string& dtype) {
  vf_spec s;
  s.sizes = std::move(sizes);
  s.n_classes = n_classes;
  s.topology = parse_vf_topology(topology);
  if (s.topology == vf_topology::edges)
    throw config_error(
        "topology 'edges' needs an edge list: build that network from a config (model.kind = vector_field)");
  s.angle_deg = angle;
  s.activation = parse_activation(activation);
  s.init_scale = init_scale;
  s.seed = seed;
  return network_of_dtype<vector_field_network, py_vf_network>(dtype, s);
}

void register_vf_network(py::module_& m) {
  const char* doc =
      "A vector-field network (generalized EP, docs/generalized-ep.md): no energy function, feedback weights\n"
      "untied from the forward ones, a softmax readout of n_classes on the last layer; float32 or float64.\n\n"
      "sizes = [n_input, n_1, ..., n_K]; topology 'chain' (forward i-1 -> i, feedback i+1 -> i) or 'loop'\n"
      "(forward chain plus one feedback edge K -> 1); angle a (degrees): a feedback matrix starts as\n"
      "sin(a) B_init + cos(a) W^T of its reciprocal forward W (0: symmetric, 90: random); activation, init_scale\n"
      "(0: std 1/sqrt(fan_in)) and seed as for Network. ConvNets and explicit edge lists come from a config\n"
      "(eqprop.load_run of a vector_field run). ConfigError for an invalid value.";
  py::class_<py_vf_network> cls(m, "VectorFieldNetwork", doc);
  def_init(cls, py::init(&make_vf_network), "sizes"_a, "n_classes"_a, "topology"_a = "chain", "angle"_a = 90.0,
           "activation"_a = "hep_sigmoid", "init_scale"_a = 0.0, "seed"_a = 0, "dtype"_a = "float64", doc);
  set_class_signature(cls);
  cls.def_property_readonly(
         "sizes", [](const py_vf_network& n) { return n.spec().sizes; },
         "Layer widths [n_input, n_1, ..., n_K] (a ConvNet's conv layers as C*H*W first).")
      .def_property_readonly(
          "n_classes", [](const py_vf_network& n) { return n.spec().n_classes; }, "Classes of the softmax readout.")
      .def_property_readonly(
          "topology", [](const py_vf_network& n) { return std::string(to_string(n.spec().topology)); },
          "'chain', 'loop' or 'edges'.")
      .def_property_readonly(
          "angle", [](const py_vf_network& n) { return n.spec().angle_deg; },
          "The feedback initialisation's angle in degrees (network.angle).")
      .def_property_readonly(
          "activation", [](const py_vf_network& n) { return std::string(to_string(n.spec().activation)); },
          "The activation's name.")
      .def_property_readonly(
          "conv",
          [](const py_vf_network& n) {
            std::vector<int> c;
            for (const auto& l : n.spec().conv) c.push_back(l.channels);
            return c;
          },
          "Channels of the conv layers (empty for an MLP).")
      .def_property_readonly("dtype", &py_vf_network::dtype, "'float32' or 'float64'.")
      .def_property_readonly("n_params", &py_vf_network::n_params, "Number of parameters (the length of params).")
      .def_property_readonly(
          "params",
          [](py::object self) {
            return param_view<py_vf_network>(self, 0, {self.cast<py_vf_network&>().n_params()}, {1});
          },
          "All parameters as a writable zero-copy 1-D array (per edge its matrix and a forward edge's bias, in\n"
          "edge order, then the readout's W and b: see layout); keeps the network alive.")
      .def_property_readonly(
          "layout",
          [](const py_vf_network& n) {
            return layout_list(std::visit(
                [](auto& x) -> const auto& { return x.layout(); }, n.v));
          },
          "The blocks of params: name, group, shape (rows, cols), offset.")
      .def("__repr__", [](const py_vf_network& n) {
        const auto& s = n.spec();
        return fmt::format(
            "VectorFieldNetwork(sizes=[{}], n_classes={}, topology='{}', angle={}, activation='{}', "
            "dtype='{}'{})",
            fmt::join(s.sizes, ", "), s.n_classes, to_string(s.topology), s.angle_deg, to_string(s.activation),
            n.dtype(), s.is_convnet() ? ", conv" : "");
      });
  def_fn(
      cls, "copy", [](const py_vf_network& n) { return py_vf_network{n.v}; }, "An independent copy.");
}

// ---------------------------------------------------------------- graph (DEEP) networks
/// A read-only array viewing the values of T at p, shaped `shape` with `strides` (in
/// elements); `owner` is kept alive by the array.
template <class T>
py::array readonly_view(py::object owner, const T* p, std::vector<py::ssize_t> shape,
                        std::vector<py::ssize_t> strides) {
  for (auto& st : strides) st *= py::ssize_t(sizeof(T));
  py::array_t<T> a(shape, strides, p, owner);
  a.attr("setflags")("write"_a = false);
  return a;
}

/// A copy of a matrix as a (rows, cols) array with a[i, j] = m(i, j).
template <class S>
py::array matrix_to_numpy(const matrix<S>& m) {
  py::array_t<S> out({m.rows(), m.cols()}, {py::ssize_t(sizeof(S)), py::ssize_t(sizeof(S)) * m.rows()});
  if (m.size()) std::memcpy(out.mutable_data(), m.data(), sizeof(S) * m.size());
  return out;
}

/// A real (float, integer or bool) array of exactly shape (rows, cols), or (rows,) when
/// cols < 0, as a rows x cols (rows x 1) matrix of T with a[i, j] at (i, j). ShapeError
/// naming `what` and both shapes; TypeError for an array of another kind.
template <class T>
matrix<T> array_of_shape(const py::handle& obj, long rows, long cols, const char* what) {
  py::array a = py::array::ensure(obj);
  const char k = a ? a.dtype().kind() : 'O';
  if (k != 'f' && k != 'i' && k != 'u' && k != 'b')
    throw py::type_error(fmt::format("{} must be a real numeric array, got {}", what,
                                     a ? "dtype " + dtype_str(a) : std::string("an object NumPy cannot convert")));
  const bool vec = cols < 0;
  if (a.ndim() != (vec ? 1 : 2) || a.shape(0) != rows || (!vec && a.shape(1) != cols))
    throw shape_error(fmt::format("{} must have shape {}, got shape {}", what,
                                  vec ? fmt::format("({},)", rows) : fmt::format("({}, {})", rows, cols),
                                  shape_str(a)));
  const auto c = py::array_t<T, py::array::f_style | py::array::forcecast>::ensure(a);
  return Eigen::Map<const matrix<T>>(c.data(), rows, vec ? 1 : cols);
}

py_graph_network make_graph_network(int n_input, int n_output, std::vector<int> hidden, const std::string& topology,
                                    double init_std, uint64_t seed, const std::string& dtype, py::object adjacency) {
  if (dtype != "float32" && dtype != "float64")
    throw config_error(fmt::format("dtype must be float32 or float64, got '{}'", dtype));
  if (!std::isfinite(init_std) || init_std < 0)
    throw config_error(fmt::format("init_std must be finite and >= 0, got {}", init_std));
  graph_spec g;
  g.n_input = n_input;
  g.n_output = n_output;
  g.hidden = std::move(hidden);
  g.topology = parse_graph_topology(topology);
  g.init_std = init_std;
  const bool custom = g.topology == graph_topology::custom;
  if (custom && adjacency.is_none())
    throw config_error("topology 'custom' needs adjacency: an (N, N) array, nonzero where the edge i -> j exists");
  if (!custom && !adjacency.is_none())
    throw config_error(fmt::format("adjacency is only for topology 'custom', not '{}'", topology));
  const bool sizes_ok =
      n_input >= 1 && n_output >= 1 && std::all_of(g.hidden.begin(), g.hidden.end(), [](int h) { return h >= 1; });
  if (custom && sizes_ok) {  // otherwise the constructor names the invalid size
    const long n = long(n_input) + 1 + std::accumulate(g.hidden.begin(), g.hidden.end(), 0L) + n_output;
    g.adjacency = array_of_shape<int>(adjacency, n, n, "adjacency");
  }
  rng_t rng = graph_init_rng(seed);
  if (dtype == "float32") return {graph_network<float>(g, rng)};
  return {graph_network<double>(g, rng)};
}

/// The keyword arguments of graph_relax and graph_estimate that set the dynamics: each is
/// the last part of a graph config key (dynamics.dt -> dt, relax.free_steps -> free_steps).
struct graph_dynamics_args {
  double dt;
  int64_t free_steps, nudged_steps;
  double tol;
  bool freeze_converged;
  double leak;
  std::string decay, presyn;
  bool clip;
};

/// Sets the dynamics.* and relax.* keys of cfg (a graph config) from d, checked by the graph
/// schema as `eqprop train` checks a config (ConfigError naming the key of a value out of range).
void set_graph_dynamics(config& cfg, const graph_dynamics_args& d, const char* source) {
  cfg.set("dynamics.dt", d.dt, source);
  cfg.set("relax.free_steps", d.free_steps, source);
  cfg.set("relax.nudged_steps", d.nudged_steps, source);
  cfg.set("relax.tol", d.tol, source);
  cfg.set("relax.freeze_converged", d.freeze_converged, source);
  cfg.set("dynamics.leak", d.leak, source);
  cfg.set("dynamics.decay", d.decay, source);
  cfg.set("dynamics.presyn", d.presyn, source);
  cfg.set("dynamics.clip", d.clip, source);
}

/// Targets of a graph network: float targets (batch, n_output), or integer labels: one-hot
/// over the outputs, or, for one output neuron, the label 0 or 1 itself (as the trainer's).
template <class R>
matrix<R> graph_targets(const py::handle& y, long batch, int n_out) {
  py::array a = py::array::ensure(y);
  if (n_out == 1 && a && (a.dtype().kind() == 'i' || a.dtype().kind() == 'u'))
    return to_targets<R>(y, batch, 2).row(1);  // the one-hot row of class 1 is the label
  return to_targets<R>(y, batch, n_out);
}

void register_graph_network(py::module_& m) {
  const char* doc =
      "A network on a directed graph of neurons (DEEP, docs/deep.md; model.kind = graph), float32 or float64.\n\n"
      "Neurons: n_input clamped inputs, one bias neuron (clamped to 1), the hidden neurons, n_output outputs;\n"
      "N = n_input + 1 + sum(hidden) + n_output. weights[i, j] is the weight of the edge from neuron i to neuron j.\n"
      "topology: 'complete' (every edge between distinct neurons, none into the inputs), 'layered' (inputs -> the\n"
      "hidden layers -> outputs, adjacent layers both ways, the bias to every free neuron) or 'custom' (adjacency,\n"
      "an (N, N) array nonzero where an edge exists; none into an input, no self-loop). Allowed weights start\n"
      "~ N(0, init_std^2), drawn from the generator `eqprop train` draws them from for run.seed = seed (the same\n"
      "draws for both dtypes). ConfigError / ShapeError for an invalid value.";
  py::class_<py_graph_network> cls(m, "GraphNetwork", doc);
  const graph_spec d0;
  def_init(cls, py::init(&make_graph_network), "n_input"_a, "n_output"_a, "hidden"_a = d0.hidden,
           "topology"_a = to_string(d0.topology), "init_std"_a = d0.init_std, "seed"_a = 0, "dtype"_a = "float64",
           "adjacency"_a = py::none(), doc);
  set_class_signature(cls);
  auto prop = [&cls](const char* name, auto f, const char* d) {
    cls.def_property_readonly(
        name, [f](const py_graph_network& n) { return n.visit(f); }, d);
  };
  prop(
      "n_input", [](const auto& n) { return n.n_data_input(); }, "Data inputs (the bias neuron not counted).");
  prop(
      "n_output", [](const auto& n) { return n.n_output(); }, "Output neurons (the last n_output neurons).");
  prop(
      "hidden", [](const auto& n) { return n.spec().hidden; }, "Hidden layer sizes.");
  prop(
      "n_hidden", [](const auto& n) { return n.n_hidden(); }, "Hidden neurons in all.");
  prop(
      "size", [](const auto& n) { return n.size(); }, "N, the number of neurons: the side of weights.");
  prop(
      "bias_index", [](const auto& n) { return n.bias_index(); }, "Index of the bias neuron (= n_input).");
  prop(
      "topology", [](const auto& n) { return to_string(n.spec().topology); }, "'complete', 'layered' or 'custom'.");
  prop(
      "init_std", [](const auto& n) { return n.spec().init_std; }, "The initial weights' standard deviation.");
  prop(
      "n_params", [](const auto& n) { return n.n_params(); },
      "Number of parameters: N * N weights, then n_free biases.");
  prop(
      "n_allowed", [](const auto& n) { return n.n_allowed(); }, "Edges the topology allows (structural.sum()).");
  prop(
      "n_nonzero", [](const auto& n) { return n.n_nonzero(); }, "Non-zero weights.");
  prop(
      "sparsity", [](const auto& n) { return n.sparsity(); },
      "1 - n_nonzero / n_allowed: the edges the topology forbids never count as sparsity.");
  // A property getter: a read-only view of part(net)'s values, shaped dims(net) = (rows, cols)
  // in column-major order or, with cols < 0, (rows,); the view keeps the network alive.
  auto view = [](auto part, auto dims) {
    return [part, dims](py::object self) {
      return self.cast<const py_graph_network&>().visit([&](const auto& n) {
        const auto [rows, cols] = dims(n);
        if (cols < 0) return readonly_view(self, part(n).data(), {rows}, {1});
        return readonly_view(self, part(n).data(), {rows, cols}, {1, rows});
      });
    };
  };
  // A setter: set(net, array) checks and copies the array, then the masks are re-applied.
  auto assign = [](auto set) {
    return [set](py_graph_network& g, py::handle a) {
      std::visit(
          [&](auto& n) {
            set(n, a);
            n.apply_masks();
          },
          g.v);
    };
  };
  auto square = [](const auto& n) { return std::pair<long, long>(n.size(), n.size()); };
  cls.def_property_readonly("dtype", &py_graph_network::dtype, "'float32' or 'float64'.")
      .def_property(
          "weights", view([](const auto& n) { return n.weights(); }, square), assign([](auto& n, py::handle a) {
            n.weights() = array_of_shape<real_of<decltype(n)>>(a, n.size(), n.size(), "weights");
          }),
          "The weights, (N, N): [i, j] from neuron i to neuron j; a read-only view (keeps the network alive).\n"
          "Assigning an (N, N) real array copies it, then zeroes every weight outside the graph (structural or\n"
          "pruned), as after every training update.")
      .def_property(
          "bias",
          view([](const auto& n) { return n.bias(); },
               [](const auto& n) { return std::pair<long, long>(n.n_free(), -1); }),
          assign([](auto& n, py::handle a) {
            n.bias() = array_of_shape<real_of<decltype(n)>>(a, n.n_free(), -1, "bias");
          }),
          "The biases of the free neurons (hidden, then outputs), (N - n_input - 1,): a read-only view; zero for\n"
          "DEEP, where the bias neuron plays that role (learned only with estimator.learn_bias). Assignable.")
      .def_property(
          "pruned",
          view(
              [](const auto& n) -> const auto& { return n.pruned(); }, square),
          assign([](auto& n, py::handle a) { n.pruned() = array_of_shape<bool>(a, n.size(), n.size(), "pruned"); }),
          "The persistent pruning mask, (N, N) bool: True where an edge is pruned (its weight stays zero); a\n"
          "read-only view. Assigning an (N, N) array (nonzero: pruned) replaces it and zeroes the pruned weights.")
      .def_property_readonly("structural",
                             view(
                                 [](const auto& n) -> const auto& { return n.structural(); }, square),
                             "The edges the topology allows, (N, N) bool (fixed): a read-only view.")
      .def_property_readonly(
          "params",
          view(
              [](const auto& n) -> const auto& { return n.params(); },
              [](const auto& n) { return std::pair<long, long>(n.n_params(), -1); }),
          "All parameters, (n_params,): weights in column-major order, then bias (see layout); a read-only\n"
          "view. A gradient of graph_estimate has this layout (split() cuts one into its blocks).")
      .def_property_readonly(
          "layout",
          [](const py_graph_network& g) { return g.visit([](const auto& n) { return layout_list(n.layout()); }); },
          "The blocks of params: name ('W', 'b'), group, shape (rows, cols), offset.")
      .def("__repr__", [](const py_graph_network& g) {
        return g.visit([&](const auto& n) {
          return fmt::format(
              "GraphNetwork(n_input={}, n_output={}, hidden=[{}], topology='{}', init_std={}, dtype='{}')",
              n.n_data_input(), n.n_output(), fmt::join(n.spec().hidden, ", "), to_string(n.spec().topology),
              n.spec().init_std, g.dtype());
        });
      });
  def_fn(
      cls, "split",
      [](const py_graph_network& g, py::handle vec) {
        return g.visit([&](const auto& n) {
          using R = real_of<decltype(n)>;
          const matrix<R> v = array_of_shape<R>(vec, n.n_params(), -1, "vec");
          const auto& w = n.params().block(0);
          const auto& b = n.params().block(1);
          return py::make_tuple(
              matrix_to_numpy<R>(v.middleRows(w.offset, long(w.rows) * w.cols).reshaped(w.rows, w.cols)),
              matrix_to_numpy<R>(v.middleRows(b.offset, b.rows)).attr("reshape")(b.rows));
        });
      },
      "vec"_a, "(weights (N, N), bias (n_free,)): copies of the blocks of a vector laid out like params (a gradient).");
  def_fn(
      cls, "copy", [](const py_graph_network& g) { return py_graph_network{g.v}; }, "An independent copy.");
  def_fn(
      cls, "astype",
      [](const py_graph_network& g, const std::string& dtype) -> py_graph_network {
        if (dtype == "float32") return {g.visit([](const auto& n) { return n.template cast<float>(); })};
        if (dtype == "float64") return {g.visit([](const auto& n) { return n.template cast<double>(); })};
        throw config_error(fmt::format("dtype must be float32 or float64, got '{}'", dtype));
      },
      "dtype"_a, "A copy with parameters converted to 'float32' or 'float64'.");

  const deep_dynamics dd;
  const deep_learning dl;
  def_fn(
      m, "graph_relax",
      [](const py_graph_network& g, py::handle x, py::object y, double beta, py::object state, uint64_t seed, double dt,
         int64_t free_steps, int64_t nudged_steps, double tol, bool freeze_converged, double leak, std::string decay,
         std::string presyn, bool clip) {
        config cfg(graph_schema());
        set_graph_dynamics(cfg, {dt, free_steps, nudged_steps, tol, freeze_converged, leak, decay, presyn, clip},
                           "graph_relax");
        const deep_dynamics dyn = deep_dynamics_from_config(cfg);
        if (y.is_none() && beta != 0) throw config_error("graph_relax: beta != 0 needs targets y (a nudged phase)");
        return g.visit([&](const auto& net) {
          using R = real_of<decltype(net)>;
          const matrix<R> xm = to_batch<R>(x, net.n_data_input(), "x");
          matrix<R> s;
          if (state.is_none()) {
            rng_t rng(seed);
            s = deep_initial_state(net, xm, rng);
          } else {
            s = to_batch<R>(state, net.size(), "state");
            if (s.cols() != xm.cols())
              throw shape_error(fmt::format("state has {} samples but x has {}", s.cols(), xm.cols()));
            s.topRows(net.n_data_input()) = xm;
            s.row(net.bias_index()).setOnes();
          }
          std::optional<matrix<R>> ym;
          if (!y.is_none()) ym = graph_targets<R>(y, xm.cols(), net.n_output());
          relax_report rep;
          {
            compute_section nogil;
            rep = deep_relax(net, dyn, s, ym ? &*ym : nullptr, ym ? beta : 0.0);
          }
          py::dict r = report_dict(rep);
          r["outputs"] = rows_of(matrix<R>(s.bottomRows(net.n_output())));
          return py::make_tuple(rows_of(s), r);
        });
      },
      "net"_a, "x"_a, "y"_a = py::none(), "beta"_a = 0.0, "state"_a = py::none(), "seed"_a = 0, "dt"_a = dd.dt,
      "free_steps"_a = dd.free_steps, "nudged_steps"_a = dd.nudged_steps, "tol"_a = dd.stop_tol,
      "freeze_converged"_a = dd.freeze, "leak"_a = dd.leak, "decay"_a = to_string(dd.decay),
      "presyn"_a = to_string(dd.presyn), "clip"_a = dd.clip,
      "One phase of the DEEP dynamics of a GraphNetwork (Euler steps of ds/dt, inputs clamped). Returns (states,\n"
      "report): states (batch, N) at the end; report has steps, max_residual, mean_residual, n_not_converged,\n"
      "n_non_finite, converged, outputs (batch, n_output).\n"
      "y None: the free phase (free_steps); y given: the nudged phase (nudged_steps) towards the targets y with\n"
      "strength beta. y: float targets (batch, n_output) or integer labels (one-hot; with one output neuron the\n"
      "label 0/1 itself). state None: initial free states ~ U(0, 0.1) drawn from seed, as the estimator draws\n"
      "them; else the states (batch, N) to start from (a free phase's end state), inputs and bias re-clamped.\n"
      "The other keywords are the graph config keys of the same last name: dynamics.dt, relax.free_steps,\n"
      "relax.nudged_steps, relax.tol (stop once max_b |ds_b|^2 <= tol; 0: never), relax.freeze_converged,\n"
      "dynamics.leak, dynamics.decay, dynamics.presyn, dynamics.clip (ConfigError out of their ranges).");

  def_fn(
      m, "graph_estimate",
      [](const py_graph_network& g, py::handle x, py::handle y, std::string kind, double beta, double beta0,
         double beta1, bool sign, bool learn_bias, bool reciprocal_nudge, uint64_t seed, double dt, int64_t free_steps,
         int64_t nudged_steps, double tol, bool freeze_converged, double leak, std::string decay, std::string presyn,
         bool clip) {
        config cfg(graph_schema());
        set_graph_dynamics(cfg, {dt, free_steps, nudged_steps, tol, freeze_converged, leak, decay, presyn, clip},
                           "graph_estimate");
        cfg.set("estimator.kind", kind, "graph_estimate");
        cfg.set("estimator.beta", beta, "graph_estimate");
        cfg.set("estimator.beta0", beta0, "graph_estimate");
        cfg.set("estimator.beta1", beta1, "graph_estimate");
        cfg.set("estimator.sign", sign, "graph_estimate");
        cfg.set("estimator.learn_bias", learn_bias, "graph_estimate");
        cfg.set("estimator.reciprocal_nudge", reciprocal_nudge, "graph_estimate");
        const deep_dynamics dyn = deep_dynamics_from_config(cfg);
        const deep_learning learn = deep_learning_from_config(cfg);
        return g.visit([&](const auto& net) {
          using R = real_of<decltype(net)>;
          const matrix<R> xm = to_batch<R>(x, net.n_data_input(), "x");
          const matrix<R> ym = graph_targets<R>(y, xm.cols(), net.n_output());
          deep_estimator<R> est(dyn, learn, seed);
          py::tuple out = run_estimator<R>(est, net, xm, ym);
          py::dict info = out[1];
          info["states_free"] = rows_of(est.last().s_free);
          info["states_nudged"] = rows_of(est.last().s_nudged);
          return out;
        });
      },
      "net"_a, "x"_a, "y"_a, "kind"_a = to_string(dl.rule), "beta"_a = dl.beta, "beta0"_a = dl.beta0,
      "beta1"_a = dl.beta1, "sign"_a = dl.sign, "learn_bias"_a = dl.learn_bias,
      "reciprocal_nudge"_a = dl.reciprocal_nudge, "seed"_a = 0, "dt"_a = dd.dt, "free_steps"_a = dd.free_steps,
      "nudged_steps"_a = dd.nudged_steps, "tol"_a = dd.stop_tol, "freeze_converged"_a = dd.freeze, "leak"_a = dd.leak,
      "decay"_a = to_string(dd.decay), "presyn"_a = to_string(dd.presyn), "clip"_a = dd.clip,
      "The DEEP estimator (`eqprop train` with model.kind = graph) on one batch: a free phase from initial states\n"
      "drawn from seed (graph_relax with the same seed gives the same one), a nudged phase, and the learning\n"
      "rule's update dW. Returns (grad, info): grad (n_params,) = -dW in the layout of params (net.split(grad)\n"
      "gives its (N, N) and bias blocks), so that theta -= lr * grad is the training update before the masks;\n"
      "zero outside the graph. info: estimator, loss (mean 1/2 |y - s_out|^2 at the free state), predictions,\n"
      "free and points (the two phases' reports), n_dropped, relax_steps, states_free and states_nudged (batch, N).\n"
      "Keywords: the graph config keys of the same last name: estimator.kind ('trajectory' | 'endpoint' |\n"
      "'vector_field'), estimator.beta, beta0, beta1, sign, learn_bias, reciprocal_nudge (vector_field rule\n"
      "without clip only), then the dynamics keywords of graph_relax.");
}

// ---------------------------------------------------------------- GLE networks
/// The network of model.kind = gle that `eqprop train` builds for n_classes from the gle
/// schema's defaults with overrides on top (gle_network_from_config), of network.dtype.
py_gle_network make_gle_network(int n_classes, py::object overrides) {
  config cfg(training_schema(model_kind::gle));
  load_py_config(cfg, py::none(), overrides);
  if (n_classes < 1) throw config_error(fmt::format("n_classes must be >= 1, got {}", n_classes));
  const gle_sequence_setup seq = gle_sequence_setup_from_config(cfg);
  if (cfg.get<std::string>("network.dtype") == "float32") return {gle_network_from_config<float>(cfg, n_classes), seq};
  return {gle_network_from_config<double>(cfg, n_classes), seq};
}

/// Sequences x (batch, steps), one per row, as the library's steps x batch matrix of R.
template <class R>
matrix<R> gle_sequences(const py::handle& x) {
  py::array a = py::array::ensure(x);
  if (a && a.ndim() != 2)
    throw shape_error(
        fmt::format("x must have shape (batch, steps): one sequence per row, got shape {}", shape_str(a)));
  return to_batch<R>(x, a && a.shape(1) > 0 ? a.shape(1) : 1, "x");
}

/// One float64 array per layer of a GLE network: tau(n, l) of its neurons.
template <class R, class Tau>
py::list gle_per_layer(const gle_network<R>& n, Tau tau) {
  py::list out;
  for (int l = 0; l < n.n_layers(); ++l) {
    const auto t = tau(n, l);
    out.append(vec_to_numpy(std::vector<double>(t.begin(), t.end())));
  }
  return out;
}

void register_gle_network(py::module_& m) {
  const char* doc =
      "A GLE network (Generalized Latent Equilibrium, docs/gle.md; model.kind = gle), float32 or float64.\n\n"
      "Built exactly as `eqprop train` builds the network of a gle config for n_classes outputs: the gle\n"
      "schema's defaults (eqprop.config_keys('gle')) with overrides on top, a dict of dotted or nested keys\n"
      "(network.width, network.depth, network.tau_groups, dynamics.dt, run.seed, network.dtype, ...) or a\n"
      "list of 'key=value'. The network has one input: a sample is a sequence, one feature per time step.\n"
      "eqprop.load_run of a gle run gives the trained one, with the neuron state training left.\n"
      "ConfigError for an invalid value.";
  py::class_<py_gle_network> cls(m, "GleNetwork", doc);
  def_init(cls, py::init(&make_gle_network), "n_classes"_a, "overrides"_a = py::none(), doc);
  set_class_signature(cls);
  auto prop = [&cls](const char* name, auto f, const char* d) {
    cls.def_property_readonly(
        name, [f](const py_gle_network& n) { return n.visit(f); }, d);
  };
  prop(
      "n_input", [](const auto& n) { return n.spec().n_input; }, "Inputs per time step (1 for a gle run).");
  prop(
      "n_output", [](const auto& n) { return n.n_output(); }, "Output neurons (the classes).");
  prop(
      "n_layers", [](const auto& n) { return n.n_layers(); },
      "Layers: the lag bank's, the hidden ones, the output layer.");
  prop(
      "sizes", [](const auto& n) { return n.spec().sizes(); }, "[n_input, n_1, ..., n_output]: the layer widths.");
  prop(
      "n_params", [](const auto& n) { return n.n_params(); }, "Number of parameters.");
  prop(
      "dt", [](const auto& n) { return n.spec().dt; }, "The Euler step (dynamics.dt).");
  prop(
      "gamma", [](const auto& n) { return n.spec().gamma; }, "The error-to-membrane coupling (dynamics.gamma).");
  prop(
      "loss", [](const auto& n) { return std::string(to_string(n.spec().loss)); },
      "The output loss: 'mse' or 'ce' (loss.kind).");
  prop(
      "batch", [](const auto& n) { return n.batch(); }, "Columns of the neuron state (sequences it runs at once).");
  prop(
      "tau_m", [](const auto& n) { return gle_per_layer(n, [](const auto& net, int l) { return net.tau_m(l); }); },
      "tau_m of every layer: a list of (n_l,) float64 arrays (copies; learned when dynamics.learn_tau_m).");
  prop(
      "tau_r", [](const auto& n) { return gle_per_layer(n, [](const auto& net, int l) { return net.tau_r(l); }); },
      "tau_r of every layer: a list of (n_l,) float64 arrays (copies).");
  cls.def_property_readonly("dtype", &py_gle_network::dtype, "'float32' or 'float64'.")
      .def_property_readonly(
          "lag_bank_layers", [](const py_gle_network& g) { return g.seq.bank_layers; },
          "Layers of the fixed lag bank (0: none): the first ones, never trained.")
      .def_property_readonly(
          "params",
          [](py::object self) {
            return self.cast<const py_gle_network&>().visit([&](const auto& n) {
              return readonly_view(self, n.params().data(), {py::ssize_t(n.n_params())}, {1});
            });
          },
          "All parameters, (n_params,): W (column-major), b, [tau_m] of every layer in turn (see layout); a\n"
          "read-only view (keeps the network alive).")
      .def_property_readonly(
          "layout",
          [](const py_gle_network& g) { return g.visit([](const auto& n) { return layout_list(n.layout()); }); },
          "The blocks of params: name, group (the layer), shape (rows, cols), offset.")
      .def("__repr__", [](const py_gle_network& g) {
        return g.visit([&](const auto& n) {
          return fmt::format("GleNetwork(sizes=[{}], lag_bank_layers={}, dt={}, loss='{}', n_params={}, dtype='{}')",
                             fmt::join(n.spec().sizes(), ", "), g.seq.bank_layers, n.spec().dt,
                             to_string(n.spec().loss), n.n_params(), g.dtype());
        });
      });
  def_fn(
      cls, "copy",
      [](const py_gle_network& g) {
        return py_gle_network{g.v, g.seq};
      },
      "An independent copy, neuron state included.");
  def_fn(
      cls, "state",
      [](const py_gle_network& g, int layer) {
        return g.visit([&](const auto& n) {
          if (layer < 0 || layer >= n.n_layers())
            throw shape_error(fmt::format("layer must be in [0, {}), got {}", n.n_layers(), layer));
          const auto& st = n.state(layer);
          return py::dict("u"_a = rows_of(st.u), "v"_a = rows_of(st.v), "r"_a = rows_of(st.r),
                          "u_breve"_a = rows_of(st.u_breve), "e"_a = rows_of(st.e));
        });
      },
      "layer"_a,
      "Copies of layer's neuron state, each (batch, n_layer): u and v (membranes of the representation and\n"
      "error neurons), r (output), u_breve (prospective potential) and e (error) of the last step.");
  def_fn(
      cls, "reset_state",
      [](py_gle_network& g, long batch) {
        if (batch < 1) throw shape_error(fmt::format("batch must be >= 1, got {}", batch));
        std::visit([&](auto& n) { n.reset_state(batch); }, g.v);
      },
      "batch"_a, "Restarts every neuron from the network's initial state (network.initial_state) for batch sequences.");
  def_fn(
      cls, "run",
      [](py_gle_network& g, py::handle x, py::object y, bool record) {
        return std::visit(
            [&](auto& n) -> py::dict {
              using R = real_of<decltype(n)>;
              if (n.spec().n_input != 1) throw config_error("run feeds sequences to a network with one input");
              const matrix<R> xm = gle_sequences<R>(x);
              std::optional<matrix<R>> ym;
              if (!y.is_none()) ym = to_targets<R>(y, xm.cols(), n.n_output());
              gle_sequence_result<R> res;
              {
                compute_section nogil;
                gle_sequence_options<R> o;
                o.y = ym ? &*ym : nullptr;
                o.record = record;
                gle_run_sequences(n, g.seq, xm, o, res);
              }
              py::dict d("scores"_a = rows_of(res.sum_out));
              if (ym) {
                d["loss"] = vec_to_numpy(res.step_loss);
                d["readout_loss"] = vec_to_numpy(res.readout);
              }
              if (record) {
                py::array_t<R> out({xm.rows(), xm.cols(), long(n.n_output())});
                for (long t = 0; t < xm.rows(); ++t)
                  std::memcpy(out.mutable_data() + t * res.outputs[t].size(), res.outputs[t].data(),
                              sizeof(R) * res.outputs[t].size());
                d["outputs"] = out;
              }
              return d;
            },
            g.v);
      },
      "x"_a, "y"_a = py::none(), "record"_a = false,
      "Runs the sequences x (batch, steps), one per row, freely (no teaching, no learning) from the network's\n"
      "state, which it advances (copy() first to keep it); the lag bank restarts first when network.lag_bank_reset;\n"
      "a state of another batch size is tiled or truncated. As the evaluation of a gle run runs each batch.\n"
      "Returns {scores: (batch, n_output), each sequence's outputs summed over its steps (the class scores)}, with\n"
      "y (integer labels (batch,) or float targets (batch, n_output)) loss (each sequence's per-step loss averaged\n"
      "over its steps) and readout_loss (the loss of its time-averaged output), and with record=True outputs\n"
      "(steps, batch, n_output), the output after every step. ShapeError / TypeError for bad x or y.");
}

// ---------------------------------------------------------------- saved runs
/// A run read back (load_saved_run) for eqprop.load_run: its trained network (a Network for
/// a layered run, a VectorFieldNetwork for a vector_field run, a GraphNetwork for a graph
/// run, a GleNetwork for a gle run) and what predict needs to score inputs as `eqprop eval`
/// scores the test split.
struct py_run {
  py::object network;  ///< the network holding the checkpoint's parameters
  py::object config;   ///< the run's saved config (dict of sections)
  std::string kind;    ///< model.kind: "layered" | "vector_field" | "graph" | "gle"
  std::string checkpoint_file;
  std::array<int, 3> data_shape{};  ///< (C, H, W) of one sample: data.normalize_* apply per channel
  std::vector<float> mean, std;     ///< data.normalize_mean / normalize_std (empty: none)
  relax_options free;               ///< the free phase eqprop eval relaxes (saved_run::eval_relax)
  deep_dynamics graph_dynamics;     ///< a graph run's dynamics (deep_dynamics_from_config)
  uint64_t seed = 0;                ///< run.seed: a graph run's evaluation draws from graph_eval_rng(seed)
  long eval_batch = 1;              ///< eqprop eval relaxes the test split in batches of run.eval_batch
  long n_input = 0;                 ///< the data's features (a gle run's: time steps per sequence)
  gle_sequence_setup gle_seq;       ///< a gle run's lag bank (gle_sequence_setup_from_config)
};

/// The run's trained network (saved_network) of network.dtype, as the variant holder P.
template <template <class> class Net, class P>
P saved_network_of_dtype(const saved_run& s) {
  if (s.cfg.get<std::string>("network.dtype") == "float32") return P{saved_network<Net<float>>(s)};
  return P{saved_network<Net<double>>(s)};
}

py_run load_run_py(const std::filesystem::path& path, py::object data_dir) {
  const std::string dd = data_dir.is_none() ? "" : data_dir.cast<std::filesystem::path>().string();
  auto s = [&] {
    compute_section nogil;
    return load_saved_run(path, dd);
  }();
  py_run r;
  switch (s.kind) {
    case model_kind::layered:
      r.network = py::cast(saved_network_of_dtype<layered_network, py_network>(s));
      break;
    case model_kind::vector_field:
      r.network = py::cast(saved_network_of_dtype<vector_field_network, py_vf_network>(s));
      break;
    case model_kind::graph:
      r.network = py::cast(saved_network_of_dtype<graph_network, py_graph_network>(s));
      r.graph_dynamics = deep_dynamics_from_config(s.cfg);
      break;
    case model_kind::gle:
      r.gle_seq = gle_sequence_setup_from_config(s.cfg);
      if (s.cfg.get<std::string>("network.dtype") == "float32")
        r.network = py::cast(py_gle_network{saved_network<gle_network<float>>(s), r.gle_seq});
      else r.network = py::cast(py_gle_network{saved_network<gle_network<double>>(s), r.gle_seq});
      break;
  }
  r.config = json_to_py(s.cfg.to_json());
  r.kind = std::string(to_string(s.kind));
  r.checkpoint_file = s.checkpoint_file.string();
  r.data_shape = s.input_shape;
  r.mean = s.cfg.get<std::vector<float>>("data.normalize_mean");
  r.std = s.cfg.get<std::vector<float>>("data.normalize_std");
  r.free = s.eval_relax;
  r.seed = s.cfg.get<uint64_t>("run.seed");
  r.eval_batch = s.cfg.get<long>("run.eval_batch");
  r.n_input = s.n_input;
  return r;
}

// What the evaluation scores each batch with: a free-phase state (layered, vector field), the
// generator of a graph network's initial states, restarted once per evaluation, or a copy of
// a gle network with its training state, made once per evaluation.
template <class R>
relax_state<R> scoring_state(const layered_network<R>&, const py_run&) {
  return {};
}
template <class R>
vf_state<R> scoring_state(const vector_field_network<R>&, const py_run&) {
  return {};
}
template <class R>
rng_t scoring_state(const graph_network<R>&, const py_run& r) {
  return graph_eval_rng(r.seed);
}
template <class R>
gle_network<R> scoring_state(const gle_network<R>& net, const py_run&) {
  return net;
}
template <class R>
long n_inputs_of(const layered_network<R>& net, const py_run&) {
  return net.spec().sizes[0];
}
template <class R>
long n_inputs_of(const vector_field_network<R>& net, const py_run&) {
  return net.spec().sizes[0];
}
template <class R>
long n_inputs_of(const graph_network<R>& net, const py_run&) {
  return net.n_data_input();
}
template <class R>
long n_inputs_of(const gle_network<R>&, const py_run& r) {
  return r.n_input;
}  // the steps of a sequence
template <class R>
int n_outputs_of(const layered_network<R>& net) {
  return net.spec().n_output();
}
template <class R>
int n_outputs_of(const vector_field_network<R>& net) {
  return net.spec().n_classes;
}

/// The free phase of one batch: relaxed from h = 0 with beta = 0 and the run's relax settings.
template <class State, class Net, class R>
void score_batch(State& st, const Net& net, const py_run& r, const matrix<R>& x, matrix<R>& scores) {
  st.set_input(net, x, matrix<R>(matrix<R>::Zero(n_outputs_of(net), x.cols())));
  st.relax(net, R(0), r.free);
  st.output_scores(net, scores);
}
/// A graph network's: initial states from the evaluation's generator, the run's dynamics.
template <class R>
void score_batch(rng_t& rng, const graph_network<R>& net, const py_run& r, const matrix<R>& x, matrix<R>& scores) {
  deep_class_scores(net, r.graph_dynamics, x, rng, scores);
}
/// A gle network's: the evaluation's copy runs the batch on from its state.
template <class R>
void score_batch(gle_network<R>& eval_net, const gle_network<R>&, const py_run& r, const matrix<R>& x,
                 matrix<R>& scores) {
  gle_sequence_result<R> res;
  gle_class_scores(eval_net, r.gle_seq, x, res);
  scores = std::move(res.sum_out);
}

/// The class scores (classes x batch) of x as `eqprop eval` scores its test split: x
/// converted to float32 (the data pipeline's type) and normalised per channel as the trainer
/// normalises data, then cast to the network's dtype and relaxed in consecutive batches of
/// run.eval_batch with the run's settings (a graph network's initial states drawn from one
/// evaluation stream, restarted for every call, as for every evaluation of a split); the
/// output scores (a vector-field network's readout probabilities, a single graph output s as
/// (1 - s, s)).
template <class Net>
matrix<real_of<Net>> run_scores(const py_run& r, const Net& net, py::handle x) {
  using R = real_of<Net>;
  matrix<float> xf = to_batch<float>(x, n_inputs_of(net, r), "x");
  if (!r.mean.empty() || !r.std.empty()) {
    dataset d;
    d.name = "x";
    d.x = std::move(xf);
    d.shape = r.data_shape;
    normalize_per_channel(d, r.mean, r.std);
    xf = std::move(d.x);
  }
  matrix<R> all;
  compute_section nogil;
  auto st = scoring_state(net, r);
  matrix<R> scores;
  for (long first = 0; first < xf.cols(); first += r.eval_batch) {
    const long b = std::min(r.eval_batch, xf.cols() - first);
    score_batch(st, net, r, matrix<R>(xf.middleCols(first, b).template cast<R>()), scores);
    if (first == 0) all.resize(scores.rows(), xf.cols());
    all.middleCols(first, b) = scores;
  }
  return all;
}

/// Class predictions from run_scores: the argmax, ties to the lower index, -1 for a sample
/// with a NaN/Inf score.
template <class R>
py::array predictions_of(const matrix<R>& scores) {
  std::vector<int64_t> pred(static_cast<std::size_t>(scores.cols()));
  for (long j = 0; j < scores.cols(); ++j) {
    long best = 0;
    for (long c = 1; c < scores.rows(); ++c)
      if (scores(c, j) > scores(best, j)) best = c;
    pred[static_cast<std::size_t>(j)] = scores.col(j).allFinite() ? best : -1;
  }
  return vec_to_numpy(pred);
}

/// f(net) for the run's network, whatever its kind and dtype.
template <class F>
py::object visit_run_network(const py_run& r, F&& f) {
  if (py::isinstance<py_vf_network>(r.network)) return std::visit(f, r.network.cast<const py_vf_network&>().v);
  if (py::isinstance<py_graph_network>(r.network)) return std::visit(f, r.network.cast<const py_graph_network&>().v);
  if (py::isinstance<py_gle_network>(r.network)) return std::visit(f, r.network.cast<const py_gle_network&>().v);
  return std::visit(f, r.network.cast<const py_network&>().v);
}

void register_runs(py::module_& m) {
  py::class_<py_run> cls(m, "_SavedRun", "A run read back by _load_run (eqprop.load_run wraps it).");
  cls.def_readonly("network", &py_run::network,
                   "The trained network: a Network, VectorFieldNetwork, GraphNetwork or GleNetwork.")
      .def_readonly("config", &py_run::config, "The run's saved config (dict of sections).")
      .def_readonly("kind", &py_run::kind, "The run's model.kind: 'layered', 'vector_field', 'graph' or 'gle'.")
      .def_readonly("checkpoint", &py_run::checkpoint_file, "The checkpoint file read.");
  def_fn(
      cls, "predict",
      [](const py_run& r, py::handle x) {
        return visit_run_network(r,
                                 [&](const auto& net) -> py::object { return predictions_of(run_scores(r, net, x)); });
      },
      "x"_a,
      "Class predictions (int64, (batch,)) for inputs x (batch, n_inputs) as `eqprop eval` scores its test split:\n"
      "x as float32, normalised by data.normalize_mean/std, free phase with the run's relax.* settings (a graph\n"
      "run's dynamics.*, initial states from its evaluation stream; a gle run's sequences (batch, steps) run\n"
      "untaught on a copy of its network with the training state) in batches of run.eval_batch; argmax of\n"
      "scores(x), ties to the lower index; -1 for a sample with NaN/Inf scores.");
  def_fn(
      cls, "scores",
      [](const py_run& r, py::handle x) {
        return visit_run_network(r, [&](const auto& net) -> py::object { return rows_of(run_scores(r, net, x)); });
      },
      "x"_a,
      "The output scores (batch, n_classes) that predict takes the argmax of, in the network's dtype: the output\n"
      "layer's or readout's scores (a vector-field network's readout probabilities; a graph network's output\n"
      "states, a single output s as (1 - s, s); a gle network's outputs summed over time).");
  def_fn(m, "_load_run", &load_run_py, "path"_a, "data_dir"_a = py::none(),
         "Reads a run of any model.kind (directory or checkpoint file) into a _SavedRun; the network is sized\n"
         "by the checkpoint's recorded input size and classes (older runs: by the data's test split, its data\n"
         "directory chosen and checked as by evaluate). DataError for a path that is not a run or a checkpoint of\n"
         "another trainer.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  // Docstrings carry CPython's text signature instead of pybind11's line (see def_fn).
  py::options options;
  options.disable_function_signatures();
  m.doc() = "eqprop: equilibrium propagation and holomorphic EP (C++ core)";
  m.attr("__version__") = eqprop::build::version;
  register_exceptions(m);
  register_gle(m);
  register_vf_network(m);
  register_graph_network(m);
  register_gle_network(m);
  register_runs(m);
  def_fn(
      m, "build_info", [] { return json_to_py(build_info_json()); }, "Version, commit, compiler, vector ISA, backend.");

  const char* net_doc =
      "A layered energy-based network with float32 or float64 parameters.\n\n"
      "sizes = [n_input, n_1, ..., n_K] (layer widths, units); readout = classes of the softmax readout\n"
      "(output='readout'); output='layer' makes the last layer the output instead. activation: as the config\n"
      "key network.activation (hep_sigmoid, holotanh, ...). init_scale 0: std 1/sqrt(fan_in); seed: the\n"
      "initialisation's seed; dtype: 'float32' or 'float64'.\n"
      "ConvNets: conv = channels per conv layer, input_shape = (C, H, W) of the planar input, conv_kernel /\n"
      "conv_padding ('same'|'valid') / conv_pool ('softmax'|'max'|'avg'|'none') one value or one per layer;\n"
      "sizes are then the dense layers after the convs (may be empty). feedforward=True: the BP twin.\n"
      "ConfigError for an invalid value.";
  py::class_<py_network> net_cls(m, "Network", net_doc);
  def_init(net_cls, py::init(&make_network), "sizes"_a, "readout"_a = 0, "output"_a = "readout",
           "activation"_a = "hep_sigmoid", "init_scale"_a = 0.0, "seed"_a = 0, "dtype"_a = "float64",
           "conv"_a = std::vector<int>{}, "input_shape"_a = py::none(), "conv_kernel"_a = std::vector<int>{3},
           "conv_padding"_a = std::vector<std::string>{"same"}, "conv_pool"_a = std::vector<std::string>{"softmax"},
           "pool_temperature"_a = 1.0, "feedforward"_a = false, net_doc);
  set_class_signature(net_cls);
  net_cls
      .def_property_readonly(
          "conv",
          [](const py_network& n) {
            std::vector<int> c;
            for (const auto& l : n.spec().conv) c.push_back(l.channels);
            return c;
          },
          "Channels of the conv layers (empty for an MLP).")
      .def_property_readonly(
          "feedforward", [](const py_network& n) { return n.spec().feedforward; },
          "True for the feed-forward (backprop) twin.")
      .def_property_readonly(
          "sizes", [](const py_network& n) { return n.spec().sizes; },
          "Layer widths [n_input, n_1, ..., n_K] (a ConvNet's conv layers as C*H*W first).")
      .def_property_readonly(
          "readout", [](const py_network& n) { return n.spec().n_readout; },
          "Classes of the softmax readout (0 with output='layer').")
      .def_property_readonly(
          "n_output", [](const py_network& n) { return n.spec().n_output(); },
          "Width of the output: readout classes, or the last layer's width.")
      .def_property_readonly(
          "output", [](const py_network& n) { return std::string(to_string(n.spec().output)); },
          "'readout' or 'layer'.")
      .def_property_readonly(
          "activation", [](const py_network& n) { return std::string(to_string(n.spec().activation)); },
          "The activation's name.")
      .def_property_readonly(
          "init_scale", [](const py_network& n) { return n.spec().init_scale; },
          "The initialisation scale (0: 1/sqrt(fan_in)).")
      .def_property_readonly(
          "seed", [](const py_network& n) { return n.spec().seed; }, "The initialisation's seed.")
      .def_property_readonly("dtype", &py_network::dtype, "'float32' or 'float64'.")
      .def_property_readonly("n_params", &py_network::n_params, "Number of parameters (the length of params).")
      .def_property_readonly(
          "groups", [](const py_network& n) { return param_group_names(n.spec()); },
          "Parameter group names (layer0, ..., readout), the order of per-group comparisons.")
      .def_property_readonly(
          "params", [](py::object self) { return param_view(self, 0, {self.cast<py_network&>().n_params()}, {1}); },
          "All parameters as a writable zero-copy 1-D array (W0, b0, W1, b1, ..., Wout, bout); keeps the network "
          "alive.")
      .def_property_readonly(
          "layout", [](const py_network& n) { return layout_list(n.layout()); },
          "The blocks of params: name, group, shape (rows, cols), offset.")
      .def("__repr__", [](const py_network& n) {
        const auto& s = n.spec();
        std::string sz;
        for (int v : s.sizes) sz += (sz.empty() ? "" : ", ") + std::to_string(v);
        return fmt::format(
            "Network(sizes=[{}], readout={}, output='{}', activation='{}', init_scale={}, seed={}, dtype='{}')", sz,
            s.n_readout, to_string(s.output), to_string(s.activation), s.init_scale, s.seed, n.dtype());
      });
  def_fn(
      net_cls, "block",
      [](py::object self, const std::string& name) {
        for (const auto& b : self.cast<py_network&>().layout())
          if (b.name == name) return param_view(self, b.offset, {b.rows, b.cols}, {1, b.rows});
        throw config_error(fmt::format("no parameter block '{}' (W0, b0, ..., Wout, bout)", name));
      },
      "name"_a, "A writable zero-copy view of one block: W_j is (n_{j+1}, n_j), b_j is (n_{j+1}, 1).");
  def_fn(
      net_cls, "params_address", [](py_network& n) { return reinterpret_cast<uintptr_t>(n.data()); },
      "Address of the C++ parameter buffer (equals params.__array_interface__['data'][0]).");
  def_fn(
      net_cls, "copy", [](const py_network& n) { return py_network{n.v}; }, "An independent copy.");
  def_fn(
      net_cls, "astype",
      [](const py_network& n, const std::string& dtype) -> py_network {
        if (dtype == "float32") return {std::visit([](auto& x) { return x.template cast<float>(); }, n.v)};
        if (dtype == "float64") return {n.as_double()};
        throw config_error(fmt::format("dtype must be float32 or float64, got '{}'", dtype));
      },
      "dtype"_a, "A copy with parameters converted to 'float32' or 'float64'.");

  def_fn(
      m, "relax",
      [](const py_network& n, py::handle x, py::object y, py::object beta, long steps, double tol, bool stop_early,
         double noise_std, uint64_t noise_seed) {
        rng_t rng(noise_seed);
        const relax_options o{steps, tol, stop_early, noise_std, noise_std > 0 ? &rng : nullptr};
        const bool cplx = PyComplex_Check(beta.ptr()) ||
                          (py::hasattr(beta, "dtype") && beta.attr("dtype").attr("kind").cast<std::string>() == "c");
        const auto b = beta.cast<std::complex<double>>();
        return std::visit(
            [&](const auto& net) {
              using R = real_of<decltype(net)>;
              const matrix<R> xm = to_batch<R>(x, net.spec().sizes[0], "x");
              const matrix<R> ym = y.is_none() ? matrix<R>(matrix<R>::Zero(net.spec().n_output(), xm.cols()))
                                               : to_targets<R>(y, xm.cols(), net.spec().n_output());
              if (cplx) return relax_impl<std::complex<R>>(net, xm, ym, std::complex<R>(R(b.real()), R(b.imag())), o);
              return relax_impl<R>(net, xm, ym, R(b.real()), o);
            },
            n.v);
      },
      "net"_a, "x"_a, "y"_a = py::none(), "beta"_a = 0.0, "steps"_a = 100, "tol"_a = 0.0, "stop_early"_a = false,
      "noise_std"_a = 0.0, "noise_seed"_a = 0,
      "Relaxes from h = 0 with nudge beta (a complex beta gives complex states). Returns (states, report):\n"
      "states[j] is (batch, n_j); report has steps, max_residual, mean_residual, n_not_converged, n_non_finite,\n"
      "converged, loss, predictions (-1 for a sample with NaN/Inf outputs), outputs. y: integer labels (batch,) or\n"
      "targets (batch, n_out); None = zeros.");

  def_fn(
      m, "estimate",
      [](const py_network& n, py::handle x, py::handle y, const estimate_args& a) {
        return std::visit(
            [&](const auto& net) {
              using R = real_of<decltype(net)>;
              const matrix<R> xm = to_batch<R>(x, net.spec().sizes[0], "x");
              const matrix<R> ym = to_targets<R>(y, xm.cols(), net.spec().n_output());
              auto est = make_est<R>(a);
              return run_estimator<R>(*est, net, xm, ym);
            },
            n.v);
      },
      "net"_a, "x"_a, "y"_a, "args"_a,
      "The estimator of eqprop.estimate (which builds args, an _EstimateArgs, from its keywords) on one batch.\n"
      "Returns (grad, info): grad (n_params,) in the network's dtype, info as eqprop.estimate documents.");

  py::class_<estimate_args> est_cls(m, "_EstimateArgs", "The options of eqprop.estimate, in its parameter order.");
  def_init(est_cls,
           py::init([](std::string kind, int n_points, double beta, long free_steps, long nudged_steps, double tol,
                       bool stop_early, std::string start, double noise_std, uint64_t noise_seed, bool noise_free_phase,
                       int average_last, std::string on_failure, double fail_residual, int periods, bool smooth,
                       double alpha, long truncate, std::string order, double omega) {
             return estimate_args{
                 kind,    n_points,  beta,       free_steps,       nudged_steps, tol,        stop_early,
                 start,   noise_std, noise_seed, noise_free_phase, average_last, on_failure, fail_residual,
                 periods, smooth,    alpha,      truncate,         order,        omega};
           }),
           "kind"_a, "n_points"_a, "beta"_a, "free_steps"_a, "nudged_steps"_a, "tol"_a, "stop_early"_a, "start"_a,
           "noise_std"_a, "noise_seed"_a, "noise_free_phase"_a, "average_last"_a, "on_failure"_a, "fail_residual"_a,
           "periods"_a, "smooth"_a, "alpha"_a, "truncate"_a, "order"_a, "omega"_a,
           "The options of eqprop.estimate (see its docstring).");

  def_fn(
      m, "bptt_gradient",
      [](const py_network& n, py::handle x, py::handle y, long steps, long truncate) {
        auto in = ref_in(n, x, y);
        bptt_gradient<double> est(steps, truncate);
        return run_estimator<double>(est, in.net, in.x, in.y);
      },
      "net"_a, "x"_a, "y"_a, "steps"_a = 100, "truncate"_a = 0,
      "Exact gradient of the loss after `steps` free steps (float64). Returns (grad, info).");
  def_fn(
      m, "backprop_gradient",
      [](const py_network& n, py::handle x, py::handle y) {
        auto in = ref_in(n, x, y);
        feedforward_backprop<double> est;
        return run_estimator<double>(est, in.net, in.x, in.y);
      },
      "net"_a, "x"_a, "y"_a,
      "Backprop gradient of a feed-forward network (Network(..., feedforward=True)), float64. Returns (grad, info).");
  def_fn(
      m, "implicit_gradient",
      [](const py_network& n, py::handle x, py::handle y, long steps, double tol, bool stop_early,
         const std::string& solver, const std::string& on_failure) {
        auto in = ref_in(n, x, y);
        implicit_options o;
        o.free = {steps, tol, stop_early};
        o.policy = parse_policy(on_failure);
        if (solver == "automatic") o.solver = adjoint_solver::automatic;
        else if (solver == "iterative") o.solver = adjoint_solver::iterative;
        else if (solver == "dense") o.solver = adjoint_solver::dense;
        else throw config_error(fmt::format("solver must be automatic, iterative or dense, got '{}'", solver));
        implicit_gradient<double> est(o);
        return run_estimator<double>(est, in.net, in.x, in.y);
      },
      "net"_a, "x"_a, "y"_a, "steps"_a = 100, "tol"_a = 1e-12, "stop_early"_a = true, "solver"_a = "automatic",
      "on_failure"_a = "error",
      "Exact gradient of the fixed-point loss by implicit differentiation (float64). Returns (grad, info).");
  def_fn(
      m, "finite_difference_gradient",
      [](const py_network& n, py::handle x, py::handle y, long steps, double tol, bool stop_early, double h,
         const std::string& stencil, const std::string& target, std::optional<std::vector<long>> indices) {
        auto in = ref_in(n, x, y);
        fd_stencil st;
        if (stencil == "central2") st = fd_stencil::central2;
        else if (stencil == "central4") st = fd_stencil::central4;
        else throw config_error(fmt::format("stencil must be central2 or central4, got '{}'", stencil));
        const bool fp = fixed_point_target(target);
        const auto idx = indices_of(indices);
        std::vector<double> g;
        {
          compute_section nogil;
          g = fp ? finite_difference_gradient(in.net, in.x, in.y, relax_options{steps, tol, stop_early}, h, st, idx)
                 : finite_difference_gradient_steps(in.net, in.x, in.y, steps, h, st, idx);
        }
        return vec_to_numpy(g);
      },
      "net"_a, "x"_a, "y"_a, "steps"_a = 100, "tol"_a = 1e-12, "stop_early"_a = true, "h"_a = 1e-6,
      "stencil"_a = "central2", "target"_a = "fixed_point", "indices"_a = py::none(),
      "Finite-difference gradient (float64) of the fixed-point loss, or of the `steps`-step loss with target='steps'.");
  def_fn(
      m, "complex_step_gradient",
      [](const py_network& n, py::handle x, py::handle y, long steps, double tol, bool stop_early, double h,
         const std::string& target, std::optional<std::vector<long>> indices) {
        auto in = ref_in(n, x, y);
        const bool fp = fixed_point_target(target);
        const auto idx = indices_of(indices);
        std::vector<double> g;
        {
          compute_section nogil;
          g = fp ? complex_step_gradient(in.net, in.x, in.y, relax_options{steps, tol, stop_early}, h, idx)
                 : complex_step_gradient_steps(in.net, in.x, in.y, steps, h, idx);
        }
        return vec_to_numpy(g);
      },
      "net"_a, "x"_a, "y"_a, "steps"_a = 100, "tol"_a = 1e-12, "stop_early"_a = true, "h"_a = 1e-30,
      "target"_a = "fixed_point", "indices"_a = py::none(),
      "Complex-step gradient (float64, exact to rounding) of the fixed-point or `steps`-step loss.");

  def_fn(
      m, "relative_error",
      [](py::handle a, py::handle b) { return relative_error(to_doubles(a, "a"), to_doubles(b, "b")); }, "a"_a, "b"_a,
      "|a - b| / |b| (L2).");
  def_fn(
      m, "cosine", [](py::handle a, py::handle b) { return cosine(to_doubles(a, "a"), to_doubles(b, "b")); }, "a"_a,
      "b"_a, "a.b / (|a| |b|).");
  def_fn(
      m, "per_group_rel_error",
      [](const py_network& n, py::handle a, py::handle b) {
        return per_group_rel_error(n.layout(), to_doubles(a, "a"), to_doubles(b, "b"));
      },
      "net"_a, "a"_a, "b"_a, "relative_error per parameter group (net.groups order).");
  def_fn(
      m, "per_group_cosine",
      [](const py_network& n, py::handle a, py::handle b) {
        return per_group_cosine(n.layout(), to_doubles(a, "a"), to_doubles(b, "b"));
      },
      "net"_a, "a"_a, "b"_a, "cosine per parameter group (net.groups order).");

  def_fn(
      m, "random_batch",
      [](int n_in, int n_out, long batch, uint64_t seed) {
        // Same draws as `eqprop gradcheck`: inputs uniform in [0, 1), then the labels.
        if (n_in < 1 || n_out < 1 || batch < 1) throw config_error("random_batch: n_in, n_out and batch must be >= 1");
        rng_t rng(seed ^ 0x9e3779b97f4a7c15ull);
        matrix<double> x(n_in, batch);
        for (long i = 0; i < x.size(); ++i) x.data()[i] = uniform01(rng);
        std::vector<int32_t> labels(batch);
        for (auto& l : labels) l = static_cast<int32_t>(random_index(rng, n_out));
        return py::make_tuple(rows_of(x), vec_to_numpy(labels));
      },
      "n_in"_a, "n_out"_a, "batch"_a, "seed"_a = 0,
      "The random batch of `eqprop gradcheck`: (x (batch, n_in), labels).");

  def_fn(
      m, "load_dataset",
      [](const std::string& name, py::object data_dir, uint64_t seed, long yin_yang_train, long yin_yang_test,
         long limit_train, long limit_test) {
        dataset_options o{seed, yin_yang_train, yin_yang_test, limit_train, limit_test};
        const auto dir = resolve_data_dir(data_dir.is_none() ? "" : data_dir.cast<std::filesystem::path>().string());
        dataset_split s;
        {
          compute_section nogil;
          s = load_dataset(name, dir, o);
        }
        const int n_classes = s.train.n_classes;
        const auto shape = s.train.shape;
        const std::string nm = s.train.name;
        return py::dict("name"_a = nm, "n_classes"_a = n_classes,
                        "shape"_a = py::make_tuple(shape[0], shape[1], shape[2]),
                        "train"_a = dataset_arrays(std::move(s.train)), "test"_a = dataset_arrays(std::move(s.test)));
      },
      "name"_a, "data_dir"_a = py::none(), "seed"_a = 0, "yin_yang_train"_a = 5000, "yin_yang_test"_a = 1000,
      "limit_train"_a = -1, "limit_test"_a = -1,
      "Loads a dataset: {'name', 'n_classes', 'shape', 'train': (x, y), 'test': (x, y)} with x float32 (n, dim)\n"
      "and y int32 labels. data_dir None: $EQPROP_DATA, then ./data.");
  def_fn(m, "dataset_names", &dataset_names, "Every name load_dataset accepts (a list of str, in a stable order).");

  def_fn(m, "train", &train_py, "config"_a = py::none(), "overrides"_a = py::none(), "run_dir"_a = py::none(),
         "on_epoch"_a = py::none(), "data_dir"_a = py::none(), "name"_a = py::none(), "verbose"_a = true,
         "resume"_a = false, "data"_a = py::none(), "on_batch"_a = py::none(),
         "Trains with the C++ loop (same results as `eqprop train`), any model.kind. config: a dict (nested or\n"
         "dotted keys) or a TOML path; overrides: a dict of dotted keys or a list of 'key=value'; on_epoch(row) is\n"
         "called after every epoch with the metrics row; on_batch(epoch, batch, n_batches, loss, accuracy) after\n"
         "every training batch (running values of the epoch). data: (x_train, y_train, x_test, y_test) NumPy\n"
         "arrays (x (n, dim) or (n, C, H, W), y integer labels) used instead of data.name; the run records their\n"
         "SHA-256 and resuming needs the same arrays. Ctrl-C raises KeyboardInterrupt (a checkpoint is kept).\n"
         "resume=True continues run_dir's run from its checkpoint; config and overrides then change its saved\n"
         "config (a change of the data, network.*, optimizer.kind or run.seed raises ConfigError).");
  def_fn(
      m, "config_keys", [](const std::string& kind) { return schema_keys(training_schema(parse_model_kind(kind))); },
      "kind"_a = "layered",
      "Every config key of a model.kind (layered | vector_field | graph | gle): {key: (default as TOML,\n"
      "description)}.");
  def_fn(
      m, "load_checkpoint",
      [](const std::filesystem::path& p) {
        const auto file = std::filesystem::is_directory(p) ? p / "checkpoint.eqck" : p;
        const auto ck = load_checkpoint(file);
        py::dict arrays;
        for (const auto& [k, a] : ck.arrays) arrays[py::str(k)] = checkpoint_array_to_numpy(a);
        return py::dict("meta"_a = json_to_py(ck.meta), "arrays"_a = arrays);
      },
      "path"_a, "A checkpoint file (or run directory): {'meta': {...epoch, config...}, 'arrays': {name: ndarray}}.");
  def_fn(
      m, "evaluate",
      [](const std::filesystem::path& p, py::object data_dir) {
        const std::string dd = data_dir.is_none() ? "" : data_dir.cast<std::filesystem::path>().string();
        eval_result r;
        {
          compute_section nogil;
          r = evaluate_checkpoint(p, dd);
        }
        return py::dict("accuracy"_a = r.accuracy, "top5"_a = r.top5, "loss"_a = r.loss, "n"_a = r.n,
                        "n_non_finite"_a = r.n_non_finite, "n_not_converged"_a = r.n_not_converged,
                        "mean_residual"_a = r.mean_residual);
      },
      "run"_a, "data_dir"_a = py::none(),
      "Evaluates a run directory or checkpoint on its test split: {accuracy, top5, loss, n, n_non_finite,\n"
      "n_not_converged, mean_residual}. A sample with NaN/Inf outputs is never correct: it counts as wrong and in\n"
      "n_non_finite, and loss is the mean over the finite samples (nan if none). DataError for an empty or\n"
      "non-finite test split.");
}
