#include "clr/models/registry.h"

#include <algorithm>

#include <set>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/tensor_io.h"

namespace clr::models {
namespace {

// The architecture whose block layout the keys describe ("layerS.B.conv3" ...), or "".
std::string guess_architecture(const TensorMap& tensors) {
  std::vector<int64_t> blocks(4, 0);
  bool bottleneck = false;
  for (const auto& kv : tensors) {
    const std::string& k = kv.first;
    if (k.rfind("layer", 0) != 0 || k.size() < 8 || k[6] != '.') continue;
    const int s = k[5] - '1';
    if (s < 0 || s > 3) continue;
    const auto dot = k.find('.', 7);
    if (dot == std::string::npos) continue;
    try {
      blocks[s] = std::max<int64_t>(blocks[s], std::stoll(k.substr(7, dot - 7)) + 1);
    } catch (const std::exception&) {
      continue;
    }
    if (k.find(".conv3.") != std::string::npos) bottleneck = true;
  }
  for (const auto& spec : architectures()) {
    if (spec.layers == blocks && (spec.block == BlockType::kBottleneck) == bottleneck) return spec.name;
  }
  return "";
}

}  // namespace

const std::vector<ArchSpec>& architectures() {
  static const std::vector<ArchSpec> specs = {
      {"resnet18", {2, 2, 2, 2}, BlockType::kBasic, "ResNet-18 (basic blocks, 11.7M parameters with fc)"},
      {"resnet34", {3, 4, 6, 3}, BlockType::kBasic, "ResNet-34 (basic blocks, 21.8M parameters with fc)"},
      {"resnet50", {3, 4, 6, 3}, BlockType::kBottleneck, "ResNet-50 (bottlenecks, 25.6M parameters with fc)"},
      {"resnet101", {3, 4, 23, 3}, BlockType::kBottleneck, "ResNet-101 (bottlenecks, 44.5M parameters with fc)"},
      {"resnet152", {3, 8, 36, 3}, BlockType::kBottleneck, "ResNet-152 (bottlenecks, 60.2M parameters with fc)"},
  };
  return specs;
}

std::vector<std::string> architecture_names() {
  std::vector<std::string> names;
  for (const auto& s : architectures()) names.push_back(s.name);
  return names;
}

const ArchSpec& find_architecture(const std::string& name) {
  for (const auto& s : architectures()) {
    if (s.name == name) return s;
  }
  throw NotFoundError(clr::detail::concat("unknown architecture '", name, "'; known: ", join_first(architecture_names(), 100)));
}

ResNet make_resnet(const std::string& arch, int64_t num_classes, bool small_stem) {
  const ArchSpec& spec = find_architecture(arch);
  return ResNet(ResNetOptions(spec.layers, spec.block).num_classes(num_classes).small_stem(small_stem));
}

int64_t parameter_count(const torch::nn::Module& module, const std::string& except_prefix) {
  int64_t n = 0;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (except_prefix.empty() || p.key().rfind(except_prefix, 0) != 0) n += p.value().numel();
  }
  return n;
}

int64_t torchvision_param_count(const ResNetImpl& net) {
  return parameter_count(net, "fc.") + net.feature_dim() * 1000 + 1000;
}

TensorMap state_dict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace(b.key(), b.value());
  return out;
}

void load_state_dict(torch::nn::Module& module, const TensorMap& tensors, const LoadOptions& options,
                     const std::string& source) {
  const TensorMap target = state_dict(module);
  auto ignored = [&](const std::string& key) {
    for (const auto& p : options.ignore_prefixes) {
      if (key.rfind(p, 0) == 0) return true;
    }
    return false;
  };
  KeyMismatch diff;
  for (const auto& kv : target) {
    if (!tensors.count(kv.first)) diff.missing.push_back(kv.first);
  }
  for (const auto& [key, t] : tensors) {
    if (ignored(key)) continue;
    auto it = target.find(key);
    if (it == target.end()) {
      diff.unexpected.push_back(key);
    } else if (it->second.sizes() != t.sizes()) {
      diff.mismatched.push_back(clr::detail::concat(key, " (file ", describe(t), ", ", options.model_name, " ",
                                          describe(it->second), ")"));
    }
  }
  if (options.strict && !diff.empty()) {
    std::string msg = clr::detail::concat(source, " does not fit ", options.model_name, ":", diff.summary());
    const std::string guess = guess_architecture(tensors);
    if (!guess.empty() && options.model_name.rfind(guess, 0) != 0) msg += clr::detail::concat(" the file looks like a ", guess, " checkpoint");
    throw IncompatibleError(msg);
  }
  torch::NoGradGuard no_grad;
  for (const auto& [key, t] : tensors) {
    auto it = target.find(key);
    if (it == target.end() || ignored(key) || it->second.sizes() != t.sizes()) continue;
    at::Tensor dst = it->second;
    dst.copy_(t.to(dst.device(), dst.scalar_type()));
  }
}

TensorMap as_torchvision_names(TensorMap tensors, const TensorMap& target) {
  auto matches = [&](const TensorMap& m) {
    int64_t n = 0;
    for (const auto& kv : m) n += target.count(kv.first) ? 1 : 0;
    return n;
  };
  // Wrappers' prefixes, shared by every key: DDP's "module.", torch.compile's
  // "_orig_mod.", Lightning's and others' "model." / "backbone." / "encoder.".
  for (bool stripped = true; stripped && !tensors.empty();) {
    stripped = false;
    for (const std::string p : {"module.", "_orig_mod.", "model.", "backbone.", "encoder."}) {
      const bool all = std::all_of(tensors.begin(), tensors.end(), [&](const auto& kv) { return kv.first.rfind(p, 0) == 0; });
      if (!all) continue;
      TensorMap renamed;
      for (auto& [k, t] : tensors) renamed.emplace(k.substr(p.size()), std::move(t));
      if (matches(renamed) < matches(tensors)) continue;
      tensors = std::move(renamed);
      stripped = true;
    }
  }
  // timm's classifier head ("head.fc.*" in its newer models) is torchvision's fc.
  for (const char* param : {"weight", "bias"}) {
    const std::string from = std::string("head.fc.") + param, to = std::string("fc.") + param;
    auto it = tensors.find(from);
    if (it != tensors.end() && !tensors.count(to)) {
      at::Tensor t = it->second;
      tensors.erase(it);
      tensors.emplace(to, t);
    }
  }
  // Checkpoints without BatchNorm's num_batches_tracked (timm's, older PyTorch's):
  // PyTorch's BatchNorm loads them as 0, and so does this.
  for (const auto& [k, t] : target) {
    const std::string suffix = ".num_batches_tracked";
    if (k.size() > suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        !tensors.count(k) && tensors.count(k.substr(0, k.size() - suffix.size()) + ".running_mean")) {
      tensors.emplace(k, torch::zeros({}, torch::kLong));
    }
  }
  return tensors;
}

ResNet load_resnet(const std::string& arch, const std::string& path, int64_t num_classes, bool small_stem) {
  ResNet net = make_resnet(arch, num_classes, small_stem);
  LoadOptions opts;
  opts.model_name = arch + (small_stem ? " (small stem)" : "") + (num_classes > 0 ? "" : " features");
  if (num_classes == 0) opts.ignore_prefixes = {"fc."};
  load_state_dict(*net, as_torchvision_names(load_tensor_file(path), state_dict(*net)), opts,
                  clr::detail::concat("'", path, "'"));
  return net;
}

}  // namespace clr::models
