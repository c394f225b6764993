// The adapter file codec (adapter_file.h): encode, decode and check one adapter's
// safetensors file, its JSON description, and the task-name rules.
#include "clr/store/adapter_file.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/json_numbers.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/runtime.h"
#include "clr/core/safetensors.h"
#include "clr/store/store.h"

namespace clr::store {
namespace {

using nlohmann::json;

const std::set<std::string> kVariants = {"clr", "clr-full", "residual", "linear"};

std::string meta(const Metadata& md, const char* key, const std::string& where) {
  auto it = md.find(key);
  CLR_CHECK(it != md.end(), FormatError, where, ": metadata has no \"", key, "\"");
  return it->second;
}

int64_t meta_int(const Metadata& md, const char* key, const std::string& where) {
  const std::string v = meta(md, key, where);
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    CLR_CHECK(used == v.size(), FormatError, where, ": metadata \"", key, "\" is not an integer: '", v, "'");
    return x;
  } catch (const std::logic_error&) {
    throw FormatError(detail::concat(where, ": metadata \"", key, "\" is not an integer: '", v, "'"));
  }
}

json meta_json(const Metadata& md, const char* key, const std::string& where) {
  try {
    json j = json::parse(meta(md, key, where));
    check_json_numbers(j, where);
    return j;
  } catch (const json::exception& e) {
    throw FormatError(detail::concat(where, ": metadata \"", key, "\" is not JSON (", e.what(), ")"));
  }
}

std::array<float, 3> triple(const json& j, const char* key, const std::string& where) {
  CLR_CHECK(j.is_array() && j.size() == 3, FormatError, where, ": \"", key, "\" must be 3 numbers, got ", j.dump());
  std::array<float, 3> out{};
  for (size_t i = 0; i < 3; ++i) {
    CLR_CHECK(j[i].is_number(), FormatError, where, ": \"", key, "\" must be 3 numbers, got ", j.dump());
    out[i] = j[i].get<float>();
  }
  return out;
}

// Format version from "clr.adapter" + "version", or the earlier "clr.adapter/0".
int adapter_version(const Metadata& md, const std::string& where) {
  const std::string format = meta(md, "format", where);
  if (format == "clr.adapter/0") return 0;
  CLR_CHECK(format == kAdapterFormat, FormatError, where, ": not a clr adapter (format '", format, "', expected '",
            kAdapterFormat, "')");
  const int64_t v = meta_int(md, "version", where);
  CLR_CHECK(v >= 1, FormatError, where, ": format version ", v, " is not valid");
  CLR_CHECK(v <= kAdapterVersion, IncompatibleError, where, " was written by a newer clr (adapter format version ", v,
            "; this build reads versions up to ", kAdapterVersion, "): upgrade clr to read it");
  return static_cast<int>(v);
}

void check_adapter(const Adapter& a, const std::string& where) {
  const std::string why = task_name_problem(a.task);
  CLR_CHECK(why.empty(), ConfigError, where, ": task name '", a.task, "' cannot name a stored task: ", why);
  CLR_CHECK(kVariants.count(a.variant), ConfigError, where, ": variant '", a.variant,
            "' cannot be stored; expected clr, clr-full, residual or linear");
  CLR_CHECK(!a.classes.empty(), ConfigError, where, ": task '", a.task, "' has no class names");
  auto w = a.tensors.find("head.weight");
  auto b = a.tensors.find("head.bias");
  CLR_CHECK(w != a.tensors.end() && b != a.tensors.end(), FormatError, where, ": task '", a.task,
            "' has no head.weight / head.bias");
  CLR_CHECK(w->second.dim() == 2 && w->second.size(0) == static_cast<int64_t>(a.classes.size()) &&
                b->second.dim() == 1 && b->second.size(0) == w->second.size(0),
            FormatError, where, ": task '", a.task, "' has ", a.classes.size(), " class names but a head of ",
            describe(w->second), " / ", describe(b->second));
  CLR_CHECK(a.preprocess.resize > 0 && a.preprocess.crop >= 0 && a.preprocess.crop <= a.preprocess.resize, FormatError,
            where, ": preprocessing resize ", a.preprocess.resize, " / crop ", a.preprocess.crop, " is not valid");
  for (float s : a.preprocess.std) CLR_CHECK(s > 0, FormatError, where, ": preprocessing std must be positive");
  CLR_CHECK(a.backbone.fingerprint.rfind("sha256:", 0) == 0, FormatError, where,
            ": backbone fingerprint must be 'sha256:...', got '", a.backbone.fingerprint, "'");
}

// Six decimals: the floats' short decimal form ("0.485", not 0.48500001430511475).
template <typename Json = json>
Json decimals(const std::array<float, 3>& v) {
  Json out = Json::array();
  for (float x : v) out.push_back(std::round(static_cast<double>(x) * 1e6) / 1e6);
  return out;
}

// True when `s` is UTF-8 that JSON can hold (names go into the manifest): checked by
// the JSON library that writes it.
bool valid_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

}  // namespace

std::string task_name_problem(const std::string& name) {
  if (name.empty()) return "it is empty";
  if (name.size() > kMaxTaskNameBytes) return detail::concat("it has ", name.size(), " bytes, at most ", kMaxTaskNameBytes, " are allowed");
  if (name[0] == '.') return "it starts with '.'";
  if (name.front() == ' ' || name.back() == ' ') return "it starts or ends with a space";
  for (unsigned char c : name) {
    if (c == '/' || c == '\\') return "it contains a path separator";
    if (c < 0x20 || c == 0x7f) return "it contains a control character";
  }
  if (!valid_utf8(name)) return "it is not valid UTF-8";
  return "";
}

void check_task_name(const std::string& name) {
  const std::string why = task_name_problem(name);
  CLR_CHECK(why.empty(), ConfigError, "task name '", name, "' is not allowed: ", why,
            " (a name is 1-128 bytes without '/', '\\' or control characters, not starting with '.')");
}

std::string encode_adapter(Adapter& a) {
  if (a.created.empty()) a.created = runtime::utc_timestamp();
  check_adapter(a, "adapter");
  TensorMap cpu;
  for (const auto& [k, t] : a.tensors) cpu.emplace(k, t.detach().to(at::kCPU).contiguous());
  a.tensors = cpu;
  a.tensors_sha256 = fingerprint(a.tensors);
  TensorMap all = a.tensors;
  for (const auto& [k, t] : a.mapper) {
    CLR_CHECK(a.tensors.count("mapper." + k) == 0, ConfigError, "adapter: task tensor 'mapper.", k,
              "' clashes with the task mapper's");
    all.emplace("mapper." + k, t.detach().to(at::kCPU).contiguous());
  }
  const json classes = a.classes;
  const json mean = decimals(a.preprocess.mean), std = decimals(a.preprocess.std);
  Metadata md = {{"format", kAdapterFormat},
                 {"version", std::to_string(a.mapper.empty() ? 1 : 2)},
                 {"task", a.task},
                 {"variant", a.variant},
                 {"kernel_size", std::to_string(a.kernel_size)},
                 {"classes", classes.dump()},
                 {"backbone_arch", a.backbone.arch},
                 {"backbone_small_stem", a.backbone.small_stem ? "true" : "false"},
                 {"backbone_fingerprint", a.backbone.fingerprint},
                 {"resize", std::to_string(a.preprocess.resize)},
                 {"crop", std::to_string(a.preprocess.crop)},
                 {"input_size", std::to_string(a.preprocess.input_size())},
                 {"mean", mean.dump()},
                 {"std", std.dump()},
                 {"training", a.training_json.empty() ? "{}" : a.training_json},
                 {"metrics", a.metrics_json.empty() ? "{}" : a.metrics_json},
                 {"created", a.created},
                 {"tensors_sha256", a.tensors_sha256}};
  if (!a.mapper.empty()) {
    TensorMap mapper;
    for (const auto& [k, t] : a.mapper) mapper.emplace(k, all.at("mapper." + k));
    a.mapper = mapper;
    a.mapper_sha256 = fingerprint(a.mapper);
    md["mapper"] = a.mapper_json.empty() ? "{}" : a.mapper_json;
    md["mapper_sha256"] = a.mapper_sha256;
  }
  return encode_safetensors(all, md);
}

Adapter decode_adapter(const std::string& bytes, const std::string& origin) {
  SafetensorsFile f = decode_safetensors(bytes, origin);
  const Metadata& md = f.metadata;
  const std::string where = "'" + origin + "'";
  const int version = adapter_version(md, where);
  Adapter a;
  a.task = meta(md, "task", where);
  a.variant = meta(md, "variant", where);
  const json classes = meta_json(md, "classes", where);
  CLR_CHECK(classes.is_array(), FormatError, where, ": metadata \"classes\" must be an array of names");
  for (const auto& c : classes) {
    CLR_CHECK(c.is_string(), FormatError, where, ": metadata \"classes\" must be an array of names");
    a.classes.push_back(c.get<std::string>());
  }
  a.backbone.arch = meta(md, "backbone_arch", where);
  a.backbone.fingerprint = meta(md, "backbone_fingerprint", where);
  a.preprocess.resize = meta_int(md, "resize", where);
  a.preprocess.mean = triple(meta_json(md, "mean", where), "mean", where);
  a.preprocess.std = triple(meta_json(md, "std", where), "std", where);
  a.created = md.count("created") ? md.at("created") : "";
  a.tensors = std::move(f.tensors);
  if (version >= 2) {  // the task mapper's tensors apart from the task's
    for (auto it = a.tensors.begin(); it != a.tensors.end();) {
      if (it->first.rfind("mapper.", 0) == 0) {
        a.mapper.emplace(it->first.substr(7), std::move(it->second));
        it = a.tensors.erase(it);
      } else {
        ++it;
      }
    }
    if (!a.mapper.empty() || md.count("mapper_sha256")) {
      a.mapper_json = meta(md, "mapper", where);
      a.mapper_sha256 = meta(md, "mapper_sha256", where);
      const std::string got = fingerprint(a.mapper);
      CLR_CHECK(a.mapper_sha256 == got, FormatError, where, " is corrupt: its task-mapper tensors hash to ", got,
                " but the file records ", a.mapper_sha256);
    }
  }
  const std::string actual = fingerprint(a.tensors);
  if (version == 0) {
    // The first runner's files: no checksum, no kernel size, crop implied by input_size.
    const int64_t input = meta_int(md, "input_size", where);
    a.preprocess.crop = input == a.preprocess.resize ? 0 : input;
    for (const auto& [k, t] : a.tensors) {
      if (k.rfind("clr.", 0) == 0 && t.dim() == 4) a.kernel_size = t.size(3);
    }
    if (a.variant == "linear" || a.variant == "clr" || a.variant == "clr-full" || a.variant == "residual") {
      a.tensors_sha256 = actual;
    }
  } else {
    a.kernel_size = meta_int(md, "kernel_size", where);
    a.backbone.small_stem = meta(md, "backbone_small_stem", where) == "true";
    a.preprocess.crop = meta_int(md, "crop", where);
    a.training_json = md.count("training") ? md.at("training") : "{}";
    a.metrics_json = md.count("metrics") ? md.at("metrics") : "{}";
    a.tensors_sha256 = meta(md, "tensors_sha256", where);
    CLR_CHECK(a.tensors_sha256 == actual, FormatError, where, " is corrupt: its tensors hash to ", actual,
              " but the file records ", a.tensors_sha256);
  }
  check_adapter(a, where);
  return a;
}

Adapter read_adapter_file(const std::string& path) {
  require_file(path, "adapter file");
  return decode_adapter(read_file(path), path);
}

std::string adapter_json(const Adapter& a, const TaskEntry* e, int indent) {
  auto parsed = [](const std::string& text) {
    try {
      return nlohmann::ordered_json::parse(text.empty() ? "{}" : text);
    } catch (const json::exception&) {
      return nlohmann::ordered_json(text);
    }
  };
  nlohmann::ordered_json j = {
      {"name", a.task},
      {"variant", a.variant},
      {"kernel_size", a.kernel_size},
      {"classes", a.classes.size()},
      {"class_names", a.classes},
      {"preprocess",
       {{"resize", a.preprocess.resize},
        {"crop", a.preprocess.crop},
        {"input_size", a.preprocess.input_size()},
        {"mean", decimals<nlohmann::ordered_json>(a.preprocess.mean)},
        {"std", decimals<nlohmann::ordered_json>(a.preprocess.std)}}},
      {"backbone",
       {{"arch", a.backbone.arch}, {"small_stem", a.backbone.small_stem}, {"fingerprint", a.backbone.fingerprint}}},
      {"metrics", parsed(a.metrics_json)},
      {"training", parsed(a.training_json)},
      {"created", a.created},
      {"tensors_sha256", a.tensors_sha256},
      {"tensor_bytes", total_bytes(a.tensors)},
      {"values", total_numel(a.tensors)}};
  if (!a.mapper_sha256.empty()) {  // the task-mapper statistics (task inference)
    nlohmann::ordered_json m = parsed(a.mapper_json);
    if (!m.is_object()) m = nlohmann::ordered_json{{"description", m}};
    if (!a.mapper.empty()) m["bytes"] = total_bytes(a.mapper);
    m["sha256"] = a.mapper_sha256;
    j["task_mapper"] = m;
  } else {
    j["task_mapper"] = nullptr;
  }
  if (e != nullptr) {
    j["file"] = e->file;
    j["sha256"] = e->sha256;
    j["bytes"] = e->bytes;
    if (a.tensors.empty()) j["tensor_bytes"] = e->tensor_bytes;
  }
  if (a.tensors.empty()) j.erase("values");  // metadata only (the engine's copy)
  return j.dump(indent);
}

}  // namespace clr::store
