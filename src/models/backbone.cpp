#include "clr/models/backbone.h"

#include <algorithm>
#include <cstdlib>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/safetensors.h"
#include "clr/core/settings_io.h"
#include "clr/core/tensor_io.h"
#include "clr/models/registry.h"

namespace clr::models {

template <class V>
void fields(V& v, BackboneConfig& c) {
  v("weights", c.weights);
  v("arch", c.arch);
  v("small_stem", c.small_stem);
  v("kernel", c.kernel);
}
CLR_SETTINGS_JSON(BackboneConfig)

namespace {

std::string number(double x) { return std::to_string(x); }

template <class T>
T parse_field(const Metadata& md, const std::string& key, const std::string& path) {
  const auto it = md.find(key);
  CLR_CHECK(it != md.end(), FormatError, "backbone file '", path, "' (", kBackboneFormat, ") has no '", key,
            "' in its metadata");
  const std::string& s = it->second;
  try {
    size_t used = 0;
    T value{};
    if constexpr (std::is_same_v<T, bool>) {
      CLR_CHECK(s == "true" || s == "false", FormatError, "backbone file '", path, "': '", key, "' is '", s,
                "'; expected true or false");
      return s == "true";
    } else if constexpr (std::is_same_v<T, double>) {
      value = std::stod(s, &used);
    } else if constexpr (std::is_same_v<T, uint64_t>) {
      value = std::stoull(s, &used);
    } else {
      value = std::stoll(s, &used);
    }
    if (used == s.size()) return value;
  } catch (const std::logic_error&) {
  }
  throw FormatError(clr::detail::concat("backbone file '", path, "': '", key, "' is '", s, "'; expected a number"));
}

// The clr.backbone metadata among a file's metadata `md` (read from `path`).
std::optional<BackboneFileInfo> backbone_info(const Metadata& md, const std::string& path) {
  const auto format = md.find("format");
  if (format == md.end() || format->second.rfind("clr.backbone/", 0) != 0) return std::nullopt;
  CLR_CHECK(format->second == kBackboneFormat, FormatError, "backbone file '", path, "' is ", format->second,
            "; this clr reads ", kBackboneFormat);
  BackboneFileInfo i;
  auto text = [&](const char* key) {
    const auto it = md.find(key);
    return it == md.end() ? std::string() : it->second;
  };
  i.arch = text("arch");
  const auto names = architecture_names();
  CLR_CHECK(std::find(names.begin(), names.end(), i.arch) != names.end(), FormatError, "backbone file '", path,
            "' names architecture '", i.arch, "'; expected one of ", join_first(names));
  i.small_stem = parse_field<bool>(md, "small_stem", path);
  i.input_size = parse_field<int64_t>(md, "input_size", path);
  try {
    i.classes = nlohmann::json::parse(text("classes")).get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(clr::detail::concat("backbone file '", path, "': 'classes' is not a JSON list of names (", e.what(),
                                     ")"));
  }
  i.data = text("data");
  i.train_images = parse_field<int64_t>(md, "train_images", path);
  i.command = text("command");
  i.seed = parse_field<uint64_t>(md, "seed", path);
  i.epochs = parse_field<int64_t>(md, "epochs", path);
  i.best_epoch = parse_field<int64_t>(md, "best_epoch", path);
  i.val_accuracy = parse_field<double>(md, "val_accuracy", path);
  i.mode = text("mode");
  i.val_metric = text("val_metric");
  i.device = text("device");
  i.wall_seconds = parse_field<double>(md, "wall_seconds", path);
  i.libtorch = text("libtorch");
  i.dtype = text("dtype");
  i.monitor = text("monitor");
  i.curve = text("curve");
  return i;
}

}  // namespace

void BackboneConfig::set_source(const std::string& file_or_arch) {
  if (file_exists(file_or_arch)) {
    weights = file_or_arch;
    return;
  }
  CLR_CHECK(!directory_exists(file_or_arch), NotFoundError, "--backbone '", file_or_arch,
            "' is a directory; give a weight file in it (.safetensors, .pth) or an architecture name");
  const auto names = architecture_names();
  CLR_CHECK(std::find(names.begin(), names.end(), file_or_arch) != names.end(), NotFoundError, "--backbone '",
            file_or_arch, "' is neither an existing weight file nor an architecture (", join_first(names), ")");
  arch = file_or_arch;
  weights.clear();
}

void BackboneConfig::resolve() {
  if (!weights.empty()) require_file(weights, "backbone weight file");
  if (!weights.empty() && detect_weight_format(weights) == WeightFormat::kSafetensors) {
    const Metadata md = read_safetensors_metadata(weights);
    if (const auto info = backbone_info(md, weights)) {
      if (!arch) arch = info->arch;
      if (!small_stem) small_stem = info->small_stem;
    } else {  // safetensors written by other tools may still name the architecture
      if (!arch && md.count("arch")) arch = md.at("arch");
      if (!small_stem && md.count("small_stem")) small_stem = md.at("small_stem") == "true";
    }
  }
  if (!arch) arch = "resnet18";
  if (!small_stem) small_stem = false;
  find_architecture(*arch);  // NotFoundError listing the known ones
}

const std::string& BackboneConfig::arch_name() const {
  CLR_ASSERT(arch.has_value(), "BackboneConfig::arch_name() before resolve()");
  return *arch;
}

ResNet load_backbone(const BackboneConfig& c) {
  return c.weights.empty() ? make_resnet(c.arch_name(), 0, c.has_small_stem())
                           : load_resnet(c.arch_name(), c.weights, 0, c.has_small_stem());
}


void write_backbone_file(const std::string& path, const TensorMap& weights, const BackboneFileInfo& i) {
  const nlohmann::json classes = i.classes;
  write_safetensors(path, weights,
                    {{"format", kBackboneFormat},
                     {"arch", i.arch},
                     {"small_stem", i.small_stem ? "true" : "false"},
                     {"input_size", std::to_string(i.input_size)},
                     {"classes", classes.dump()},
                     {"data", i.data},
                     {"train_images", std::to_string(i.train_images)},
                     {"command", i.command},
                     {"seed", std::to_string(i.seed)},
                     {"epochs", std::to_string(i.epochs)},
                     {"best_epoch", std::to_string(i.best_epoch)},
                     {"val_accuracy", number(i.val_accuracy)},
                     {"mode", i.mode},
                     {"val_metric", i.val_metric},
                     {"device", i.device},
                     {"wall_seconds", number(i.wall_seconds)},
                     {"libtorch", i.libtorch},
                     {"dtype", i.dtype},
                     {"monitor", i.monitor},
                     {"curve", i.curve}});
}

std::optional<BackboneFileInfo> read_backbone_info(const std::string& path) {
  if (detect_weight_format(path) != WeightFormat::kSafetensors) return std::nullopt;
  return backbone_info(read_safetensors_metadata(path), path);
}

}  // namespace clr::models
