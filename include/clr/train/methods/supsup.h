// `supsup`: Supermasks in Superposition (Wortsman et al. 2020), task identity given
// (scenario GG; METHODS.md §10). The network's weights are fixed; each task learns a
// binary mask over every conv weight (edge-popup: real-valued scores, the top fraction
// of |score| kept, the gradient passed straight through to the scores), its own
// non-affine BatchNorm statistics and its own head. Nothing shared ever changes, so
// nothing is forgotten. Stored per task: the masks, one bit per weight (packed eight to
// a byte), the BatchNorm statistics and the head.
//
// The weights are the paper's framing by default: a fixed random "signed constant"
// network, sign(u) * sqrt(2 / fan_in) per conv with u uniform, drawn from `seed`
// alone. `weights = "pretrained"` masks the pretrained backbone instead (a Piggyback-
// style variant that the CLR setting makes reasonable; docs/METHODS.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/modules/linear.h>

#include "clr/models/resnet.h"
#include "clr/train/method.h"

namespace clr::train {

struct SupsupOptions {
  std::string weights = "random";  // "random" (signed constant) or "pretrained"
  // Each layer's kept fraction. 0: the reference's ER budget,
  // min(0.5, er_scale * (C_out + C_in) / (C_out * C_in * k_h * k_w)).
  double density = 0;
  double er_scale = 8;  // the reference's `sparsity` with er_sparsity (rn50-supsup-adam.yaml)
  uint64_t seed = 0;    // the random weights (set from the run's seed)
  // ConfigError naming the setting for an unknown weights mode, a density outside
  // (0, 1] (0 allowed: the ER budget) or a non-positive or non-finite er_scale.
  void validate() const;
};

// Indices of the k largest values of a 1-D tensor: the set topk(k) finds (up to the
// order of ties), faster on the CPU where a full top-k over millions of scores would
// dominate a training step: the values above a threshold estimated from a strided
// sample (about 4k of them) are selected among, and when fewer than k pass it falls
// back to the full top-k. On a GPU it is topk itself (no host synchronisation).
at::Tensor top_k_indices(const at::Tensor& flat, int64_t k);

// Packs a 0/1 tensor (any shape) into uint8 bytes, eight values a byte, most
// significant bit first; the last byte is padded with zeros.
at::Tensor pack_bits(const at::Tensor& mask);
// The inverse: `numel` booleans (as a flat bool tensor) from packed bytes.
at::Tensor unpack_bits(const at::Tensor& packed, int64_t numel);

class SupsupMethod : public Method, private models::ConvHook {
 public:
  // `backbone`: a feature-mode ResNet, already on its device. Its weights are replaced by the
  // random network when options.weights is "random"; they never train.
  SupsupMethod(models::ResNet backbone, int64_t backbone_params_with_fc, SupsupOptions options);
  ~SupsupMethod() override;  // where TaskSlot is complete

  std::string name() const override { return "supsup"; }
  void begin_task(const TaskInfo& task) override;
  std::vector<at::Tensor> trainable_parameters() override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  void end_task(const TaskEnd& end) override;
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  // mask.<conv> (packed bits, uint8), bn.<norm>.running_mean / running_var, head.weight, head.bias.
  TensorMap task_state(int64_t task) const override;
  // The head's parameters plus the mask's bits counted as 1/32 of a (float) parameter each.
  int64_t extra_params(int64_t task) const override;
  // Every task's state (task_state: masks, statistics, head); the network is made
  // again from the seed (or the file), as the stopped run's was.
  bool resumable() const override { return true; }
  TensorMap checkpoint() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;
  int64_t backbone_params() const override { return backbone_params_; }
  // Of the backbone as loaded (before the random weights replace it), so that a
  // comparison shows every method started from the same file.
  std::string backbone_fingerprint() const override { return fingerprint_; }
  void set_training(bool on) override;
  c10::Device device() const override;

  // The kept fraction of every conv site, in conv_sites() order.
  const std::vector<double>& densities() const { return density_; }
  // The current task's masks from its scores now, per site (what a training step
  // computes; for measuring its share of a step).
  std::vector<at::Tensor> current_masks() const;
  // Task `task`'s mask of site `site` (bool, the weight's shape).
  at::Tensor mask(int64_t task, size_t site) const;
  models::ResNet backbone() const { return backbone_; }

 private:
  struct TaskSlot;  // one learned task: masks, BatchNorm statistics, head
  at::Tensor conv(size_t site, torch::nn::Conv2dImpl& conv, const at::Tensor& x) override;
  at::Tensor norm(size_t site, torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) override;
  at::Tensor forward(int64_t task, const at::Tensor& images);
  void install(int64_t task);  // caches the masked weights of a learned task

  SupsupOptions options_;
  models::ResNet backbone_;
  int64_t backbone_params_;
  std::string fingerprint_;
  std::vector<at::Tensor> weights_;     // the fixed conv weights, per site (the module's own tensors)
  std::vector<double> density_;         // per site
  std::vector<int64_t> kept_;           // per site: weights kept by a mask
  std::vector<at::Tensor> scores_;      // the current task's, per site
  std::vector<at::Tensor> mean_, var_;  // the current task's BatchNorm statistics, per site
  torch::nn::Linear head_{nullptr};     // the current task's head
  std::vector<TaskSlot> tasks_;
  std::vector<at::Tensor> cached_;      // masked weights of task installed_, per site
  int64_t installed_ = -1;
  int64_t current_ = -1;
  int64_t active_ = -1;  // the task whose state the hook applies in a forward pass
  bool training_ = false;
};

}  // namespace clr::train
