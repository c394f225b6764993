// The trainer's optimisers (Adam, SGD with momentum) and the authors' norm penalty,
// written with LibTorch's multi-tensor (foreach) operations: a step is a handful of
// operations over all tensors at once, where torch::optim runs ~9 per tensor. On a
// GPU at the authors' batch of 32 a training step is bound by kernel launches, and
// per-tensor updates of ~60 tensors were most of them. The arithmetic is
// torch::optim::Adam's and ::SGD's, formula for formula
// (tests/unit/optimizer_test.cpp compares them step by step).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "clr/core/tensor_map.h"

namespace clr::train {

struct OptimizerOptions {
  std::string kind = "adam";  // adam | sgd
  double lr = 1e-3;
  double momentum = 0.9;      // sgd
  double weight_decay = 0.0;  // L2 added to the gradient (both)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam
};

class Optimizer {
 public:
  Optimizer(std::vector<at::Tensor> params, OptimizerOptions options);
  // Drops every gradient (set to none, as PyTorch 2's zero_grad): a tensor that gets
  // no gradient in a step is not updated and its Adam step count does not advance.
  void zero_grad();
  // One update of every tensor that has a gradient.
  void step();
  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }
  // What the next steps depend on (a resumed run's checkpoint): per tensor i, Adam's
  // `exp_avg.i` / `exp_avg_sq.i` or SGD's `momentum.i` once it has stepped, and
  // `steps` (int64, one count per tensor). CPU copies.
  TensorMap state() const;
  // Puts a state() of an optimiser over the same tensors back (ConfigError when the
  // tensor count or a shape differs).
  void load_state(const TensorMap& state);

 private:
  std::vector<at::Tensor> params_;
  OptimizerOptions options_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;  // adam; undefined until a tensor's first step
  std::vector<at::Tensor> momentum_;              // sgd
  std::vector<int64_t> steps_;
};

// Dynamic loss scaling for fp16 training, with torch.cuda.amp.GradScaler's defaults:
// the loss is multiplied by a scale (2^16 at first) before backward, the gradients
// divided by it after; a step whose gradients hold an inf or NaN is skipped and the
// scale halved; after 2000 clean steps in a row it doubles. Disabled, every call is a
// no-op and unscale() returns true without touching the device.
class LossScaler {
 public:
  LossScaler(bool enabled, c10::Device device);
  bool enabled() const { return enabled_; }
  at::Tensor scale(const at::Tensor& loss) const;
  // Divides the gradients of `params` by the scale in place. False when one of them
  // holds an inf or NaN: skip the step. Reads one flag from the device.
  bool unscale(const std::vector<at::Tensor>& params);
  // After every step, taken or skipped.
  void update();
  double current_scale() const;
  // `scale` and `growth_tracker` (empty when disabled); load_state puts them back.
  TensorMap state() const;
  void load_state(const TensorMap& state);

 private:
  bool enabled_;
  at::Tensor scale_, growth_tracker_, found_inf_;
};

// The authors' penalty `penalty * sum_p ||p||_2` without autograd: adds its gradient
// penalty * p / ||p|| (0 where p is all zeros, as autograd's norm gives) to every
// tensor's gradient, creating the gradient where the loss gave none, and returns
// sum_p ||p|| (a device scalar, computed before any update). A tensor that does not
// require a gradient (frozen for the moment) counts in the sum but gets none, as with
// autograd. Call after backward().
at::Tensor add_norm_penalty(const std::vector<at::Tensor>& params, double penalty);

}  // namespace clr::train
