// `separate`: a fully fine-tuned copy of the pretrained backbone per task, each with
// its own head (and its own BatchNorm statistics). No forgetting by construction and
// the accuracy upper bound of fine-tuning; its cost is a whole backbone per task.
#pragma once

#include <string>
#include <vector>

#include "clr/train/methods/finetune.h"

namespace clr::train {

class SeparateMethod : public FinetuneMethod {
 public:
  SeparateMethod(models::ResNet backbone, int64_t backbone_params_with_fc);

  std::string name() const override { return "separate"; }
  void begin_task(const TaskInfo& task) override;
  void end_task(const TaskEnd& end) override;
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  TensorMap task_state(int64_t task) const override;
  int64_t extra_params(int64_t task) const override;
  void set_training(bool on) override;
  // FinetuneMethod's checkpoint and each task's backbone (`task.<i>.backbone.<key>`).
  bool resumable() const override { return true; }
  TensorMap checkpoint() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;

 private:
  TensorMap initial_;                // the pretrained backbone every task starts from
  std::vector<models::ResNet> nets_; // finished tasks' backbones
};

}  // namespace clr::train
