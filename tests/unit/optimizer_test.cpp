// The trainer's multi-tensor optimisers against torch::optim, and the norm penalty's
// hand-made gradient against autograd's.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/torch_compat.h"
#include "clr/train/optimizer.h"
#include "clr/train/trainer.h"

namespace clr {
namespace {

std::vector<at::Tensor> opt_params(uint64_t seed) {
  torch::manual_seed(seed);
  // Different shapes, one all-zero tensor (the penalty's 0/0 case).
  return {torch::randn({4, 3, 3, 3}).requires_grad_(), torch::randn({7}).requires_grad_(),
          torch::zeros({5, 2}).requires_grad_(), torch::randn({1}).requires_grad_()};
}

std::vector<at::Tensor> opt_clones(const std::vector<at::Tensor>& ps) {
  std::vector<at::Tensor> out;
  for (const auto& p : ps) out.push_back(p.detach().clone().requires_grad_());
  return out;
}

// A loss that reaches every tensor but the one left out (-1: none).
at::Tensor opt_loss(const std::vector<at::Tensor>& ps, int64_t step, int64_t left_out) {
  at::Tensor l = torch::zeros({});
  for (size_t i = 0; i < ps.size(); ++i) {
    if (static_cast<int64_t>(i) == left_out) continue;
    l = l + (ps[i] * ps[i]).sum() * (0.3 + 0.1 * static_cast<double>((step + i) % 3)) + ps[i].sin().sum();
  }
  return l;
}

void opt_expect_close(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_LE((a[i] - b[i]).abs().max().item<double>(), tol) << "tensor " << i;
  }
}

TEST(Optimizer, AdamAndSgdFollowTorchOptim) {
  for (const std::string kind : {"adam", "sgd"}) {
    for (const double wd : {0.0, 0.01}) {
      std::vector<at::Tensor> ours = opt_params(1), theirs = opt_clones(ours);
      train::OptimizerOptions o;
      o.kind = kind;
      o.lr = 0.05;
      o.weight_decay = wd;
      train::Optimizer opt(ours, o);
      std::unique_ptr<torch::optim::Optimizer> ref;
      if (kind == "adam") {
        ref = std::make_unique<torch::optim::Adam>(theirs, torch::optim::AdamOptions(0.05).weight_decay(wd));
      } else {
        ref = std::make_unique<torch::optim::SGD>(theirs, torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(wd));
      }
      for (int64_t s = 0; s < 12; ++s) {
        if (s == 6) {
          opt.set_lr(0.005);
          for (auto& g : ref->param_groups()) {
            if (auto* a = dynamic_cast<torch::optim::AdamOptions*>(&g.options())) a->lr(0.005);
            if (auto* m = dynamic_cast<torch::optim::SGDOptions*>(&g.options())) m->lr(0.005);
          }
        }
        opt.zero_grad();
        for (auto& p : theirs) {
          if (p.grad().defined()) p.mutable_grad() = at::Tensor();  // set to none, as ours
        }
        opt_loss(ours, s, -1).backward();
        opt_loss(theirs, s, -1).backward();
        opt.step();
        ref->step();
      }
      opt_expect_close(ours, theirs, 1e-6);
      // And the update did move them.
      EXPECT_GT((ours[0] - opt_params(1)[0]).abs().max().item<double>(), 1e-3) << kind;
    }
  }
}

TEST(Optimizer, ATensorWithoutAGradientIsLeftAndKeepsItsOwnStepCount) {
  std::vector<at::Tensor> ours = opt_params(2), theirs = opt_clones(ours);
  train::OptimizerOptions o;
  o.lr = 0.02;
  train::Optimizer opt(ours, o);
  torch::optim::Adam ref(theirs, torch::optim::AdamOptions(0.02));
  for (int64_t s = 0; s < 8; ++s) {
    const int64_t left_out = s < 3 ? 1 : -1;  // tensor 1 misses the first 3 steps
    opt.zero_grad();
    for (auto& p : theirs) {
      if (p.grad().defined()) p.mutable_grad() = at::Tensor();
    }
    const at::Tensor before = ours[1].detach().clone();
    opt_loss(ours, s, left_out).backward();
    opt_loss(theirs, s, left_out).backward();
    opt.step();
    ref.step();
    if (left_out == 1) {
      EXPECT_TRUE(torch::equal(before, ours[1].detach()));
    }
  }
  opt_expect_close(ours, theirs, 1e-6);
}

TEST(Optimizer, NormPenaltyGradientIsAutogradsAndOptionsAreChecked) {
  const double penalty = 0.01;
  std::vector<at::Tensor> ours = opt_params(3), theirs = opt_clones(ours);
  // Tensor 3 gets no gradient from the loss: the penalty alone must create it.
  opt_loss(ours, 0, 3).backward();
  const at::Tensor total = train::add_norm_penalty(ours, penalty);
  std::vector<at::Tensor> norms;
  for (const auto& p : theirs) norms.push_back(p.norm());
  (opt_loss(theirs, 0, 3) + penalty * torch::stack(norms).sum()).backward();
  EXPECT_NEAR(total.item<double>(), torch::stack(norms).sum().item<double>(), 1e-5);
  for (size_t i = 0; i < ours.size(); ++i) {
    ASSERT_TRUE(ours[i].grad().defined()) << i;
    EXPECT_LE((ours[i].grad() - theirs[i].grad()).abs().max().item<double>(), 1e-6) << i;
  }
  // The all-zero tensor: the loss's gradient (cos 0 = 1) and nothing from the penalty, not NaN.
  EXPECT_TRUE(torch::equal(ours[2].grad(), torch::ones({5, 2})));
  // A tensor frozen for the moment (requires_grad off, as ConFiT's stages do) gets no
  // gradient from the penalty, as autograd gives it none, but counts in the sum.
  std::vector<at::Tensor> frozen = opt_params(4);
  frozen[0].requires_grad_(false);
  const at::Tensor sum_frozen = train::add_norm_penalty(frozen, penalty);
  EXPECT_FALSE(frozen[0].grad().defined());
  EXPECT_TRUE(frozen[1].grad().defined());
  EXPECT_NEAR(sum_frozen.item<double>(), frozen[0].norm().item<double>() + frozen[1].norm().item<double>() +
                                             frozen[2].norm().item<double>() + frozen[3].norm().item<double>(),
              1e-5);
  train::OptimizerOptions bad;
  bad.kind = "lion";
  EXPECT_THROW(train::Optimizer(ours, bad), ConfigError);
}

TEST(Numerics, PrecisionAndLayoutFollowTheDeviceAndBadValuesNameTheField) {
  train::TrainConfig c;
  const c10::Device cpu(c10::kCPU), cuda(c10::kCUDA, 0);
  train::Numerics n = train::numerics_for(c, cpu);  // auto on the CPU: fp32, contiguous
  EXPECT_EQ(n.autocast, c10::ScalarType::Float);
  EXPECT_FALSE(n.channels_last);
  EXPECT_FALSE(n.loss_scaling);
  n = train::numerics_for(c, cuda);  // auto on CUDA: bf16, channels-last (no device needed to decide)
  EXPECT_EQ(n.autocast, c10::ScalarType::BFloat16);
  EXPECT_TRUE(n.channels_last);
  EXPECT_EQ(train::precision_name(n.autocast), "bf16");
  c.precision = "fp16";
  n = train::numerics_for(c, cuda);
  EXPECT_EQ(n.autocast, c10::ScalarType::Half);
  EXPECT_TRUE(n.loss_scaling);
  try {
    train::numerics_for(c, cpu);
    ADD_FAILURE() << "fp16 on the CPU must be refused";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.precision fp16"), std::string::npos) << e.what();
  }
  c.precision = "fp32";
  c.memory_format = "channels-last";
  n = train::numerics_for(c, cuda);
  EXPECT_EQ(n.autocast, c10::ScalarType::Float);
  EXPECT_TRUE(n.channels_last);
  c.precision = "half";
  try {
    c.validate();
    ADD_FAILURE() << "an unknown precision must be refused";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.precision 'half'"), std::string::npos) << e.what();
  }
  c.precision = "auto";
  c.memory_format = "nhwc";
  EXPECT_THROW(c.validate(), ConfigError);
}

TEST(Numerics, AutocastGuardCastsConvolutionsAndRestoresTheState) {
  torch::manual_seed(0);
  const at::Tensor x = torch::randn({2, 3, 8, 8}), w = torch::randn({4, 3, 3, 3});
  {
    const compat::AutocastGuard fp32(c10::kCPU, c10::ScalarType::Float);  // a no-op
    EXPECT_EQ(torch::conv2d(x, w).scalar_type(), c10::ScalarType::Float);
  }
  {
    const compat::AutocastGuard bf16(c10::kCPU, c10::ScalarType::BFloat16);
    const at::Tensor y = torch::conv2d(x, w);
    EXPECT_EQ(y.scalar_type(), c10::ScalarType::BFloat16);
    // The same as casting the operands by hand.
    const at::Tensor ref = torch::conv2d(x.to(torch::kBFloat16), w.to(torch::kBFloat16)).to(torch::kFloat);
    EXPECT_TRUE(torch::equal(y.to(torch::kFloat), ref));
  }
  // Off again after the guard, on the CPU and CUDA alike.
  EXPECT_EQ(torch::conv2d(x, w).scalar_type(), c10::ScalarType::Float);
  // The disabled scaler changes nothing and reads nothing from a device.
  train::LossScaler off(false, c10::Device(c10::kCPU));
  const at::Tensor loss = torch::tensor(2.5);
  EXPECT_TRUE(off.scale(loss).equal(loss));
  EXPECT_TRUE(off.unscale({}));
  EXPECT_EQ(off.current_scale(), 1.0);
}

}  // namespace
}  // namespace clr
