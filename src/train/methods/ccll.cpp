#include "clr/train/methods/ccll.h"

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/models/registry.h"

namespace clr::train {
void CcllOptions::validate() const {
  CLR_CHECK(base == "first-task" || base == "pretrained", ConfigError,
            "ccll base (--ccll-base) must be first-task or pretrained, got '", base, "'");
  CLR_CHECK(kernel >= 1 && kernel % 2 == 1 && kernel <= 15, ConfigError,
            "ccll kernel (--ccll-kernel) must be odd and in [1, 15], got ", kernel);
  CLR_CHECK(init == "identity" || init == "default", ConfigError,
            "ccll init (--ccll-init) must be identity or default, got '", init, "'");
}

CcllMethod::CcllMethod(models::ResNet backbone, int64_t backbone_params_with_fc, CcllOptions options)
    : options_(std::move(options)), backbone_(std::move(backbone)), backbone_params_(backbone_params_with_fc) {
  options_.validate();
  CLR_CHECK(backbone_->options().num_classes() == 0, ConfigError, "the backbone must be a feature extractor");
  for (auto& p : backbone_->parameters()) p.requires_grad_(false);
  fingerprint_ = fingerprint(models::state_dict(*backbone_));
}

c10::Device CcllMethod::device() const { return backbone_->conv1->weight.device(); }

int64_t CcllMethod::calibration_params(size_t site) const {
  const Site& s = sites_.at(site);
  return models::parameter_count(*s.spatial) + models::parameter_count(*s.spatial_bn) +
         models::parameter_count(*s.channel) + models::parameter_count(*s.channel_bn);
}

TensorMap CcllMethod::base_state() const {
  TensorMap s;
  for (auto& [k, v] : models::state_dict(*backbone_)) s.emplace("base." + k, v);
  return s;
}

TensorMap CcllMethod::live_state() const {
  TensorMap s;
  if (calibrating_) {
    const auto& sites = backbone_->conv_sites();
    for (size_t i = 0; i < sites.size(); ++i) {
      const std::string p = "ccll." + sites[i].name + ".";
      for (const auto& [k, v] : models::state_dict(*sites_[i].spatial)) s.emplace(p + "spatial." + k, v);
      for (const auto& [k, v] : models::state_dict(*sites_[i].spatial_bn)) s.emplace(p + "spatial_bn." + k, v);
      for (const auto& [k, v] : models::state_dict(*sites_[i].channel)) s.emplace(p + "channel." + k, v);
      for (const auto& [k, v] : models::state_dict(*sites_[i].channel_bn)) s.emplace(p + "channel_bn." + k, v);
    }
  }
  for (const auto& [k, v] : models::state_dict(*head_)) s.emplace("head." + k, v);
  return s;
}

void CcllMethod::install(int64_t task) {
  if (task == installed_) return;
  const TensorMap& state = states_.state(task);
  const at::Tensor& w = state.at("head.weight");
  if (!head_ || head_->weight.sizes() != w.sizes()) {
    head_ = torch::nn::Linear(w.size(1), w.size(0));
    head_->to(device());
  }
  calibrating_ = calibrates(task);
  torch::NoGradGuard ng;
  for (auto& [k, v] : live_state()) v.copy_(state.at(k));
  installed_ = task;
}

void CcllMethod::make_sites() {
  sites_.clear();
  const int64_t k = options_.kernel;
  for (const auto& site : backbone_->conv_sites()) {
    const int64_t c = site.out_channels;
    Site s;
    s.spatial = torch::nn::Conv2d(torch::nn::Conv2dOptions(c, 1, k).padding(k / 2).bias(false));
    s.spatial_bn = torch::nn::BatchNorm2d(1);
    s.channel = torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 1).groups(c).bias(false));
    s.channel_bn = torch::nn::BatchNorm2d(c);
    for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(s.spatial.get()),
                                 static_cast<torch::nn::Module*>(s.spatial_bn.get()),
                                 static_cast<torch::nn::Module*>(s.channel.get()),
                                 static_cast<torch::nn::Module*>(s.channel_bn.get())}) {
      m->to(device());
    }
    if (options_.init == "identity") {  // y1 = y and a gate of 2 sigmoid(0) = 1 at the start
      torch::NoGradGuard ng;
      s.spatial_bn->weight.zero_();
      s.channel_bn->weight.zero_();
    }
    sites_.push_back(s);
  }
}

void CcllMethod::begin_task(const TaskInfo& task) {
  CLR_ASSERT(task.index == states_.size(), "tasks must be learned in order");
  current_ = task.index;
  installed_ = -1;
  calibrating_ = calibrates(task.index);
  if (calibrating_) make_sites();  // a fresh set of calibration modules for every task
  head_ = torch::nn::Linear(backbone_->feature_dim(), task.num_classes);
  head_->to(device());
  for (auto& [k, v] : live_state()) {
    if (v.is_floating_point() && k.find(".running_") == std::string::npos) v.requires_grad_(true);
  }
  if (base_trains()) {
    for (auto& p : backbone_->parameters()) p.requires_grad_(true);
  }
}

std::vector<at::Tensor> CcllMethod::trainable_parameters() {
  std::vector<at::Tensor> out;
  for (auto& [k, v] : live_state()) {
    if (v.requires_grad()) out.push_back(v);
  }
  if (base_trains()) {
    for (auto& p : backbone_->parameters()) out.push_back(p);
  }
  return out;
}

at::Tensor CcllMethod::norm(size_t site, torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) {
  const at::Tensor y = bn.forward(x);
  Site& s = sites_[site];
  const at::Tensor y1 = y + s.spatial_bn->forward(s.spatial->forward(y));
  const at::Tensor gate = torch::sigmoid(s.channel_bn->forward(s.channel->forward(y1)));
  return options_.init == "identity" ? y1 * (2 * gate) : y1 * gate;
}

at::Tensor CcllMethod::predict(int64_t task, const at::Tensor& images) {
  if (task != current_) {
    CLR_CHECK(current_ < 0, ConfigError, "cannot predict for task ", task, " while task ", current_, " is being learned");
    install(task);
  }
  const models::ScopedConvHook hook(*backbone_, calibrating_ ? this : nullptr);
  return head_->forward(backbone_->features(images));
}

at::Tensor CcllMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  return torch::nn::functional::cross_entropy(predict(current_, images), labels);
}

TensorMap CcllMethod::snapshot() {
  TensorMap s = clone_tensors(live_state());
  if (base_trains()) {
    for (const auto& [k, v] : base_state()) s.emplace(k, v.detach().clone());
  }
  return s;
}

void CcllMethod::restore(const TensorMap& state) {
  torch::NoGradGuard ng;
  for (auto& [k, v] : live_state()) v.copy_(state.at(k));
  if (base_trains()) {
    for (auto& [k, v] : base_state()) v.copy_(state.at(k));
  }
}

void CcllMethod::end_task(const TaskEnd&) {
  CLR_ASSERT(current_ >= 0, "end_task without begin_task");
  if (base_trains()) {  // the base is frozen from now on
    for (auto& p : backbone_->parameters()) p.requires_grad_(false);
    for (const auto& [k, v] : base_state()) base_.emplace(k, v.detach().to(at::kCPU).clone());
  }
  states_.add_live(live_state());
  installed_ = current_;
  current_ = -1;
}

TensorMap CcllMethod::task_state(int64_t task) const { return states_.state(task); }

TensorMap CcllMethod::method_state() const { return base_; }

TensorMap CcllMethod::checkpoint() const {
  TensorMap s = states_.checkpoint();
  for (const auto& [k, v] : base_) s.emplace(k, v);
  return s;
}

void CcllMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  CLR_ASSERT(states_.size() == 0 && current_ < 0, "resume into a method that has learned nothing");
  TensorMap rest = states_.resume(state, static_cast<int64_t>(done.size()));
  if (done.empty()) return;
  if (options_.base == "first-task") base_ = resume_base(rest, base_state());  // learned by task 1, frozen since
  check_all_taken(rest, name());
  make_sites();  // live modules for the calibrating tasks to be installed into
  for (int64_t t = 0; t < states_.size(); ++t) {  // each state fits the live modules
    const TensorMap& s = states_.state(t);
    const auto w = s.find("head.weight");
    CLR_CHECK(w != s.end() && w->second.dim() == 2, ConfigError, "the checkpoint's task ", t + 1, " has no head");
    head_ = torch::nn::Linear(w->second.size(1), w->second.size(0));
    head_->to(device());
    calibrating_ = calibrates(t);
    check_task_state(t, s, live_state());
  }
  installed_ = -1;
}

int64_t CcllMethod::extra_params(int64_t task) const { return states_.trainable(task); }

void CcllMethod::set_training(bool on) {
  backbone_->train(on && base_trains());  // a frozen base keeps its BatchNorm statistics
  for (auto& s : sites_) {
    s.spatial->train(on);
    s.spatial_bn->train(on);
    s.channel->train(on);
    s.channel_bn->train(on);
  }
  if (head_) head_->train(on);
}

}  // namespace clr::train
