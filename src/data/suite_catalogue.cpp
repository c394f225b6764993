// The catalogue of the benchmark suite: which tasks it has and in which order (the
// recipes come from the family files suite_<family>.cpp), the drawing helpers the
// families share, and the context recipes collect with.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/log.h"
#include "clr/core/path.h"
#include "detail/suite_recipe.h"

namespace clr::data::suite_internal {
namespace {

const std::vector<std::string> kFontSuffixes = {".ttf", ".otf", ".ttc"};

// The tasks in catalogue order (the order of `clr data list`, of order.txt and of the
// SKILL dataset ids).
const std::vector<std::string> kSuiteOrder = {
    "clipart-animals", "clipart-food", "clipart-things", "card-suit", "card-face", "card-count", "card-deck",
    "mahjong-suit", "mahjong-count", "count-objects", "flag-country", "materials", "terrain-theme", "scripts",
    "greek-letters", "hebrew-letters", "georgian-letters", "digits", "typeface", "font-weight", "fashion-tops",
    "fashion-other"};
const std::vector<std::string> kPretrainOrder = {"pool-clipart", "pool-symbols"};

// Every family's recipes, from one place: the library is a static archive, in which
// self-registering objects of a family file would be dropped by the linker.
RecipeBook all_recipes() {
  RecipeBook book;
  add_clipart_recipes(book);
  add_card_recipes(book);
  add_raster_recipes(book);
  add_glyph_recipes(book);
  add_fashion_recipes(book);
  return book;
}

// `recipes` in `order`; every recipe must be listed once.
std::vector<SuiteRecipe> in_order(std::vector<SuiteRecipe> recipes, const std::vector<std::string>& order) {
  CLR_ASSERT(recipes.size() == order.size(), recipes.size(), " recipes for ", order.size(), " catalogue entries");
  std::vector<SuiteRecipe> out;
  for (const auto& name : order) {
    auto it = std::find_if(recipes.begin(), recipes.end(), [&](const SuiteRecipe& r) { return r.info.name == name; });
    CLR_ASSERT(it != recipes.end(), "no family adds the suite task '", name, "'");
    out.push_back(std::move(*it));
    recipes.erase(it);
  }
  return out;
}

}  // namespace

std::vector<SuiteRecipe> suite_recipes() { return in_order(all_recipes().suite, kSuiteOrder); }

std::vector<SuiteRecipe> pretrain_recipes() { return in_order(all_recipes().pretrain, kPretrainOrder); }

// ---------------------------------------------------------------- drawing

// A sprite on a random background: random extent, position, rotation, mirror and colours.
at::Tensor draw_sprite(const at::Tensor& sprite_in, Rng& rng, int64_t size, double min_extent, double max_extent,
                       double max_angle, bool mirror, double colour_jitter) {
  at::Tensor canvas = random_background(size, rng);
  at::Tensor sprite = sprite_in;
  if (mirror && rng.chance(0.5)) sprite = sprite.flip({1});
  if (colour_jitter > 0) sprite = jitter_colours(sprite, rng, colour_jitter, false);
  const double extent = rng.uniform(min_extent, max_extent);
  const double slack = std::max(0.0, (1.0 - extent) / 2.0);
  paste(canvas, sprite, 0.5 + rng.uniform(-slack, slack), 0.5 + rng.uniform(-slack, slack), extent,
        rng.uniform(-max_angle, max_angle));
  return canvas;
}

// A coverage mask (glyph, greyscale image) in a colour that stands out from the background.
at::Tensor draw_mask(const at::Tensor& mask, Rng& rng, int64_t size, double min_extent, double max_extent,
                     double max_angle) {
  Colour mean{};
  at::Tensor canvas = random_background(size, rng, &mean);
  const double extent = rng.uniform(min_extent, max_extent);
  const double slack = std::max(0.0, (1.0 - extent) / 2.0);
  paste(canvas, tint(mask, contrasting_colour(rng, mean, 0.4f)), 0.5 + rng.uniform(-slack, slack),
        0.5 + rng.uniform(-slack, slack), extent, rng.uniform(-max_angle, max_angle));
  return canvas;
}

const at::Tensor& pick_variant(const std::vector<at::Tensor>& variants, Rng& rng) {
  return variants[static_cast<size_t>(rng.below(static_cast<int64_t>(variants.size())))];
}

// ---------------------------------------------------------------- context

SuiteContext::SuiteContext(const SuiteOptions& options, std::string cache_dir)
    : options_(options), cache_dir_(std::move(cache_dir)) {}

const DebianPackage& SuiteContext::package(const std::string& name) {
  auto it = packages_.find(name);
  if (it == packages_.end()) it = packages_.emplace(name, read_debian_package(name, options_.root)).first;
  if (std::find(used_.begin(), used_.end(), name) == used_.end()) used_.push_back(name);
  return it->second;
}

std::string SuiteContext::path(const std::string& packaged_file) const { return under_root(options_.root, packaged_file); }

std::vector<std::string> SuiteContext::files(const std::string& pkg, const std::string& prefix,
                                             const std::vector<std::string>& suffixes) {
  std::vector<std::string> out;
  for (const auto& f : package_files(package(pkg), prefix, suffixes)) out.push_back(path(f));
  return out;
}

std::vector<std::shared_ptr<Font>> SuiteContext::fonts(const std::vector<std::string>& packages) {
  std::vector<std::shared_ptr<Font>> out;
  for (const auto& p : packages) {
    for (const auto& f : files(p, "/usr/share/fonts/", kFontSuffixes)) {
      auto it = fonts_.find(f);
      if (it == fonts_.end()) {
        std::shared_ptr<Font> font;
        try {
          font = std::make_shared<Font>(f);
        } catch (const FormatError& e) {
          log::warn("suite: skipping font: ", e.what());
        }
        it = fonts_.emplace(f, font).first;
      }
      if (it->second) out.push_back(it->second);
    }
  }
  return out;
}

std::vector<std::string> SuiteContext::take_used() {
  std::vector<std::string> u;
  u.swap(used_);
  return u;
}

}  // namespace clr::data::suite_internal
