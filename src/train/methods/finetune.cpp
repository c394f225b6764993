#include "clr/train/methods/finetune.h"

#include <typeinfo>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/data/loader.h"
#include "clr/models/registry.h"
#include "clr/train/task_states.h"

namespace clr::train {

bool parse_finetune_kind(const std::string& name, FinetuneKind* kind) {
  if (name == "sgd") *kind = FinetuneKind::kSgd;
  else if (name == "linear") *kind = FinetuneKind::kLinear;
  else if (name == "sgd-ll") *kind = FinetuneKind::kSgdLastLayer;
  else return false;
  return true;
}

std::string finetune_kind_name(FinetuneKind kind) {
  switch (kind) {
    case FinetuneKind::kSgd: return "sgd";
    case FinetuneKind::kLinear: return "linear";
    case FinetuneKind::kSgdLastLayer: return "sgd-ll";
  }
  return "?";
}

FinetuneMethod::FinetuneMethod(models::ResNet backbone, FinetuneKind kind, int64_t backbone_params_with_fc,
                               int64_t max_classes)
    : kind_(kind), backbone_(std::move(backbone)), backbone_params_(backbone_params_with_fc), max_classes_(max_classes) {
  CLR_CHECK(backbone_->options().num_classes() == 0, ConfigError, "the backbone must be a feature extractor");
  CLR_CHECK(kind_ != FinetuneKind::kSgdLastLayer || max_classes_ >= 2, ConfigError,
            "sgd-ll needs the largest task's class count, got ", max_classes_);
  for (auto& p : backbone_->parameters()) p.requires_grad_(kind_ == FinetuneKind::kSgd);
  fingerprint_ = fingerprint(models::state_dict(*backbone_));
}

c10::Device FinetuneMethod::device() const { return backbone_->conv1->weight.device(); }

const torch::nn::Linear& FinetuneMethod::head_of(int64_t task) const {
  const size_t i = kind_ == FinetuneKind::kSgdLastLayer ? 0 : static_cast<size_t>(task);
  CLR_CHECK(task >= 0 && i < heads_.size(), ConfigError, "task ", task, " has not been learned");
  return heads_[i];
}

void FinetuneMethod::begin_task(const TaskInfo& task) {
  CLR_ASSERT(task.index == static_cast<int64_t>(classes_.size()), "tasks must be learned in order");
  CLR_CHECK(kind_ != FinetuneKind::kSgdLastLayer || task.num_classes <= max_classes_, ConfigError, "task '",
            task.name, "' has ", task.num_classes, " classes, more than sgd-ll's shared layer (", max_classes_, ")");
  classes_.push_back(task.num_classes);
  if (kind_ != FinetuneKind::kSgdLastLayer || heads_.empty()) {
    const int64_t width = kind_ == FinetuneKind::kSgdLastLayer ? max_classes_ : task.num_classes;
    torch::nn::Linear head(backbone_->feature_dim(), width);
    head->to(device());
    heads_.push_back(head);
  }
  current_ = task.index;
}

std::vector<at::Tensor> FinetuneMethod::trainable_parameters() {
  std::vector<at::Tensor> out;
  if (kind_ == FinetuneKind::kSgd) {
    for (auto& p : backbone_->parameters()) out.push_back(p);
  }
  for (auto& p : head_of(current_)->parameters()) out.push_back(p);
  return out;
}

at::Tensor FinetuneMethod::head_logits(int64_t task, const at::Tensor& features) const {
  torch::nn::Linear head = head_of(task);  // shares the module
  at::Tensor out = head->forward(features);
  if (kind_ == FinetuneKind::kSgdLastLayer) out = out.narrow(1, 0, classes_[static_cast<size_t>(task)]);
  return out;
}

at::Tensor FinetuneMethod::logits(int64_t task, const at::Tensor& images) {
  return head_logits(task, backbone_->features(images));
}

std::vector<std::pair<std::string, at::Tensor>> FinetuneMethod::backbone_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : backbone_->named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

void FinetuneMethod::for_each_eval_batch(const data::PreparedSplit& split, const TaskEnd& end, int64_t batch_size,
                                         const std::function<void(const at::Tensor&, const at::Tensor&)>& fn) {
  set_training(false);
  data::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.crop = end.crop;
  lo.device = device();
  data::BatchLoader(split, lo).for_each_batch(0, fn);
}

at::Tensor FinetuneMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  return torch::nn::functional::cross_entropy(logits(current_, images), labels);
}

TensorMap FinetuneMethod::snapshot() {
  TensorMap s;
  if (kind_ == FinetuneKind::kSgd) {
    for (const auto& [k, v] : models::state_dict(*backbone_)) s.emplace("backbone." + k, v.detach().clone());
  }
  for (const auto& [k, v] : models::state_dict(*head_of(current_))) s.emplace("head." + k, v.detach().clone());
  return s;
}

void FinetuneMethod::restore(const TensorMap& state) {
  torch::NoGradGuard ng;
  const TensorMap backbone = models::state_dict(*backbone_);
  const TensorMap head = models::state_dict(*head_of(current_));
  for (const auto& [k, v] : state) {
    const bool in_backbone = k.rfind("backbone.", 0) == 0;
    at::Tensor dst = in_backbone ? backbone.at(k.substr(9)) : head.at(k.substr(5));
    dst.copy_(v);
  }
}

void FinetuneMethod::end_task(const TaskEnd&) { current_ = -1; }

at::Tensor FinetuneMethod::predict(int64_t task, const at::Tensor& images) { return logits(task, images); }

TensorMap FinetuneMethod::task_state(int64_t task) const {
  TensorMap s;
  if (kind_ == FinetuneKind::kSgdLastLayer) {
    head_of(task);  // checks that the task was learned
    return s;
  }
  for (const auto& [k, v] : models::state_dict(*head_of(task))) s.emplace("head." + k, v.detach().to(at::kCPU).clone());
  return s;
}

TensorMap FinetuneMethod::method_state() const {
  TensorMap s;
  if (kind_ != FinetuneKind::kSgdLastLayer || heads_.empty()) return s;
  for (const auto& [k, v] : models::state_dict(*heads_[0])) s.emplace("shared_head." + k, v.detach().to(at::kCPU).clone());
  return s;
}

int64_t FinetuneMethod::extra_params(int64_t task) const {
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(classes_.size()), ConfigError, "no task ", task);
  const int64_t f = backbone_->feature_dim();
  if (kind_ == FinetuneKind::kSgdLastLayer) return task == 0 ? f * max_classes_ + max_classes_ : 0;
  return f * classes_[static_cast<size_t>(task)] + classes_[static_cast<size_t>(task)];
}

bool FinetuneMethod::resumable() const { return typeid(*this) == typeid(FinetuneMethod); }

TensorMap FinetuneMethod::checkpoint() const {
  TensorMap out;
  if (kind_ == FinetuneKind::kSgd) {
    for (const auto& [k, v] : models::state_dict(*backbone_)) out.emplace("backbone." + k, v.detach().to(at::kCPU).clone());
  }
  for (size_t i = 0; i < heads_.size(); ++i) {
    for (const auto& [k, v] : models::state_dict(*heads_[i])) {
      out.emplace(detail::concat("task.", i, ".head.", k), v.detach().to(at::kCPU).clone());
    }
  }
  return out;
}

void FinetuneMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  check_all_taken(resume_finetune(done, state), name());
}

TensorMap FinetuneMethod::resume_finetune(const std::vector<TaskInfo>& done, const TensorMap& state) {
  CLR_ASSERT(classes_.empty() && current_ < 0, "resume into a method that has learned nothing");
  torch::NoGradGuard no_grad;
  TensorMap heads, rest;
  const TensorMap backbone = models::state_dict(*backbone_);
  for (const auto& [k, v] : state) {
    std::string key;
    if (task_key_index(k, &key) >= 0 && key.rfind("head.", 0) == 0) {
      heads.emplace(k, v);
      continue;
    }
    if (k.rfind("backbone.", 0) != 0) {
      rest.emplace(k, v);
      continue;
    }
    const auto it = backbone.find(k.substr(9));
    CLR_CHECK(kind_ == FinetuneKind::kSgd && it != backbone.end() && it->second.sizes() == v.sizes(), ConfigError,
              "checkpoint tensor '", k, "' ", describe(v), " is not one of this ", name(), " backbone's");
    it->second.copy_(v);
  }
  const int64_t n_heads = kind_ == FinetuneKind::kSgdLastLayer ? std::min<int64_t>(1, done.size()) : done.size();
  const std::vector<TensorMap> parts = split_task_keys(heads, n_heads);
  for (size_t i = 0; i < done.size(); ++i) {
    classes_.push_back(done[i].num_classes);
    if (static_cast<int64_t>(i) >= n_heads) continue;
    const TensorMap& h = parts[i];
    CLR_CHECK(h.count("head.weight") && h.count("head.bias"), ConfigError, "the checkpoint's head of task ", i + 1,
              " is incomplete");
    const at::Tensor& w = h.at("head.weight");
    CLR_CHECK(w.dim() == 2 && w.size(1) == backbone_->feature_dim(), ConfigError, "the checkpoint's head of task ",
              i + 1, " is ", describe(w), " for ", backbone_->feature_dim(), " features");
    torch::nn::Linear head(backbone_->feature_dim(), w.size(0));
    head->to(device());
    head->weight.copy_(w);
    head->bias.copy_(h.at("head.bias"));
    heads_.push_back(head);
  }
  return rest;
}

void FinetuneMethod::set_training(bool on) {
  training_ = on;
  // Only sgd trains the backbone (BatchNorm statistics included); the frozen-backbone
  // baselines keep it in eval mode.
  backbone_->train(on && kind_ == FinetuneKind::kSgd);
  for (auto& h : heads_) h->train(on);
}

}  // namespace clr::train
