#include "clr/train/methods/regularized.h"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <numeric>
#include <random>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/log.h"
#include "clr/data/loader.h"
#include "clr/train/task_states.h"

namespace clr::train {
namespace {

std::vector<at::Tensor> values(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  std::vector<at::Tensor> out;
  for (const auto& kv : named) out.push_back(kv.second);
  return out;
}

std::vector<at::Tensor> detached_clones(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.detach().clone());
  return out;
}

std::vector<at::Tensor> zeros_like_all(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(torch::zeros_like(t, t.options().requires_grad(false)));
  return out;
}

// sum_i (w_i * (p_i - c_i)^2).sum() as a differentiable scalar.
at::Tensor weighted_distance(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& weight,
                             const std::vector<at::Tensor>& centre, const at::TensorOptions& options) {
  at::Tensor s = torch::zeros({}, options);
  for (size_t i = 0; i < params.size(); ++i) s = s + (weight[i] * (params[i] - centre[i]).pow(2)).sum();
  return s;
}

TensorMap named_state(const std::vector<std::pair<std::string, at::Tensor>>& names,
                      const std::vector<std::pair<std::string, const std::vector<at::Tensor>*>>& groups) {
  TensorMap out;
  for (const auto& [prefix, tensors] : groups) {
    for (size_t i = 0; i < tensors->size(); ++i) {
      out.emplace(prefix + "." + names[i].first, (*tensors)[i].detach().to(at::kCPU).clone());
    }
  }
  return out;
}

// A uniform double in [0, 1) from 53 random bits (the same on every platform).
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// The tensors `prefix.<name>` of `from` for every name of `names`, in that order, on
// `device`, taken out of `from`; none when `from` lacks the first (any others are then
// left in `from`, for check_all_taken). ConfigError for a missing one or one of another
// shape.
std::vector<at::Tensor> take_named(TensorMap& from, const std::vector<std::pair<std::string, at::Tensor>>& names,
                                   const std::string& prefix, c10::Device device) {
  std::vector<at::Tensor> out;
  if (names.empty() || from.count(prefix + "." + names.front().first) == 0) return out;
  for (const auto& [name, like] : names) {
    out.push_back(take_tensor(from, prefix + "." + name, like).to(device, at::kFloat).clone());
  }
  return out;
}

TensorMap merged(TensorMap a, const TensorMap& b) {
  for (const auto& [k, v] : b) a.emplace(k, v);
  return a;
}

}  // namespace

// ---------------------------------------------------------------- EWC / online EWC

void EwcOptions::validate() const {
  CLR_CHECK(lambda >= 0 && std::isfinite(lambda), ConfigError, "ewc lambda (--ewc-lambda) must be finite and >= 0, got ", lambda);
  CLR_CHECK(gamma >= 0 && gamma <= 1, ConfigError, "online-ewc gamma (--ewc-gamma) must be in [0, 1], got ", gamma);
  CLR_CHECK(fisher_samples >= 0, ConfigError, "--fisher-samples must be >= 0, got ", fisher_samples);
}

EwcMethod::EwcMethod(models::ResNet backbone, int64_t backbone_params_with_fc, EwcOptions options)
    : FinetuneMethod(std::move(backbone), FinetuneKind::kSgd, backbone_params_with_fc, 0), options_(options) {
  options_.validate();
}

std::vector<at::Tensor> EwcMethod::fisher(int64_t task, const data::PreparedSplit& split, const TaskEnd& end) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<at::Tensor> params = values(backbone_parameters());
  std::vector<at::Tensor> f = zeros_like_all(params);
  const int64_t n = split.size();
  const int64_t k = options_.fisher_samples > 0 ? std::min(options_.fisher_samples, n) : n;
  std::mt19937_64 rng(options_.seed * 1000003ull + static_cast<uint64_t>(task) + 17);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates with our own draws: the same on every platform
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng() % static_cast<uint64_t>(i + 1))]);
  }
  order.resize(static_cast<size_t>(k));
  std::sort(order.begin(), order.end());
  const at::Tensor idx = torch::tensor(order, torch::kLong);
  data::PreparedSplit subset;
  subset.images = split.images.index_select(0, idx);
  subset.labels = split.labels.index_select(0, idx);

  for_each_eval_batch(subset, end, end.batch_size, [&](const at::Tensor& x, const at::Tensor&) {
    for (int64_t i = 0; i < x.size(0); ++i) {
      const at::Tensor logp = torch::log_softmax(logits(task, x.narrow(0, i, 1)), 1)[0];
      const at::Tensor p = logp.detach().exp().to(torch::kCPU, torch::kDouble);
      const double u = uniform01(rng);
      int64_t y = 0;
      double acc = 0;
      for (; y < p.size(0) - 1; ++y) {
        acc += p[y].item<double>();
        if (u < acc) break;
      }
      const auto grads = torch::autograd::grad({logp[y]}, params, {}, false, false, true);
      torch::NoGradGuard ng;
      for (size_t j = 0; j < params.size(); ++j) {
        if (grads[j].defined()) f[j].add_(grads[j].pow(2));
      }
    }
  });
  torch::NoGradGuard ng;
  for (auto& t : f) t.div_(static_cast<double>(std::max<int64_t>(k, 1)));
  log::info("  ", name(), ": Fisher of task ", task + 1, " from ", k, " images in ",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), " s");
  return f;
}

at::Tensor EwcMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  at::Tensor l = FinetuneMethod::loss(images, labels);
  if (precision_.empty()) return l;
  return l + (options_.lambda / 2) * weighted_distance(values(backbone_parameters()), precision_, centre_, l.options());
}

void EwcMethod::merge_offline(std::vector<at::Tensor>& precision, std::vector<at::Tensor>& centre,
                              const std::vector<at::Tensor>& f, const std::vector<at::Tensor>& theta) {
  torch::NoGradGuard ng;
  if (precision.empty()) {
    precision = f;
    centre = theta;
    return;
  }
  for (size_t i = 0; i < f.size(); ++i) {
    const at::Tensor a = precision[i] + f[i];
    centre[i] = torch::where(a > 0, (precision[i] * centre[i] + f[i] * theta[i]) / a, theta[i]);
    precision[i] = a;
  }
}

void EwcMethod::end_task(const TaskEnd& end) {
  CLR_ASSERT(end.train != nullptr, "end_task needs the training split");
  const std::vector<at::Tensor> fk = fisher(current_task(), *end.train, end);
  const std::vector<at::Tensor> theta = detached_clones(values(backbone_parameters()));
  torch::NoGradGuard ng;
  if (!options_.online) {
    merge_offline(precision_, centre_, fk, theta);
  } else if (precision_.empty()) {
    precision_ = fk;
    centre_ = theta;
  } else {
    for (size_t i = 0; i < fk.size(); ++i) precision_[i] = options_.gamma * precision_[i] + fk[i];
    centre_ = theta;
  }
  FinetuneMethod::end_task(end);
}

TensorMap EwcMethod::method_state() const {
  if (precision_.empty()) return {};
  return named_state(backbone_parameters(), {{"ewc.precision", &precision_}, {"ewc.centre", &centre_}});
}

TensorMap EwcMethod::checkpoint() const { return merged(FinetuneMethod::checkpoint(), method_state()); }

void EwcMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  TensorMap rest = resume_finetune(done, state);
  const auto names = backbone_parameters();
  precision_ = take_named(rest, names, "ewc.precision", device());
  centre_ = take_named(rest, names, "ewc.centre", device());
  CLR_CHECK(precision_.empty() == done.empty() && centre_.size() == precision_.size(), ConfigError,
            "the checkpoint's EWC precision and centre do not match its ", done.size(), " learned tasks");
  check_all_taken(rest, name());
}

// ---------------------------------------------------------------- SI

void SiOptions::validate() const {
  CLR_CHECK(c >= 0 && std::isfinite(c), ConfigError, "si c (--si-c) must be finite and >= 0, got ", c);
  CLR_CHECK(xi > 0 && std::isfinite(xi), ConfigError, "si xi (--si-xi) must be finite and > 0, got ", xi);
}

SiMethod::SiMethod(models::ResNet backbone, int64_t backbone_params_with_fc, SiOptions options)
    : FinetuneMethod(std::move(backbone), FinetuneKind::kSgd, backbone_params_with_fc, 0), options_(options) {
  options_.validate();
  params_ = values(backbone_parameters());
}

void SiMethod::begin_task(const TaskInfo& task) {
  FinetuneMethod::begin_task(task);
  if (anchor_.empty()) {
    anchor_ = detached_clones(params_);
    omega_ = zeros_like_all(params_);
  }
  path_ = zeros_like_all(params_);
}

at::Tensor SiMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  before_step_ = detached_clones(params_);
  at::Tensor l = FinetuneMethod::loss(images, labels);
  if (current_task() == 0) return l;  // Omega is still 0
  return l + options_.c * weighted_distance(params_, omega_, anchor_, l.options());
}

void SiMethod::after_step() {
  if (before_step_.empty()) return;
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& g = params_[i].grad();
    if (g.defined()) path_[i].sub_(g * (params_[i].detach() - before_step_[i]));
  }
}

void SiMethod::end_task(const TaskEnd& end) {
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor theta = params_[i].detach();
    omega_[i].add_(path_[i] / ((theta - anchor_[i]).pow(2) + options_.xi));
    anchor_[i] = theta.clone();
  }
  path_.clear();
  before_step_.clear();
  FinetuneMethod::end_task(end);
}

TensorMap SiMethod::method_state() const {
  if (omega_.empty()) return {};
  return named_state(backbone_parameters(), {{"si.omega", &omega_}, {"si.anchor", &anchor_}});
}

TensorMap SiMethod::checkpoint() const { return merged(FinetuneMethod::checkpoint(), method_state()); }

void SiMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  TensorMap rest = resume_finetune(done, state);
  const auto names = backbone_parameters();
  omega_ = take_named(rest, names, "si.omega", device());
  anchor_ = take_named(rest, names, "si.anchor", device());
  CLR_CHECK(omega_.empty() == done.empty() && anchor_.size() == omega_.size(), ConfigError,
            "the checkpoint's SI importance and anchor do not match its ", done.size(), " learned tasks");
  check_all_taken(rest, name());
}

TensorMap SiMethod::step_state() const {
  if (path_.empty()) return {};
  return named_state(backbone_parameters(), {{"si.path", &path_}});
}

void SiMethod::load_step_state(const TensorMap& state) {
  TensorMap rest = state;
  std::vector<at::Tensor> path = take_named(rest, backbone_parameters(), "si.path", device());
  check_all_taken(rest, name());
  if (!path.empty()) path_ = std::move(path);
}

// ---------------------------------------------------------------- LwF

void LwfOptions::validate() const {
  CLR_CHECK(alpha >= 0 && std::isfinite(alpha), ConfigError, "lwf alpha (--lwf-alpha) must be finite and >= 0, got ", alpha);
  CLR_CHECK(temperature > 0 && std::isfinite(temperature), ConfigError, "lwf temperature (--lwf-temperature) must be finite and > 0, got ", temperature);
}

LwfMethod::LwfMethod(models::ResNet backbone, int64_t backbone_params_with_fc, LwfOptions options)
    : FinetuneMethod(std::move(backbone), FinetuneKind::kSgd, backbone_params_with_fc, 0), options_(options) {
  options_.validate();
}

void LwfMethod::begin_task(const TaskInfo& task) {
  FinetuneMethod::begin_task(task);
  if (task.index == 0) return;
  teacher_ = models::ResNet(std::dynamic_pointer_cast<models::ResNetImpl>(backbone_->clone()));
  teacher_->eval();
  for (auto& p : teacher_->parameters()) p.requires_grad_(false);
  for (int64_t j = 0; j < task.index; ++j) {
    for (auto& p : head_of(j)->parameters()) p.requires_grad_(false);
  }
}

at::Tensor LwfMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  const at::Tensor features = backbone_->features(images);
  at::Tensor l = torch::nn::functional::cross_entropy(head_logits(current_task(), features), labels);
  if (teacher_.is_empty()) return l;
  at::Tensor old;
  {
    torch::NoGradGuard ng;
    old = teacher_->features(images);
  }
  const double inv_t = 1.0 / options_.temperature;
  at::Tensor kd = torch::zeros({}, l.options());
  for (int64_t j = 0; j < current_task(); ++j) {
    at::Tensor target_logp;
    {
      torch::NoGradGuard ng;
      target_logp = torch::log_softmax(head_logits(j, old) * inv_t, 1);
    }
    const at::Tensor logp = torch::log_softmax(head_logits(j, features) * inv_t, 1);
    kd = kd + (target_logp.exp() * (target_logp - logp)).sum(1).mean();
  }
  return l + options_.alpha * kd;
}

void LwfMethod::end_task(const TaskEnd& end) {
  teacher_ = models::ResNet(nullptr);
  FinetuneMethod::end_task(end);
}

}  // namespace clr::train
