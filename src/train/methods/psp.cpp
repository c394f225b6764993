#include "clr/train/methods/psp.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/models/registry.h"
#include "clr/train/methods/supsup.h"

namespace clr::train {

void PspOptions::validate() const {
  CLR_CHECK(context == "random" || context == "first-ones" || context == "ones", ConfigError,
            "psp context (--psp-context) must be random, first-ones or ones, got '", context, "'");
}

PspMethod::PspMethod(models::ResNet backbone, int64_t backbone_params_with_fc, PspOptions options)
    : FinetuneMethod(std::move(backbone), FinetuneKind::kSgd, backbone_params_with_fc, 0),
      options_(std::move(options)) {
  options_.validate();
}

void PspMethod::begin_task(const TaskInfo& task) {
  FinetuneMethod::begin_task(task);
  add_contexts(task.index);
}

bool PspMethod::resumable() const { return true; }

void PspMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  FinetuneMethod::resume(done, state);
  for (const TaskInfo& task : done) add_contexts(task.index);
}

void PspMethod::add_contexts(int64_t index) {
  CLR_ASSERT(index == static_cast<int64_t>(contexts_.size()), "contexts are made in task order");
  // The task's contexts: from its own generator (seed, task), never from LibTorch's, so
  // that the run is `sgd`'s bit for bit when every context is all ones.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed * 1000003ull + static_cast<uint64_t>(index));
  const bool ones = options_.context == "ones" || (options_.context == "first-ones" && index == 0);
  std::vector<at::Tensor> contexts;
  for (const auto& site : backbone_->conv_sites()) {
    const std::vector<int64_t> shape{1, site.in_channels, site.kernel, site.kernel};
    at::Tensor c = ones ? torch::ones(shape)
                        : torch::where(at::rand(shape, gen, torch::dtype(torch::kFloat32)) < 0.5, -1.0, 1.0)
                              .to(torch::kFloat32);
    contexts.push_back(c.to(device()));
  }
  contexts_.push_back(std::move(contexts));
}

template <class F>
at::Tensor PspMethod::with_context(int64_t task, F&& f) {
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(contexts_.size()), ConfigError, "task ", task,
            " has not been learned");
  active_ = task;
  const models::ScopedConvHook hook(*backbone_, this);
  return f();
}

at::Tensor PspMethod::conv(size_t site, torch::nn::Conv2dImpl& conv, const at::Tensor& x) {
  const auto& s = backbone_->conv_sites()[site];
  const at::Tensor& c = contexts_[static_cast<size_t>(active_)][site];
  return torch::conv2d(x, conv.weight * c, {}, {s.stride, s.stride}, {s.padding, s.padding});
}

at::Tensor PspMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  return with_context(current_task(), [&] { return FinetuneMethod::loss(images, labels); });
}

at::Tensor PspMethod::predict(int64_t task, const at::Tensor& images) {
  return with_context(task, [&] { return FinetuneMethod::predict(task, images); });
}

const at::Tensor& PspMethod::context(int64_t task, size_t site) const {
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(contexts_.size()), ConfigError, "no context for task ", task);
  return contexts_[static_cast<size_t>(task)].at(site);
}

TensorMap PspMethod::task_state(int64_t task) const {
  TensorMap s = FinetuneMethod::task_state(task);
  const auto& sites = backbone_->conv_sites();
  for (size_t i = 0; i < sites.size(); ++i) s.emplace("context." + sites[i].name, pack_bits(context(task, i).gt(0)));
  return s;
}

int64_t PspMethod::extra_params(int64_t task) const {
  int64_t bits = 0;
  for (const auto& c : contexts_.at(static_cast<size_t>(task))) bits += c.numel();
  return FinetuneMethod::extra_params(task) + (bits + 31) / 32;
}

}  // namespace clr::train
