#include "clr/data/compose.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "clr/core/error.h"

namespace clr::data {
namespace {

namespace F = torch::nn::functional;

at::Tensor colour_tensor(const Colour& c) { return torch::tensor({c[0], c[1], c[2]}).view({1, 1, 3}); }

// Uniform or normal values from the Rng itself (LibTorch's generators fill tensors
// with vectorised code that differs between CPUs and versions).
at::Tensor rng_uniform(Rng& rng, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  at::Tensor t = torch::empty(shape, torch::kFloat);
  float* p = t.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(rng.uniform());
  return t;
}

at::Tensor rng_normal(Rng& rng, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  at::Tensor t = torch::empty(shape, torch::kFloat);
  float* p = t.data_ptr<float>();
  for (int64_t i = 0; i < n; i += 2) {  // Box-Muller, two values per pair of draws
    const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    p[i] = static_cast<float>(r * std::cos(2 * kPi * u2));
    if (i + 1 < n) p[i + 1] = static_cast<float>(r * std::sin(2 * kPi * u2));
  }
  return t;
}

at::Tensor resize_hwc(const at::Tensor& hwc, int64_t h, int64_t w) {
  return F::interpolate(hwc.permute({2, 0, 1}).unsqueeze(0), F::InterpolateFuncOptions()
                                                                 .size(std::vector<int64_t>{h, w})
                                                                 .mode(torch::kBilinear)
                                                                 .align_corners(false)
                                                                 .antialias(true))
      .squeeze(0)
      .permute({1, 2, 0});
}

}  // namespace

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1.0p-53; }

int64_t Rng::below(int64_t n) {
  CLR_ASSERT(n > 0, "Rng::below needs n > 0");
  return static_cast<int64_t>(next() % static_cast<uint64_t>(n));
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  Rng r(a);
  uint64_t s = r.next() ^ (b * 0xD6E8FEB86659FD93ull);
  Rng r2(s);
  s = r2.next() ^ (c * 0xA0761D6478BD642Full);
  Rng r3(s);
  s = r3.next() ^ (d * 0xE7037ED1A0B428DBull);
  return Rng(s).next();
}

Colour random_colour(Rng& rng) {
  return {static_cast<float>(rng.uniform()), static_cast<float>(rng.uniform()), static_cast<float>(rng.uniform())};
}

float luminance(const Colour& c) { return 0.299f * c[0] + 0.587f * c[1] + 0.114f * c[2]; }

Colour contrasting_colour(Rng& rng, const Colour& from, float contrast) {
  Colour best = random_colour(rng);
  for (int tries = 0; tries < 32; ++tries) {
    if (std::abs(luminance(best) - luminance(from)) >= contrast) return best;
    best = random_colour(rng);
  }
  // Give up on randomness: black or white, whichever is further.
  return luminance(from) > 0.5f ? Colour{0.05f, 0.05f, 0.05f} : Colour{0.95f, 0.95f, 0.95f};
}

at::Tensor random_background(int64_t size, Rng& rng, Colour* mean) {
  const Colour a = random_colour(rng), b = random_colour(rng);
  const double kind = rng.uniform();
  at::Tensor bg;
  if (kind < 0.3) {
    bg = colour_tensor(a).expand({size, size, 3}).clone();
  } else if (kind < 0.65) {
    const double angle = rng.uniform(0, 2 * kPi);
    at::Tensor lin = torch::linspace(-1, 1, size);
    at::Tensor t = (lin.view({size, 1}) * std::sin(angle) + lin.view({1, size}) * std::cos(angle)) * 0.5 + 0.5;
    t = t.clamp(0, 1).unsqueeze(2);
    bg = colour_tensor(a) * (1 - t) + colour_tensor(b) * t;
  } else {
    // Smooth colour noise: a coarse random grid upsampled.
    const int64_t cells = 2 + rng.below(5);
    at::Tensor grid = rng_uniform(rng, {1, 3, cells, cells});
    bg = F::interpolate(grid, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{size, size})
                                  .mode(torch::kBicubic)
                                  .align_corners(false))
             .squeeze(0)
             .permute({1, 2, 0})
             .clamp(0, 1)
             .contiguous();
  }
  const double noise = rng.uniform(0.0, 0.05);
  bg = (bg + noise * rng_normal(rng, {size, size, 3})).clamp(0, 1);
  if (mean) {
    const at::Tensor m = bg.mean(std::vector<int64_t>{0, 1});
    *mean = {m[0].item<float>(), m[1].item<float>(), m[2].item<float>()};
  }
  return bg;
}

void paste(at::Tensor& canvas, const at::Tensor& sprite, double cx, double cy, double extent, double angle) {
  CLR_ASSERT(canvas.dim() == 3 && canvas.size(2) == 3 && sprite.dim() == 3 && sprite.size(2) == 4,
             "paste needs a [S, S, 3] canvas and a [H, W, 4] sprite");
  const int64_t s = canvas.size(0), h = sprite.size(0), w = sprite.size(1), longer = std::max(h, w);
  // Shrink the sprite to about its size on the canvas first (antialiased), so the
  // bilinear sampling below never skips pixels.
  at::Tensor sp = sprite;
  const double target = std::max(2.0, extent * static_cast<double>(s));
  if (static_cast<double>(longer) > target * 1.5) {
    const double f = target / static_cast<double>(longer);
    const int64_t nh = std::max<int64_t>(1, std::llround(static_cast<double>(h) * f));
    const int64_t nw = std::max<int64_t>(1, std::llround(static_cast<double>(w) * f));
    at::Tensor pm = torch::cat({sp.narrow(2, 0, 3) * sp.narrow(2, 3, 1), sp.narrow(2, 3, 1)}, 2);
    pm = resize_hwc(pm, nh, nw).clamp(0, 1);
    sp = pm;  // premultiplied from here on
  } else {
    sp = torch::cat({sp.narrow(2, 0, 3) * sp.narrow(2, 3, 1), sp.narrow(2, 3, 1)}, 2);
  }
  // Output pixel p (normalised -1..1) samples sprite coordinate M (p - c).
  const double sx = extent * static_cast<double>(w) / static_cast<double>(longer);
  const double sy = extent * static_cast<double>(h) / static_cast<double>(longer);
  const double ca = std::cos(angle), sa = std::sin(angle);
  const double ox = 2 * cx - 1, oy = 2 * cy - 1;
  const double m00 = ca / sx, m01 = sa / sx, m10 = -sa / sy, m11 = ca / sy;
  at::Tensor theta = torch::tensor({static_cast<float>(m00), static_cast<float>(m01),
                                    static_cast<float>(-(m00 * ox + m01 * oy)), static_cast<float>(m10),
                                    static_cast<float>(m11), static_cast<float>(-(m10 * ox + m11 * oy))})
                         .view({1, 2, 3});
  at::Tensor grid = F::affine_grid(theta, {1, 4, s, s}, false);
  at::Tensor out = F::grid_sample(sp.permute({2, 0, 1}).unsqueeze(0), grid,
                                  F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false))
                       .squeeze(0)
                       .permute({1, 2, 0});
  const at::Tensor a = out.narrow(2, 3, 1).clamp(0, 1);
  canvas.mul_(1 - a).add_(out.narrow(2, 0, 3).clamp(0, 1));
  canvas.clamp_(0, 1);
}

at::Tensor tint(const at::Tensor& mask, const Colour& colour) {
  const int64_t h = mask.size(0), w = mask.size(1);
  return torch::cat({colour_tensor(colour).expand({h, w, 3}), mask.unsqueeze(2)}, 2).contiguous();
}

at::Tensor jitter_colours(const at::Tensor& image, Rng& rng, double strength, bool permute_channels) {
  at::Tensor rgb = image.narrow(2, 0, 3);
  const double brightness = rng.uniform(-0.25, 0.25) * strength;
  const double contrast = 1 + rng.uniform(-0.35, 0.35) * strength;
  const double saturation = 1 + rng.uniform(-0.6, 0.4) * strength;
  const at::Tensor grey = (rgb * torch::tensor({0.299f, 0.587f, 0.114f}).view({1, 1, 3})).sum(2, true);
  rgb = grey + (rgb - grey) * saturation;
  rgb = (rgb - 0.5) * contrast + 0.5 + brightness;
  if (permute_channels) {
    static const int64_t perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    const auto* p = perms[rng.below(6)];
    rgb = rgb.index_select(2, torch::tensor({p[0], p[1], p[2]}, torch::kLong));
  }
  rgb = rgb.clamp(0, 1);
  if (image.size(2) == 4) return torch::cat({rgb, image.narrow(2, 3, 1)}, 2).contiguous();
  return rgb.contiguous();
}

at::Tensor random_square_crop(const at::Tensor& image, int64_t size, double min_frac, double max_frac, Rng& rng) {
  const int64_t h = image.size(0), w = image.size(1), shorter = std::min(h, w);
  const int64_t side = std::clamp<int64_t>(std::llround(static_cast<double>(shorter) * rng.uniform(min_frac, max_frac)),
                                           std::min<int64_t>(8, shorter), shorter);
  const int64_t y = rng.below(h - side + 1), x = rng.below(w - side + 1);
  at::Tensor crop = image.slice(0, y, y + side).slice(1, x, x + side);
  if (rng.chance(0.5)) crop = crop.flip({1});
  crop = torch::rot90(crop, rng.below(4), {0, 1});
  return resize_hwc(crop.contiguous(), size, size).clamp(0, 1).contiguous();
}

at::Tensor to_uint8_image(const at::Tensor& canvas) {
  return (canvas.clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
}

}  // namespace clr::data
