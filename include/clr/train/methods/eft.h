// `efts`: Efficient Feature Transformations (Verma et al., CVPR 2021; METHODS.md §12).
// After every conv (the stem and the 1x1 downsample convs included) each task has a
// feature transformation of the conv's output y, without an identity term:
//   y' = GConv3x3(y, groups C / spatial_group, bias) + GConv1x1(y, groups C / depth_group, bias)
// then its own BatchNorm (affine and statistics) and its own head. The base network is
// learned on the first task together with the first task's transformations and then
// frozen (the paper's framing, `base = "first-task"`); `base = "pretrained"` freezes
// the loaded backbone from the start (docs/METHODS.md). A later task starts from the
// previous task's transformations and BatchNorm, as the reference notebook does.
// Stored per task: eft.<conv>.{spatial,depth}.{weight,bias}, bn.<norm>.* and head.*;
// the base trained on the first task is method state (stored once).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "clr/models/resnet.h"
#include "clr/train/method.h"
#include "clr/train/task_states.h"

namespace clr::train {

struct EftOptions {
  std::string base = "first-task";  // "first-task" (the paper) or "pretrained"
  int64_t spatial_group = 8;        // channels per group of the 3x3 transformation (the reference's gp)
  int64_t depth_group = 16;         // channels per group of the 1x1 transformation (the reference's pt)
  // ConfigError naming the setting for an unknown base or a group size < 1.
  void validate() const;
};

class EftMethod : public Method, private models::ConvHook {
 public:
  // `backbone`: a feature-mode ResNet, already on its device (its conv weights are held
  // from here on). Every conv's output
  // channels must be divisible by both group sizes (ConfigError naming the conv).
  EftMethod(models::ResNet backbone, int64_t backbone_params_with_fc, EftOptions options);

  std::string name() const override { return "efts"; }
  void begin_task(const TaskInfo& task) override;
  std::vector<at::Tensor> trainable_parameters() override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  void end_task(const TaskEnd& end) override;
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  TensorMap task_state(int64_t task) const override;
  // The base as learned on the first task (empty with base = "pretrained").
  TensorMap method_state() const override;
  // Transformations + BatchNorm affine + head of the task (90 C + 2 C per conv of C
  // outputs with the default groups).
  int64_t extra_params(int64_t task) const override;
  // Every task's state and the base (method_state()).
  bool resumable() const override { return true; }
  TensorMap checkpoint() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;
  int64_t backbone_params() const override { return backbone_params_; }
  std::string backbone_fingerprint() const override { return fingerprint_; }
  void set_training(bool on) override;
  c10::Device device() const override;

  models::ResNet backbone() const { return backbone_; }
  // Values of one site's transformation (weights and biases of both convs).
  int64_t transform_params(size_t site) const;

 private:
  at::Tensor after_conv(size_t site, const at::Tensor& input, const at::Tensor& output) override;
  bool base_trains() const { return options_.base == "first-task" && current_ == 0; }
  TensorMap live_state() const;  // the live transformations, BatchNorm and head, on the device
  void install(int64_t task);
  void make_transforms();        // fresh live transformations, per site
  TensorMap base_state() const;  // the base's conv weights (base.<conv>.weight), the live tensors

  EftOptions options_;
  models::ResNet backbone_;
  int64_t backbone_params_;
  std::string fingerprint_;
  std::vector<at::Tensor> base_weights_;  // the base's conv weights, per site (the module's own tensors)
  std::vector<torch::nn::Conv2d> spatial_, depth_;  // the live transformations, per site
  torch::nn::Linear head_{nullptr};
  TaskStates states_;              // per learned task, on the CPU
  TensorMap base_;                 // the base after the first task (base = "first-task")
  int64_t current_ = -1;
  int64_t installed_ = -1;
};

}  // namespace clr::train
