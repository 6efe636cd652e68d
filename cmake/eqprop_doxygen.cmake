# The C++ reference (cmake -P): runs doxygen on docs/Doxyfile from SOURCE_DIR, writing
# OUTPUT_DIR/html, with PROJECT_NUMBER = VERSION. Used by the `docs` target and the test
# Docs.Doxygen. Doxygen's warnings are printed; it fails (FATAL_ERROR) when doxygen exits
# non-zero, prints an error, writes no OUTPUT_DIR/html/index.html, or leaves a public header
# of include/eqprop out of the file list.
# Inputs: DOXYGEN (the executable), SOURCE_DIR, OUTPUT_DIR (emptied first), VERSION.
foreach(v DOXYGEN SOURCE_DIR OUTPUT_DIR VERSION)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "eqprop_doxygen.cmake needs -D${v}=...")
  endif()
endforeach()

file(REMOVE_RECURSE ${OUTPUT_DIR})
file(MAKE_DIRECTORY ${OUTPUT_DIR})
# The repository's Doxyfile, then what this build decides (later assignments win).
set(doxyfile ${OUTPUT_DIR}/Doxyfile)
file(WRITE ${doxyfile} "@INCLUDE = \"${SOURCE_DIR}/docs/Doxyfile\"\n"
                       "OUTPUT_DIRECTORY = \"${OUTPUT_DIR}\"\n"
                       "PROJECT_NUMBER = ${VERSION}\n")
execute_process(COMMAND ${DOXYGEN} ${doxyfile} WORKING_DIRECTORY ${SOURCE_DIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(err)
  message("${err}")
endif()
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "doxygen failed (${rc}):\n${out}")
endif()
if(err MATCHES "(^|\n)[^\n]*error:[^\n]*")
  message(FATAL_ERROR "doxygen reported an error:${CMAKE_MATCH_0}")
endif()
set(index ${OUTPUT_DIR}/html/index.html)
if(NOT EXISTS ${index})
  message(FATAL_ERROR "doxygen wrote no ${index}")
endif()
file(READ ${OUTPUT_DIR}/html/files.html files_page)
file(GLOB_RECURSE headers RELATIVE ${SOURCE_DIR}/include ${SOURCE_DIR}/include/eqprop/*.hpp)
set(missing)
foreach(h ${headers})
  get_filename_component(name ${h} NAME)
  string(FIND "${files_page}" ">${name}<" at)
  if(at EQUAL -1)
    list(APPEND missing ${h})
  endif()
endforeach()
if(missing)
  message(FATAL_ERROR "headers missing from the reference's file list: ${missing}")
endif()
message(STATUS "C++ reference: ${index}")
