// A reader for PyTorch's zip checkpoints. The archive is opened with LibTorch's own
// PyTorchStreamReader; `data.pkl` is interpreted by a small pickle machine that knows
// exactly the opcodes and globals torch.save emits for state dicts (LibTorch 1.13's
// pickle_load cannot read an OrderedDict carrying `_metadata`).
#include <cstring>
#include <fstream>
#include <memory>
#include <unordered_map>
#include <variant>

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/safetensors.h"
#include "clr/core/tensor_io.h"

namespace clr {
namespace {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Global {
  std::string module, name;
  std::string qualified() const { return module + "." + name; }
};
struct Storage {
  at::Tensor flat;  // 1-D, the whole storage
};
struct List {
  std::vector<ValuePtr> items;
};
struct Tuple {
  std::vector<ValuePtr> items;
};
struct Dict {
  std::vector<std::pair<ValuePtr, ValuePtr>> items;
};
struct Mark {};
struct None {};

struct Value {
  std::variant<None, bool, int64_t, double, std::string, Global, Storage, at::Tensor, List, Tuple, Dict, Mark>
      v;
  template <typename T>
  bool is() const { return std::holds_alternative<T>(v); }
  template <typename T>
  T& as() { return std::get<T>(v); }
  const char* kind() const {
    static const char* names[] = {"None", "bool", "int", "float", "str", "global", "storage",
                                  "tensor", "list", "tuple", "dict", "mark"};
    return names[v.index()];
  }
};

template <typename T>
ValuePtr make(T x) {
  auto p = std::make_shared<Value>();
  p->v = std::move(x);
  return p;
}

at::ScalarType storage_dtype(const std::string& name, const std::string& path) {
  static const std::unordered_map<std::string, at::ScalarType> table = {
      {"FloatStorage", at::kFloat},   {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong},  {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort},   {"CharStorage", at::kChar},     {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool},
  };
  auto it = table.find(name);
  CLR_CHECK(it != table.end(), FormatError, "'", path, "' stores a tensor of storage type torch.", name,
            ", which clr cannot read (supported: float, double, half, bfloat16, int64/32/16/8, uint8, bool)");
  return it->second;
}

class Unpickler {
 public:
  Unpickler(const std::string& path, caffe2::serialize::PyTorchStreamReader& archive, std::string bytes)
      : path_(path), archive_(archive), data_(std::move(bytes)) {}

  ValuePtr run() {
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;                                  // PROTO
        case 0x95: read_bytes(8); break;                           // FRAME
        case '.': return pop();                                    // STOP
        case '(': push(make(Mark{})); break;                       // MARK
        case 'N': push(make(None{})); break;
        case 0x88: push(make(true)); break;                        // NEWTRUE
        case 0x89: push(make(false)); break;                       // NEWFALSE
        case 'J': push(make<int64_t>(static_cast<int32_t>(le(4)))); break;  // BININT
        case 'K': push(make<int64_t>(le(1))); break;               // BININT1
        case 'M': push(make<int64_t>(le(2))); break;               // BININT2
        case 0x8a: push(make(long1())); break;                     // LONG1
        case 'G': push(make(binfloat())); break;                   // BINFLOAT
        case 'X': push(make(read_bytes(le(4)))); break;            // BINUNICODE
        case 0x8c: push(make(read_bytes(le(1)))); break;           // SHORT_BINUNICODE
        case 'T': push(make(read_bytes(le(4)))); break;            // BINSTRING
        case 'U': push(make(read_bytes(le(1)))); break;            // SHORT_BINSTRING
        case 'B': push(make(read_bytes(le(4)))); break;            // BINBYTES
        case 'C': push(make(read_bytes(le(1)))); break;            // SHORT_BINBYTES
        case ')': push(make(Tuple{})); break;                      // EMPTY_TUPLE
        case ']': push(make(List{})); break;                       // EMPTY_LIST
        case '}': push(make(Dict{})); break;                       // EMPTY_DICT
        case 't': push(make(Tuple{pop_to_mark()})); break;         // TUPLE
        case 'l': push(make(List{pop_to_mark()})); break;          // LIST
        case 0x85: tuple_n(1); break;
        case 0x86: tuple_n(2); break;
        case 0x87: tuple_n(3); break;
        case 'd': {                                                // DICT
          auto items = pop_to_mark();
          Dict d;
          for (size_t i = 0; i + 1 < items.size(); i += 2) d.items.emplace_back(items[i], items[i + 1]);
          push(make(std::move(d)));
          break;
        }
        case 'a': {                                                // APPEND
          auto v = pop();
          list_of(top()).push_back(v);
          break;
        }
        case 'e': {                                                // APPENDS
          auto items = pop_to_mark();
          auto& l = list_of(top());
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        case 's': {                                                // SETITEM
          auto v = pop();
          auto k = pop();
          dict_of(top()).items.emplace_back(k, v);
          break;
        }
        case 'u': {                                                // SETITEMS
          auto items = pop_to_mark();
          auto& d = dict_of(top());
          for (size_t i = 0; i + 1 < items.size(); i += 2) d.items.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 'c': {                                                // GLOBAL
          std::string module = line();
          std::string name = line();
          push(make(Global{module, name}));
          break;
        }
        case 0x93: {                                               // STACK_GLOBAL
          auto name = pop();
          auto module = pop();
          push(make(Global{string_of(module), string_of(name)}));
          break;
        }
        case 'q': memo_[le(1)] = top(); break;                     // BINPUT
        case 'r': memo_[le(4)] = top(); break;                     // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;             // MEMOIZE
        case 'h': push(memo_get(le(1))); break;                    // BINGET
        case 'j': push(memo_get(le(4))); break;                    // LONG_BINGET
        case '0': pop(); break;                                    // POP
        case '1': pop_to_mark(); break;                            // POP_MARK
        case '2': push(top()); break;                              // DUP
        case 'Q': push(persistent_load(pop())); break;             // BINPERSID
        case 'R': {                                                // REDUCE
          auto args = pop();
          auto fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 0x81: {                                               // NEWOBJ
          auto args = pop();
          auto cls = pop();
          push(reduce(cls, args));
          break;
        }
        case 'b': {                                                // BUILD
          pop();  // state: OrderedDict's _metadata, a Parameter's extra state; not needed
          break;
        }
        default:
          fail(detail::concat("unsupported pickle opcode 0x", std::hex, static_cast<int>(op), " at byte ",
                              std::dec, pos_ - 1));
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw FormatError(detail::concat("'", path_, "': cannot read data.pkl: ", why,
                                     "; expected a file written by torch.save(model.state_dict())"));
  }
  uint8_t byte() {
    if (pos_ >= data_.size()) fail("unexpected end of data");
    return static_cast<uint8_t>(data_[pos_++]);
  }
  uint64_t le(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(byte()) << (8 * i);
    return v;
  }
  std::string read_bytes(uint64_t n) {
    if (n > data_.size() - pos_) fail("string runs past the end of data");
    std::string s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string line() {
    const auto nl = data_.find('\n', pos_);
    if (nl == std::string::npos) fail("unterminated GLOBAL");
    std::string s = data_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return s;
  }
  int64_t long1() {
    const uint64_t n = le(1);
    if (n > 8) fail("integer wider than 64 bits");
    uint64_t v = 0;
    for (uint64_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(byte()) << (8 * i);
    if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  double binfloat() {
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | byte();  // big-endian
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  ValuePtr pop() {
    if (stack_.empty()) fail("stack underflow");
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  ValuePtr& top() {
    if (stack_.empty()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_to_mark() {
    std::vector<ValuePtr> items;
    while (true) {
      auto v = pop();
      if (v->is<Mark>()) break;
      items.push_back(v);
    }
    return {items.rbegin(), items.rend()};
  }
  void tuple_n(size_t n) {
    std::vector<ValuePtr> items(n);
    for (size_t i = n; i-- > 0;) items[i] = pop();
    push(make(Tuple{std::move(items)}));
  }
  ValuePtr memo_get(uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) fail(detail::concat("memo key ", key, " missing"));
    return it->second;
  }
  std::vector<ValuePtr>& list_of(ValuePtr& v) {
    if (!v->is<List>()) fail(detail::concat("APPEND on a ", v->kind()));
    return v->as<List>().items;
  }
  Dict& dict_of(ValuePtr& v) {
    if (!v->is<Dict>()) fail(detail::concat("SETITEM on a ", v->kind()));
    return v->as<Dict>();
  }
  std::string string_of(const ValuePtr& v) {
    if (!v->is<std::string>()) fail(detail::concat("expected a string, got a ", v->kind()));
    return std::get<std::string>(v->v);
  }
  int64_t int_of(const ValuePtr& v) {
    if (!v->is<int64_t>()) fail(detail::concat("expected an int, got a ", v->kind()));
    return std::get<int64_t>(v->v);
  }
  std::vector<int64_t> ints_of(const ValuePtr& v) {
    if (!v->is<Tuple>() && !v->is<List>()) fail(detail::concat("expected a tuple of ints, got a ", v->kind()));
    const auto& items = v->is<Tuple>() ? v->as<Tuple>().items : v->as<List>().items;
    std::vector<int64_t> out;
    for (const auto& i : items) out.push_back(int_of(i));
    return out;
  }
  std::vector<ValuePtr>& tuple_items(const ValuePtr& v) {
    if (!v->is<Tuple>()) fail(detail::concat("expected a tuple of arguments, got a ", v->kind()));
    return v->as<Tuple>().items;
  }

  // ('storage', storage_type, key, location, numel)
  ValuePtr persistent_load(const ValuePtr& pid) {
    auto& t = tuple_items(pid);
    if (t.size() < 5 || string_of(t[0]) != "storage" || !t[1]->is<Global>()) {
      fail("unexpected persistent id (expected ('storage', type, key, location, numel))");
    }
    const at::ScalarType type = storage_dtype(t[1]->as<Global>().name, path_);
    const std::string key = string_of(t[2]);
    const int64_t numel = int_of(t[4]);
    auto cached = storages_.find(key);
    if (cached != storages_.end()) return make(Storage{cached->second});
    const std::string record = "data/" + key;
    if (!archive_.hasRecord(record)) fail(detail::concat("archive has no record '", record, "'"));
    auto [ptr, size] = archive_.getRecord(record);
    const size_t expected = static_cast<size_t>(numel) * c10::elementSize(type);
    if (size != expected) {
      fail(detail::concat("record '", record, "' has ", size, " bytes, expected ", expected, " for ", numel,
                          " elements"));
    }
    at::Tensor flat = at::empty({numel}, at::TensorOptions().dtype(type));
    if (size > 0) std::memcpy(flat.data_ptr(), ptr.get(), size);
    storages_.emplace(key, flat);
    return make(Storage{flat});
  }

  ValuePtr reduce(const ValuePtr& fn, const ValuePtr& args) {
    if (!fn->is<Global>()) fail(detail::concat("REDUCE on a ", fn->kind()));
    const Global g = fn->as<Global>();
    const std::string q = g.qualified();
    auto& a = tuple_items(args);
    if (q == "collections.OrderedDict") return make(Dict{});
    if (q == "torch._utils._rebuild_tensor_v2" || q == "torch._utils._rebuild_tensor") {
      if (a.size() < 4 || !a[0]->is<Storage>()) fail("malformed _rebuild_tensor_v2 arguments");
      at::Tensor flat = a[0]->as<Storage>().flat;
      const int64_t offset = int_of(a[1]);
      const auto size = ints_of(a[2]);
      const auto stride = ints_of(a[3]);
      if (size.size() != stride.size()) fail("tensor size and stride differ in length");
      int64_t last = offset;
      for (size_t i = 0; i < size.size(); ++i) {
        if (size[i] == 0) last = -1;
        if (last >= 0) last += (size[i] - 1) * stride[i];
      }
      if (last >= flat.numel()) fail("tensor view runs past its storage");
      return make(flat.as_strided(size, stride, offset).clone(at::MemoryFormat::Contiguous));
    }
    if (q == "torch._utils._rebuild_parameter" || q == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || !a[0]->is<at::Tensor>()) fail("malformed _rebuild_parameter arguments");
      return a[0];
    }
    fail(detail::concat("the file contains an object of type ", q,
                        ", which is not part of a state dict (clr reads tensors, numbers, strings and containers "
                        "only, and never runs code from a checkpoint)"));
  }

  const std::string& path_;
  caffe2::serialize::PyTorchStreamReader& archive_;
  std::string data_;
  size_t pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  std::unordered_map<std::string, at::Tensor> storages_;
};

// Tensors of a dict value; nullopt-like empty result with `ok=false` if the dict is
// not a flat name->tensor map.
bool collect_tensors(Value& dict, TensorMap& out, std::vector<std::string>& non_tensor) {
  if (!dict.is<Dict>()) return false;
  for (auto& [k, v] : dict.as<Dict>().items) {
    if (!k->is<std::string>()) return false;
    const std::string& name = std::get<std::string>(k->v);
    if (v->is<at::Tensor>()) {
      out.emplace(name, v->as<at::Tensor>());
    } else {
      non_tensor.push_back(name);
    }
  }
  return true;
}

}  // namespace

TensorMap read_pytorch_state_dict(const std::string& path) {
  require_file(path);
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> archive;
  try {
    archive = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    throw FormatError(detail::concat("'", path, "' is not a PyTorch zip checkpoint (", e.what_without_backtrace(),
                                     "); files from torch.save before PyTorch 1.6 must be re-saved with a newer "
                                     "torch.save"));
  }
  ValuePtr root;
  try {
    // Every read of the archive can meet damaged zip records: LibTorch's errors become ours.
    CLR_CHECK(archive->hasRecord("data.pkl"), FormatError, "'", path,
              "' is a zip archive without data.pkl; expected a torch.save checkpoint");
    auto [ptr, size] = archive->getRecord("data.pkl");
    std::string pkl(static_cast<const char*>(ptr.get()), size);
    root = Unpickler(path, *archive, std::move(pkl)).run();
  } catch (const c10::Error& e) {
    throw FormatError(detail::concat("'", path, "': corrupt archive (", e.what_without_backtrace(), ")"));
  }

  TensorMap tensors;
  std::vector<std::string> others;
  CLR_CHECK(collect_tensors(*root, tensors, others), FormatError, "'", path, "' holds a ", root->kind(),
            ", expected a dict of tensors (a state dict)");
  if (tensors.empty()) {
    // Training checkpoints nest the weights (timm's train.py: state_dict, state_dict_ema).
    for (const char* nested : {"state_dict", "model", "model_state_dict", "state_dict_ema"}) {
      for (auto& [k, v] : root->as<Dict>().items) {
        if (k->is<std::string>() && std::get<std::string>(k->v) == nested) {
          TensorMap inner;
          std::vector<std::string> inner_others;
          if (collect_tensors(*v, inner, inner_others) && !inner.empty()) return inner;
        }
      }
    }
  }
  CLR_CHECK(!tensors.empty(), FormatError, "'", path, "' holds no tensors at its top level (keys: ",
            join_first(others), "); expected a state dict");
  return tensors;
}

WeightFormat detect_weight_format(const std::string& path) {
  require_file(path);
  std::ifstream in(path, std::ios::binary);
  unsigned char head[9] = {0};
  in.read(reinterpret_cast<char*>(head), 9);
  const auto got = in.gcount();
  if (got >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return WeightFormat::kPyTorchZip;
  if (got >= 9 && head[8] == '{') return WeightFormat::kSafetensors;
  return WeightFormat::kUnknown;
}

TensorMap load_tensor_file(const std::string& path) {
  switch (detect_weight_format(path)) {
    case WeightFormat::kSafetensors: return read_safetensors(path).tensors;
    case WeightFormat::kPyTorchZip: return read_pytorch_state_dict(path);
    case WeightFormat::kUnknown: break;
  }
  throw FormatError(detail::concat("'", path,
                                   "' is neither a safetensors file nor a PyTorch zip checkpoint (.pt/.pth "
                                   "from torch.save); cannot read weights from it"));
}

}  // namespace clr
