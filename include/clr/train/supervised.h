// Supervised training of a whole backbone (`clr pretrain`): a ResNet with its fc,
// every parameter trained, behind the Method interface so the same trainer runs it.
#pragma once

#include "clr/models/resnet.h"
#include "clr/train/method.h"

namespace clr::train {

class SupervisedModel : public Method {
 public:
  explicit SupervisedModel(models::ResNet net);

  std::string name() const override { return "supervised"; }
  void begin_task(const TaskInfo& task) override;
  std::vector<at::Tensor> trainable_parameters() override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  void end_task(const TaskEnd&) override {}
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  TensorMap task_state(int64_t task) const override;
  int64_t extra_params(int64_t task) const override;
  int64_t backbone_params() const override;
  std::string backbone_fingerprint() const override;
  void set_training(bool on) override { net_->train(on); }
  c10::Device device() const override { return net_->conv1->weight.device(); }

  models::ResNet net() const { return net_; }

 private:
  models::ResNet net_;
};

}  // namespace clr::train
