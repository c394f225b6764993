// `confit`: ConFiT, continual fine-tuning with shift correction (Jie, Deng & Li,
// CVPR-W 2022; METHODS.md §13). The whole network is fine-tuned on every task, as `sgd`
// does, with two changes:
//   - hierarchical fine-tuning: within a task of E epochs the first E/5 train only the
//     head, up to E/2 also the BatchNorm affine parameters, then everything (the
//     network stays in train mode, so statistics update in every stage);
//   - per-task BatchNorm with shift correction: every task keeps its BatchNorm tensors
//     and the running mean of every conv's input (four means, one per row/column
//     parity, for the stem and the stride-2 convs). An old task is evaluated with its
//     own BatchNorm whose running means are recomputed through the *current* conv
//     weights from the stored input means (a constant image of those means through the
//     conv, averaged); running variances are not corrected, the latest task not at all.
// Per task: the head, bn.<norm>.{weight,bias,running_mean,running_var} and
// input_mean.<conv> ([C_in], or [4, C_in] with phases).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "clr/train/methods/finetune.h"

namespace clr::train {

class ConfitMethod : public FinetuneMethod, private models::ConvHook {
 public:
  ConfitMethod(models::ResNet backbone, int64_t backbone_params_with_fc);

  std::string name() const override { return "confit"; }
  void begin_task(const TaskInfo& task) override;
  // Stages: epoch * 5 < epochs: the head; epoch * 2 < epochs: + BatchNorm affine; then all.
  void begin_epoch(int64_t epoch, int64_t epochs) override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  void after_step() override { ++weights_version_; }
  void end_task(const TaskEnd& end) override;
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  TensorMap task_state(int64_t task) const override;
  // The head plus the BatchNorm affine parameters the task keeps.
  int64_t extra_params(int64_t task) const override;
  // FinetuneMethod's checkpoint and each task's BatchNorm and input means
  // (`task.<i>.bn.*`, `task.<i>.input_mean.*`, as in task_state).
  bool resumable() const override { return true; }
  TensorMap checkpoint() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;

  // Task `task`'s BatchNorm running means as the correction recomputes them through
  // the current weights for `size` x `size` images, by BatchNorm name.
  TensorMap corrected_means(int64_t task, int64_t size) const;
  // Whether site `site` tracks four parity-phase means (the stem, stride-2 convs).
  bool phased(size_t site) const;

 private:
  at::Tensor after_conv(size_t site, const at::Tensor& input, const at::Tensor& output) override;
  TensorMap live_norms() const;  // bn.<norm>.<field> -> the live BatchNorm tensors
  int64_t latest() const { return current_task() >= 0 ? current_task() : num_tasks() - 1; }

  std::vector<at::Tensor> input_mean_;  // live trackers, per site
  std::vector<TensorMap> states_;       // per task: its BatchNorm and input means (CPU)
  bool tracking_ = false;               // train mode: the trackers update
  int64_t weights_version_ = 0;         // changes when the weights may have
  // The last corrected BatchNorm, on the device: for (task, size, weights_version).
  mutable TensorMap corrected_;
  mutable int64_t corrected_task_ = -1, corrected_size_ = 0, corrected_version_ = -1;
};

}  // namespace clr::train
