# The instruction set of every eqprop target: EQPROP_MARCH when set (any -march value, e.g.
# x86-64-v4 to build AVX-512 code on a machine without it), else EQPROP_NATIVE.
set(EQPROP_MARCH "" CACHE STRING "-march value of every eqprop target (empty: native, or x86-64-v2 with EQPROP_NATIVE=OFF)")
if(EQPROP_MARCH)
  set(EQPROP_ARCH_FLAG -march=${EQPROP_MARCH})
elseif(EQPROP_NATIVE)
  set(EQPROP_ARCH_FLAG -march=native)
else()
  set(EQPROP_ARCH_FLAG -march=x86-64-v2)
endif()

# Compiler flags shared by every eqprop target.
function(eqprop_set_flags target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(EQPROP_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  target_compile_options(${target} PRIVATE ${EQPROP_ARCH_FLAG})
  # Marks the target as compiled with the library's instruction set, hence with its Eigen
  # alignment (the eqprop target's interface then adds no EIGEN_MAX_*_ALIGN_BYTES).
  set_target_properties(${target} PROPERTIES EQPROP_ARCH "${EQPROP_ARCH_FLAG}")
  if(EQPROP_SANITIZE)
    # -fno-sanitize=alignment: Eigen 3.4's AVX-512 pset1<Packet8cf> broadcasts a
    # std::complex<float> (4-byte aligned) by loading it as one double, a misaligned-type
    # load inside Eigen that is legal on x86 and not in eqprop's code; every other UB check
    # stays on and fatal.
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize=alignment -fno-omit-frame-pointer
                           -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()
