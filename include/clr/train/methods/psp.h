// `psp`: Superposition of many models into one (Cheung et al. 2019; METHODS.md §9).
// One set of weights is fine-tuned on every task, as `sgd` does, but task k sees each
// conv's weights bound to a fixed random context: W * c_k, with c_k in {-1, +1} per
// input dimension (C_in x k_h x k_w, broadcast over the output channels), so the
// updates of different tasks fall in nearly orthogonal directions. Per task: the
// contexts (drawn from the run's seed and the task's index; stored 1 bit each) and a
// head. BatchNorm is shared and trains, as in `sgd` (docs/METHODS.md says why).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "clr/train/methods/finetune.h"

namespace clr::train {

struct PspOptions {
  // "random": every task's contexts random (the paper); "first-ones": the first task's
  // are all ones, so it sees the pretrained weights as they are; "ones": every context
  // is all ones, which is `sgd` (a check).
  std::string context = "random";
  uint64_t seed = 0;  // the contexts (set from the run's seed)
  // ConfigError naming --psp-context for another value.
  void validate() const;
};

class PspMethod : public FinetuneMethod, private models::ConvHook {
 public:
  PspMethod(models::ResNet backbone, int64_t backbone_params_with_fc, PspOptions options);

  std::string name() const override { return "psp"; }
  void begin_task(const TaskInfo& task) override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  // context.<conv> (packed bits, uint8: 1 for +1) and head.weight, head.bias.
  TensorMap task_state(int64_t task) const override;
  // The head plus the context bits counted as 1/32 of a (float) parameter each.
  int64_t extra_params(int64_t task) const override;
  // FinetuneMethod's checkpoint: each task's contexts come from (seed, task) again.
  bool resumable() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;

  // Task `task`'s context of site `site`, [1, C_in, k_h, k_w] of +-1 (float).
  const at::Tensor& context(int64_t task, size_t site) const;

 private:
  at::Tensor conv(size_t site, torch::nn::Conv2dImpl& conv, const at::Tensor& x) override;
  void add_contexts(int64_t index);  // task `index`'s, appended
  template <class F>
  at::Tensor with_context(int64_t task, F&& f);

  PspOptions options_;
  std::vector<std::vector<at::Tensor>> contexts_;  // per task, per site
  int64_t active_ = -1;
};

}  // namespace clr::train
