// A downstream program of the installed library (tests/downstream/run.cmake builds it with
// the compiler's default flags against an install prefix): relaxes a small layered network
// and prints the mean cost at the free fixed point with 17 significant digits.
//
//   downstream [EXPECTED]   exits 1 unless the cost is finite and, given EXPECTED, within
//                           a relative 1e-9 of it
//
// The run.cmake test passes the number printed by the same program built in the library's
// own build (eqprop_downstream_reference): the two agree to rounding only, not bit for
// bit, because Eigen templates instantiated in both the program (default flags) and the
// library (-march=native) are merged by the linker, so some reductions run in the
// program's SSE2 code.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "eqprop/build_info.hpp"
#include "eqprop/dynamics/relax.hpp"

int main(int argc, char** argv) {
  eqprop::network_spec spec;
  spec.sizes = {4, 16, 8};
  spec.n_readout = 3;
  spec.seed = 7;
  const eqprop::layered_network<double> net(spec);

  const long batch = 5;
  eqprop::matrix<double> x(4, batch);
  for (long i = 0; i < x.size(); ++i) x.data()[i] = 0.1 * double(i % 7) - 0.3;
  const std::vector<int32_t> labels{0, 1, 2, 0, 1};
  // Allocated by the library, freed here: the two sides must agree on Eigen's allocator.
  const eqprop::matrix<double> y = eqprop::one_hot<double>(labels, 3);

  eqprop::relax_state<double> state;
  state.set_input(net, x, y);
  eqprop::relax_options opt;
  opt.max_steps = 50;
  const eqprop::relax_report report = state.relax(net, 0.0, opt);
  std::fprintf(stderr, "eqprop %s: %ld steps, max residual %g\n", eqprop::build::version, report.steps,
               report.max_residual);
  const double cost = state.mean_cost(net);
  std::printf("%.17g\n", cost);
  if (!std::isfinite(cost)) return 1;
  if (argc > 1) {
    const double expected = std::strtod(argv[1], nullptr);
    if (!(std::abs(cost - expected) <= 1e-9 * std::abs(expected))) {
      std::fprintf(stderr, "expected %.17g\n", expected);
      return 1;
    }
  }
  return 0;
}
