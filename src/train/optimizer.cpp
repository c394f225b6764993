#include "clr/train/optimizer.h"

#include <cmath>
#include <map>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/tensor_map.h"

namespace clr::train {

Optimizer::Optimizer(std::vector<at::Tensor> params, OptimizerOptions options)
    : params_(std::move(params)), options_(std::move(options)) {
  CLR_CHECK(options_.kind == "adam" || options_.kind == "sgd", ConfigError, "optimizer '", options_.kind,
            "' is unknown; expected adam or sgd");
  const size_t n = params_.size();
  exp_avg_.resize(n);
  exp_avg_sq_.resize(n);
  momentum_.resize(n);
  steps_.assign(n, 0);
}

void Optimizer::zero_grad() {
  for (auto& p : params_) {
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
}

void Optimizer::step() {
  torch::NoGradGuard no_grad;
  // Tensors that take part, grouped by their step count (Adam's bias correction
  // depends on it; a tensor that missed steps is behind the others).
  std::map<int64_t, std::vector<size_t>> by_step;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].grad().defined()) by_step[steps_[i]].push_back(i);
  }
  const OptimizerOptions& o = options_;
  for (const auto& [step_before, members] : by_step) {
    std::vector<at::Tensor> p, g, m, v;
    for (size_t i : members) {
      p.push_back(params_[i].detach());
      g.push_back(params_[i].grad());
      if (o.kind == "adam" && !exp_avg_[i].defined()) {
        exp_avg_[i] = torch::zeros_like(params_[i], at::MemoryFormat::Preserve);
        exp_avg_sq_[i] = torch::zeros_like(params_[i], at::MemoryFormat::Preserve);
      }
      ++steps_[i];
    }
    if (o.weight_decay != 0) g = at::_foreach_add(g, p, o.weight_decay);
    if (o.kind == "sgd") {
      // torch::optim::SGD: the first step's buffer is the gradient itself.
      std::vector<at::Tensor> update;
      if (o.momentum != 0) {
        std::vector<at::Tensor> fresh_from, fresh_grad;
        for (size_t k = 0; k < members.size(); ++k) {
          at::Tensor& buf = momentum_[members[k]];
          if (!buf.defined()) {
            buf = g[k].clone();
          } else {
            fresh_from.push_back(buf);
            fresh_grad.push_back(g[k]);
          }
          update.push_back(buf);
        }
        if (!fresh_from.empty()) {
          at::_foreach_mul_(fresh_from, o.momentum);
          at::_foreach_add_(fresh_from, fresh_grad, 1.0);  // dampening 0
        }
      } else {
        update = g;
      }
      at::_foreach_add_(p, update, -o.lr);
      continue;
    }
    for (size_t i : members) {
      m.push_back(exp_avg_[i]);
      v.push_back(exp_avg_sq_[i]);
    }
    const double step = static_cast<double>(step_before + 1);
    const double bias_correction1 = 1 - std::pow(o.beta1, step);
    const double bias_correction2 = 1 - std::pow(o.beta2, step);
    at::_foreach_mul_(m, o.beta1);
    at::_foreach_add_(m, g, 1 - o.beta1);
    at::_foreach_mul_(v, o.beta2);
    at::_foreach_addcmul_(v, g, g, 1 - o.beta2);
    std::vector<at::Tensor> denom = at::_foreach_sqrt(v);
    at::_foreach_div_(denom, std::sqrt(bias_correction2));
    at::_foreach_add_(denom, o.eps);
    at::_foreach_addcdiv_(p, m, denom, -o.lr / bias_correction1);
  }
}

TensorMap Optimizer::state() const {
  TensorMap out;
  auto keep = [&](const char* name, size_t i, const at::Tensor& t) {
    if (t.defined()) out[detail::concat(name, ".", i)] = t.detach().to(torch::kCPU).clone();
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    keep("exp_avg", i, exp_avg_[i]);
    keep("exp_avg_sq", i, exp_avg_sq_[i]);
    keep("momentum", i, momentum_[i]);
  }
  out["steps"] = torch::tensor(std::vector<int64_t>(steps_.begin(), steps_.end()), torch::kLong);
  return out;
}

void Optimizer::load_state(const TensorMap& state) {
  const auto steps = state.find("steps");
  CLR_CHECK(steps != state.end() && steps->second.dim() == 1 &&
                steps->second.size(0) == static_cast<int64_t>(params_.size()),
            ConfigError, "the optimiser state is for another set of tensors (expected ", params_.size(), " step counts)");
  const at::Tensor counts = steps->second.to(torch::kLong).contiguous();
  auto take = [&](const char* name, size_t i, at::Tensor& slot) {
    const auto it = state.find(detail::concat(name, ".", i));
    if (it == state.end()) {
      slot = at::Tensor();
      return;
    }
    CLR_CHECK(it->second.sizes() == params_[i].sizes(), ConfigError, "optimiser state '", it->first, "' is ",
              describe(it->second), ", its tensor ", describe(params_[i]));
    slot = it->second.to(params_[i].options()).clone();
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    steps_[i] = counts[static_cast<int64_t>(i)].item<int64_t>();
    take("exp_avg", i, exp_avg_[i]);
    take("exp_avg_sq", i, exp_avg_sq_[i]);
    take("momentum", i, momentum_[i]);
  }
}

at::Tensor add_norm_penalty(const std::vector<at::Tensor>& params, double penalty) {
  CLR_ASSERT(!params.empty(), "the norm penalty needs tensors");
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> p, flat;
  std::vector<int64_t> lengths;
  p.reserve(params.size());
  for (const auto& t : params) {
    p.push_back(t.detach());
    flat.push_back(p.back().reshape({-1}));
    lengths.push_back(t.numel());
  }
  const at::Tensor norms = torch::stack(at::_foreach_norm(p));
  if (penalty == 0) return norms.sum();
  // d(penalty * ||p||)/dp = p * (penalty / ||p||), 0 for an all-zero p: autograd's
  // norm backward, with every tensor's factor spread over its elements in one go.
  const at::Tensor scale = torch::where(norms > 0, penalty / norms, torch::zeros_like(norms));
  if (norms.device().is_cpu()) {
    // On the CPU, tensor by tensor: the one-go product below makes temporaries of the
    // size of all tensors together (a whole network for sgd), which glibc maps and
    // unmaps on every step (3-8x slower steps, measured); the arithmetic is the same.
    for (size_t i = 0; i < params.size(); ++i) {
      if (!params[i].requires_grad()) continue;
      const at::Tensor piece = p[i] * scale[static_cast<int64_t>(i)];
      if (params[i].grad().defined()) {
        params[i].mutable_grad().add_(piece);
      } else {
        params[i].mutable_grad() = piece;
      }
    }
    return norms.sum();
  }
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  const at::Tensor counts = to_device_async(torch::tensor(lengths, torch::kLong), norms.device());
  const at::Tensor grad = torch::cat(flat) * scale.repeat_interleave(counts, 0, total);
  std::vector<at::Tensor> add, to;
  int64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor piece = grad.narrow(0, offset, lengths[i]).view(params[i].sizes());
    offset += lengths[i];
    if (!params[i].requires_grad()) continue;  // frozen for now (ConFiT's stages): autograd gave it nothing
    if (params[i].grad().defined()) {
      to.push_back(params[i].mutable_grad());
      add.push_back(piece);
    } else {
      params[i].mutable_grad() = piece.clone();
    }
  }
  if (!to.empty()) at::_foreach_add_(to, add, 1.0);
  return norms.sum();
}

LossScaler::LossScaler(bool enabled, c10::Device device) : enabled_(enabled) {
  if (!enabled_) return;
  const auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
  scale_ = torch::full({1}, 65536.0, f);
  growth_tracker_ = torch::zeros({1}, f.dtype(torch::kInt));
  found_inf_ = torch::zeros({1}, f);
}

at::Tensor LossScaler::scale(const at::Tensor& loss) const { return enabled_ ? loss * scale_.squeeze() : loss; }

bool LossScaler::unscale(const std::vector<at::Tensor>& params) {
  if (!enabled_) return true;
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  found_inf_.zero_();
  if (!grads.empty()) at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, scale_.reciprocal());
  return found_inf_.item<float>() == 0.0f;
}

void LossScaler::update() {
  if (!enabled_) return;
  at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, 2.0, 0.5, 2000);
}

double LossScaler::current_scale() const { return enabled_ ? scale_.item<double>() : 1.0; }

TensorMap LossScaler::state() const {
  if (!enabled_) return {};
  return {{"scale", scale_.to(torch::kCPU).clone()}, {"growth_tracker", growth_tracker_.to(torch::kCPU).clone()}};
}

void LossScaler::load_state(const TensorMap& state) {
  if (!enabled_) return;
  const auto scale = state.find("scale");
  const auto tracker = state.find("growth_tracker");
  CLR_CHECK(scale != state.end() && tracker != state.end(), ConfigError,
            "the checkpoint holds no loss-scaler state for an fp16 run");
  scale_.copy_(scale->second);
  growth_tracker_.copy_(tracker->second);
}

}  // namespace clr::train
