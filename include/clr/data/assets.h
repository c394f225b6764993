// Image assets for generated tasks: raster sprites (PNG/JPEG with alpha), SVG drawings
// rendered by rsvg-convert (Debian: librsvg2-bin), GIMP patterns, and glyphs of any
// Unicode code point from TrueType/OpenType fonts. Sprites are float [H, W, 4] RGBA in
// 0..1 (straight alpha), cropped to their visible content.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace clr::data {

// Reads PNG/JPEG/BMP/GIF keeping alpha (opaque formats get alpha 1): float [H, W, 4].
at::Tensor read_rgba(const std::string& path);
at::Tensor decode_rgba(const std::string& bytes, const std::string& origin);

// Crops to the bounding box of pixels with alpha > threshold; an image with none
// comes back as it was (callers check with has_content).
at::Tensor crop_to_content(const at::Tensor& rgba, float threshold = 0.05f);
bool has_content(const at::Tensor& rgba, float threshold = 0.05f, int64_t min_pixels = 16);
// Shrinks an image (float [H, W, C], C = 1..4; alpha premultiplied while resizing when
// C = 4) so its longer side is at most `max_side`, antialiased, to 8-bit values.
at::Tensor shrink_image(const at::Tensor& image, int64_t max_side);

// Renders an SVG or SVGZ file (or one element of it, by id) with rsvg-convert so that
// its longer side is about `max_side` pixels, cropped to content. Rendered PNGs are
// cached in `cache_dir` (when not empty) under a name made of the file's path, size,
// modification time, the element and the size, so a second build renders nothing.
// FormatError names the file (and element) when rsvg-convert fails.
at::Tensor render_svg(const std::string& path, int64_t max_side, const std::string& element = "",
                      const std::string& cache_dir = "");

// A GIMP pattern (.pat: a big-endian header "GPAT" with width, height, bytes per
// pixel, then raw pixels): float [H, W, 4].
at::Tensor read_gimp_pattern(const std::string& path);

// One font face of a TrueType/OpenType file (or of a collection, by index).
class Font {
 public:
  explicit Font(const std::string& path, int index = 0);
  ~Font();
  Font(const Font&) = delete;
  Font& operator=(const Font&) = delete;

  const std::string& path() const { return path_; }
  // Family and style names from the font's name table ("DejaVu Sans", "Bold").
  const std::string& family() const { return family_; }
  const std::string& style() const { return style_; }
  bool has_glyph(uint32_t codepoint) const;
  // The glyph's coverage as alpha, float [H, W] in 0..1, about `pixel_height` pixels
  // (fractions allowed) tall for the font's full ascent-descent, cropped to its ink;
  // empty (numel 0) when the font lacks the glyph or it draws nothing (a space). With
  // `draw_missing`, a code point the font lacks draws the font's missing-glyph shape
  // (glyph 0, often a box) instead, as the procedural glyph tasks (synthetic.h) do.
  at::Tensor render(uint32_t codepoint, double pixel_height, bool draw_missing = false) const;

 private:
  struct Impl;
  std::string path_, family_, style_;
  std::unique_ptr<Impl> impl_;
};

// UTF-8 text -> code points (FormatError on invalid UTF-8).
std::vector<uint32_t> utf8_codepoints(const std::string& text);
// Code point -> UTF-8.
std::string utf8_encode(uint32_t codepoint);

}  // namespace clr::data
