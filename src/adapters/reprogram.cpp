#include "clr/adapters/reprogram.h"

#include <set>

#include <torch/torch.h>

#include "clr/adapters/clr_layer.h"
#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/models/registry.h"

namespace clr::adapters {
namespace {

bool has_clr(Variant v) { return v == Variant::kClr || v == Variant::kClrFull; }

}  // namespace

Variant parse_variant(const std::string& name) {
  if (name == "clr") return Variant::kClr;
  if (name == "clr-full") return Variant::kClrFull;
  if (name == "residual") return Variant::kResidual;
  throw ConfigError(detail::concat("unknown variant '", name, "'; expected one of clr, clr-full, residual"));
}

std::string variant_name(Variant v) {
  switch (v) {
    case Variant::kClr: return "clr";
    case Variant::kClrFull: return "clr-full";
    case Variant::kResidual: return "residual";
  }
  return "?";
}

std::vector<std::string> variant_names() { return {"clr", "clr-full", "residual"}; }

NormMode parse_norm_mode(const std::string& name) {
  if (name == "task") return NormMode::kTask;
  if (name == "affine") return NormMode::kAffine;
  if (name == "frozen") return NormMode::kFrozen;
  throw ConfigError(detail::concat("unknown BatchNorm mode '", name, "'; expected task, affine or frozen"));
}

std::string norm_mode_name(NormMode mode) {
  switch (mode) {
    case NormMode::kTask: return "task";
    case NormMode::kAffine: return "affine";
    case NormMode::kFrozen: return "frozen";
  }
  return "?";
}

ReprogrammedNetImpl::ReprogrammedNetImpl(models::ResNet backbone, ReprogramOptions options, int64_t num_classes)
    : options_(options) {
  CLR_CHECK(backbone->options().num_classes() == 0, ConfigError,
            "the backbone must be a feature extractor (num_classes 0), got one with an fc of ",
            backbone->options().num_classes(), " classes");
  CLR_CHECK(backbone->conv_hook() == nullptr, ConfigError, "the backbone is already reprogrammed by another network");
  backbone_ = register_module("backbone", std::move(backbone));
  for (auto& p : backbone_->parameters()) p.requires_grad_(false);

  // Map BatchNorm modules by torchvision name.
  std::map<std::string, torch::nn::BatchNorm2dImpl*> norms;
  for (const auto& item : backbone_->named_modules("", /*include_self=*/false)) {
    if (auto* bn = item.value()->as<torch::nn::BatchNorm2dImpl>()) norms[item.key()] = bn;
  }

  adapters_ = register_module("adapters", torch::nn::ModuleList());
  const auto& sites = backbone_->conv_sites();
  site_adapter_.assign(sites.size(), -1);
  const c10::Device dev = device();
  for (size_t i = 0; i < sites.size(); ++i) {
    const models::ConvSite& s = sites[i];
    const bool adapt = options_.variant() != Variant::kClr || s.kernel > 1;
    if (!adapt) continue;
    site_adapter_[i] = static_cast<int>(adapters_->size());
    adapted_sites_.push_back(i);
    if (has_clr(options_.variant())) {
      ClrLayer layer(ClrLayerOptions(s.out_channels).kernel_size(options_.kernel_size()));
      layer->to(dev);
      adapters_->push_back(layer);
      clr_.push_back(layer.get());
      live_.emplace("clr." + s.name + ".weight", layer->weight);
    } else {
      ResidualAdapter res(ResidualAdapterOptions(s.in_channels, s.out_channels, s.stride));
      res->to(dev);
      adapters_->push_back(res);
      residual_.push_back(res.get());
      live_.emplace("residual." + s.name + ".weight", res->weight);
    }
  }

  // BatchNorm: the backbone's values are kept aside as the start of every task.
  for (const auto& s : sites) {
    auto it = norms.find(s.norm);
    CLR_ASSERT(it != norms.end(), "no BatchNorm named ", s.norm);
    torch::nn::BatchNorm2dImpl* bn = it->second;
    const at::Tensor fields[] = {bn->weight, bn->bias, bn->running_mean, bn->running_var, bn->num_batches_tracked};
    for (size_t f = 0; f < 5; ++f) {
      const std::string key = "bn." + s.norm + "." + models::kBatchNormTensors[f];
      norm_base_.emplace(key, fields[f].detach().to(at::kCPU).clone());
      const bool kept = options_.norm() == NormMode::kTask || (options_.norm() == NormMode::kAffine && f < 2);
      if (has_clr(options_.variant()) && kept) {
        live_.emplace(key, fields[f]);
        if (f < 2) fields[f].requires_grad_(true);
      }
    }
  }
  make_head(num_classes);
  backbone_->set_conv_hook(this);
  begin_task(num_classes);
  train(is_training());
}

ReprogrammedNetImpl::~ReprogrammedNetImpl() {
  if (backbone_ && backbone_->conv_hook() == this) backbone_->set_conv_hook(nullptr);
}

c10::Device ReprogrammedNetImpl::device() const { return backbone_->conv1->weight.device(); }

void ReprogrammedNetImpl::make_head(int64_t num_classes) {
  CLR_CHECK(num_classes >= 1, ConfigError, "a task needs at least 1 class, got ", num_classes);
  torch::nn::Linear head(backbone_->feature_dim(), num_classes);
  head->to(device());
  if (head_) {
    head_ = replace_module("head", head);
  } else {
    head_ = register_module("head", head);
  }
}

at::Tensor ReprogrammedNetImpl::forward(const at::Tensor& x) { return head_->forward(backbone_->features(x)); }

void ReprogrammedNetImpl::train(bool on) {
  torch::nn::Module::train(on);
  if (!has_clr(options_.variant()) || options_.norm() != NormMode::kTask) {
    for (auto& m : backbone_->modules(/*include_self=*/false)) {
      if (m->as<torch::nn::BatchNorm2dImpl>() != nullptr) m->eval();
    }
  }
}

int64_t ReprogrammedNetImpl::num_classes() const { return head_->weight.size(0); }

std::vector<std::string> ReprogrammedNetImpl::task_state_keys() const {
  std::vector<std::string> keys;
  for (const auto& kv : live_) keys.push_back(kv.first);
  keys.push_back("head.bias");
  keys.push_back("head.weight");
  std::sort(keys.begin(), keys.end());
  return keys;
}

TensorMap ReprogrammedNetImpl::task_state() const {
  TensorMap out;
  for (const auto& [k, t] : live_) out.emplace(k, t.detach().to(at::kCPU).clone());
  out.emplace("head.weight", head_->weight.detach().to(at::kCPU).clone());
  out.emplace("head.bias", head_->bias.detach().to(at::kCPU).clone());
  return out;
}

void ReprogrammedNetImpl::load_task_state(const TensorMap& state) {
  KeyMismatch diff;
  for (const auto& kv : live_) {
    auto it = state.find(kv.first);
    if (it == state.end()) {
      diff.missing.push_back(kv.first);
    } else if (it->second.sizes() != kv.second.sizes()) {
      diff.mismatched.push_back(detail::concat(kv.first, " (got ", describe(it->second), ", expected ", describe(kv.second), ")"));
    }
  }
  for (const auto& kv : state) {
    if (!live_.count(kv.first) && kv.first != "head.weight" && kv.first != "head.bias") diff.unexpected.push_back(kv.first);
  }
  auto hw = state.find("head.weight");
  auto hb = state.find("head.bias");
  if (hw == state.end()) diff.missing.push_back("head.weight");
  if (hb == state.end()) diff.missing.push_back("head.bias");
  if (hw != state.end() && hb != state.end()) {
    const auto& w = hw->second;
    const auto& b = hb->second;
    if (w.dim() != 2 || w.size(1) != backbone_->feature_dim() || b.dim() != 1 || b.size(0) != w.size(0) ||
        w.size(0) < 1) {
      diff.mismatched.push_back(detail::concat("head (got weight ", describe(w), " and bias ", describe(b),
                                          ", expected [K, ", backbone_->feature_dim(), "] and [K])"));
    }
  }
  CLR_CHECK(diff.empty(), IncompatibleError, "task state does not fit this ", variant_name(options_.variant()),
            " network:", diff.summary());
  if (hw->second.size(0) != num_classes()) make_head(hw->second.size(0));
  torch::NoGradGuard no_grad;
  for (auto& [k, t] : live_) {
    const at::Tensor& src = state.at(k);
    t.copy_(src.to(t.device(), t.scalar_type()));
  }
  head_->weight.copy_(hw->second.to(head_->weight.device(), head_->weight.scalar_type()));
  head_->bias.copy_(hb->second.to(head_->bias.device(), head_->bias.scalar_type()));
}

TensorMap ReprogrammedNetImpl::new_task_state(int64_t num_classes) const {
  CLR_CHECK(num_classes >= 1, ConfigError, "a task needs at least 1 class, got ", num_classes);
  TensorMap state;
  const auto& sites = backbone_->conv_sites();
  for (size_t i : adapted_sites_) {
    const models::ConvSite& s = sites[i];
    if (has_clr(options_.variant())) {
      state.emplace("clr." + s.name + ".weight", identity_depthwise_kernel(s.out_channels, options_.kernel_size()));
    } else {
      ResidualAdapter fresh(ResidualAdapterOptions(s.in_channels, s.out_channels, s.stride));
      state.emplace("residual." + s.name + ".weight", fresh->weight.detach());
    }
  }
  for (const auto& [k, t] : norm_base_) {
    if (live_.count(k) != 0) state.emplace(k, t.clone());
  }
  torch::nn::Linear head(backbone_->feature_dim(), num_classes);
  state.emplace("head.weight", head->weight.detach());
  state.emplace("head.bias", head->bias.detach());
  return state;
}

TaskStateSize ReprogrammedNetImpl::task_state_size() const {
  TaskStateSize size;
  for (const auto& [k, t] : live_) {
    if (k.rfind("bn.", 0) == 0) {
      const bool affine = k.size() > 7 && (k.compare(k.size() - 7, 7, ".weight") == 0 || k.compare(k.size() - 5, 5, ".bias") == 0);
      const bool stats = k.find(".running_") != std::string::npos;
      if (affine) size.norm_affine += t.numel();
      if (stats) size.norm_statistics += t.numel();
    } else {
      size.adapter_params += t.numel();
    }
  }
  size.head_params = head_->weight.numel() + head_->bias.numel();
  return size;
}

std::vector<std::string> ReprogrammedNetImpl::trainable_keys() const {
  std::vector<std::string> keys = {"head.bias", "head.weight"};
  for (const auto& [k, t] : live_) {
    if (t.requires_grad()) keys.push_back(k);
  }
  return keys;
}

std::vector<at::Tensor> ReprogrammedNetImpl::trainable_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& p : parameters(/*recurse=*/true)) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

TensorMap ReprogrammedNetImpl::backbone_state() const {
  TensorMap out;
  for (const auto& [k, t] : models::state_dict(*backbone_)) {
    auto base = norm_base_.find("bn." + k);
    out.emplace(k, base != norm_base_.end() ? base->second : t.detach());
  }
  return out;
}

std::string ReprogrammedNetImpl::backbone_fingerprint() const { return fingerprint(backbone_state()); }

at::Tensor ReprogrammedNetImpl::after_conv(size_t site, const at::Tensor& input, const at::Tensor& output) {
  const int a = site_adapter_[site];
  if (a < 0) return output;
  if (!clr_.empty()) return clr_[a]->forward(output);
  return output + residual_[a]->forward(input);
}

}  // namespace clr::adapters
