// CLR (variants clr, clr-full, residual) behind the Method interface: one frozen
// backbone, one ReprogrammedNet, and each task's state kept in host memory.
#pragma once

#include <vector>

#include "clr/adapters/reprogram.h"
#include "clr/models/resnet.h"
#include "clr/train/method.h"
#include "clr/train/task_states.h"

namespace clr::train {

class ClrMethod : public Method {
 public:
  // `backbone` is a feature-mode ResNet on its device; `backbone_params_with_fc`
  // is the count the paper's fractions use (torchvision's whole model).
  ClrMethod(models::ResNet backbone, adapters::ReprogramOptions options, int64_t backbone_params_with_fc);

  std::string name() const override;
  void begin_task(const TaskInfo& task) override;
  std::vector<at::Tensor> trainable_parameters() override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  void end_task(const TaskEnd& end) override;
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  TensorMap task_state(int64_t task) const override;
  int64_t extra_params(int64_t task) const override;
  int64_t backbone_params() const override { return backbone_params_; }
  std::string backbone_fingerprint() const override { return fingerprint_; }
  // The store takes the paper's per-task BatchNorm only (the engine serves that); the
  // BatchNorm ablations write task_states/ instead.
  std::string store_variant() const override;
  int64_t store_kernel_size() const override { return net_->options().kernel_size(); }
  void set_training(bool on) override;
  c10::Device device() const override;
  // Every finished task's state, as `task.<i>.<key>`.
  bool resumable() const override { return true; }
  TensorMap checkpoint() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;

  adapters::ReprogrammedNet& net() { return net_; }
  // Appends a task learned elsewhere (train_parallel) as the next one, as begin_task,
  // training and end_task would: `state` is checked against the network.
  void add_learned_task(const TaskInfo& task, const TensorMap& state);

 private:
  void install(int64_t task);

  adapters::ReprogrammedNet net_;
  int64_t backbone_params_;
  std::string fingerprint_;
  TaskStates states_;                 // finished tasks
  int64_t current_ = -1;              // task being learned (-1: none)
  int64_t installed_ = -1;            // task whose state is in net_
};

}  // namespace clr::train
