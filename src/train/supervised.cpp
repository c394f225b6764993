#include "clr/train/supervised.h"

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/models/registry.h"

namespace clr::train {

SupervisedModel::SupervisedModel(models::ResNet net) : net_(std::move(net)) {
  CLR_CHECK(net_->options().num_classes() > 0, ConfigError, "supervised training needs a ResNet with an fc layer");
}

void SupervisedModel::begin_task(const TaskInfo& task) {
  CLR_CHECK(task.index == 0, ConfigError, "supervised pretraining learns one task");
  CLR_CHECK(task.num_classes == net_->options().num_classes(), ConfigError, "the network has ",
            net_->options().num_classes(), " outputs but the task has ", task.num_classes, " classes");
}

std::vector<at::Tensor> SupervisedModel::trainable_parameters() {
  std::vector<at::Tensor> out;
  for (auto& p : net_->parameters()) out.push_back(p);
  return out;
}

at::Tensor SupervisedModel::loss(const at::Tensor& images, const at::Tensor& labels) {
  return torch::nn::functional::cross_entropy(net_->forward(images), labels);
}

TensorMap SupervisedModel::snapshot() { return clone_tensors(models::state_dict(*net_)); }

void SupervisedModel::restore(const TensorMap& state) {
  models::LoadOptions o;
  o.model_name = "the network being trained";
  models::load_state_dict(*net_, state, o, "snapshot");
}

at::Tensor SupervisedModel::predict(int64_t, const at::Tensor& images) { return net_->forward(images); }

TensorMap SupervisedModel::task_state(int64_t) const { return models::state_dict(*net_); }

int64_t SupervisedModel::extra_params(int64_t) const { return backbone_params(); }

int64_t SupervisedModel::backbone_params() const {
  return models::parameter_count(*net_);
}

std::string SupervisedModel::backbone_fingerprint() const { return fingerprint(models::state_dict(*net_)); }

}  // namespace clr::train
