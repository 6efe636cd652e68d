// Restricted pickle reader for dicts of NumPy arrays (see eqprop/io/numpy_pickle.hpp). The
// unpickler is a stack machine whose values live in an arena owned by the reader, so
// reference cycles and deep nesting that a hostile pickle can build cost neither leaks
// nor recursion; only the final walk over the result dict recurses, to a bounded depth.
#include "eqprop/io/numpy_pickle.hpp"

#include <bit>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io_internal.hpp"

namespace eqprop {

namespace {

enum class kind : uint8_t { none, boolean, integer, real, text, bytes, tuple, list, dict, global, dtype, array };

const char* kind_name(kind k) {
  switch (k) {
    case kind::none:
      return "None";
    case kind::boolean:
      return "a bool";
    case kind::integer:
      return "an int";
    case kind::real:
      return "a float";
    case kind::text:
      return "a str";
    case kind::bytes:
      return "a bytes object";
    case kind::tuple:
      return "a tuple";
    case kind::list:
      return "a list";
    case kind::dict:
      return "a dict";
    case kind::global:
      return "a global";
    case kind::dtype:
      return "a numpy.dtype";
    case kind::array:
      return "a numpy.ndarray";
  }
  return "?";
}

// The three globals a NumPy array pickle refers to.
enum class global_id : uint8_t { reconstruct, ndarray, dtype };

struct node {
  kind k = kind::none;
  bool built = false;           // dtype: byte order set by BUILD; array: state set by BUILD
  bool visited = false;         // dict: already walked by collect()
  char byteorder = '=';         // dtype
  char dtype_kind = 0;          // dtype: 'b', 'i', 'u' or 'f'
  global_id g{};                // global
  int64_t i = 0;                // boolean, integer; dtype: item size
  double f = 0;                 // real
  size_t off = 0, len = 0;      // text, bytes: a slice of the input
  std::vector<uint32_t> items;  // tuple, list; dict: key, value, key, value...
  // array, once built:
  std::string descr;
  std::vector<long> shape;
  bool fortran = false;
  uint32_t data = 0;  // the bytes node holding the raw data
};

constexpr int max_dict_depth = 32;

class unpickler {
 public:
  unpickler(std::span<const uint8_t> in, const std::string& source) : in_(in), source_(source) {}

  numpy_pickle run() {
    if (in_.empty() || in_[0] != 0x80)
      throw data_error(fmt::format(
          "{}: not a pickle of protocol 2 or later (it does not start with the PROTO opcode 0x80{})", source_,
          in_.empty() ? "; the file is empty" : fmt::format("; the first byte is 0x{:02x}", in_[0])));
    for (;;) {
      op_ = pos_;
      if (pos_ >= in_.size())
        throw data_error(
            fmt::format("{}: pickle truncated: it ends at offset {} without a STOP opcode", source_, in_.size()));
      const uint8_t code = in_[pos_++];
      if (code == '.') break;
      step(code);
    }
    if (pos_ != in_.size())
      fail(fmt::format("{} bytes follow the STOP opcode (the file is longer than the pickle)", in_.size() - pos_));
    if (stack_.size() <= fence()) fail("STOP with an empty stack");
    const uint32_t top = stack_.back();
    if (nodes_[top].k != kind::dict)
      fail(fmt::format("the pickled object is {}, not a dict of arrays", kind_name(nodes_[top].k)));
    numpy_pickle out;
    out.source = source_;
    collect(top, "", 0, out);
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw data_error(fmt::format("{}: bad pickle at offset {}: {}", source_, op_, what));
  }
  [[noreturn]] void truncated(const char* opname, uint64_t need) const {
    throw data_error(fmt::format("{}: pickle truncated at offset {}: opcode {} needs {} more byte{}, only {} remain",
                                 source_, op_, opname, need, need == 1 ? "" : "s", in_.size() - pos_));
  }

  // Reading the argument bytes of the current opcode.
  const uint8_t* take(uint64_t n, const char* opname) {
    if (n > in_.size() - pos_) truncated(opname, n);
    const uint8_t* p = in_.data() + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  uint64_t le(int n, const char* opname) {
    const uint8_t* p = take(static_cast<uint64_t>(n), opname);
    uint64_t v = 0;
    for (int k = n; k-- > 0;) v = (v << 8) | p[k];
    return v;
  }
  std::string_view line(const char* opname) {
    const size_t start = pos_;
    while (pos_ < in_.size() && in_[pos_] != '\n') ++pos_;
    if (pos_ >= in_.size())
      throw data_error(
          fmt::format("{}: pickle truncated at offset {}: opcode {} has no end of line", source_, op_, opname));
    ++pos_;
    return {reinterpret_cast<const char*>(in_.data() + start), pos_ - 1 - start};
  }
  std::string_view slice(const node& n) const { return {reinterpret_cast<const char*>(in_.data() + n.off), n.len}; }

  // The value stack, with CPython's fence: nothing below the innermost MARK may be popped.
  size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }
  uint32_t push(node n) {
    if (nodes_.size() >= std::numeric_limits<uint32_t>::max()) fail("too many objects");
    nodes_.push_back(std::move(n));
    const auto id = static_cast<uint32_t>(nodes_.size() - 1);
    stack_.push_back(id);
    return id;
  }
  uint32_t pop(const char* opname) {
    if (stack_.size() <= fence()) fail(fmt::format("stack underflow in {}", opname));
    const uint32_t id = stack_.back();
    stack_.pop_back();
    return id;
  }
  uint32_t top(const char* opname) const {
    if (stack_.size() <= fence()) fail(fmt::format("stack underflow in {}", opname));
    return stack_.back();
  }
  std::vector<uint32_t> pop_mark(const char* opname) {
    if (marks_.empty()) fail(fmt::format("{} without a MARK", opname));
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  node& at(uint32_t id) { return nodes_[id]; }

  void memo_put(uint64_t key, const char* opname) {
    if (memo_.size() >= in_.size()) fail("too many memo entries");
    memo_[key] = top(opname);
  }
  void memo_get(uint64_t key) {
    const auto it = memo_.find(key);
    if (it == memo_.end()) fail(fmt::format("memo key {} is not defined", key));
    stack_.push_back(it->second);
  }

  void push_text(uint64_t n, const char* opname) {
    const uint8_t* p = take(n, opname);
    node v;
    v.k = kind::text;
    v.off = static_cast<size_t>(p - in_.data());
    v.len = static_cast<size_t>(n);
    push(std::move(v));
  }
  void push_bytes(uint64_t n, const char* opname) {
    push_text(n, opname);
    nodes_.back().k = kind::bytes;
  }
  void push_int(int64_t v) {
    node n;
    n.k = kind::integer;
    n.i = v;
    push(std::move(n));
  }
  void push_container(kind k, std::vector<uint32_t> items) {
    node n;
    n.k = k;
    n.items = std::move(items);
    push(std::move(n));
  }

  void push_global(std::string_view module, std::string_view name) {
    node g;
    g.k = kind::global;
    if (module == "numpy.core.multiarray" && name == "_reconstruct") g.g = global_id::reconstruct;
    else if (module == "numpy" && name == "ndarray") g.g = global_id::ndarray;
    else if (module == "numpy" && name == "dtype") g.g = global_id::dtype;
    else
      fail(fmt::format(
          "refusing the global '{}.{}': only numpy.core.multiarray._reconstruct, numpy.ndarray and numpy.dtype are "
          "allowed (nothing in the pickle is imported or executed)",
          printable(module), printable(name)));
    push(std::move(g));
  }
  static std::string printable(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 80)) {
      const auto u = static_cast<unsigned char>(c);
      out += u >= 0x20 && u < 0x7f ? std::string(1, c) : fmt::format("\\x{:02x}", u);
    }
    if (s.size() > 80) out += "...";
    return out;
  }

  // REDUCE: only _reconstruct(ndarray, shape, b'...') and dtype(name, align, copy).
  void reduce() {
    const uint32_t args_id = pop("REDUCE"), fn_id = pop("REDUCE");
    const node& fn = at(fn_id);
    const node& args = at(args_id);
    if (fn.k != kind::global) fail(fmt::format("REDUCE calls {}, not an allowed global", kind_name(fn.k)));
    if (args.k != kind::tuple) fail(fmt::format("REDUCE arguments are {}, not a tuple", kind_name(args.k)));
    if (fn.g == global_id::ndarray) fail("calling numpy.ndarray directly is not supported (expected _reconstruct)");
    if (fn.g == global_id::reconstruct) {
      if (args.items.size() != 3 || at(args.items[0]).k != kind::global || at(args.items[0]).g != global_id::ndarray)
        fail("_reconstruct must be called as _reconstruct(numpy.ndarray, shape, typecode)");
      node a;
      a.k = kind::array;
      push(std::move(a));
      return;
    }
    // numpy.dtype(name, align, copy)
    if (args.items.empty() || args.items.size() > 3 || at(args.items[0]).k != kind::text)
      fail("numpy.dtype must be called with a type name such as 'f8'");
    const std::string_view name = slice(at(args.items[0]));
    int size = 0;
    bool ok = name.size() == 2 && name[1] >= '1' && name[1] <= '8';
    if (ok) size = name[1] - '0';
    const char k = name.empty() ? '?' : name[0];
    ok = ok &&
         ((k == 'b' && size == 1) || ((k == 'i' || k == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
          (k == 'f' && (size == 2 || size == 4 || size == 8)));
    if (!ok) fail(fmt::format("unsupported dtype '{}' (supported: b1, i1..i8, u1..u8, f2, f4, f8)", printable(name)));
    node d;
    d.k = kind::dtype;
    d.dtype_kind = k;
    d.i = size;
    push(std::move(d));
  }

  // BUILD: the state of a dtype (byte order) or of an array (shape, dtype, order, data).
  void build() {
    const uint32_t state_id = pop("BUILD");
    const uint32_t target_id = top("BUILD");
    const node& state = at(state_id);
    if (at(target_id).k == kind::dtype) {
      // (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
      if (state.k != kind::tuple || state.items.size() < 2 || at(state.items[1]).k != kind::text)
        fail("the state of a numpy.dtype must be a tuple (version, byteorder, ...)");
      for (size_t j = 2; j < 5 && j < state.items.size(); ++j)
        if (at(state.items[j]).k != kind::none)
          fail("structured and subarray dtypes are not supported (the dtype state has fields or a subarray)");
      const std::string_view order = slice(at(state.items[1]));
      if (order.size() != 1 || std::string_view("<>|=").find(order[0]) == std::string_view::npos)
        fail(fmt::format("bad dtype byte order '{}' (expected <, >, | or =)", printable(order)));
      node& d = at(target_id);
      d.byteorder = order[0];
      d.built = true;
      return;
    }
    if (at(target_id).k != kind::array)
      fail(fmt::format("BUILD on {} is not supported (only numpy arrays and dtypes)", kind_name(at(target_id).k)));
    if (at(target_id).built) fail("BUILD applied twice to one array");
    // (version, shape, dtype, is_fortran, rawdata), or the same without the version.
    if (state.k != kind::tuple || (state.items.size() != 5 && state.items.size() != 4))
      fail("the state of a numpy array must be a tuple (version, shape, dtype, is_fortran, data)");
    const size_t b = state.items.size() - 4;
    const node& shape = at(state.items[b]);
    const node& dt = at(state.items[b + 1]);
    const node& fortran = at(state.items[b + 2]);
    const node& data = at(state.items[b + 3]);
    if (shape.k != kind::tuple) fail(fmt::format("the array shape is {}, not a tuple", kind_name(shape.k)));
    if (dt.k != kind::dtype) fail(fmt::format("the array dtype is {}, not a numpy.dtype", kind_name(dt.k)));
    if (fortran.k != kind::boolean && fortran.k != kind::integer)
      fail(fmt::format("the array order flag is {}, not a bool", kind_name(fortran.k)));
    if (data.k == kind::list) fail("object arrays (data pickled as a list) are not supported");
    if (data.k != kind::bytes)
      fail(
          fmt::format("the array data are {}, not bytes (pickles of protocol 2 written by Python 3 encode them "
                      "through a global, which is refused: re-save with protocol 3 or later)",
                      kind_name(data.k)));
    std::vector<long> dims;
    unsigned __int128 count = 1;
    for (uint32_t d : shape.items) {
      const node& v = at(d);
      if (v.k != kind::integer || v.i < 0 || v.i >= (int64_t{1} << 48))
        fail("array dimensions must be integers in [0, 2^48)");
      dims.push_back(static_cast<long>(v.i));
      count = std::min<unsigned __int128>(count * static_cast<unsigned __int128>(v.i),
                                          std::numeric_limits<uint64_t>::max());
    }
    if (dims.size() > 32) fail(fmt::format("an array of {} dimensions (at most 32)", dims.size()));
    const unsigned __int128 need = count * static_cast<unsigned>(dt.i);
    if (need != data.len)
      fail(fmt::format("array of shape ({}) and dtype {}{} needs {} data bytes, but {} are pickled",
                       fmt::join(dims, ", "), dt.dtype_kind, dt.i,
                       static_cast<unsigned long long>(std::min<unsigned __int128>(need, UINT64_MAX)), data.len));
    char order = dt.byteorder;
    if (order == '=') order = std::endian::native == std::endian::little ? '<' : '>';
    if (dt.i == 1) order = '|';
    node& a = at(target_id);
    a.descr = fmt::format("{}{}{}", order, dt.dtype_kind, dt.i);
    a.shape = std::move(dims);
    a.fortran = fortran.i != 0;
    a.data = state.items[b + 3];
    a.built = true;
  }

  void step(uint8_t code) {
    switch (code) {
      case 0x80: {  // PROTO
        const auto v = le(1, "PROTO");
        if (v < 2 || v > 5) fail(fmt::format("unsupported pickle protocol {} (supported: 2 to 5)", v));
        return;
      }
      case 0x95: {  // FRAME: a length hint only
        const uint64_t n = le(8, "FRAME");
        if (n > in_.size() - pos_) truncated("FRAME", n);
        return;
      }
      case '(':  // MARK
        marks_.push_back(stack_.size());
        return;
      case '0':  // POP
        pop("POP");
        return;
      case '1':  // POP_MARK
        pop_mark("POP_MARK");
        return;
      case '2':  // DUP
        stack_.push_back(top("DUP"));
        return;
      case 'N': {  // NONE
        push(node{});
        return;
      }
      case 0x88:    // NEWTRUE
      case 0x89: {  // NEWFALSE
        node n;
        n.k = kind::boolean;
        n.i = code == 0x88;
        push(std::move(n));
        return;
      }
      case 'J':  // BININT
        push_int(static_cast<int32_t>(static_cast<uint32_t>(le(4, "BININT"))));
        return;
      case 'K':  // BININT1
        push_int(static_cast<int64_t>(le(1, "BININT1")));
        return;
      case 'M':  // BININT2
        push_int(static_cast<int64_t>(le(2, "BININT2")));
        return;
      case 0x8a: {  // LONG1: n bytes, little-endian two's complement
        const auto n = static_cast<int>(le(1, "LONG1"));
        if (n > 8) fail(fmt::format("LONG1 integer of {} bytes (at most 8 are supported)", n));
        uint64_t v = le(n, "LONG1");
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
        push_int(static_cast<int64_t>(v));
        return;
      }
      case 'G': {  // BINFLOAT: big-endian double
        const uint8_t* p = take(8, "BINFLOAT");
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
        node n;
        n.k = kind::real;
        n.f = std::bit_cast<double>(bits);
        push(std::move(n));
        return;
      }
      case 'X':  // BINUNICODE
        push_text(le(4, "BINUNICODE"), "BINUNICODE");
        return;
      case 0x8c:  // SHORT_BINUNICODE
        push_text(le(1, "SHORT_BINUNICODE"), "SHORT_BINUNICODE");
        return;
      case 0x8d:  // BINUNICODE8
        push_text(le(8, "BINUNICODE8"), "BINUNICODE8");
        return;
      case 'C':  // SHORT_BINBYTES
        push_bytes(le(1, "SHORT_BINBYTES"), "SHORT_BINBYTES");
        return;
      case 'B':  // BINBYTES
        push_bytes(le(4, "BINBYTES"), "BINBYTES");
        return;
      case 0x8e:  // BINBYTES8
        push_bytes(le(8, "BINBYTES8"), "BINBYTES8");
        return;
      case 0x96:  // BYTEARRAY8
        push_bytes(le(8, "BYTEARRAY8"), "BYTEARRAY8");
        return;
      case ')':  // EMPTY_TUPLE
        push_container(kind::tuple, {});
        return;
      case ']':  // EMPTY_LIST
        push_container(kind::list, {});
        return;
      case '}':  // EMPTY_DICT
        push_container(kind::dict, {});
        return;
      case 't':  // TUPLE
        push_container(kind::tuple, pop_mark("TUPLE"));
        return;
      case 0x85:    // TUPLE1
      case 0x86:    // TUPLE2
      case 0x87: {  // TUPLE3
        const size_t n = code - 0x84u;
        if (stack_.size() < fence() + n) fail(fmt::format("stack underflow in TUPLE{}", n));
        std::vector<uint32_t> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
        stack_.resize(stack_.size() - n);
        push_container(kind::tuple, std::move(items));
        return;
      }
      case 'l':  // LIST
        push_container(kind::list, pop_mark("LIST"));
        return;
      case 'd': {  // DICT
        std::vector<uint32_t> items = pop_mark("DICT");
        if (items.size() % 2) fail("DICT with an odd number of items");
        push_container(kind::dict, std::move(items));
        return;
      }
      case 'a': {  // APPEND
        const uint32_t v = pop("APPEND");
        node& l = at(top("APPEND"));
        if (l.k != kind::list) fail(fmt::format("APPEND to {}, not a list", kind_name(l.k)));
        l.items.push_back(v);
        return;
      }
      case 'e': {  // APPENDS
        const std::vector<uint32_t> items = pop_mark("APPENDS");
        node& l = at(top("APPENDS"));
        if (l.k != kind::list) fail(fmt::format("APPENDS to {}, not a list", kind_name(l.k)));
        l.items.insert(l.items.end(), items.begin(), items.end());
        return;
      }
      case 's': {  // SETITEM
        const uint32_t v = pop("SETITEM"), k = pop("SETITEM");
        node& d = at(top("SETITEM"));
        if (d.k != kind::dict) fail(fmt::format("SETITEM on {}, not a dict", kind_name(d.k)));
        d.items.push_back(k);
        d.items.push_back(v);
        return;
      }
      case 'u': {  // SETITEMS
        const std::vector<uint32_t> items = pop_mark("SETITEMS");
        if (items.size() % 2) fail("SETITEMS with an odd number of items");
        node& d = at(top("SETITEMS"));
        if (d.k != kind::dict) fail(fmt::format("SETITEMS on {}, not a dict", kind_name(d.k)));
        d.items.insert(d.items.end(), items.begin(), items.end());
        return;
      }
      case 'q':  // BINPUT
        memo_put(le(1, "BINPUT"), "BINPUT");
        return;
      case 'r':  // LONG_BINPUT
        memo_put(le(4, "LONG_BINPUT"), "LONG_BINPUT");
        return;
      case 0x94:  // MEMOIZE
        memo_put(memo_.size(), "MEMOIZE");
        return;
      case 'h':  // BINGET
        memo_get(le(1, "BINGET"));
        return;
      case 'j':  // LONG_BINGET
        memo_get(le(4, "LONG_BINGET"));
        return;
      case 'c': {  // GLOBAL "module\nname\n"
        const std::string_view module = line("GLOBAL");
        const std::string_view name = line("GLOBAL");
        push_global(module, name);
        return;
      }
      case 0x93: {  // STACK_GLOBAL
        const uint32_t name = pop("STACK_GLOBAL"), module = pop("STACK_GLOBAL");
        if (at(name).k != kind::text || at(module).k != kind::text)
          fail("STACK_GLOBAL needs two strings (module and name)");
        push_global(slice(at(module)), slice(at(name)));
        return;
      }
      case 'R':  // REDUCE
        reduce();
        return;
      case 'b':  // BUILD
        build();
        return;
      default:
        fail(
            fmt::format("unsupported pickle opcode 0x{:02x}{} (this reader accepts only the opcodes of a pickled "
                        "dict of NumPy arrays)",
                        code, code >= 0x20 && code < 0x7f ? fmt::format(" ('{}')", char(code)) : ""));
    }
  }

  // Flattens the result dict into out, recursing into string-keyed dicts. A dict is walked
  // once (a shared or cyclic one is refused), and the arrays may not hold more bytes than
  // the pickle (shared data would multiply them), so the walk is linear in the input.
  void collect(uint32_t dict_id, const std::string& prefix, int depth, numpy_pickle& out) {
    if (depth >= max_dict_depth)
      throw data_error(
          fmt::format("{}: pickle: dicts nested more than {} levels deep (at '{}')", source_, max_dict_depth, prefix));
    if (at(dict_id).visited)
      throw data_error(
          fmt::format("{}: pickle: the dict at '{}' was seen before (shared or cyclic references are not supported)",
                      source_, prefix));
    at(dict_id).visited = true;
    const std::vector<uint32_t> items = at(dict_id).items;  // a copy: at() references stay valid below
    for (size_t j = 0; j + 1 < items.size(); j += 2) {
      const node& key = at(items[j]);
      const std::string name =
          prefix + (key.k == kind::text ? printable(slice(key)) : fmt::format("<{} key>", kind_name(key.k)));
      const node& v = at(items[j + 1]);
      if (key.k == kind::text && v.k == kind::dict) {
        collect(items[j + 1], name + "/", depth + 1, out);
      } else if (key.k == kind::text && v.k == kind::array) {
        if (!v.built)
          throw data_error(fmt::format("{}: pickle: the array '{}' never received its data (no BUILD)", source_, name));
        const node& data = at(v.data);
        collected_ += data.len;
        if (collected_ > in_.size())
          throw data_error(fmt::format(
              "{}: pickle: the arrays up to '{}' hold more bytes than the pickle itself (shared array data are not "
              "supported)",
              source_, name));
        pickled_array a;
        a.descr = v.descr;
        a.shape = v.shape;
        a.fortran_order = v.fortran;
        a.data.assign(in_.begin() + static_cast<std::ptrdiff_t>(data.off),
                      in_.begin() + static_cast<std::ptrdiff_t>(data.off + data.len));
        out.arrays.insert_or_assign(name, std::move(a));
      } else {
        out.other.push_back(name);
      }
    }
  }

  std::span<const uint8_t> in_;
  const std::string& source_;
  size_t pos_ = 0, op_ = 0;
  std::vector<node> nodes_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, uint32_t> memo_;
  uint64_t collected_ = 0;  // array bytes returned so far
};

}  // namespace

const pickled_array& numpy_pickle::at(const std::string& key) const {
  const auto it = arrays.find(key);
  if (it == arrays.end()) {
    std::vector<std::string> names;
    for (const auto& [k, v] : arrays) {
      if (names.size() == 20) {
        names.push_back("...");
        break;
      }
      names.push_back(k);
    }
    throw data_error(fmt::format("{}: the pickle has no array '{}' (it has: {})", source, key,
                                 names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "))));
  }
  return it->second;
}

numpy_pickle parse_numpy_pickle(std::span<const uint8_t> bytes, const std::string& source) {
  return unpickler(bytes, source).run();
}

numpy_pickle read_numpy_pickle(const std::filesystem::path& file) {
  const std::vector<uint8_t> bytes = io_detail::read_file_bytes(file);
  return parse_numpy_pickle(bytes, io_detail::display(file));
}

std::vector<uint8_t> npy_file_bytes(const std::string& descr, const std::vector<long>& shape, bool fortran_order,
                                    std::span<const uint8_t> data) {
  // numpy.lib.format (NumPy 1.24): the repr of a dict with sorted keys, then room for the
  // growth axis to reach 21 digits, then spaces and '\n' up to a multiple of 64 bytes
  // (magic and length included; a full 64 when already aligned).
  // Data that are C-contiguous too (at most one dimension above 1, or none at all) are
  // saved in C order, as numpy.save does.
  size_t long_dims = 0;
  bool empty = false;
  for (long d : shape) {
    long_dims += d > 1 ? 1 : 0;
    empty = empty || d == 0;
  }
  if (long_dims <= 1 || empty) fortran_order = false;
  std::string shape_text = "(";
  for (size_t k = 0; k < shape.size(); ++k) shape_text += fmt::format("{}{}", k ? ", " : "", shape[k]);
  shape_text += shape.size() == 1 ? ",)" : ")";
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}", descr,
                                   fortran_order ? "True" : "False", shape_text);
  if (!shape.empty()) {
    const size_t digits = fmt::format("{}", fortran_order ? shape.back() : shape.front()).size();
    if (digits < 21) header.append(21 - digits, ' ');
  }
  const size_t pad1 = 64 - (10 + header.size() + 1) % 64;
  const bool v1 = header.size() + 1 + pad1 <= 65535;  // else format 2.0, with a 4-byte length
  const size_t prefix = v1 ? 10 : 12;
  const size_t pad = v1 ? pad1 : 64 - (12 + header.size() + 1) % 64;
  header.append(pad, ' ');
  header += '\n';
  std::vector<uint8_t> out;
  out.reserve(prefix + header.size() + data.size());
  const uint8_t magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(v1 ? 1 : 2), 0};
  out.insert(out.end(), magic, magic + 8);
  const size_t len = header.size();
  for (size_t k = 0; k < (v1 ? 2u : 4u); ++k) out.push_back(static_cast<uint8_t>(len >> (8 * k)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

}  // namespace eqprop
