#include "clr/train/methods/eft.h"

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/models/registry.h"

namespace clr::train {
void EftOptions::validate() const {
  CLR_CHECK(base == "first-task" || base == "pretrained", ConfigError,
            "efts base (--eft-base) must be first-task or pretrained, got '", base, "'");
  CLR_CHECK(spatial_group >= 1, ConfigError, "efts spatial group (--eft-spatial-group) must be >= 1, got ",
            spatial_group);
  CLR_CHECK(depth_group >= 1, ConfigError, "efts depth group (--eft-depth-group) must be >= 1, got ", depth_group);
}

EftMethod::EftMethod(models::ResNet backbone, int64_t backbone_params_with_fc, EftOptions options)
    : options_(std::move(options)), backbone_(std::move(backbone)), backbone_params_(backbone_params_with_fc) {
  options_.validate();
  CLR_CHECK(backbone_->options().num_classes() == 0, ConfigError, "the backbone must be a feature extractor");
  for (const auto& site : backbone_->conv_sites()) {
    for (int64_t g : {options_.spatial_group, options_.depth_group}) {
      CLR_CHECK(site.out_channels % g == 0, ConfigError, "efts: conv ", site.name, " has ", site.out_channels,
                " output channels, not divisible by the group size ", g);
    }
  }
  for (auto& p : backbone_->parameters()) p.requires_grad_(false);
  const TensorMap net = models::state_dict(*backbone_);
  fingerprint_ = fingerprint(net);
  for (const auto& site : backbone_->conv_sites()) base_weights_.push_back(net.at(site.name + ".weight"));
}

c10::Device EftMethod::device() const { return backbone_->conv1->weight.device(); }

int64_t EftMethod::transform_params(size_t site) const {
  return models::parameter_count(*spatial_.at(site)) + models::parameter_count(*depth_.at(site));
}

TensorMap EftMethod::live_state() const {
  TensorMap s;
  const TensorMap net = models::state_dict(*backbone_);
  const auto& sites = backbone_->conv_sites();
  for (size_t i = 0; i < sites.size(); ++i) {
    for (const auto& [k, v] : models::state_dict(*spatial_[i])) s.emplace("eft." + sites[i].name + ".spatial." + k, v);
    for (const auto& [k, v] : models::state_dict(*depth_[i])) s.emplace("eft." + sites[i].name + ".depth." + k, v);
    for (const char* f : models::kBatchNormTensors) s.emplace("bn." + sites[i].norm + "." + f, net.at(sites[i].norm + "." + f));
  }
  for (const auto& [k, v] : models::state_dict(*head_)) s.emplace("head." + k, v);
  return s;
}

void EftMethod::install(int64_t task) {
  if (task == installed_) return;
  const TensorMap& state = states_.state(task);
  const at::Tensor& w = state.at("head.weight");
  if (!head_ || head_->weight.sizes() != w.sizes()) {
    head_ = torch::nn::Linear(w.size(1), w.size(0));
    head_->to(device());
  }
  torch::NoGradGuard ng;
  for (auto& [k, v] : live_state()) v.copy_(state.at(k));
  installed_ = task;
}

void EftMethod::make_transforms() {
  spatial_.clear();
  depth_.clear();
  for (const auto& site : backbone_->conv_sites()) {
    const int64_t c = site.out_channels;
    torch::nn::Conv2d s(torch::nn::Conv2dOptions(c, c, 3).padding(1).groups(c / options_.spatial_group).bias(true));
    torch::nn::Conv2d d(torch::nn::Conv2dOptions(c, c, 1).groups(c / options_.depth_group).bias(true));
    s->to(device());
    d->to(device());
    spatial_.push_back(s);
    depth_.push_back(d);
  }
}

void EftMethod::begin_task(const TaskInfo& task) {
  CLR_ASSERT(task.index == states_.size(), "tasks must be learned in order");
  if (task.index == 0) {
    make_transforms();
  } else {
    install(task.index - 1);  // the previous task's transformations and BatchNorm to start from
  }
  current_ = task.index;
  installed_ = -1;
  head_ = torch::nn::Linear(backbone_->feature_dim(), task.num_classes);
  head_->to(device());
  for (auto& [k, v] : live_state()) {
    if (v.is_floating_point() && k.find(".running_") == std::string::npos) v.requires_grad_(true);
  }
  if (base_trains()) {
    for (auto& w : base_weights_) w.requires_grad_(true);
  }
}

std::vector<at::Tensor> EftMethod::trainable_parameters() {
  std::vector<at::Tensor> out;
  for (auto& [k, v] : live_state()) {
    if (v.requires_grad()) out.push_back(v);
  }
  if (base_trains()) out.insert(out.end(), base_weights_.begin(), base_weights_.end());
  return out;
}

at::Tensor EftMethod::after_conv(size_t site, const at::Tensor& /*input*/, const at::Tensor& output) {
  return spatial_[site]->forward(output) + depth_[site]->forward(output);
}

at::Tensor EftMethod::predict(int64_t task, const at::Tensor& images) {
  if (task != current_) {
    CLR_CHECK(current_ < 0, ConfigError, "cannot predict for task ", task, " while task ", current_, " is being learned");
    install(task);
  }
  const models::ScopedConvHook hook(*backbone_, this);
  return head_->forward(backbone_->features(images));
}

at::Tensor EftMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  return torch::nn::functional::cross_entropy(predict(current_, images), labels);
}

TensorMap EftMethod::base_state() const {
  TensorMap s;
  const auto& sites = backbone_->conv_sites();
  for (size_t i = 0; i < sites.size(); ++i) s.emplace("base." + sites[i].name + ".weight", base_weights_[i]);
  return s;
}

TensorMap EftMethod::snapshot() {
  TensorMap s = clone_tensors(live_state());
  if (base_trains()) {
    for (const auto& [k, v] : base_state()) s.emplace(k, v.detach().clone());
  }
  return s;
}

void EftMethod::restore(const TensorMap& state) {
  torch::NoGradGuard ng;
  for (auto& [k, v] : live_state()) v.copy_(state.at(k));
  if (base_trains()) {
    for (auto& [k, v] : base_state()) v.copy_(state.at(k));
  }
}

void EftMethod::end_task(const TaskEnd&) {
  CLR_ASSERT(current_ >= 0, "end_task without begin_task");
  if (base_trains()) {  // the base is frozen from now on
    for (auto& w : base_weights_) w.requires_grad_(false);
    for (const auto& [k, v] : base_state()) base_.emplace(k, v.detach().to(at::kCPU).clone());
  }
  states_.add_live(live_state());
  installed_ = current_;
  current_ = -1;
}

TensorMap EftMethod::task_state(int64_t task) const { return states_.state(task); }

TensorMap EftMethod::method_state() const { return base_; }

TensorMap EftMethod::checkpoint() const {
  TensorMap s = states_.checkpoint();
  for (const auto& [k, v] : base_) s.emplace(k, v);
  return s;
}

void EftMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  CLR_ASSERT(states_.size() == 0 && current_ < 0, "resume into a method that has learned nothing");
  TensorMap rest = states_.resume(state, static_cast<int64_t>(done.size()));
  if (done.empty()) return;
  if (options_.base == "first-task") base_ = resume_base(rest, base_state());  // learned by task 1, frozen since
  check_all_taken(rest, name());
  make_transforms();
  for (int64_t t = 0; t < states_.size(); ++t) {  // each state fits the live modules
    const TensorMap& s = states_.state(t);
    const auto w = s.find("head.weight");
    CLR_CHECK(w != s.end() && w->second.dim() == 2, ConfigError, "the checkpoint's task ", t + 1, " has no head");
    head_ = torch::nn::Linear(w->second.size(1), w->second.size(0));
    head_->to(device());
    check_task_state(t, s, live_state());
  }
  installed_ = -1;
}

int64_t EftMethod::extra_params(int64_t task) const { return states_.trainable(task); }

void EftMethod::set_training(bool on) {
  backbone_->train(on);
  for (auto& m : spatial_) m->train(on);
  for (auto& m : depth_) m->train(on);
  if (head_) head_->train(on);
}

}  // namespace clr::train
