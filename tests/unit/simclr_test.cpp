// SimCLR's pieces against direct formulas: the NT-Xent loss, and views that reduce to
// mirrors when every other augmentation is off.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/data/image.h"
#include "clr/models/registry.h"
#include "clr/train/simclr.h"

namespace clr {
namespace {

TEST(Simclr, NtXentMatchesTheDefinition) {
  torch::manual_seed(3);
  const int64_t b = 4, n = 2 * b;
  const at::Tensor z = torch::randn({n, 6}, torch::kDouble);
  const double t = 0.3;
  at::Tensor zn = z / z.norm(2, 1, true);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t partner = i < b ? i + b : i - b;
    double denom = 0;
    for (int64_t k = 0; k < n; ++k) {
      if (k != i) denom += std::exp((zn[i] * zn[k]).sum().item<double>() / t);
    }
    total += -std::log(std::exp((zn[i] * zn[partner]).sum().item<double>() / t) / denom);
  }
  EXPECT_NEAR(train::SimclrModel::nt_xent(z, t).item<double>(), total / static_cast<double>(n), 1e-10);
  // Two identical views of well separated images: the loss is small.
  const at::Tensor e = torch::eye(b, torch::kDouble) * 10;
  EXPECT_LT(train::SimclrModel::nt_xent(torch::cat({e, e}), 0.1).item<double>(), 1e-3);
}

TEST(Simclr, ViewsWithoutCropOrColourAreTheImageOrItsMirror) {
  torch::manual_seed(4);
  train::SimclrOptions o;
  o.min_scale = 1.0;
  o.jitter = 0.0;
  o.grey = 0.0;
  train::SimclrModel m(models::make_resnet("resnet18", 0, true), o);
  // Normalised images of valid colours (the views are clamped to 0..1 before renormalising).
  const at::Tensor x = data::normalize(torch::randint(0, 256, {6, 3, 8, 8}).to(torch::kUInt8));
  const at::Tensor v = m.augment(x);
  ASSERT_EQ(v.sizes(), x.sizes());
  int mirrored = 0;
  for (int64_t i = 0; i < 6; ++i) {
    const bool same = (v[i] - x[i]).abs().max().item<double>() < 1e-4;
    const bool flipped = (v[i] - x[i].flip({2})).abs().max().item<double>() < 1e-4;
    EXPECT_TRUE(same || flipped) << "view " << i;
    mirrored += flipped ? 1 : 0;
  }
  EXPECT_GT(mirrored, 0);
  EXPECT_LT(mirrored, 6);
  // With the default options a view differs from the image, stays finite and in range.
  train::SimclrModel d(models::make_resnet("resnet18", 0, true), {});
  const at::Tensor w = d.augment(x);
  EXPECT_TRUE(torch::isfinite(w).all().item<bool>());
  EXPECT_GT((w - x).abs().mean().item<double>(), 0.05);
}

TEST(Byol, RegressionLossIsTwoMinusTwoCosineAndLeavesTheTargetAlone) {
  torch::manual_seed(5);
  const at::Tensor p = torch::randn({5, 7}, torch::kDouble).requires_grad_(true);
  const at::Tensor z = torch::randn({5, 7}, torch::kDouble).requires_grad_(true);
  double expected = 0;
  for (int64_t i = 0; i < 5; ++i) {
    const double cos = (p[i] * z[i]).sum().item<double>() / (p[i].norm().item<double>() * z[i].norm().item<double>());
    expected += (2 - 2 * cos) / 5;
  }
  const at::Tensor l = train::ByolModel::regression_loss(p, z);
  EXPECT_NEAR(l.item<double>(), expected, 1e-12);
  l.backward();
  EXPECT_TRUE(p.grad().defined());
  EXPECT_FALSE(z.grad().defined());  // the target's projection is a constant
  EXPECT_NEAR(train::ByolModel::regression_loss(p, p * 3).item<double>(), 0.0, 1e-12);
}

TEST(Byol, TargetStartsAsTheOnlineNetworkAndFollowsItsMovingAverage) {
  torch::manual_seed(6);
  train::SimclrOptions o;
  o.ema = 0.9;
  train::ByolModel m(models::make_resnet("resnet18", 0, true), models::make_resnet("resnet18", 0, true), o);
  const auto key = std::string("net.layer1.0.conv1.weight");
  const at::Tensor online0 = m.snapshot().at(key);
  EXPECT_TRUE(torch::equal(m.step_state().at(key), online0));
  // One step: only the online side learns; the target then moves 10% of the way.
  const at::Tensor x = data::normalize(torch::randint(0, 256, {4, 3, 8, 8}).to(torch::kUInt8));
  m.set_training(true);
  m.begin_epoch(0, 5);
  EXPECT_DOUBLE_EQ(m.momentum(), 0.9);
  const at::Tensor loss = m.loss(x, torch::zeros({4}, torch::kLong));
  ASSERT_TRUE(torch::isfinite(loss).item<bool>());
  loss.backward();
  const auto params = m.trainable_parameters();
  for (const auto& t : params) {
    if (t.grad().defined()) t.detach().sub_(t.grad(), 0.5);
  }
  const at::Tensor online1 = m.snapshot().at(key);
  ASSERT_FALSE(torch::equal(online1, online0));
  m.after_step();
  EXPECT_TRUE(torch::allclose(m.step_state().at(key), 0.9 * online0 + 0.1 * online1, 1e-6, 1e-7));
  // The momentum rises to 1 over the epochs (cosine).
  m.begin_epoch(4, 5);
  EXPECT_DOUBLE_EQ(m.momentum(), 1.0);
  // Snapshot and step state put back a model exactly.
  train::ByolModel n(models::make_resnet("resnet18", 0, true), models::make_resnet("resnet18", 0, true), o);
  n.restore(m.snapshot());
  n.load_step_state(m.step_state());
  for (const auto& [k, v] : m.snapshot()) EXPECT_TRUE(torch::equal(n.snapshot().at(k), v)) << k;
  for (const auto& [k, v] : m.step_state()) EXPECT_TRUE(torch::equal(n.step_state().at(k), v)) << k;
  EXPECT_EQ(m.snapshot().count("predictor.0.weight"), 1u);
  EXPECT_EQ(m.step_state().count("head.1.running_mean"), 1u);
}

// --supervised: the labels' cross-entropy through an fc is added to the self-supervised
// loss, and the fc trains with the rest.
TEST(Simclr, SupervisedTermAddsTheLabelsCrossEntropy) {
  torch::manual_seed(7);
  train::SimclrOptions o;
  o.supervised = 0.5;
  train::SimclrModel m(models::make_resnet("resnet18", 0, true), o);
  const at::Tensor images = torch::randint(0, 256, {4, 3, 8, 8}).to(torch::kUInt8);
  const at::Tensor labels = torch::tensor({0, 1, 2, 1}, torch::kLong);
  m.set_probe(images, labels, 3);
  const TensorMap fc = m.classifier_state();
  ASSERT_EQ(fc.at("fc.weight").sizes(), (std::vector<int64_t>{3, 512}));
  const size_t without = train::SimclrModel(models::make_resnet("resnet18", 0, true), {}).trainable_parameters().size();
  EXPECT_EQ(m.trainable_parameters().size(), without + 2);
  m.set_training(true);
  const at::Tensor loss = m.loss(data::normalize(images), labels);
  ASSERT_TRUE(torch::isfinite(loss).item<bool>());
  loss.backward();
  const auto params = m.trainable_parameters();
  EXPECT_TRUE(params.back().grad().defined());  // the fc's bias
  EXPECT_GT(params.back().grad().abs().sum().item<double>(), 0.0);
  EXPECT_EQ(m.snapshot().count("fc.weight"), 1u);
  EXPECT_TRUE(train::SimclrModel(models::make_resnet("resnet18", 0, true), {}).classifier_state().empty());
}

}  // namespace
}  // namespace clr
