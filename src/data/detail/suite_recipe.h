// How one task of the benchmark suite is made (suite.h): a recipe lists its classes
// and assets without touching pixels, the builder splits the assets by group, loads
// them, and asks the recipe to draw each image. Private to the data layer.
#pragma once

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

// The benchmark's tasks.
std::vector<SuiteRecipe> suite_recipes();
// Tasks for pretraining backbones, from assets that no benchmark task uses.
std::vector<SuiteRecipe> pretrain_recipes();

}  // namespace clr::data::suite_internal
