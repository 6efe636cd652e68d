// Build and machine information printed by every command and saved with every run.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace eqprop {

std::string vector_isa_compiled();  ///< widest vector ISA the library was compiled for ("AVX-512", "AVX2+FMA", ...)
std::string vector_isa_cpu();       ///< widest vector ISA this CPU supports at run time
std::string linalg_backend();       ///< dense linear-algebra backend and its configuration
nlohmann::json build_info_json();   ///< version, git commit, build type, compiler, ISA, backend, threads
std::string build_info_line();      ///< one line for logs

}  // namespace eqprop
