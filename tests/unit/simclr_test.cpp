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

}  // namespace
}  // namespace clr
