#include "clr/train/methods/separate.h"

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/models/registry.h"
#include "clr/train/task_states.h"

namespace clr::train {

SeparateMethod::SeparateMethod(models::ResNet backbone, int64_t backbone_params_with_fc)
    : FinetuneMethod(std::move(backbone), FinetuneKind::kSgd, backbone_params_with_fc, 0) {
  initial_ = clone_tensors(models::state_dict(*backbone_));
}

void SeparateMethod::begin_task(const TaskInfo& task) {
  FinetuneMethod::begin_task(task);
  if (task.index == 0) return;
  torch::NoGradGuard ng;
  for (auto& [k, v] : models::state_dict(*backbone_)) v.copy_(initial_.at(k));
}

void SeparateMethod::end_task(const TaskEnd& end) {
  nets_.push_back(models::ResNet(std::dynamic_pointer_cast<models::ResNetImpl>(backbone_->clone())));
  nets_.back()->eval();
  for (auto& p : nets_.back()->parameters()) p.requires_grad_(false);
  FinetuneMethod::end_task(end);
}

at::Tensor SeparateMethod::predict(int64_t task, const at::Tensor& images) {
  if (task == current_task()) return FinetuneMethod::predict(task, images);
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(nets_.size()), ConfigError, "task ", task,
            " has not been learned");
  return head_logits(task, nets_[static_cast<size_t>(task)]->features(images));
}

TensorMap SeparateMethod::task_state(int64_t task) const {
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(nets_.size()), ConfigError, "no state for task ", task);
  TensorMap s = FinetuneMethod::task_state(task);
  for (const auto& [k, v] : models::state_dict(*nets_[static_cast<size_t>(task)])) {
    s.emplace("backbone." + k, v.detach().to(at::kCPU).clone());
  }
  return s;
}

int64_t SeparateMethod::extra_params(int64_t task) const {
  return models::parameter_count(*backbone_) + FinetuneMethod::extra_params(task);
}

TensorMap SeparateMethod::checkpoint() const {
  TensorMap s = FinetuneMethod::checkpoint();
  for (size_t t = 0; t < nets_.size(); ++t) {
    for (const auto& [k, v] : models::state_dict(*nets_[t])) {
      s.emplace(detail::concat("task.", t, ".backbone.", k), v.detach().to(at::kCPU).clone());
    }
  }
  return s;
}

void SeparateMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  const std::vector<TensorMap> parts = split_task_keys(resume_finetune(done, state), static_cast<int64_t>(done.size()));
  torch::NoGradGuard ng;
  for (size_t t = 0; t < parts.size(); ++t) {
    models::ResNet net(std::dynamic_pointer_cast<models::ResNetImpl>(backbone_->clone()));
    TensorMap own = models::state_dict(*net);
    CLR_CHECK(parts[t].size() == own.size(), ConfigError, "the checkpoint's backbone of task ", t + 1, " has ",
              parts[t].size(), " tensors, not ", own.size());
    for (const auto& [k, v] : parts[t]) {
      const auto it = k.rfind("backbone.", 0) == 0 ? own.find(k.substr(9)) : own.end();
      CLR_CHECK(it != own.end() && it->second.sizes() == v.sizes(), ConfigError, "checkpoint tensor 'task.", t, ".",
                k, "' ", describe(v), " is not one of a task's backbone");
      it->second.copy_(v);
    }
    net->eval();
    for (auto& p : net->parameters()) p.requires_grad_(false);
    nets_.push_back(net);
  }
}

void SeparateMethod::set_training(bool on) {
  FinetuneMethod::set_training(on);
  for (auto& net : nets_) net->eval();
}

}  // namespace clr::train
