#include "clr/core/safetensors.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "clr/core/json_numbers.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"

namespace clr {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's limit

struct DtypeName {
  at::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {
    {at::kDouble, "F64"}, {at::kFloat, "F32"}, {at::kHalf, "F16"}, {at::kBFloat16, "BF16"},
    {at::kLong, "I64"},   {at::kInt, "I32"},   {at::kShort, "I16"}, {at::kChar, "I8"},
    {at::kByte, "U8"},    {at::kBool, "BOOL"},
};

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct Header {
  nlohmann::json json;
  uint64_t data_start = 0;
  uint64_t file_size = 0;
};

// Parses the header of a file of `file_size` bytes whose first bytes are `prefix`
// (at least 8 + the header length of them, or the whole file).
Header parse_header(const std::string& prefix, uint64_t file_size, const std::string& path) {
  Header h;
  h.file_size = file_size;
  CLR_CHECK(h.file_size >= 8 && prefix.size() >= 8, FormatError, "'", path,
            "' is not a safetensors file: ", h.file_size, " bytes, expected at least 8 (the header length)");
  const uint64_t n = read_u64_le(reinterpret_cast<const unsigned char*>(prefix.data()));
  CLR_CHECK(n <= kMaxHeaderBytes, FormatError, "'", path, "' is not a safetensors file: header length ",
            n, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  CLR_CHECK(8 + n <= h.file_size && 8 + n <= prefix.size(), FormatError, "'", path, "' is truncated: header of ", n,
            " bytes but the file has only ", h.file_size, " bytes");
  try {
    h.json = nlohmann::json::parse(prefix.begin() + 8, prefix.begin() + static_cast<std::ptrdiff_t>(8 + n));
    check_json_numbers(h.json, path);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::concat("'", path, "' has a header that is not valid JSON: ", e.what()));
  }
  CLR_CHECK(h.json.is_object(), FormatError, "'", path, "' has a header that is not a JSON object");
  h.data_start = 8 + n;
  return h;
}

Header read_header(std::ifstream& in, const std::string& path) {
  in.seekg(0, std::ios::end);
  const auto end = in.tellg();
  CLR_CHECK(end >= 0, FormatError, "cannot determine the size of '", path, "'");
  const auto size = static_cast<uint64_t>(end);
  in.seekg(0);
  std::string prefix(std::min<uint64_t>(size, 8), '\0');
  in.read(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  if (prefix.size() == 8) {
    const uint64_t n = read_u64_le(reinterpret_cast<const unsigned char*>(prefix.data()));
    if (n <= kMaxHeaderBytes && 8 + n <= size) {
      prefix.resize(8 + n);
      in.read(prefix.data() + 8, static_cast<std::streamsize>(n));
    }
  }
  return parse_header(prefix, size, path);
}

Metadata parse_metadata(const nlohmann::json& header, const std::string& path) {
  Metadata md;
  auto it = header.find("__metadata__");
  if (it == header.end()) return md;
  CLR_CHECK(it->is_object(), FormatError, "'", path, "': __metadata__ must be an object of strings");
  for (const auto& [k, v] : it->items()) {
    CLR_CHECK(v.is_string(), FormatError, "'", path, "': __metadata__ value for '", k,
              "' must be a string, got ", v.type_name());
    md[k] = v.get<std::string>();
  }
  return md;
}

}  // namespace

std::string safetensors_dtype_name(at::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.type == type) return d.name;
  }
  throw FormatError(detail::concat("dtype ", c10::toString(type),
                                   " cannot be stored in safetensors by clr; supported: F64 F32 F16 BF16 "
                                   "I64 I32 I16 I8 U8 BOOL"));
}

at::ScalarType safetensors_dtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.type;
  }
  throw FormatError(detail::concat("unsupported safetensors dtype '", name,
                                   "'; supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL"));
}

SafetensorsFile decode_safetensors(const std::string& bytes, const std::string& path) {
  const Header h = parse_header(bytes, bytes.size(), path);
  SafetensorsFile out;
  out.metadata = parse_metadata(h.json, path);
  const uint64_t data_size = h.file_size - h.data_start;
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;  // [begin, end), tensor
  for (const auto& item : h.json.items()) {
    const std::string& name = item.key();
    const nlohmann::json& info = item.value();  // not a structured binding: the lambda below uses it
    if (name == "__metadata__") continue;
    const std::string where = detail::concat("'", path, "', tensor '", name, "'");
    CLR_CHECK(info.is_object() && info.contains("dtype") && info.contains("shape") &&
                  info.contains("data_offsets"),
              FormatError, where, ": expected an object with dtype, shape and data_offsets");
    const at::ScalarType type = [&] {
      try {
        return safetensors_dtype(info.at("dtype").get<std::string>());
      } catch (const FormatError& e) {
        throw FormatError(detail::concat(where, ": ", e.what()));
      } catch (const nlohmann::json::exception&) {
        throw FormatError(detail::concat(where, ": dtype must be a string"));
      }
    }();
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;
    try {
      for (const auto& d : info.at("shape")) {
        const int64_t v = d.get<int64_t>();
        CLR_CHECK(v >= 0, FormatError, where, ": negative dimension ", v);
        shape.push_back(v);
      }
      const auto& off = info.at("data_offsets");
      CLR_CHECK(off.is_array() && off.size() == 2, FormatError, where, ": data_offsets must be [begin, end]");
      CLR_CHECK(off[0].is_number_unsigned() && off[1].is_number_unsigned(), FormatError, where,
                ": data_offsets must be two non-negative integers, got ", off.dump());
      begin = off[0].get<uint64_t>();
      end = off[1].get<uint64_t>();
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(detail::concat(where, ": malformed shape or data_offsets (", e.what(), ")"));
    }
    // The element count and size are checked for overflow before anything is
    // allocated: a shape like [2^62 + 16, 4] must not wrap past the size check.
    uint64_t nbytes = c10::elementSize(type);
    bool overflow = false;
    for (int64_t d : shape) overflow = overflow || __builtin_mul_overflow(nbytes, static_cast<uint64_t>(d), &nbytes);
    CLR_CHECK(!overflow && nbytes <= static_cast<uint64_t>(INT64_MAX), FormatError, where, ": shape ",
              info.at("shape").dump(), " of ", info.at("dtype").get<std::string>(),
              " needs more bytes than a 64-bit size holds");
    CLR_CHECK(end >= begin && end - begin == nbytes, FormatError, where, ": data_offsets [", begin, ", ", end,
              "] hold ", end - begin, " bytes but dtype and shape need ", nbytes);
    CLR_CHECK(end <= data_size, FormatError, "'", path, "' is truncated: tensor '", name, "' ends at byte ",
              h.data_start + end, " but the file has ", h.file_size, " bytes");
    ranges.push_back({begin, end, name});
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type));
    if (nbytes > 0) std::memcpy(t.data_ptr(), bytes.data() + h.data_start + begin, nbytes);
    out.tensors.emplace(name, std::move(t));
  }
  // The format's rule: the tensors tile the data buffer, no overlap and no hole.
  std::sort(ranges.begin(), ranges.end());
  uint64_t covered = 0;
  for (const auto& [begin, end, name] : ranges) {
    CLR_CHECK(begin >= covered, FormatError, "'", path, "': tensor '", name, "' (bytes ", begin, "-", end,
              ") overlaps the tensor before it (which ends at ", covered, ")");
    CLR_CHECK(begin == covered, FormatError, "'", path, "': bytes ", covered, "-", begin,
              " of the data belong to no tensor (before tensor '", name, "')");
    covered = end;
  }
  CLR_CHECK(covered == data_size, FormatError, "'", path, "': the last ", data_size - covered,
            " bytes of the data belong to no tensor");
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  require_file(path);
  return decode_safetensors(read_file(path), path);
}

Metadata read_safetensors_metadata(const std::string& path) {
  require_file(path);
  std::ifstream in(path, std::ios::binary);
  return parse_metadata(read_header(in, path).json, path);
}

std::string encode_safetensors(const TensorMap& tensors, const Metadata& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> cpu;
  cpu.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    CLR_CHECK(t.defined(), ConfigError, "tensor '", name, "' is undefined and cannot be saved");
    CLR_CHECK(name != "__metadata__", ConfigError, "'__metadata__' is reserved and cannot name a tensor");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    cpu.push_back(std::move(c));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data to 8 bytes
  std::string out;
  out.reserve(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  for (const auto& c : cpu) {
    out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  }
  return out;
}

void write_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  write_file_atomic(path, encode_safetensors(tensors, metadata));
}

const std::string& metadata_value(const Metadata& metadata, const std::string& key, const std::string& origin) {
  const auto it = metadata.find(key);
  CLR_CHECK(it != metadata.end(), FormatError, origin, " has no '", key, "' in its metadata");
  return it->second;
}

int64_t metadata_count(const Metadata& metadata, const std::string& key, const std::string& origin) {
  const std::string& v = metadata_value(metadata, key, origin);
  try {
    size_t used = 0;
    const long long n = std::stoll(v, &used);
    if (used == v.size() && n >= 0) return n;
  } catch (const std::exception&) {
  }
  throw FormatError(detail::concat(origin, ": '", key, "' is '", v, "', not a count"));
}

}  // namespace clr
