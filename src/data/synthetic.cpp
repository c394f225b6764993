#include "clr/data/synthetic.h"

#include <cmath>
#include <map>
#include <memory>
#include <array>
#include <random>

#include <ATen/Parallel.h>
#include <ATen/CPUGeneratorImpl.h>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/data/assets.h"
#include "clr/data/compose.h"
#include "detail/generate.h"

namespace clr::data {
namespace {


using gen::uniform;

// A random colour far enough from `avoid` to stay visible.
std::array<float, 3> colour(std::mt19937_64& rng, const std::array<float, 3>* avoid = nullptr) {
  for (int tries = 0;; ++tries) {
    std::array<float, 3> c{static_cast<float>(uniform(rng, 0, 1)), static_cast<float>(uniform(rng, 0, 1)),
                           static_cast<float>(uniform(rng, 0, 1))};
    if (avoid == nullptr || tries > 20) return c;
    float d = 0;
    for (int i = 0; i < 3; ++i) d += std::abs(c[i] - (*avoid)[i]);
    if (d > 0.8f) return c;
  }
}

// Composites foreground over background through a [S, S] mask in 0..1, adds noise,
// returns uint8 [S, S, 3].
at::Tensor composite(const at::Tensor& mask, const std::array<float, 3>& fg, const std::array<float, 3>& bg,
                     double noise, std::mt19937_64& rng) {
  const int64_t s = mask.size(0);
  at::Tensor f = torch::tensor({fg[0], fg[1], fg[2]}).view({1, 1, 3});
  at::Tensor b = torch::tensor({bg[0], bg[1], bg[2]}).view({1, 1, 3});
  at::Tensor img = b + (f - b) * mask.unsqueeze(2);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(rng());
  img = img + noise * at::randn({s, s, 3}, gen);
  return (img.clamp(0, 1) * 255).round().to(torch::kUInt8);
}

at::Tensor shape_mask(int64_t cls, int64_t size, std::mt19937_64& rng) {
  const int64_t family = cls % 10;
  const int64_t variant = cls / 10;  // changes frequency and orientation
  const double freq = 2.0 + 1.5 * static_cast<double>(variant % 4);
  const double orient = kPi / 8.0 * static_cast<double>((variant * 3) % 8);
  at::Tensor lin = torch::linspace(-1, 1, size);
  at::Tensor y = lin.view({size, 1}).expand({size, size});
  at::Tensor x = lin.view({1, size}).expand({size, size});
  const double cx = uniform(rng, -0.3, 0.3), cy = uniform(rng, -0.3, 0.3);
  const double scale = uniform(rng, 0.35, 0.7);
  const double rot = orient + uniform(rng, -0.15, 0.15);
  at::Tensor u = ((x - cx) * std::cos(rot) + (y - cy) * std::sin(rot)) / scale;
  // The variant also stretches the pattern, so that rotation-symmetric families (disc,
  // ring) differ between variants too.
  const double aspect = 1.0 + 0.45 * static_cast<double>(variant % 4);
  at::Tensor v = (-(x - cx) * std::sin(rot) + (y - cy) * std::cos(rot)) / scale * aspect;
  at::Tensor r = torch::sqrt(u * u + v * v);
  at::Tensor theta = torch::atan2(v, u);
  auto soft = [](const at::Tensor& t) { return torch::sigmoid(t * 12.0); };  // soft edges
  switch (family) {
    case 0: return soft(1 - r);                                                        // disc
    case 1: return soft(1 - torch::max(u.abs(), v.abs()));                             // square
    case 2: return soft(0.25 - (r - 0.75).abs());                                      // ring
    case 3: return soft(torch::min(v + 0.5, 0.87 - (u.abs() * 1.73 + v) / 2) * 2);     // triangle
    case 4: return soft(torch::min(0.3 - torch::min(u.abs(), v.abs()), 1 - torch::max(u.abs(), v.abs())));  // cross
    case 5: return soft(torch::sin(u * freq * kPi) * 2) * soft(1.3 - r);               // stripes
    case 6: return soft(torch::sin(u * freq * 2) * torch::sin(v * freq * 2) * 4) * soft(1.3 - r);  // checkerboard
    case 7: return soft(torch::sin(r * freq * kPi) * 2) * soft(1.3 - r);               // radial waves
    case 8: return soft(torch::sin(theta * (2 + variant % 4) + r * freq) * 2) * soft(1.2 - r);  // spiral arms
    default: {                                                                         // two blobs
      at::Tensor d1 = torch::sqrt((u - 0.5).pow(2) + v.pow(2));
      at::Tensor d2 = torch::sqrt((u + 0.5).pow(2) + (v * (1 + variant % 3)).pow(2));
      return soft(0.45 - torch::min(d1, d2));
    }
  }
}

}  // namespace

TaskData make_shapes_task(const ShapesOptions& o) {
  CLR_CHECK(o.classes >= 2 && o.size >= 8 && o.size <= 4096 && o.train_per_class >= 1, ConfigError,
            "shapes: need >= 2 classes, a size in [8, 4096] and >= 1 training image per class");
  TaskData t = gen::generate("shapes", detail::concat("procedural shapes (", o.classes, " classes, seed ", o.seed, ")"),
                        o.classes, o.train_per_class, o.val_per_class, o.test_per_class, o.seed,
                        [&](int64_t c, std::mt19937_64& rng) {
                          const auto bg = colour(rng);
                          const auto fg = colour(rng, &bg);
                          return composite(shape_mask(c, o.size, rng), fg, bg, uniform(rng, 0.0, 0.08), rng);
                        });
  for (int64_t c = 0; c < o.classes; ++c) t.classes.push_back(detail::concat("shape", c));
  return t;
}

TaskData make_glyph_task(const GlyphOptions& o) {
  CLR_CHECK(o.classes.size() >= 2, ConfigError, "glyph task '", o.task_name, "' needs >= 2 classes");
  std::map<std::string, std::shared_ptr<Font>> fonts;
  for (const auto& c : o.classes) {
    CLR_CHECK(!c.fonts.empty() && !c.characters.empty(), ConfigError, "glyph class '", c.name,
              "' needs fonts and characters");
    for (const auto& f : c.fonts) {
      if (fonts.count(f)) continue;
      require_file(f, "font (Debian: fonts-dejavu-core, fonts-dejavu-extra)");
      fonts[f] = std::make_shared<Font>(f);
    }
  }
  const int64_t s = o.size;
  TaskData t = gen::generate(
      o.task_name, detail::concat("glyphs rendered from ", fonts.size(), " fonts"), static_cast<int64_t>(o.classes.size()),
      o.train_per_class, o.val_per_class, o.test_per_class, o.seed, [&](int64_t c, std::mt19937_64& rng) {
        const GlyphClass& gc = o.classes[static_cast<size_t>(c)];
        const Font& font = *fonts.at(gc.fonts[rng() % gc.fonts.size()]);
        const int ch = gc.characters[rng() % gc.characters.size()];
        const float px = static_cast<float>(s) * static_cast<float>(uniform(rng, 0.55, 0.9));
        // A character the font lacks draws its missing-glyph box, as it always has.
        const at::Tensor g = font.render(static_cast<uint32_t>(ch), px, /*draw_missing=*/true);
        at::Tensor mask = torch::zeros({s, s});
        if (g.numel() > 0) {
          const int64_t gh = std::min<int64_t>(g.size(0), s), gw = std::min<int64_t>(g.size(1), s);
          const int64_t y0 = static_cast<int64_t>(uniform(rng, 0, static_cast<double>(s - gh) + 0.999));
          const int64_t x0 = static_cast<int64_t>(uniform(rng, 0, static_cast<double>(s - gw) + 0.999));
          mask.slice(0, y0, y0 + gh).slice(1, x0, x0 + gw).copy_(g.slice(0, 0, gh).slice(1, 0, gw));
        }
        // A small rotation through an affine grid.
        const double a = uniform(rng, -0.2, 0.2);
        at::Tensor theta = torch::tensor({std::cos(a), -std::sin(a), 0.0, std::sin(a), std::cos(a), 0.0},
                                         torch::kFloat)
                               .view({1, 2, 3});
        at::Tensor grid = torch::nn::functional::affine_grid(theta, {1, 1, s, s}, false);
        mask = torch::nn::functional::grid_sample(mask.view({1, 1, s, s}), grid,
                                                  torch::nn::functional::GridSampleFuncOptions().align_corners(false))
                   .view({s, s});
        const auto bg = colour(rng);
        const auto fg = colour(rng, &bg);
        return composite(mask, fg, bg, uniform(rng, 0.0, 0.06), rng);
      });
  for (const auto& c : o.classes) t.classes.push_back(c.name);
  return t;
}

}  // namespace clr::data
