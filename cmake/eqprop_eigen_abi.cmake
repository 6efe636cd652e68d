# Eigen's ABI macros of the library, exported to every consumer.
#
# Eigen chooses its alignment from the instruction set: with -march=native on an AVX-512
# CPU, EIGEN_MAX_ALIGN_BYTES is 64 and dynamic matrices come from Eigen's own aligned
# allocator (an offset stored before the block); with the compiler's default flags (SSE2)
# it is 16 and they come from plain malloc. A matrix allocated on one side and freed on the
# other (e.g. one_hot() returning a matrix) then corrupts the heap ("double free or
# corruption"), and fixed-size members would change layout. eqprop therefore pins both
# macros to the values its flags give and makes them PUBLIC compile definitions of the
# library: the library compiles exactly as before, and a consumer (find_package or
# pkg-config, any -march) agrees with it. The consumer's own code is not made to use
# -march=native: only the allocation and layout rules have to match.
#
# eqprop_eigen_abi(<out_var> <flags...>): sets <out_var> to EIGEN_MAX_ALIGN_BYTES as the
# compiler defines it with <flags> (0, 16, 32 or 64).
include(CheckCXXSourceCompiles)
function(eqprop_eigen_abi out_var)
  get_target_property(_inc Eigen3::Eigen INTERFACE_INCLUDE_DIRECTORIES)
  set(CMAKE_REQUIRED_INCLUDES ${_inc})
  string(REPLACE ";" " " CMAKE_REQUIRED_FLAGS "${ARGN}")
  set(CMAKE_REQUIRED_QUIET ON)
  foreach(n 64 32 16 0)
    string(MAKE_C_IDENTIFIER "EQPROP_EIGEN_ALIGN_${n}_${ARGN}" _var)
    check_cxx_source_compiles("
      #include <Eigen/Core>
      static_assert(EIGEN_MAX_ALIGN_BYTES == ${n} && EIGEN_MAX_STATIC_ALIGN_BYTES == ${n});
      int main() { return 0; }" ${_var})
    if(${_var})
      set(${out_var} ${n} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "eqprop: could not determine Eigen's alignment for flags '${ARGN}'")
endfunction()
