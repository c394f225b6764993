// The non-continual-learning baselines that differ only in what they train
// (METHODS.md): `sgd` fine-tunes the whole network on each task in turn with a head per
// task; `linear` trains a head per task on the frozen backbone (BatchNorm in eval mode);
// `sgd-ll` trains one shared last layer, as wide as the largest task, on the frozen
// backbone (task t reads its first K_t outputs).
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include "clr/models/resnet.h"
#include "clr/train/method.h"

namespace clr::train {

enum class FinetuneKind { kSgd, kLinear, kSgdLastLayer };

// "sgd", "linear", "sgd-ll"; parse returns false for other names.
bool parse_finetune_kind(const std::string& name, FinetuneKind* kind);
std::string finetune_kind_name(FinetuneKind kind);

class FinetuneMethod : public Method {
 public:
  // `backbone`: a feature-mode ResNet on its device. `max_classes`: the largest task's
  // class count (the width of sgd-ll's shared layer; ignored otherwise).
  FinetuneMethod(models::ResNet backbone, FinetuneKind kind, int64_t backbone_params_with_fc, int64_t max_classes);

  std::string name() const override { return finetune_kind_name(kind_); }
  void begin_task(const TaskInfo& task) override;
  std::vector<at::Tensor> trainable_parameters() override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  void end_task(const TaskEnd& end) override;
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  // A head per task (`sgd`, `linear`); nothing for `sgd-ll`, whose one shared layer is
  // cross-task state (method_state), so it is stored and counted once.
  TensorMap task_state(int64_t task) const override;
  TensorMap method_state() const override;
  int64_t extra_params(int64_t task) const override;
  int64_t backbone_params() const override { return backbone_params_; }
  std::string backbone_fingerprint() const override { return fingerprint_; }
  // `linear` keeps the backbone and a head per task: servable from the store.
  std::string store_variant() const override { return kind_ == FinetuneKind::kLinear ? "linear" : ""; }
  void set_training(bool on) override;
  c10::Device device() const override;
  // sgd, linear and sgd-ll themselves (`backbone.<key>` for sgd, every head as
  // `task.<i>.head.<key>`); a method derived from this one keeps more across tasks or
  // steps, so it is resumable only where it says so itself.
  bool resumable() const override;
  TensorMap checkpoint() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;

  models::ResNet backbone() const { return backbone_; }

 protected:
  const torch::nn::Linear& head_of(int64_t task) const;
  // Puts back what FinetuneMethod::checkpoint() holds (`backbone.<key>` for sgd, the
  // heads as `task.<i>.head.<key>`) and returns the checkpoint's other tensors, for a
  // derived method's resume.
  TensorMap resume_finetune(const std::vector<TaskInfo>& done, const TensorMap& state);
  // Logits of task `task` from backbone features (sgd-ll: its first K outputs).
  at::Tensor head_logits(int64_t task, const at::Tensor& features) const;
  at::Tensor logits(int64_t task, const at::Tensor& images);
  // The backbone's parameters (what the SGD-family regularisers protect), by name.
  std::vector<std::pair<std::string, at::Tensor>> backbone_parameters() const;
  int64_t num_tasks() const { return static_cast<int64_t>(classes_.size()); }
  int64_t current_task() const { return current_; }
  int64_t classes_of(int64_t task) const { return classes_.at(static_cast<size_t>(task)); }
  int64_t max_classes() const { return max_classes_; }
  // Runs fn(images, labels) over `split` without shuffling or augmentation (centred
  // crops when end.crop > 0), in eval mode, on the method's device.
  void for_each_eval_batch(const data::PreparedSplit& split, const TaskEnd& end, int64_t batch_size,
                           const std::function<void(const at::Tensor&, const at::Tensor&)>& fn);

  FinetuneKind kind_;
  models::ResNet backbone_;
  std::vector<torch::nn::Linear> heads_;  // per task, or one shared (sgd-ll)
  std::vector<int64_t> classes_;          // per task
  int64_t backbone_params_;
  int64_t max_classes_;
  std::string fingerprint_;
  int64_t current_ = -1;
  bool training_ = false;
};

}  // namespace clr::train
