#include "clr/store/peft.h"

#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/safetensors.h"

namespace clr::store {
namespace {

using nlohmann::ordered_json;

constexpr const char* kPrefix = "base_model.model.";
constexpr const char* kConfig = "adapter_config.json";
constexpr const char* kModel = "adapter_model.safetensors";
constexpr const char* kMapper = "clr_mapper.safetensors";

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// The adapter's tensor names (clr.<conv>.weight, residual.<conv>.weight,
// bn.<bn>.<p>, head.<p>) as PEFT keys, and back.
std::string peft_key(const std::string& name) {
  if (starts_with(name, "clr.") && ends_with(name, ".weight")) {
    return kPrefix + name.substr(4, name.size() - 4 - 7) + ".clr.weight";
  }
  if (starts_with(name, "residual.") && ends_with(name, ".weight")) {
    return kPrefix + name.substr(9, name.size() - 9 - 7) + ".residual.weight";
  }
  if (starts_with(name, "bn.")) return kPrefix + name.substr(3);
  if (starts_with(name, "head.")) return kPrefix + std::string("fc.") + name.substr(5);
  throw InternalError("adapter tensor '" + name + "' has no PEFT name");
}

std::string adapter_name(const std::string& key, const std::string& where) {
  CLR_CHECK(starts_with(key, kPrefix), FormatError, where, ": tensor '", key, "' does not start with '", kPrefix, "'");
  const std::string k = key.substr(std::string(kPrefix).size());
  if (ends_with(k, ".clr.weight")) return "clr." + k.substr(0, k.size() - 11) + ".weight";
  if (ends_with(k, ".residual.weight")) return "residual." + k.substr(0, k.size() - 16) + ".weight";
  if (starts_with(k, "fc.")) return "head." + k.substr(3);
  return "bn." + k;
}

// The module a tensor belongs to: "layer1.0.conv1" of clr.layer1.0.conv1.weight.
std::string module_of(const std::string& name) {
  const size_t first = name.find('.'), last = name.rfind('.');
  return name.substr(first + 1, last - first - 1);
}

// A JSON text of the adapter (training, metrics) as a JSON value in the config when it
// reads back to the same text, else as the string itself: the folder is lossless.
ordered_json parsed(const std::string& text) {
  try {
    ordered_json j = ordered_json::parse(text.empty() ? "{}" : text);
    if (j.dump() == text) return j;
  } catch (const ordered_json::exception&) {
  }
  return ordered_json(text);
}

std::string text_of(const ordered_json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

template <class T>
T field(const ordered_json& j, const char* key, const std::string& where) {
  CLR_CHECK(j.contains(key), FormatError, where, ": \"", key, "\" is missing");
  try {
    return j.at(key).get<T>();
  } catch (const ordered_json::exception& e) {
    throw FormatError(detail::concat(where, ": \"", key, "\" has the wrong type (", e.what(), ")"));
  }
}

// `key` of `j` when present (and not null), else `fallback`; FormatError for a wrong type.
template <class T>
T optional_field(const ordered_json& j, const char* key, T fallback, const std::string& where) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  return field<T>(j, key, where);
}

}  // namespace

bool is_peft_folder(const std::string& path) { return directory_exists(path) && file_exists(path + "/" + kConfig); }

int64_t write_peft_folder(const Adapter& a, const std::string& dir) {
  CLR_CHECK(!dir.empty(), ConfigError, "no folder to write task '", a.task, "' to");
  if (directory_exists(dir)) {
    const std::set<std::string> ours = {kConfig, kModel, kMapper};
    for (const std::string& f : list_directory(dir)) {
      CLR_CHECK(ours.count(f), ConfigError, "'", dir, "' exists and holds '", f,
                "', which is not part of a PEFT adapter folder: give a new or empty folder");
    }
  } else {
    CLR_CHECK(!file_exists(dir), ConfigError, "'", dir, "' is a file; a PEFT export is a folder");
    make_directories(dir);
  }
  TensorMap model;
  std::set<std::string> targets, saved;
  for (const auto& [name, t] : a.tensors) {
    model.emplace(peft_key(name), t.detach().to(at::kCPU).contiguous());
    if (starts_with(name, "clr.") || starts_with(name, "residual.")) targets.insert(module_of(name));
    if (starts_with(name, "bn.")) saved.insert(module_of(name));
  }
  std::vector<std::string> modules_to_save(saved.begin(), saved.end());
  modules_to_save.push_back("fc");
  const std::string source = a.backbone.source.empty() || a.backbone.source == "random"
                                 ? a.backbone.arch
                                 : a.backbone.source.substr(a.backbone.source.find_last_of('/') + 1);
  ordered_json config = {
      {"peft_type", "CLR"},
      {"task_type", nullptr},
      {"base_model_name_or_path", source},
      {"revision", nullptr},
      {"inference_mode", true},
      {"target_modules", std::vector<std::string>(targets.begin(), targets.end())},
      {"modules_to_save", modules_to_save},
      {"kernel_size", a.kernel_size},
      {"variant", a.variant},
      {"backbone_fingerprint", a.backbone.fingerprint},
      {"clr",
       {{"format", kPeftFormat},
        {"task", a.task},
        {"classes", a.classes},
        {"backbone", {{"arch", a.backbone.arch}, {"small_stem", a.backbone.small_stem}}},
        {"preprocess",
         {{"resize", a.preprocess.resize},
          {"crop", a.preprocess.crop},
          {"mean", a.preprocess.mean},
          {"std", a.preprocess.std}}},
        {"training", parsed(a.training_json)},
        {"metrics", parsed(a.metrics_json)},
        {"created", a.created},
        {"tensors_sha256", a.tensors_sha256.empty() ? fingerprint(a.tensors) : a.tensors_sha256}}}};
  int64_t bytes = 0;
  auto write = [&](const char* name, const std::string& contents) {
    write_file_atomic(dir + "/" + name, contents);
    bytes += static_cast<int64_t>(contents.size());
  };
  if (!a.mapper.empty()) {
    config["clr"]["mapper"] = parsed(a.mapper_json);
    config["clr"]["mapper_sha256"] = a.mapper_sha256.empty() ? fingerprint(a.mapper) : a.mapper_sha256;
    write(kMapper, encode_safetensors(a.mapper, {{"format", "pt"}}));
  }
  write(kModel, encode_safetensors(model, {{"format", "pt"}}));
  write(kConfig, config.dump(2) + "\n");
  return bytes;
}

Adapter read_peft_folder(const std::string& dir) {
  require_directory(dir, "PEFT adapter folder");
  const std::string config_path = dir + "/" + kConfig;
  require_file(config_path, "adapter_config.json");
  ordered_json config;
  try {
    config = ordered_json::parse(read_file(config_path));
  } catch (const ordered_json::exception& e) {
    throw FormatError(detail::concat("'", config_path, "' is not JSON: ", e.what()));
  }
  const std::string where = "'" + config_path + "'";
  CLR_CHECK(config.is_object() && optional_field<std::string>(config, "peft_type", "", where) == "CLR", FormatError,
            where, ": not a CLR adapter (peft_type must be \"CLR\")");
  CLR_CHECK(config.contains("clr") && config["clr"].is_object(), FormatError, where,
            ": the \"clr\" section (task, classes, preprocessing) is missing");
  const ordered_json& c = config["clr"];
  const std::string format = field<std::string>(c, "format", where);
  CLR_CHECK(format == kPeftFormat, IncompatibleError, where, " is format '", format, "'; this clr reads '", kPeftFormat,
            "'");
  Adapter a;
  a.task = field<std::string>(c, "task", where);
  a.variant = field<std::string>(config, "variant", where);
  a.kernel_size = field<int64_t>(config, "kernel_size", where);
  a.classes = field<std::vector<std::string>>(c, "classes", where);
  a.backbone.fingerprint = field<std::string>(config, "backbone_fingerprint", where);
  const ordered_json backbone = field<ordered_json>(c, "backbone", where);
  a.backbone.arch = field<std::string>(backbone, "arch", where);
  a.backbone.small_stem = field<bool>(backbone, "small_stem", where);
  const ordered_json pre = field<ordered_json>(c, "preprocess", where);
  a.preprocess.resize = field<int64_t>(pre, "resize", where);
  a.preprocess.crop = field<int64_t>(pre, "crop", where);
  a.preprocess.mean = field<std::array<float, 3>>(pre, "mean", where);
  a.preprocess.std = field<std::array<float, 3>>(pre, "std", where);
  a.training_json = text_of(optional_field<ordered_json>(c, "training", ordered_json::object(), where));
  a.metrics_json = text_of(optional_field<ordered_json>(c, "metrics", ordered_json::object(), where));
  a.created = optional_field<std::string>(c, "created", "", where);
  const std::string model_path = dir + "/" + kModel;
  for (auto& [key, t] : read_safetensors(model_path).tensors) {
    const std::string name = adapter_name(key, "'" + model_path + "'");
    CLR_CHECK(!a.tensors.count(name), FormatError, "'", model_path, "': two tensors map to '", name, "'");
    a.tensors.emplace(name, std::move(t));
  }
  const std::string recorded = field<std::string>(c, "tensors_sha256", where);
  const std::string actual = fingerprint(a.tensors);
  CLR_CHECK(recorded == actual, FormatError, "'", model_path, "' does not hold the tensors its config records: they hash to ",
            actual, ", adapter_config.json says ", recorded);
  const std::string mapper_sha = optional_field<std::string>(c, "mapper_sha256", "", where);
  if (!mapper_sha.empty()) {
    const std::string mapper_path = dir + "/" + kMapper;
    a.mapper = read_safetensors(mapper_path).tensors;
    a.mapper_json = text_of(optional_field<ordered_json>(c, "mapper", ordered_json::object(), where));
    CLR_CHECK(fingerprint(a.mapper) == mapper_sha, FormatError, "'", mapper_path,
              "' does not hold the statistics its config records");
  }
  // The adapter file's own checks (names, variant, head, shapes) on the result.
  std::string bytes = encode_adapter(a);
  return decode_adapter(bytes, dir);
}

}  // namespace clr::store
