#include "clr/train/methods/supsup.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/models/registry.h"
#include "clr/train/task_states.h"

namespace clr::train {

struct SupsupMethod::TaskSlot {
  std::vector<at::Tensor> masks;      // bool, per site, on the device
  std::vector<at::Tensor> mean, var;  // BatchNorm statistics, per site
  torch::nn::Linear head{nullptr};
};

namespace {

constexpr double kBnMomentum = 0.1;

// The `kept` largest |scores| (the reference's GetSubnet), as a bool mask.
at::Tensor hard_mask(const at::Tensor& scores, int64_t kept) {
  const at::Tensor flat = scores.detach().abs().flatten();
  return torch::zeros(flat.sizes(), flat.options().dtype(torch::kBool))
      .index_fill_(0, top_k_indices(flat, kept), true)
      .view_as(scores);
}

// The same mask as floats, its gradient passed straight through to the scores (times
// their sign, from abs).
at::Tensor straight_through_mask(const at::Tensor& scores, int64_t kept) {
  const at::Tensor a = scores.abs();
  return hard_mask(scores, kept).to(a.scalar_type()) + (a - a.detach());
}

}  // namespace

void SupsupOptions::validate() const {
  CLR_CHECK(weights == "random" || weights == "pretrained", ConfigError,
            "supsup weights (--supsup-weights) must be random or pretrained, got '", weights, "'");
  CLR_CHECK(std::isfinite(density) && density >= 0 && density <= 1, ConfigError,
            "supsup density (--supsup-density) must be in (0, 1], or 0 for the ER budget; got ", density);
  CLR_CHECK(std::isfinite(er_scale) && er_scale > 0, ConfigError,
            "supsup ER scale (--supsup-er-scale) must be finite and > 0, got ", er_scale);
}

at::Tensor top_k_indices(const at::Tensor& flat, int64_t k) {
  const int64_t n = flat.numel();
  CLR_CHECK(flat.dim() == 1 && k >= 1 && k <= n, ConfigError, "top ", k, " of ", describe(flat));
  auto full = [&] { return std::get<1>(flat.topk(k, 0, /*largest=*/true, /*sorted=*/false)); };
  if (!flat.is_cpu() || n < (1 << 16) || 8 * k > n) return full();
  // A threshold that about 4k values pass, from the (4k / n) upper quantile of a strided sample.
  const at::Tensor sample = flat.slice(0, 0, n, std::max<int64_t>(1, n / 65536));
  const int64_t m = sample.numel();
  const int64_t want = std::min<int64_t>(m, std::max<int64_t>(1, (4 * k * m + n - 1) / n));
  const double threshold = std::get<0>(sample.kthvalue(m - want + 1)).item<double>();
  const at::Tensor candidates = flat.ge(threshold).nonzero().squeeze(1);
  if (candidates.numel() < k) return full();  // an unlucky sample: exact all the same
  return candidates.index_select(0, std::get<1>(flat.index_select(0, candidates).topk(k, 0, true, false)));
}

at::Tensor pack_bits(const at::Tensor& mask) {
  const int64_t n = mask.numel();
  at::Tensor bits = mask.detach().flatten().to(at::kCPU).ne(0).to(torch::kInt32);
  const int64_t padded = (n + 7) / 8 * 8;
  if (padded != n) bits = torch::cat({bits, torch::zeros({padded - n}, bits.options())});
  const at::Tensor weight = torch::tensor({128, 64, 32, 16, 8, 4, 2, 1}, bits.options());
  return (bits.view({-1, 8}) * weight).sum(1).to(torch::kUInt8);
}

at::Tensor unpack_bits(const at::Tensor& packed, int64_t numel) {
  CLR_CHECK(packed.dim() == 1 && packed.scalar_type() == torch::kUInt8 && packed.numel() == (numel + 7) / 8,
            FormatError, "packed mask ", describe(packed), " does not hold ", numel, " bits");
  const at::Tensor weight = torch::tensor({128, 64, 32, 16, 8, 4, 2, 1}, packed.options());
  return packed.unsqueeze(1).bitwise_and(weight).ne(0).flatten().narrow(0, 0, numel);
}

SupsupMethod::SupsupMethod(models::ResNet backbone, int64_t backbone_params_with_fc, SupsupOptions options)
    : options_(std::move(options)), backbone_(std::move(backbone)), backbone_params_(backbone_params_with_fc) {
  options_.validate();
  CLR_CHECK(backbone_->options().num_classes() == 0, ConfigError, "the backbone must be a feature extractor");
  const TensorMap state = models::state_dict(*backbone_);
  const auto& sites = backbone_->conv_sites();
  torch::NoGradGuard ng;
  fingerprint_ = fingerprint(state);  // of the backbone the run loaded, as every method reports
  if (options_.weights == "random") {
    // The signed-constant network of the reference (models/init.py): +-sqrt(2 / fan_in).
    auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed);
    for (const auto& site : sites) {
      at::Tensor w = state.at(site.name + ".weight");
      const double fan_in = static_cast<double>(w.numel() / w.size(0));
      const at::Tensor u = at::rand(w.sizes(), gen, torch::dtype(torch::kFloat32));
      w.copy_(torch::where(u < 0.5, -1.0, 1.0) * std::sqrt(2.0 / fan_in));
    }
  }
  for (auto& p : backbone_->parameters()) p.requires_grad_(false);
  backbone_->eval();  // its own BatchNorm is never used: every task has its own statistics
  for (const auto& site : sites) {
    const at::Tensor& w = state.at(site.name + ".weight");
    weights_.push_back(w);
    const double fan = static_cast<double>(w.size(0) + w.size(1)) / static_cast<double>(w.numel());
    const double d = options_.density > 0 ? options_.density : std::min(0.5, options_.er_scale * fan);
    const int64_t drop = static_cast<int64_t>((1.0 - d) * static_cast<double>(w.numel()));  // as the reference
    density_.push_back(d);
    kept_.push_back(std::max<int64_t>(1, w.numel() - drop));
  }
}

SupsupMethod::~SupsupMethod() = default;

c10::Device SupsupMethod::device() const { return backbone_->conv1->weight.device(); }

void SupsupMethod::begin_task(const TaskInfo& task) {
  CLR_ASSERT(task.index == static_cast<int64_t>(tasks_.size()), "tasks must be learned in order");
  scores_.clear();
  mean_.clear();
  var_.clear();
  const auto& sites = backbone_->conv_sites();
  for (size_t i = 0; i < sites.size(); ++i) {
    const auto& site = sites[i];
    const at::Tensor& w = weights_[i];
    // kaiming_uniform(a = sqrt(5)) as the reference's mask_init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    const double bound = 1.0 / std::sqrt(static_cast<double>(w.numel() / w.size(0)));
    scores_.push_back((torch::rand(w.sizes(), w.options()) * 2 - 1).mul_(bound).requires_grad_(true));
    mean_.push_back(torch::zeros({site.out_channels}, w.options()));
    var_.push_back(torch::ones({site.out_channels}, w.options()));
  }
  head_ = torch::nn::Linear(backbone_->feature_dim(), task.num_classes);
  head_->to(device());
  current_ = task.index;
}

std::vector<at::Tensor> SupsupMethod::trainable_parameters() {
  std::vector<at::Tensor> out = scores_;
  for (auto& p : head_->parameters()) out.push_back(p);
  return out;
}

at::Tensor SupsupMethod::conv(size_t site, torch::nn::Conv2dImpl& /*conv*/, const at::Tensor& x) {
  const auto& s = backbone_->conv_sites()[site];
  const at::Tensor weight =
      active_ == current_ ? weights_[site] * straight_through_mask(scores_[site], kept_[site]) : cached_[site];
  return torch::conv2d(x, weight, {}, {s.stride, s.stride}, {s.padding, s.padding});
}

at::Tensor SupsupMethod::norm(size_t site, torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) {
  const bool current = active_ == current_;
  const at::Tensor& mean = current ? mean_[site] : tasks_[static_cast<size_t>(active_)].mean[site];
  const at::Tensor& var = current ? var_[site] : tasks_[static_cast<size_t>(active_)].var[site];
  // Non-affine BatchNorm with the task's own statistics (the reference's NonAffineBN).
  return torch::batch_norm(x, {}, {}, mean, var, training_ && current, kBnMomentum, bn.options.eps(),
                           /*cudnn_enabled=*/true);
}

at::Tensor SupsupMethod::forward(int64_t task, const at::Tensor& images) {
  active_ = task;
  const at::Tensor features = [&] {
    const models::ScopedConvHook hook(*backbone_, this);
    return backbone_->features(images);
  }();
  torch::nn::Linear head = task == current_ ? head_ : tasks_[static_cast<size_t>(task)].head;
  return head->forward(features);
}

at::Tensor SupsupMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  return torch::nn::functional::cross_entropy(forward(current_, images), labels);
}

TensorMap SupsupMethod::snapshot() {
  TensorMap s;
  for (size_t i = 0; i < scores_.size(); ++i) {
    s.emplace("scores." + std::to_string(i), scores_[i].detach().clone());
    s.emplace("mean." + std::to_string(i), mean_[i].clone());
    s.emplace("var." + std::to_string(i), var_[i].clone());
  }
  for (const auto& [k, v] : models::state_dict(*head_)) s.emplace("head." + k, v.detach().clone());
  return s;
}

void SupsupMethod::restore(const TensorMap& state) {
  torch::NoGradGuard ng;
  for (size_t i = 0; i < scores_.size(); ++i) {
    scores_[i].copy_(state.at("scores." + std::to_string(i)));
    mean_[i].copy_(state.at("mean." + std::to_string(i)));
    var_[i].copy_(state.at("var." + std::to_string(i)));
  }
  for (auto& [k, v] : models::state_dict(*head_)) v.copy_(state.at("head." + k));
}

void SupsupMethod::end_task(const TaskEnd&) {
  CLR_ASSERT(current_ >= 0, "end_task without begin_task");
  TaskSlot slot;
  for (size_t i = 0; i < scores_.size(); ++i) slot.masks.push_back(hard_mask(scores_[i], kept_[i]));
  slot.mean = mean_;
  slot.var = var_;
  slot.head = head_;
  for (auto& p : slot.head->parameters()) p.requires_grad_(false);
  tasks_.push_back(std::move(slot));
  scores_.clear();  // the float scores exist only while a task trains
  mean_.clear();
  var_.clear();
  head_ = torch::nn::Linear(nullptr);
  current_ = -1;
}

void SupsupMethod::install(int64_t task) {
  if (task == installed_) return;
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(tasks_.size()), ConfigError, "task ", task,
            " has not been learned (", tasks_.size(), " tasks so far)");
  torch::NoGradGuard ng;
  cached_.clear();
  for (size_t i = 0; i < weights_.size(); ++i) {
    const at::Tensor& w = weights_[i];
    cached_.push_back(w * tasks_[static_cast<size_t>(task)].masks[i].to(w.scalar_type()));
  }
  installed_ = task;
}

at::Tensor SupsupMethod::predict(int64_t task, const at::Tensor& images) {
  if (task != current_) install(task);
  return forward(task, images);
}

std::vector<at::Tensor> SupsupMethod::current_masks() const {
  CLR_CHECK(current_ >= 0, ConfigError, "no task is being learned");
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < scores_.size(); ++i) out.push_back(hard_mask(scores_[i], kept_[i]));
  return out;
}

at::Tensor SupsupMethod::mask(int64_t task, size_t site) const {
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(tasks_.size()), ConfigError, "no mask for task ", task);
  return tasks_[static_cast<size_t>(task)].masks.at(site);
}

TensorMap SupsupMethod::task_state(int64_t task) const {
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(tasks_.size()), ConfigError, "no state for task ", task);
  const TaskSlot& t = tasks_[static_cast<size_t>(task)];
  const auto& sites = backbone_->conv_sites();
  TensorMap s;
  for (size_t i = 0; i < sites.size(); ++i) {
    s.emplace("mask." + sites[i].name, pack_bits(t.masks[i]));
    s.emplace("bn." + sites[i].norm + ".running_mean", t.mean[i].to(at::kCPU).clone());
    s.emplace("bn." + sites[i].norm + ".running_var", t.var[i].to(at::kCPU).clone());
  }
  for (const auto& [k, v] : models::state_dict(*t.head)) s.emplace("head." + k, v.detach().to(at::kCPU).clone());
  return s;
}

int64_t SupsupMethod::extra_params(int64_t task) const {
  CLR_CHECK(task >= 0 && task < static_cast<int64_t>(tasks_.size()), ConfigError, "no task ", task);
  int64_t bits = 0;
  for (const auto& m : tasks_[static_cast<size_t>(task)].masks) bits += m.numel();
  return (bits + 31) / 32 + models::parameter_count(*tasks_[static_cast<size_t>(task)].head);
}

void SupsupMethod::set_training(bool on) {
  training_ = on;
  backbone_->eval();
  if (head_) head_->train(on);
}

TensorMap SupsupMethod::checkpoint() const {
  TensorMap s;
  for (size_t t = 0; t < tasks_.size(); ++t) {
    for (const auto& [k, v] : task_state(static_cast<int64_t>(t))) s.emplace(detail::concat("task.", t, ".", k), v);
  }
  return s;
}

void SupsupMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  CLR_ASSERT(tasks_.empty() && current_ < 0, "resume into a method that has learned nothing");
  const std::vector<TensorMap> parts = split_task_keys(state, static_cast<int64_t>(done.size()));
  const auto& sites = backbone_->conv_sites();
  torch::NoGradGuard ng;
  for (size_t t = 0; t < parts.size(); ++t) {
    const TensorMap& p = parts[t];
    const auto get = [&](const std::string& key, at::IntArrayRef shape) -> const at::Tensor& {
      const auto it = p.find(key);
      CLR_CHECK(it != p.end() && (shape.empty() || it->second.sizes() == shape), ConfigError,
                "the checkpoint's state of task ", t + 1, " has no '", key, "'",
                shape.empty() ? "" : detail::concat(" of shape ", shape));
      return it->second;
    };
    TaskSlot slot;
    for (size_t i = 0; i < sites.size(); ++i) {
      const at::Tensor& w = weights_[i];
      slot.masks.push_back(unpack_bits(get("mask." + sites[i].name, {}), w.numel()).view(w.sizes()).to(device()));
      const std::vector<int64_t> channels{sites[i].out_channels};
      slot.mean.push_back(get("bn." + sites[i].norm + ".running_mean", channels).to(w.options()));
      slot.var.push_back(get("bn." + sites[i].norm + ".running_var", channels).to(w.options()));
    }
    const at::Tensor& hw = get("head.weight", {});
    CLR_CHECK(hw.dim() == 2 && hw.size(1) == backbone_->feature_dim(), ConfigError, "the checkpoint's head of task ",
              t + 1, " is ", describe(hw), " for ", backbone_->feature_dim(), " features");
    slot.head = torch::nn::Linear(hw.size(1), hw.size(0));
    slot.head->to(device());
    slot.head->weight.copy_(hw);
    slot.head->bias.copy_(get("head.bias", {hw.size(0)}));
    for (auto& q : slot.head->parameters()) q.requires_grad_(false);
    CLR_CHECK(p.size() == 3 * sites.size() + 2, ConfigError, "the checkpoint's state of task ", t + 1, " has ",
              p.size(), " tensors, not ", 3 * sites.size() + 2);
    tasks_.push_back(std::move(slot));
  }
  installed_ = -1;
}

}  // namespace clr::train
