#include "clr/train/methods/confit.h"

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/models/registry.h"
#include "clr/train/task_states.h"

namespace clr::train {
namespace {

constexpr double kMomentum = 0.1;  // of the input-mean trackers, as BatchNorm's
const char* const kNormTensors[] = {"weight", "bias", "running_mean", "running_var"};

// Per-channel mean of x [N, C, H, W]: [C], or [4, C] over the four (row, column) parities.
at::Tensor channel_means(const at::Tensor& x, bool phased) {
  if (!phased) return x.mean({0, 2, 3});
  std::vector<at::Tensor> phases;
  for (int64_t r = 0; r < 2; ++r) {
    for (int64_t c = 0; c < 2; ++c) {
      phases.push_back(x.slice(2, r, x.size(2), 2).slice(3, c, x.size(3), 2).mean({0, 2, 3}));
    }
  }
  return torch::stack(phases);
}

}  // namespace

ConfitMethod::ConfitMethod(models::ResNet backbone, int64_t backbone_params_with_fc)
    : FinetuneMethod(std::move(backbone), FinetuneKind::kSgd, backbone_params_with_fc, 0) {
  const auto& sites = backbone_->conv_sites();
  for (size_t i = 0; i < sites.size(); ++i) {
    const int64_t c = sites[i].in_channels;
    input_mean_.push_back(phased(i) ? torch::zeros({4, c}, torch::TensorOptions().device(device()))
                                    : torch::zeros({c}, torch::TensorOptions().device(device())));
  }
}

bool ConfitMethod::phased(size_t site) const { return site == 0 || backbone_->conv_sites().at(site).stride == 2; }

TensorMap ConfitMethod::live_norms() const {
  TensorMap out;
  const TensorMap net = models::state_dict(*backbone_);
  for (const auto& site : backbone_->conv_sites()) {
    for (const char* f : kNormTensors) out.emplace("bn." + site.norm + "." + f, net.at(site.norm + "." + f));
  }
  return out;
}

void ConfitMethod::begin_task(const TaskInfo& task) {
  FinetuneMethod::begin_task(task);
  begin_epoch(0, 1);  // the head alone until the trainer says otherwise
  ++weights_version_;
}

void ConfitMethod::begin_epoch(int64_t epoch, int64_t epochs) {
  const bool norms = epoch * 5 >= epochs, all = epoch * 2 >= epochs;
  const TensorMap net = models::state_dict(*backbone_);
  for (const auto& item : backbone_->named_parameters()) item.value().requires_grad_(all);
  if (norms && !all) {
    for (const auto& site : backbone_->conv_sites()) {
      net.at(site.norm + ".weight").requires_grad_(true);
      net.at(site.norm + ".bias").requires_grad_(true);
    }
  }
}

at::Tensor ConfitMethod::after_conv(size_t site, const at::Tensor& input, const at::Tensor& output) {
  if (tracking_) {
    torch::NoGradGuard ng;
    input_mean_[site].mul_(1 - kMomentum).add_(channel_means(input.detach(), phased(site)), kMomentum);
  }
  return output;
}

at::Tensor ConfitMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  tracking_ = training_;
  const models::ScopedConvHook hook(*backbone_, this);
  return FinetuneMethod::loss(images, labels);
}

TensorMap ConfitMethod::snapshot() {
  TensorMap s = FinetuneMethod::snapshot();  // the backbone (BatchNorm included) and the head
  for (size_t i = 0; i < input_mean_.size(); ++i) s.emplace("input_mean." + std::to_string(i), input_mean_[i].clone());
  return s;
}

void ConfitMethod::restore(const TensorMap& state) {
  TensorMap rest;
  for (const auto& [k, v] : state) {
    if (k.rfind("input_mean.", 0) == 0) {
      input_mean_[std::stoul(k.substr(11))].copy_(v);
    } else {
      rest.emplace(k, v);
    }
  }
  FinetuneMethod::restore(rest);
  ++weights_version_;
}

void ConfitMethod::end_task(const TaskEnd& end) {
  TensorMap s;
  for (const auto& [k, v] : live_norms()) s.emplace(k, v.detach().to(at::kCPU).clone());
  const auto& sites = backbone_->conv_sites();
  for (size_t i = 0; i < sites.size(); ++i) s.emplace("input_mean." + sites[i].name, input_mean_[i].to(at::kCPU).clone());
  states_.push_back(std::move(s));
  FinetuneMethod::end_task(end);
}

TensorMap ConfitMethod::corrected_means(int64_t task, int64_t size) const {
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(states_.size()), ConfigError, "task ", task,
            " has not been learned");
  const TensorMap& state = states_[static_cast<size_t>(task)];
  const auto& sites = backbone_->conv_sites();
  const auto shapes = backbone_->site_shapes(size, size);
  const TensorMap net = models::state_dict(*backbone_);
  torch::NoGradGuard ng;
  TensorMap out;
  for (size_t i = 0; i < sites.size(); ++i) {
    const auto& s = sites[i];
    const at::Tensor mu = state.at("input_mean." + s.name).to(device());
    const int64_t h = shapes[i].in_h, w = shapes[i].in_w;
    at::Tensor x;
    if (phased(i)) {  // each position takes its parity phase's mean
      const at::Tensor tile = mu.view({2, 2, s.in_channels}).permute({2, 0, 1});  // [C, 2 (row), 2 (column)]
      x = tile.repeat({1, (h + 1) / 2, (w + 1) / 2}).slice(1, 0, h).slice(2, 0, w).unsqueeze(0);
    } else {
      x = mu.view({1, s.in_channels, 1, 1}).expand({1, s.in_channels, h, w});
    }
    const at::Tensor y = torch::conv2d(x.contiguous(), net.at(s.name + ".weight"), {}, {s.stride, s.stride},
                                       {s.padding, s.padding});
    out.emplace(s.norm, y.mean({0, 2, 3}));
  }
  return out;
}

at::Tensor ConfitMethod::predict(int64_t task, const at::Tensor& images) {
  if (task == latest()) return FinetuneMethod::predict(task, images);  // its own BatchNorm is the live one
  // An old task: its own BatchNorm, running means corrected, swapped in for this call.
  const int64_t size = images.size(2);
  if (corrected_task_ != task || corrected_size_ != size || corrected_version_ != weights_version_) {
    corrected_.clear();
    const TensorMap& state = states_.at(static_cast<size_t>(task));
    for (const auto& [k, v] : state) {
      if (k.rfind("bn.", 0) == 0) corrected_.emplace(k, v.to(device()));
    }
    for (const auto& [norm, mean] : corrected_means(task, size)) corrected_["bn." + norm + ".running_mean"] = mean;
    corrected_task_ = task;
    corrected_size_ = size;
    corrected_version_ = weights_version_;
  }
  torch::NoGradGuard ng;
  TensorMap live = live_norms();
  const TensorMap saved = clone_tensors(live);
  for (auto& [k, v] : live) v.copy_(corrected_.at(k));
  at::Tensor out;
  try {
    out = FinetuneMethod::predict(task, images);
  } catch (...) {
    for (auto& [k, v] : live) v.copy_(saved.at(k));
    throw;
  }
  for (auto& [k, v] : live) v.copy_(saved.at(k));
  return out;
}

TensorMap ConfitMethod::task_state(int64_t task) const {
  TensorMap s = FinetuneMethod::task_state(task);
  for (const auto& [k, v] : states_.at(static_cast<size_t>(task))) s.emplace(k, v);
  return s;
}

int64_t ConfitMethod::extra_params(int64_t task) const {
  int64_t affine = 0;
  for (const auto& site : backbone_->conv_sites()) affine += 2 * site.out_channels;
  return FinetuneMethod::extra_params(task) + affine;
}

TensorMap ConfitMethod::checkpoint() const {
  TensorMap s = FinetuneMethod::checkpoint();
  for (size_t t = 0; t < states_.size(); ++t) {
    for (const auto& [k, v] : states_[t]) s.emplace(detail::concat("task.", t, ".", k), v);
  }
  return s;
}

void ConfitMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  std::vector<TensorMap> parts = split_task_keys(resume_finetune(done, state), static_cast<int64_t>(done.size()));
  const auto& sites = backbone_->conv_sites();
  TensorMap like = live_norms();  // what end_task keeps of a task
  for (size_t i = 0; i < sites.size(); ++i) like.emplace("input_mean." + sites[i].name, input_mean_[i]);
  for (size_t t = 0; t < parts.size(); ++t) {
    check_task_state(static_cast<int64_t>(t), parts[t], like);
    states_.push_back(std::move(parts[t]));
  }
  if (!states_.empty()) {  // the trackers go on from where the last task left them
    torch::NoGradGuard ng;
    for (size_t i = 0; i < sites.size(); ++i) input_mean_[i].copy_(states_.back().at("input_mean." + sites[i].name));
  }
  ++weights_version_;
}

}  // namespace clr::train
