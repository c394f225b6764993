// `ccll`: Calibrating CNNs for Lifelong Learning (Singh et al., NeurIPS 2020; METHODS.md
// §11; docs/METHODS.md says what of it could be confirmed). The base network learns the
// first task alone (its convs, BatchNorm and head) and is then frozen, BatchNorm in eval
// mode with the first task's statistics. Every later task calibrates the activation map
// y that each conv's BatchNorm produces (the stem and the 1x1 downsample convs included):
//   spatial:  y1 = y + BN_s(Conv_{KxK, C -> 1}(y))        (one map, broadcast over channels)
//   channel:  y2 = y1 * g(BN_c(DWConv_{1x1}(y1)))         (a gate per channel and position)
// 12 C + 2 values per conv of C outputs with K = 3 (9 C + 2 spatial, C + 2 C channel),
// plus a head. `init = "identity"` (the default) starts every module as the identity:
// BN_s's and BN_c's scales at 0 and g = 2 sigmoid, so g = 1 at the start; `init =
// "default"` keeps PyTorch's initialisation and g = sigmoid (docs/METHODS.md says why
// the default is not that). `base = "pretrained"` freezes the loaded backbone from the start and
// calibrates every task, the first included.
// Stored per task: ccll.<conv>.{spatial,spatial_bn,channel,channel_bn}.* and head.*;
// the base learned on the first task is method state (stored once).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "clr/models/resnet.h"
#include "clr/train/method.h"
#include "clr/train/task_states.h"

namespace clr::train {

struct CcllOptions {
  std::string base = "first-task";  // "first-task" (the paper) or "pretrained"
  int64_t kernel = 3;               // K of the spatial calibration's conv
  std::string init = "identity";    // "identity" (modules start as the identity) or "default"
  // ConfigError naming the setting for an unknown base or init, or a kernel that is even or < 1.
  void validate() const;
};

class CcllMethod : public Method, private models::ConvHook {
 public:
  // `backbone`: a feature-mode ResNet, already on its device.
  CcllMethod(models::ResNet backbone, int64_t backbone_params_with_fc, CcllOptions options);

  std::string name() const override { return "ccll"; }
  void begin_task(const TaskInfo& task) override;
  std::vector<at::Tensor> trainable_parameters() override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  void end_task(const TaskEnd& end) override;
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  TensorMap task_state(int64_t task) const override;
  // The base as learned on the first task: every conv weight and BatchNorm tensor
  // (empty with base = "pretrained").
  TensorMap method_state() const override;
  // The task's calibration modules (affine BatchNorm included) and head.
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
  // Trainable values of one site's calibration modules (12 C + 2 with K = 3).
  int64_t calibration_params(size_t site) const;

 private:
  struct Site {
    torch::nn::Conv2d spatial{nullptr};
    torch::nn::BatchNorm2d spatial_bn{nullptr};
    torch::nn::Conv2d channel{nullptr};
    torch::nn::BatchNorm2d channel_bn{nullptr};
  };
  at::Tensor norm(size_t site, torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) override;
  bool base_trains() const { return options_.base == "first-task" && current_ == 0; }
  // Whether task `task` runs with calibration modules (all but a first-task base's own).
  bool calibrates(int64_t task) const { return !(options_.base == "first-task" && task == 0); }
  TensorMap live_state() const;  // the live calibration modules (when calibrating) and head
  TensorMap base_state() const;  // the base's convs and BatchNorm, on the device
  void install(int64_t task);
  void make_sites();             // fresh calibration modules, per conv site

  CcllOptions options_;
  models::ResNet backbone_;
  int64_t backbone_params_;
  std::string fingerprint_;
  std::vector<Site> sites_;        // the live calibration modules, per conv site
  bool calibrating_ = false;       // whether the live task runs through sites_
  torch::nn::Linear head_{nullptr};
  TaskStates states_;              // per learned task, on the CPU
  TensorMap base_;                 // the base after the first task (base = "first-task")
  int64_t current_ = -1;
  int64_t installed_ = -1;
};

}  // namespace clr::train
