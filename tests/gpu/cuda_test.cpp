// CPU vs CUDA agreement. Every test skips itself without a CUDA device.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/adapters/reprogram.h"
#include "clr/core/hash.h"
#include "clr/core/torch_compat.h"
#include "clr/models/registry.h"
#include "test_util.h"

namespace clr {
namespace {

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(b.abs().max().item<double>(), 1e-12);
  return test::max_abs_diff(a, b) / scale;
}

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!compat::cuda_available()) GTEST_SKIP() << "no CUDA device";
    compat::set_allow_tf32(false);  // compare fp32 with fp32
  }
};

// Two ReprogrammedNets with identical weights and a non-identity task state, one per device.
std::pair<adapters::ReprogrammedNet, adapters::ReprogrammedNet> twin_nets() {
  torch::manual_seed(3);
  models::ResNet a = models::make_resnet("resnet50", 0);
  models::ResNet b = models::make_resnet("resnet50", 0);
  models::load_state_dict(*b, models::state_dict(*a), models::LoadOptions{});
  adapters::ReprogrammedNet cpu(a, adapters::ReprogramOptions(), 10);
  TensorMap state = cpu->new_task_state(10);
  for (auto& [k, v] : state) {
    if (k.rfind("clr.", 0) == 0) v = v + 0.1 * torch::randn_like(v);
  }
  cpu->load_task_state(state);
  b->to(torch::kCUDA);
  adapters::ReprogrammedNet gpu(b, adapters::ReprogramOptions(), 10);
  gpu->load_task_state(state);
  return {cpu, gpu};
}

TEST_F(Cuda, ReprogrammedResnet50ForwardAgrees) {
  auto [cpu, gpu] = twin_nets();
  cpu->eval();
  gpu->eval();
  torch::NoGradGuard ng;
  at::Tensor x = torch::randn({4, 3, 224, 224});
  const double d = rel_diff(gpu->forward(x.cuda()), cpu->forward(x));
  EXPECT_LE(d, 1e-3);
  std::printf("[gpu] forward relative difference %.3g\n", d);
  EXPECT_EQ(cpu->backbone_fingerprint(), gpu->backbone_fingerprint());
}

TEST_F(Cuda, ReprogrammedResnet50TrainingStepAgrees) {
  auto [cpu, gpu] = twin_nets();
  at::Tensor x = torch::randn({8, 3, 112, 112});
  at::Tensor y = torch::randint(0, 10, {8});
  // An SGD step: Adam's first step is lr * sign(grad), which amplifies sign flips of
  // near-zero gradients and would compare rounding, not the computation.
  std::vector<double> losses;
  std::vector<std::vector<at::Tensor>> grads;
  for (auto* net : {&cpu, &gpu}) {
    auto& n = *net;
    n->train();
    torch::optim::SGD opt(n->trainable_parameters(), torch::optim::SGDOptions(0.1));
    opt.zero_grad();
    at::Tensor loss = torch::nn::functional::cross_entropy(n->forward(x.to(n->device())), y.to(n->device()));
    loss.backward();
    grads.emplace_back();
    for (const auto& p : n->trainable_parameters()) grads.back().push_back(p.grad().detach().cpu().clone());
    opt.step();
    losses.push_back(loss.item<double>());
  }
  EXPECT_NEAR(losses[0], losses[1], 1e-3 * std::abs(losses[0]));
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) EXPECT_LE(rel_diff(grads[1][i], grads[0][i]), 1e-3) << "gradient " << i;
  const TensorMap a = cpu->task_state();
  const TensorMap b = gpu->task_state();
  for (const auto& [k, v] : a) {
    if (v.is_floating_point()) {
      EXPECT_LE(rel_diff(b.at(k), v), 1e-3) << k;
    }
  }
  EXPECT_EQ(cpu->backbone_fingerprint(), gpu->backbone_fingerprint());
}

}  // namespace
}  // namespace clr
