# Writes OUT, a source file defining eqprop::build::git_commit from `git describe` of SRC
# (12-hex commit, "-dirty" when tracked files differ from it; "unknown" without git), and
# rewrites it only when that changes, so a build recompiles one small file after a commit.
execute_process(COMMAND git describe --always --dirty --abbrev=12 --match=NONE WORKING_DIRECTORY ${SRC}
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT commit)
  set(commit "unknown")
endif()
set(text "// Generated at build time by cmake/git_commit.cmake.\n#include \"eqprop/build_info.hpp\"\nnamespace eqprop::build {\nconst char* const git_commit = \"${commit}\";\n}  // namespace eqprop::build\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
else()
  set(old "")
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
