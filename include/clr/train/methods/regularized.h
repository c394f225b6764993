// The regularisation baselines of the paper, each SGD fine-tuning (a head per task,
// the whole backbone trained, shared BatchNorm) plus an anti-forgetting term on the
// backbone (docs/METHODS.md gives the formulas, the defaults and their sources):
//   ewc         (lambda/2) sum_k F_k (theta - theta*_k)^2 over all past tasks k
//   online-ewc  (lambda/2) F~ (theta - theta*)^2, F~ = gamma F~ + F_k, theta* = latest
//   si          c sum Omega (theta - theta~)^2, Omega from the path integral of -g.dtheta
//   lwf         alpha sum_{j<t} KL(softmax(old_j / T) || softmax(new_j / T))
// With lambda, c or alpha = 0 each is SGD bit for bit (tests/unit/baselines_test.cpp).
#pragma once

#include <string>
#include <vector>

#include "clr/train/methods/finetune.h"

namespace clr::train {

struct EwcOptions {
  double lambda = 1000;          // weight of the quadratic penalty (with the 1/2)
  bool online = false;           // one decayed Fisher and the latest anchor
  double gamma = 1.0;            // online decay of the old Fisher
  int64_t fisher_samples = 512;  // training images per Fisher estimate (0: all)
  uint64_t seed = 0;             // picks the images and samples the labels
  void validate() const;         // ConfigError naming the flag for values out of range
};

// Offline EWC keeps its penalty in constant memory: sum_k F_k (theta - theta*_k)^2 =
// A (theta - c)^2 + const with A = sum_k F_k and c = sum_k F_k theta*_k / A, exact in
// the gradient. So both forms store a precision A and a centre c per parameter; offline
// EWC updates them as A' = A + F_k, c' = (A c + F_k theta*_k) / A' (theta*_k where A' = 0).
class EwcMethod : public FinetuneMethod {
 public:
  EwcMethod(models::ResNet backbone, int64_t backbone_params_with_fc, EwcOptions options);

  std::string name() const override { return options_.online ? "online-ewc" : "ewc"; }
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  void end_task(const TaskEnd& end) override;
  TensorMap method_state() const override;
  // FinetuneMethod's checkpoint and the precision and centre (method_state()).
  bool resumable() const override { return true; }
  TensorMap checkpoint() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;

  // The diagonal Fisher of the backbone parameters on `split` under task `task`'s
  // head: per-sample squared gradients of log p(y|x), y drawn from the model's
  // prediction, eval mode, averaged over the samples. Public for tests.
  std::vector<at::Tensor> fisher(int64_t task, const data::PreparedSplit& split, const TaskEnd& end);
  // Offline EWC's constant-memory merge of one more task (Fisher `f` at parameters
  // `theta`) into precision A and centre c (both empty before the first task).
  static void merge_offline(std::vector<at::Tensor>& precision, std::vector<at::Tensor>& centre,
                            const std::vector<at::Tensor>& f, const std::vector<at::Tensor>& theta);

 private:
  EwcOptions options_;
  std::vector<at::Tensor> precision_;  // A (online: F~)
  std::vector<at::Tensor> centre_;     // c (online: theta* of the latest task)
};

struct SiOptions {
  double c = 100;    // weight of the surrogate penalty
  double xi = 0.1;   // damping of the importance normaliser
  void validate() const;
};

class SiMethod : public FinetuneMethod {
 public:
  SiMethod(models::ResNet backbone, int64_t backbone_params_with_fc, SiOptions options);

  std::string name() const override { return "si"; }
  void begin_task(const TaskInfo& task) override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  void after_step() override;
  void end_task(const TaskEnd& end) override;
  TensorMap method_state() const override;
  // FinetuneMethod's checkpoint and Omega and the anchor (method_state()); within a
  // task, the running path integral is its step state.
  bool resumable() const override { return true; }
  TensorMap checkpoint() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;
  TensorMap step_state() const override;
  void load_step_state(const TensorMap& state) override;

 private:
  SiOptions options_;
  std::vector<at::Tensor> params_;      // the backbone parameters, in order
  std::vector<at::Tensor> omega_;       // Omega, accumulated over finished tasks
  std::vector<at::Tensor> anchor_;      // theta~: parameters at the end of the previous task
  std::vector<at::Tensor> path_;        // omega: this task's running path integral
  std::vector<at::Tensor> before_step_; // parameters before the step being taken
};

struct LwfOptions {
  double alpha = 1.0;        // weight of the distillation term
  double temperature = 2.0;  // softmax temperature T
  void validate() const;
};

// Old heads stay frozen (FACIL without exemplars): the distillation acts on the
// backbone through them, against a frozen copy of the backbone from the end of the
// previous task.
class LwfMethod : public FinetuneMethod {
 public:
  LwfMethod(models::ResNet backbone, int64_t backbone_params_with_fc, LwfOptions options);

  std::string name() const override { return "lwf"; }
  void begin_task(const TaskInfo& task) override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  void end_task(const TaskEnd& end) override;
  // The teacher is the backbone as a task begins: FinetuneMethod's checkpoint is all.
  bool resumable() const override { return true; }

 private:
  LwfOptions options_;
  models::ResNet teacher_{nullptr};
};

}  // namespace clr::train
