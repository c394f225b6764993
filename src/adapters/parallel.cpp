#include "clr/adapters/parallel.h"

#include <algorithm>
#include <set>

#include <torch/torch.h>

#include "clr/core/error.h"

namespace clr::adapters {

ParallelTasks::ParallelTasks(ReprogrammedNet net, const std::vector<TensorMap>& states) : net_(std::move(net)) {
  CLR_CHECK(!states.empty(), ConfigError, "parallel training needs at least one task");
  const auto keys = net_->task_state_keys();
  const c10::Device dev = net_->device();
  const auto& sites = net_->backbone()->conv_sites();
  const bool clr = net_->options().variant() != Variant::kResidual;
  const std::vector<std::string> trainable = net_->trainable_keys();
  const std::set<std::string> trained(trainable.begin(), trainable.end());
  for (const TensorMap& state : states) {
    KeyMismatch diff;
    for (const auto& k : keys) {
      if (!state.count(k)) diff.missing.push_back(k);
    }
    for (const auto& [k, v] : state) {
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) diff.unexpected.push_back(k);
    }
    CLR_CHECK(diff.empty(), IncompatibleError, "task state does not fit this ", variant_name(net_->options().variant()),
              " network:", diff.summary());
    Task t;
    for (const auto& [k, v] : state) {
      at::Tensor live = v.detach().to(dev).clone();
      if (trained.count(k) && live.is_floating_point()) live.requires_grad_(true);
      t.live.emplace(k, live);
    }
    t.kernel.resize(sites.size());
    t.norm.resize(sites.size());
    for (size_t i = 0; i < sites.size(); ++i) {
      const auto& s = sites[i];
      const std::string adapter = (clr ? "clr." : "residual.") + s.name + ".weight";
      if (auto it = t.live.find(adapter); it != t.live.end()) t.kernel[i] = it->second;
      std::vector<at::Tensor> bn(5);
      for (size_t f = 0; f < 5; ++f) {
        if (auto it = t.live.find("bn." + s.norm + "." + models::kBatchNormTensors[f]); it != t.live.end()) bn[f] = it->second;
      }
      t.norm[i] = bn;
    }
    tasks_.push_back(std::move(t));
  }
  // Every task's running statistics at a site in one buffer, the tasks' tensors its slices.
  const size_t k_tasks = tasks_.size();
  stacked_mean_.resize(sites.size());
  stacked_var_.resize(sites.size());
  stacked_count_.resize(sites.size());
  for (size_t i = 0; i < sites.size(); ++i) {
    if (!tasks_.front().norm[i][2].defined()) continue;
    const auto stack = [&](size_t f, at::Tensor& into) {
      std::vector<at::Tensor> parts;
      for (const Task& t : tasks_) parts.push_back(t.norm[i][f]);
      const bool scalar = parts.front().dim() == 0;
      into = scalar ? torch::stack(parts) : torch::cat(parts);
      const int64_t n = scalar ? 1 : parts.front().size(0);
      for (size_t k = 0; k < k_tasks; ++k) {
        const at::Tensor view = scalar ? into.select(0, static_cast<int64_t>(k))
                                       : into.narrow(0, static_cast<int64_t>(k) * n, n);
        tasks_[k].norm[i][f] = view;
        tasks_[k].live["bn." + sites[i].norm + "." + models::kBatchNormTensors[f]] = view;
      }
    };
    stack(2, stacked_mean_[i]);
    stack(3, stacked_var_[i]);
    if (tasks_.front().norm[i][4].defined()) stack(4, stacked_count_[i]);
  }
}

at::Tensor ParallelTasks::to_grouped(const at::Tensor& x) const {
  const int64_t k = static_cast<int64_t>(active_.size()), b = sizes_.front();
  const int64_t c = x.size(1), h = x.size(2), w = x.size(3);
  if (x.is_contiguous()) return x.view({b, k * c, h, w});
  // Channels-last: [B*K][H][W][C] in memory must become [B][H][W][K*C].
  return x.permute({0, 2, 3, 1})
      .reshape({b, k, h, w, c})
      .permute({0, 2, 3, 1, 4})
      .reshape({b, h, w, k * c})
      .permute({0, 3, 1, 2});
}

at::Tensor ParallelTasks::from_grouped(const at::Tensor& g) const {
  const int64_t k = static_cast<int64_t>(active_.size()), b = sizes_.front();
  const int64_t c = g.size(1) / k, h = g.size(2), w = g.size(3);
  if (g.is_contiguous()) return g.view({b * k, c, h, w});
  return g.permute({0, 2, 3, 1})
      .reshape({b, h, w, k, c})
      .permute({0, 3, 1, 2, 4})
      .reshape({b * k, h, w, c})
      .permute({0, 3, 1, 2});
}

std::vector<at::Tensor> ParallelTasks::split(const at::Tensor& x) const {
  if (sizes_.size() == 1) return {x};
  return x.split_with_sizes(sizes_, 0);
}

std::vector<at::Tensor> ParallelTasks::forward(const at::Tensor& x, const std::vector<size_t>& tasks,
                                               const std::vector<int64_t>& sizes) {
  CLR_CHECK(!tasks.empty() && tasks.size() == sizes.size(), ConfigError, "one sample count per task expected, got ",
            sizes.size(), " for ", tasks.size(), " tasks");
  int64_t total = 0;
  for (size_t k = 0; k < tasks.size(); ++k) {
    CLR_CHECK(tasks[k] < tasks_.size(), ConfigError, "task ", tasks[k], " of ", tasks_.size());
    CLR_CHECK(sizes[k] >= 1, ConfigError, "every task needs at least one sample in the batch");
    total += sizes[k];
  }
  CLR_CHECK(total == x.size(0), ConfigError, "the batch has ", x.size(0), " samples, the counts add up to ", total);
  active_ = tasks;
  sizes_ = sizes;
  // Grouped: every task, in order, with the same count (the stacked buffers hold them all).
  grouped_ = tasks.size() > 1 && tasks.size() == tasks_.size() && x.dim() == 4 &&
             net_->options().variant() != Variant::kResidual &&
             (x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast));
  for (size_t k = 0; grouped_ && k < tasks.size(); ++k) grouped_ = tasks[k] == k && sizes[k] == sizes.front();
  models::ResNetImpl& backbone = *net_->backbone();
  const models::ScopedConvHook hook(backbone, this);
  std::vector<at::Tensor> features;
  if (grouped_) {
    // Task-major rows (task k's samples one after another) to sample-major ones.
    const int64_t k = static_cast<int64_t>(tasks.size()), b = sizes.front();
    const at::MemoryFormat format = x.is_contiguous() ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast;
    const at::Tensor xs = x.reshape({k, b, x.size(1), x.size(2), x.size(3)})
                              .transpose(0, 1)
                              .reshape({k * b, x.size(1), x.size(2), x.size(3)})
                              .contiguous(format);
    const at::Tensor f = backbone.features(xs);
    const at::Tensor fv = f.view({b, k, f.size(1)});
    for (int64_t i = 0; i < k; ++i) features.push_back(fv.select(1, i));
  } else {
    features = split(backbone.features(x));
  }
  std::vector<at::Tensor> logits;
  for (size_t k = 0; k < tasks.size(); ++k) {
    const TensorMap& live = tasks_[tasks[k]].live;
    logits.push_back(torch::nn::functional::linear(features[k], live.at("head.weight"), live.at("head.bias")));
  }
  return logits;
}

at::Tensor ParallelTasks::after_conv(size_t site, const at::Tensor& input, const at::Tensor& output) {
  if (!tasks_.front().kernel[site].defined()) return output;
  const bool clr = net_->options().variant() != Variant::kResidual;
  if (grouped_) {  // one depthwise convolution over every task's channels (CLR variants only)
    std::vector<at::Tensor> kernels;
    for (size_t k : active_) kernels.push_back(tasks_[k].kernel[site]);
    const at::Tensor w = torch::cat(kernels, 0);
    const at::Tensor g = to_grouped(output);
    return from_grouped(torch::conv2d(g, w, {}, 1, w.size(-1) / 2, 1, g.size(1)));
  }
  const std::vector<at::Tensor> out = split(output);
  const std::vector<at::Tensor> in = clr ? std::vector<at::Tensor>{} : split(input);
  std::vector<at::Tensor> parts;
  for (size_t k = 0; k < active_.size(); ++k) {
    const at::Tensor& w = tasks_[active_[k]].kernel[site];
    if (clr) {
      parts.push_back(torch::conv2d(out[k], w, {}, 1, w.size(-1) / 2, 1, out[k].size(1)));
    } else {
      parts.push_back(out[k] + torch::conv2d(in[k], w, {}, net_->backbone()->conv_sites()[site].stride));
    }
  }
  return parts.size() == 1 ? parts.front() : torch::cat(parts, 0);
}

at::Tensor ParallelTasks::norm(size_t site, torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) {
  const double eps = bn.options.eps();
  const std::vector<at::Tensor>& first = tasks_.front().norm[site];
  if (!first[0].defined()) {  // the backbone's own BatchNorm, in eval mode (residual, frozen)
    return torch::batch_norm(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, false, 0.0, eps, true);
  }
  const bool per_task_statistics = first[2].defined();  // norm mode task; affine keeps the backbone's
  const bool batch_statistics = training_ && per_task_statistics;
  const double momentum = bn.options.momentum().value_or(0.1);
  if (grouped_) {  // one BatchNorm over every task's channels, each with its own statistics
    std::vector<at::Tensor> weights, biases;
    for (size_t k : active_) {
      weights.push_back(tasks_[k].norm[site][0]);
      biases.push_back(tasks_[k].norm[site][1]);
    }
    const int64_t k = static_cast<int64_t>(active_.size());
    const at::Tensor mean = per_task_statistics ? stacked_mean_[site] : bn.running_mean.repeat({k});
    const at::Tensor var = per_task_statistics ? stacked_var_[site] : bn.running_var.repeat({k});
    if (batch_statistics && stacked_count_[site].defined()) {
      torch::NoGradGuard no_grad;
      stacked_count_[site].add_(1);  // num_batches_tracked, as the module counts
    }
    return from_grouped(torch::batch_norm(to_grouped(x), torch::cat(weights), torch::cat(biases), mean, var,
                                          batch_statistics, momentum, eps, true));
  }
  const std::vector<at::Tensor> xs = split(x);
  std::vector<at::Tensor> parts;
  for (size_t k = 0; k < active_.size(); ++k) {
    const std::vector<at::Tensor>& v = tasks_[active_[k]].norm[site];
    const at::Tensor& mean = per_task_statistics ? v[2] : bn.running_mean;
    const at::Tensor& var = per_task_statistics ? v[3] : bn.running_var;
    if (batch_statistics && v[4].defined()) {
      torch::NoGradGuard no_grad;
      v[4].add_(1);  // num_batches_tracked, as the module counts
    }
    parts.push_back(torch::batch_norm(xs[k], v[0], v[1], mean, var, batch_statistics, momentum, eps, true));
  }
  return parts.size() == 1 ? parts.front() : torch::cat(parts, 0);
}

std::vector<at::Tensor> ParallelTasks::trainable_parameters(size_t k) const {
  std::vector<at::Tensor> out;
  for (const auto& [key, t] : tasks_.at(k).live) {
    if (t.requires_grad()) out.push_back(t);
  }
  return out;
}

TensorMap ParallelTasks::task_state(size_t k) const {
  TensorMap out;
  for (const auto& [key, t] : tasks_.at(k).live) out.emplace(key, t.detach().to(at::kCPU).clone());
  return out;
}

}  // namespace clr::adapters
