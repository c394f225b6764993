// Suite task family: raster images — regional flags (kgeography-data), crops of
// material textures (gimp-data, mypaint-data, extremetuxracer-data) and terrain pieces of
// Pingus (pingus-data); each split by file.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/path.h"
#include "clr/core/strings.h"
#include "clr/data/sources.h"
#include "detail/suite_recipe.h"

namespace clr::data::suite_internal {
namespace {

constexpr int64_t kTextureSide = 160;  // textures are cropped, then resized

struct FileClass {
  std::string name;
  std::vector<std::pair<std::string, std::string>> sources;  // (package, path prefix); files under it
  std::vector<std::string> name_has;                          // keep files whose name has one of these (empty: all)
};

std::vector<std::string> class_files(SuiteContext& ctx, const FileClass& fc, const std::vector<std::string>& suffixes) {
  std::vector<std::string> out;
  for (const auto& [pkg, prefix] : fc.sources) {
    for (const auto& f : ctx.files(pkg, prefix, suffixes)) {
      bool keep = fc.name_has.empty();
      for (const auto& n : fc.name_has) keep = keep || contains(lower(base_name(f)), n);
      if (keep) out.push_back(f);
    }
  }
  return out;
}

at::Tensor load_texture(const std::string& f) {
  at::Tensor t = ends_with(lower(f), ".pat") ? read_gimp_pattern(f) : read_rgba(f);
  return t.narrow(2, 0, 3).contiguous();
}

}  // namespace

void add_raster_recipes(RecipeBook& book) {
  std::vector<SuiteRecipe>& out = book.suite;
  // ---- flags (kgeography-data): which country a region's flag belongs to, split by flag
  {
    SuiteRecipe r;
    r.info = {"flag-country", "style", "which country a regional flag belongs to (8 countries); split by flag",
              {"kgeography-data"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      classes = {"russia", "japan", "colombia", "ukraine", "brazil", "peru", "portugal", "italy"};
      for (size_t c = 0; c < classes.size(); ++c) {
        for (const auto& f : ctx.files("kgeography-data", "/usr/share/kgeography/flags/" + classes[c] + "/", {".png"})) {
          if (contains(base_name(f), "blurred")) continue;
          SuiteAsset a;
          a.cls = static_cast<int64_t>(c);
          a.group = f;
          a.key = f;
          a.load = [f] { return std::vector<at::Tensor>{shrink_image(crop_to_content(read_rgba(f)), kSpriteSide)}; };
          assets.push_back(std::move(a));
        }
      }
    };
    r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
      return draw_sprite(pick_variant(*pool[pick], rng), rng, size, 0.6, 0.95, 0.25, false, 0.15);
    };
    out.push_back(r);
  }

  // ---- textures: crops of material textures, split by texture file
  {
    SuiteRecipe r;
    r.info = {"materials", "texture", "wood, stone, paper, canvas or snow and ice, as crops of texture images; split by texture",
              {"gimp-data", "mypaint-data", "extremetuxracer-data"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      const std::string gimp = "/usr/share/gimp/2.0/patterns/";
      const std::vector<FileClass> fcs = {
          {"wood", {{"gimp-data", gimp + "Wood/"}}, {}},
          {"stone", {{"gimp-data", gimp + "Stone/"}, {"extremetuxracer-data", "/usr/share/games/etr/terrains/"}},
           {"rock", "pebbles", "granite", "marble", "brick", "cracked", "ground", "amethyst", "slate", "crater", "moonfoot"}},
          {"paper", {{"mypaint-data", "/usr/share/mypaint/backgrounds/"}, {"gimp-data", gimp + "Paper/"}}, {"paper"}},
          {"canvas", {{"mypaint-data", "/usr/share/mypaint/backgrounds/"}, {"gimp-data", gimp + "Fabric/"}},
           {"canvas", "burlap"}},
          {"snow-or-ice", {{"extremetuxracer-data", "/usr/share/games/etr/terrains/"}, {"gimp-data", gimp + "Water/"}},
           {"snow", "ice"}},
      };
      for (size_t c = 0; c < fcs.size(); ++c) {
        classes.push_back(fcs[c].name);
        for (const auto& f : class_files(ctx, fcs[c], {".png", ".pat"})) {
          if (c == 1 && (contains(f, "snowy_") || contains(f, "icy_"))) continue;  // stone under snow is snow
          if (c == 2 && contains(f, "score")) continue;
          SuiteAsset a;
          a.cls = static_cast<int64_t>(c);
          a.group = f;
          a.key = f;
          a.load = [f] { return std::vector<at::Tensor>{shrink_image(load_texture(f), kTextureSide)}; };
          assets.push_back(std::move(a));
        }
      }
    };
    r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
      return jitter_colours(random_square_crop((*pool[pick])[0], size, 0.3, 0.9, rng), rng, 0.3, false);
    };
    out.push_back(r);
  }
  // ---- terrain pieces of the game Pingus by theme, split by piece
  {
    SuiteRecipe r;
    r.info = {"terrain-theme", "style", "the theme of a Pingus terrain piece (8 themes); split by piece", {"pingus-data"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      classes = {"real", "sweets", "snow", "desert", "jungle", "crystal", "xmas", "industrial"};
      const std::string base = "/usr/share/games/pingus/data/images/groundpieces/";
      for (size_t c = 0; c < classes.size(); ++c) {
        for (const char* kind : {"ground/", "solid/", "transparent/"}) {
          for (const auto& f : ctx.files("pingus-data", base + kind + classes[c] + "/", {".png"})) {
            SuiteAsset a;
            a.cls = static_cast<int64_t>(c);
            a.group = f;
            a.key = f;
            a.load = [f] {
              at::Tensor t = shrink_image(crop_to_content(read_rgba(f)), kSpriteSide);
              return has_content(t) ? std::vector<at::Tensor>{t} : std::vector<at::Tensor>{};
            };
            assets.push_back(std::move(a));
          }
        }
      }
    };
    r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
      return draw_sprite(pick_variant(*pool[pick], rng), rng, size, 0.6, 0.95, 0.2, true, 0.15);
    };
    out.push_back(r);
  }
}

}  // namespace clr::data::suite_internal
