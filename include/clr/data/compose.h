// Drawing generated task images: backgrounds, sprites placed with a random scale,
// position, rotation and colour, texture crops. Canvases are float [S, S, 3] in 0..1;
// sprites float [H, W, 4] RGBA (straight alpha). Every random choice comes from the
// caller's Rng, so an image is a pure function of its seed.
#pragma once

#include <array>
#include <cstdint>

#include <ATen/core/Tensor.h>

namespace clr::data {

// Pi, for the angles of generated images (compose.cpp, synthetic.cpp).
inline constexpr double kPi = 3.14159265358979323846;

// SplitMix64: small, fast, and the same numbers on every platform and standard
// library (std::uniform_*_distribution are not), so generated files are identical.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform(double lo = 0.0, double hi = 1.0);  // [lo, hi)
  int64_t below(int64_t n);                          // [0, n)
  bool chance(double p) { return uniform() < p; }
  // A seed for a derived stream (LibTorch generators, sub-tasks).
  uint64_t fork() { return next(); }

 private:
  uint64_t state_;
};

// Mixes several values into one seed (order matters).
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0);

using Colour = std::array<float, 3>;
Colour random_colour(Rng& rng);
// A colour whose luminance differs from `from` by at least `contrast` (0..1).
Colour contrasting_colour(Rng& rng, const Colour& from, float contrast = 0.35f);
float luminance(const Colour& c);

// A random background: a flat colour, a two-colour gradient, or smooth colour noise,
// plus a little pixel noise. Returns the canvas and (via `mean`) its mean colour.
at::Tensor random_background(int64_t size, Rng& rng, Colour* mean = nullptr);

// Composites `sprite` onto `canvas` (in place): centred at (cx, cy) in canvas fractions
// (0..1), its longer side `extent` canvas widths, rotated by `angle` radians.
void paste(at::Tensor& canvas, const at::Tensor& sprite, double cx, double cy, double extent, double angle);

// A mask (float [H, W] in 0..1) as a sprite of one colour.
at::Tensor tint(const at::Tensor& mask, const Colour& colour);
// Random brightness, contrast, saturation and (optionally) a channel permutation
// applied to a sprite's or canvas's colours; alpha is kept.
at::Tensor jitter_colours(const at::Tensor& image, Rng& rng, double strength, bool permute_channels);

// A random square crop of `image` (float [H, W, C]) covering `min_frac`..`max_frac` of
// its shorter side, randomly flipped and rotated by a multiple of 90 degrees, resized to
// `size` (antialiased): float [size, size, C].
at::Tensor random_square_crop(const at::Tensor& image, int64_t size, double min_frac, double max_frac, Rng& rng);

// float [S, S, 3] in 0..1 -> uint8 [S, S, 3].
at::Tensor to_uint8_image(const at::Tensor& canvas);

}  // namespace clr::data
