# ctest Install.DownstreamCMakeAndPkgConfig (cmake -P): installs BUILD_DIR into a temporary
# prefix, builds main.cpp of this folder against it with the compiler's default flags,
# (1) as a CMake project using find_package(eqprop CONFIG) and eqprop::eqprop, and (2) with
# `CXX -std=c++20 main.cpp $(pkg-config --cflags --libs eqprop)`; each program must exit 0
# and print a number within a relative 1e-9 of what REFERENCE (the same program built in
# BUILD_DIR) prints (main.cpp says why not exactly).
# Inputs: BUILD_DIR, SOURCE_DIR, REFERENCE, CXX, LIBDIR (CMAKE_INSTALL_LIBDIR).
set(prefix ${BUILD_DIR}/downstream-test/prefix)
set(work ${BUILD_DIR}/downstream-test)
file(REMOVE_RECURSE ${work})

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${ARGN}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

run("reference program" ${REFERENCE})
string(STRIP "${out}" expected)
if(NOT expected MATCHES "^[-+0-9.e]+$")
  message(FATAL_ERROR "reference program printed '${expected}', not one finite number")
endif()

run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/eqprop/build_info.hpp include/eqprop/model/layered_network.hpp)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

# (1) CMake package, default flags (no CMAKE_BUILD_TYPE, no -march).
find_program(CCACHE ccache)
set(launcher)
if(CCACHE)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${CCACHE})
endif()
run("downstream configure" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/downstream -B ${work}/cmake
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix} ${launcher})
run("downstream build" ${CMAKE_COMMAND} --build ${work}/cmake)
run("downstream program (find_package)" ${work}/cmake/downstream ${expected})
string(STRIP "${out}" got_cmake)

# (2) pkg-config, default flags.
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} ${prefix}/${LIBDIR}/pkgconfig)
run("pkg-config" ${PKG_CONFIG} --cflags --libs eqprop)
separate_arguments(pc_flags UNIX_COMMAND "${out}")
run("g++ with pkg-config flags" ${CCACHE} ${CXX} -std=c++20 ${SOURCE_DIR}/tests/downstream/main.cpp ${pc_flags}
    -o ${work}/downstream_pc)
run("downstream program (pkg-config)" ${work}/downstream_pc ${expected})
string(STRIP "${out}" got_pc)
message(STATUS "reference ${expected}, find_package program ${got_cmake}, pkg-config program ${got_pc}")
