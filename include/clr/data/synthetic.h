// Data made by code, for tasks that need nothing but the machine and Debian packages:
// procedural shape images (formula-driven pretraining data, after Kataoka et al. 2020)
// and glyphs rendered from TrueType fonts (stb_truetype).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "clr/data/dataset.h"

namespace clr::data {

// Procedural images: class k draws one of 10 pattern families (disc, square, ring,
// triangle, cross, stripes, checkerboard, radial waves, spiral arms, two blobs) with a
// class-specific frequency and orientation; every image varies position, scale,
// rotation jitter, colours and noise. Deterministic in (seed, counts, size).
struct ShapesOptions {
  int64_t classes = 40;
  int64_t train_per_class = 500;
  int64_t val_per_class = 50;
  int64_t test_per_class = 0;
  int64_t size = 32;
  uint64_t seed = 0;
};
TaskData make_shapes_task(const ShapesOptions& options);

// Rendered glyphs: each class is a list of (font file, character) pairs to draw; each
// image draws one of the class's pairs at a random scale, position, small rotation,
// with random colours and noise. Classes can be characters (one character in many
// fonts) or styles (many characters in one font).
struct GlyphClass {
  std::string name;
  std::vector<std::string> fonts;  // .ttf files
  std::string characters;          // ASCII characters drawn from (one chosen per image)
};
struct GlyphOptions {
  std::string task_name = "glyphs";
  std::vector<GlyphClass> classes;
  int64_t train_per_class = 200;
  int64_t val_per_class = 30;
  int64_t test_per_class = 60;
  int64_t size = 32;
  uint64_t seed = 0;
};
// Throws NotFoundError naming a missing font file (hint: fonts-dejavu-core).
TaskData make_glyph_task(const GlyphOptions& options);

}  // namespace clr::data
