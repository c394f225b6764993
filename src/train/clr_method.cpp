#include "clr/train/clr_method.h"

#include <torch/torch.h>

#include "clr/core/error.h"

namespace clr::train {

ClrMethod::ClrMethod(models::ResNet backbone, adapters::ReprogramOptions options, int64_t backbone_params_with_fc)
    : net_(std::move(backbone), options, 2), backbone_params_(backbone_params_with_fc) {
  fingerprint_ = net_->backbone_fingerprint();
}

std::string ClrMethod::name() const { return adapters::variant_name(net_->options().variant()); }

std::string ClrMethod::store_variant() const {
  return net_->options().norm() == adapters::NormMode::kTask ? name() : "";
}

void ClrMethod::begin_task(const TaskInfo& task) {
  CLR_ASSERT(task.index == states_.size(), "tasks must be learned in order");
  net_->begin_task(task.num_classes);
  current_ = installed_ = task.index;
}

std::vector<at::Tensor> ClrMethod::trainable_parameters() { return net_->trainable_parameters(); }

at::Tensor ClrMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  return torch::nn::functional::cross_entropy(net_->forward(images), labels);
}

TensorMap ClrMethod::snapshot() { return net_->task_state(); }

void ClrMethod::restore(const TensorMap& state) { net_->load_task_state(state); }

void ClrMethod::end_task(const TaskEnd&) {
  CLR_ASSERT(current_ >= 0, "end_task without begin_task");
  states_.add(net_->task_state(), net_->task_state_size().trainable());
  current_ = -1;
}

void ClrMethod::add_learned_task(const TaskInfo& task, const TensorMap& state) {
  CLR_ASSERT(task.index == states_.size() && current_ < 0, "tasks must be learned in order");
  net_->load_task_state(state);
  states_.add(net_->task_state(), net_->task_state_size().trainable());
  installed_ = task.index;
}

void ClrMethod::install(int64_t task) {
  if (task == installed_) return;
  net_->load_task_state(states_.state(task));
  installed_ = task;
}

at::Tensor ClrMethod::predict(int64_t task, const at::Tensor& images) {
  if (task != current_) {
    CLR_CHECK(current_ < 0, ConfigError, "cannot predict for task ", task, " while task ", current_, " is being learned");
    install(task);
  }
  return net_->forward(images);
}

TensorMap ClrMethod::task_state(int64_t task) const { return states_.state(task); }

int64_t ClrMethod::extra_params(int64_t task) const { return states_.trainable(task); }

TensorMap ClrMethod::checkpoint() const {
  TensorMap out;
  for (int64_t t = 0; t < states_.size(); ++t) {
    for (const auto& [k, v] : states_.state(t)) out.emplace(detail::concat("task.", t, ".", k), v);
  }
  return out;
}

void ClrMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  CLR_ASSERT(states_.size() == 0 && current_ < 0, "resume into a method that has learned nothing");
  const auto parts = split_task_keys(state, static_cast<int64_t>(done.size()));
  for (size_t t = 0; t < done.size(); ++t) add_learned_task(done[t], parts[t]);
}

void ClrMethod::set_training(bool on) { net_->train(on); }

c10::Device ClrMethod::device() const { return net_->device(); }

}  // namespace clr::train
