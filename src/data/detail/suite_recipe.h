// How one task of the benchmark suite is made (suite.h): a recipe lists its classes
// and assets without touching pixels, the builder splits the assets by group, loads
// them, and asks the recipe to draw each image. Private to the data layer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "clr/data/assets.h"
#include "clr/data/compose.h"
#include "clr/data/debian.h"
#include "clr/data/suite.h"

namespace clr::data::suite_internal {

// A source asset: a drawing, a card of a deck, a glyph of a font, a texture file, a
// Fashion-MNIST image. Its payload is one or more tensors (variants the drawing
// picks from, e.g. one character in every font that has it).
struct SuiteAsset {
  int64_t cls = -1;      // its class; -1: a pool any class draws from (counting)
  std::string group;     // assets of one group are never in two splits
  std::string key;       // what it is, for messages
  int split = -1;        // -1: the builder decides; 0, 1, 2: fixed (a dataset's own test set)
  std::function<std::vector<at::Tensor>()> load;
};

// What recipes may use while collecting: the installed packages (each one used is
// recorded for the manifest), font files, the SVG cache.
class SuiteContext {
 public:
  SuiteContext(const SuiteOptions& options, std::string cache_dir);

  const SuiteOptions& options() const { return options_; }
  const std::string& cache_dir() const { return cache_dir_; }
  // The package (NotFoundError with the apt command when it is missing); marks it used.
  const DebianPackage& package(const std::string& name);
  // Root-joined path of a packaged file.
  std::string path(const std::string& packaged_file) const;
  // Files of a package under `prefix` with one of `suffixes` (root-joined).
  std::vector<std::string> files(const std::string& package, const std::string& prefix,
                                 const std::vector<std::string>& suffixes = {});
  // The fonts (TrueType/OpenType files) of these packages, loaded once.
  std::vector<std::shared_ptr<Font>> fonts(const std::vector<std::string>& packages);
  // Packages used by the task being collected (cleared by the builder per task).
  std::vector<std::string> take_used();

 private:
  const SuiteOptions& options_;
  std::string cache_dir_;
  std::map<std::string, DebianPackage> packages_;
  std::map<std::string, std::shared_ptr<Font>> fonts_;
  std::vector<std::string> used_;
};

struct SuiteRecipe {
  SuiteTaskInfo info;
  // Fills classes and assets.
  std::function<void(SuiteContext&, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets)> collect;
  // Draws an image of class `cls` (float [S, S, 3]) from `pool`: the loaded payloads of
  // the split's assets of that class (or of the shared pool). `pick` is the asset the
  // builder chose for this image (cycling through the pool evenly). A recipe that draws
  // other or more assets than `pick` lists the pool positions it used in `used`
  // (provenance); when it leaves `used` empty, the image came from `pick` alone.
  std::function<at::Tensor(int64_t cls, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick,
                           Rng& rng, int64_t size, std::vector<size_t>& used)>
      draw;
  // Fractions of the groups for val and test (the rest trains).
  double val_fraction = 0.1, test_fraction = 0.2;
};

// The benchmark's tasks, in catalogue order (suite_catalogue.cpp).
std::vector<SuiteRecipe> suite_recipes();
// Tasks for pretraining backbones, from assets that no benchmark task uses.
std::vector<SuiteRecipe> pretrain_recipes();

// ---- the task families
//
// Each family file (suite_<family>.cpp) adds its recipes to a RecipeBook through one
// function; suite_catalogue.cpp calls every one of them from one place (the library is
// a static archive, in which self-registering objects would be dropped by the linker)
// and puts the tasks in catalogue order, which lists every task by name. A new task:
// add its recipe in its family's function and its name to the catalogue's order.
struct RecipeBook {
  std::vector<SuiteRecipe> suite;     // benchmark tasks
  std::vector<SuiteRecipe> pretrain;  // pretraining tasks (kind "pretrain")
};
void add_clipart_recipes(RecipeBook& book);  // openclipart drawings: objects, counting, pool-clipart
void add_card_recipes(RecipeBook& book);     // playing cards and mahjong tiles
void add_raster_recipes(RecipeBook& book);   // flags, material textures, terrain pieces
void add_glyph_recipes(RecipeBook& book);    // font glyphs: scripts, letters, digits, typefaces, pool-symbols
void add_fashion_recipes(RecipeBook& book);  // Fashion-MNIST

// ---- drawing helpers the families share (suite_catalogue.cpp)

// The longer side of drawings, cards, tiles, flags and terrain pieces: enough for
// images up to about 80 px (the suite's default is 64), small enough that a bundle of
// every asset travels to the GPU machine.
inline constexpr int64_t kSpriteSide = 80;

// A sprite on a random background: random extent, position, rotation, mirror and colours.
at::Tensor draw_sprite(const at::Tensor& sprite, Rng& rng, int64_t size, double min_extent, double max_extent,
                       double max_angle, bool mirror, double colour_jitter);
// A coverage mask (glyph, greyscale image) in a colour that stands out from the background.
at::Tensor draw_mask(const at::Tensor& mask, Rng& rng, int64_t size, double min_extent, double max_extent,
                     double max_angle);
// One of an asset's variants, chosen at random.
const at::Tensor& pick_variant(const std::vector<at::Tensor>& variants, Rng& rng);

}  // namespace clr::data::suite_internal
