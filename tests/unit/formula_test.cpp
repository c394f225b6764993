// Formula-driven pretraining data (data/formula.h): the chaos game against a fractal
// whose box count is known, the category search's promise (every system fills enough,
// the same seed finds the same systems), the dead-leaves painter's occlusion, and both
// kinds as [[data.tasks]] entries.
#include <cmath>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/data/config.h"
#include "clr/data/formula.h"

namespace clr {
namespace {

// The right Sierpinski triangle: three halvings toward (0,0), (1,0), (0,1): box-counting
// dimension log 3 / log 2, so each halving of the cells keeps about 3 of every 4 filled.
data::IfsSystem sierpinski() {
  return data::make_ifs({{0.5, 0, 0, 0.5, 0, 0}, {0.5, 0, 0, 0.5, 0.5, 0}, {0.5, 0, 0, 0.5, 0, 0.5}});
}

TEST(Formula, ChaosGameFillsAsBoxCountingSays) {
  const data::IfsSystem s = sierpinski();
  ASSERT_EQ(s.chances.size(), 3u);
  EXPECT_NEAR(s.chances[0], 1.0 / 3, 1e-12);  // equal determinants, equal chances
  EXPECT_EQ(s.chances[2], 1.0);
  std::mt19937_64 rng(1);
  const data::IfsPoints p = data::chaos_game(s, 200000, rng);
  ASSERT_EQ(p.size(), 200000u);
  for (size_t i = 0; i < p.size(); i += 997) {
    EXPECT_GE(p.xy[2 * i], -1e-9);
    EXPECT_GE(p.xy[2 * i + 1], -1e-9);
    EXPECT_LE(p.xy[2 * i] + p.xy[2 * i + 1], 1 + 1e-9);  // inside the triangle
  }
  const double f8 = data::filling_rate(p, 8), f16 = data::filling_rate(p, 16), f32 = data::filling_rate(p, 32);
  EXPECT_NEAR(f16 / f8, 0.75, 0.08);
  EXPECT_NEAR(f32 / f16, 0.75, 0.08);
  // Four quadrant halvings: the attractor is the whole square, which fills every cell.
  const data::IfsSystem square = data::make_ifs(
      {{0.5, 0, 0, 0.5, 0, 0}, {0.5, 0, 0, 0.5, 0.5, 0}, {0.5, 0, 0, 0.5, 0, 0.5}, {0.5, 0, 0, 0.5, 0.5, 0.5}});
  EXPECT_EQ(data::filling_rate(data::chaos_game(square, 50000, rng), 16), 1.0);
}

TEST(Formula, ChaosGameStopsWhenTheSystemDiverges) {
  const data::IfsSystem s = data::make_ifs({{2.0, 0, 0, 2.0, 1, 1}});
  std::mt19937_64 rng(2);
  const data::IfsPoints p = data::chaos_game(s, 1000, rng);
  EXPECT_LT(p.size(), 100u);
  EXPECT_EQ(data::filling_rate(p, 16), 0.0);
  EXPECT_THROW(data::make_ifs({}), ConfigError);
}

TEST(Formula, SearchFindsSystemsThatFillTheCanvasTheSameForTheSameSeed) {
  data::FractalSearchOptions o;
  o.categories = 12;
  o.seed = 5;
  const std::vector<data::IfsSystem> a = data::search_fractals(o);
  const std::vector<data::IfsSystem> b = data::search_fractals(o);
  ASSERT_EQ(a.size(), 12u);
  std::set<double> firsts;
  double fresh_total = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].maps.size(), b[i].maps.size());
    EXPECT_GE(a[i].maps.size(), 2u);
    EXPECT_LE(a[i].maps.size(), 8u);
    EXPECT_EQ(a[i].maps[0].a, b[i].maps[0].a);
    EXPECT_EQ(a[i].maps.back().f, b[i].maps.back().f);
    firsts.insert(a[i].maps[0].a);
    // The promise, seen through another stream's points: each system fills about the
    // threshold or more (one game of 20,000 points is a noisy measure of a sparse one).
    std::mt19937_64 rng(100 + i);
    const double fresh = data::filling_rate(data::chaos_game(a[i], o.points, rng), o.canvas);
    EXPECT_GE(fresh, 0.75 * o.min_fill) << i;
    fresh_total += fresh;
  }
  EXPECT_GE(fresh_total / static_cast<double>(a.size()), 0.95 * o.min_fill);
  EXPECT_EQ(firsts.size(), a.size());  // distinct systems
  o.seed = 6;
  EXPECT_NE(data::search_fractals(o)[0].maps[0].a, a[0].maps[0].a);
  // A threshold no system reaches is an error that says what to change, not a hang.
  o.min_fill = 1.0;
  o.categories = 1;
  o.max_candidates = 300;
  try {
    data::search_fractals(o);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("lower the filling threshold"), std::string::npos) << e.what();
  }
}

TEST(Formula, FractalInstancesVaryAndRepeatWithTheirStream) {
  data::FractalSearchOptions so;
  so.categories = 2;
  const std::vector<data::IfsSystem> systems = data::search_fractals(so);
  data::FractalRenderOptions ro;
  ro.size = 48;
  std::mt19937_64 r1(7), r2(7);
  const at::Tensor a = data::render_fractal(systems[0], ro, r1);
  const at::Tensor b = data::render_fractal(systems[0], ro, r2);
  const at::Tensor c = data::render_fractal(systems[0], ro, r1);  // the next instance
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{48, 48, 3}));
  EXPECT_EQ(a.scalar_type(), at::kByte);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  // Not a flat image: the attractor stands out of its background.
  EXPECT_GT(a.to(torch::kFloat).std().item<double>(), 10.0);
}

TEST(Formula, FractalTaskHasItsCategoriesAndIsTheSameTwice) {
  data::FractalOptions o;
  o.classes = 3;
  o.train_per_class = 4;
  o.val_per_class = 2;
  o.test_per_class = 1;
  o.size = 32;
  o.seed = 11;
  const data::TaskData a = data::make_fractal_task(o);
  const data::TaskData b = data::make_fractal_task(o);
  EXPECT_EQ(a.classes, (std::vector<std::string>{"fractal0", "fractal1", "fractal2"}));
  ASSERT_EQ(a.train.images.sizes(), (std::vector<int64_t>{12, 32, 32, 3}));
  EXPECT_EQ(a.val.size(), 6u);
  EXPECT_EQ(a.test.size(), 3u);
  EXPECT_EQ(a.train.labels[4], 1);
  EXPECT_TRUE(torch::equal(a.train.images, b.train.images));
  EXPECT_TRUE(torch::equal(a.test.images, b.test.images));
  o.classes = 1;
  EXPECT_THROW(data::make_fractal_task(o), ConfigError);
}

TEST(Formula, DeadLeavesNearerLeavesHideFartherOnes) {
  data::DeadLeavesOptions o;
  o.size = 40;
  o.textured = 0;
  // One leaf larger than the image covers it all in one flat colour, whatever its shape.
  o.min_radius = 3.0;
  o.max_radius = 4.0;
  o.max_leaves = 1;
  for (int64_t family = 0; family < 4; ++family) {
    std::mt19937_64 rng(static_cast<uint64_t>(family));
    const at::Tensor img = data::render_dead_leaves(family, o, rng).view({-1, 3});
    EXPECT_TRUE(torch::equal(img, img[0].expand_as(img))) << data::dead_leaves_families()[static_cast<size_t>(family)];
  }
  // One small leaf: the rest is the flat far background, so one colour holds most pixels.
  o.min_radius = 0.05;
  o.max_radius = 0.1;
  std::mt19937_64 rng(3);
  const at::Tensor img = data::render_dead_leaves(0, o, rng).view({-1, 3});
  const at::Tensor same = (img == img[0]).all(1).to(torch::kFloat).mean();
  const at::Tensor corner = (img == img[img.size(0) - 1]).all(1).to(torch::kFloat).mean();
  EXPECT_GT(std::max(same.item<double>(), corner.item<double>()), 0.9);
  // Many leaves: a busy image with many colours.
  o.max_leaves = 5000;
  o.min_radius = 0.03;
  o.max_radius = 0.6;
  o.textured = 0.5;
  const at::Tensor busy = data::render_dead_leaves(3, o, rng).view({-1, 3}).to(torch::kLong);
  const at::Tensor codes = (busy.select(1, 0) * 65536 + busy.select(1, 1) * 256 + busy.select(1, 2)).contiguous();
  const std::set<int64_t> colours(codes.data_ptr<int64_t>(), codes.data_ptr<int64_t>() + codes.numel());
  EXPECT_GT(colours.size(), 50u);
  o.min_radius = 0.7;  // above max_radius
  EXPECT_THROW(data::render_dead_leaves(0, o, rng), ConfigError);
}

TEST(Formula, BothKindsAreDataTasks) {
  data::TaskSpec f;
  f.kind = "fractals";
  f.classes.count = 3;
  f.train_per_class = 2;
  f.val_per_class = 1;
  f.size = 24;
  const data::TaskData ft = data::load_task(f, 0, 4);
  EXPECT_EQ(ft.classes.size(), 3u);
  EXPECT_EQ(ft.train.images.size(1), 24);
  data::TaskSpec d;
  d.kind = "dead-leaves";
  d.name = "leaves";
  d.train_per_class = 2;
  d.val_per_class = 0;
  d.size = 24;
  const data::TaskData dt = data::load_task(d, 1, 4);
  EXPECT_EQ(dt.name, "leaves");
  EXPECT_EQ(dt.classes, data::dead_leaves_families());
  EXPECT_EQ(dt.train.size(), 8u);
  d.classes.count = 3;
  EXPECT_THROW(data::load_task(d, 1, 4), ConfigError);
  d.kind = "fractal";
  try {
    data::load_task(d, 1, 4);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("dead-leaves"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace clr
