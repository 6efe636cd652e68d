// A restricted reader for Python pickles of (nested) dicts of NumPy arrays, such as the
// frozen MNIST-1D data set. It is a small stack machine over the pickle opcodes that
// `pickle.dump` writes for such data with protocol 3 or 4 (NumPy arrays pickled with
// protocol 2 or 5 refer to other globals and are refused); it never imports or calls
// anything. The only globals it accepts are numpy.core.multiarray._reconstruct,
// numpy.ndarray and numpy.dtype, and it interprets them itself: an array is rebuilt from
// its pickled dtype, shape, order flag and raw bytes. See docs/datasets.md.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "eqprop/core/error.hpp"

namespace eqprop {

/// One NumPy array from a pickle: its dtype, shape and raw bytes as stored.
struct pickled_array {
  std::string descr;           ///< as in a .npy header: byte order, kind, item size ("<f8", "|u1", ">i4")
  std::vector<long> shape;     ///< empty for a 0-d array
  bool fortran_order = false;  ///< true: data are in column-major order
  std::vector<uint8_t> data;   ///< element count x item size bytes
};

/// The arrays of a pickled dict.
struct numpy_pickle {
  /// Every array reachable from the top-level dict through string-keyed dicts, by its
  /// key path joined with '/' ("x", "templates/x").
  std::map<std::string, pickled_array> arrays;
  /// Key paths of the other entries (numbers, strings, lists...): kept out of `arrays`.
  std::vector<std::string> other;
  std::string source;  ///< the file name (or the name given to parse_numpy_pickle)

  /// The array at `key`; data_error naming the source and the key when there is none.
  const pickled_array& at(const std::string& key) const;
};

/// Reads a pickle whose top-level object is a dict. Supported opcodes: PROTO, FRAME, STOP,
/// MARK, POP, POP_MARK, DUP, the binary ints (BININT, BININT1, BININT2, LONG1 up to 8
/// bytes), BINFLOAT, NONE, NEWTRUE, NEWFALSE, the binary strings and bytes (BINUNICODE,
/// SHORT_BINUNICODE, BINUNICODE8, SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8),
/// EMPTY_TUPLE/LIST/DICT, TUPLE, TUPLE1..3, LIST, DICT, APPEND(S), SETITEM(S), the memo
/// (BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET), GLOBAL, STACK_GLOBAL, REDUCE and
/// BUILD. Anything else, a global outside the three allowed ones, a dtype other than
/// bool, integers and floats (b1, i1..i8, u1..u8, f2, f4, f8) or a malformed array is a
/// data_error naming the source and the byte offset of the opcode; so are truncated input,
/// a stack underflow, an undefined memo key, bytes after STOP, dicts nested more than 32
/// levels and dicts or array data referenced twice. Memory stays proportional to the input.
numpy_pickle parse_numpy_pickle(std::span<const uint8_t> bytes, const std::string& source);
/// The same for a file (a regular file; data_error naming it otherwise).
numpy_pickle read_numpy_pickle(const std::filesystem::path& file);

/// The .npy file (format 1.0, 2.0 when the header needs it) that numpy.save (NumPy 1.24)
/// writes for an array with this dtype, shape, order and raw data, byte for byte.
std::vector<uint8_t> npy_file_bytes(const std::string& descr, const std::vector<long>& shape, bool fortran_order,
                                    std::span<const uint8_t> data);
inline std::vector<uint8_t> npy_file_bytes(const pickled_array& a) {
  return npy_file_bytes(a.descr, a.shape, a.fortran_order, a.data);
}

}  // namespace eqprop
