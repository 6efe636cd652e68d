# Compiler flags shared by every eqprop target.
function(eqprop_set_flags target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(EQPROP_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(EQPROP_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  else()
    target_compile_options(${target} PRIVATE -march=x86-64-v2)
  endif()
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
