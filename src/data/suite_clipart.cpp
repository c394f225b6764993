// Suite task family: openclipart drawings (openclipart-svg, rendered by rsvg-convert):
// objects by subject, counting objects, and the pretraining pool of other subjects;
// split by drawing.
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

// `n` sprites from `pool` that do not overlap much.
at::Tensor draw_count(int64_t n, const std::vector<const std::vector<at::Tensor>*>& pool, Rng& rng, int64_t size,
                      std::vector<size_t>& used) {
  at::Tensor canvas = random_background(size, rng);
  double extent = rng.uniform(0.2, 0.27) * (n <= 3 ? 1.3 : 1.0);
  std::vector<std::pair<double, double>> centres;
  // Random places that keep the objects apart; smaller objects when they do not fit.
  for (int round = 0; static_cast<int64_t>(centres.size()) < n; ++round) {
    CLR_ASSERT(round < 40, "could not place ", n, " objects");
    centres.clear();
    for (int attempt = 0; attempt < 300 && static_cast<int64_t>(centres.size()) < n; ++attempt) {
      const double r = extent / 2 + 0.02;
      const double x = rng.uniform(r, 1 - r), y = rng.uniform(r, 1 - r);
      bool free = true;
      for (const auto& [cx, cy] : centres) free = free && std::hypot(cx - x, cy - y) > extent * 1.05;
      if (free) centres.emplace_back(x, y);
    }
    if (static_cast<int64_t>(centres.size()) < n) extent *= 0.93;
  }
  // One kind of object per image half of the time, a mix otherwise.
  const bool same = rng.chance(0.5);
  const auto first = static_cast<size_t>(rng.below(static_cast<int64_t>(pool.size())));
  for (const auto& [x, y] : centres) {
    const size_t which = same ? first : static_cast<size_t>(rng.below(static_cast<int64_t>(pool.size())));
    if (std::find(used.begin(), used.end(), which) == used.end()) used.push_back(which);
    const auto& variants = *pool[which];
    at::Tensor sprite = variants[static_cast<size_t>(rng.below(static_cast<int64_t>(variants.size())))];
    if (rng.chance(0.5)) sprite = sprite.flip({1});
    paste(canvas, jitter_colours(sprite, rng, 0.3, false), x, y, extent * rng.uniform(0.85, 1.0),
          rng.uniform(-0.3, 0.3));
  }
  return canvas;
}

// ---------------------------------------------------------------- openclipart

// Drawings of one subject come in variants (name_01.svg, name_bw.svg, ...): one group.
std::string drawing_stem(const std::string& file) {
  std::string s = lower(stem(file));  // name.svg
  for (const char* suffix : {"_bw", "-bw", "_black_white", "_outline", "_colour", "_color"}) {
    const std::string x = suffix;
    if (s.size() > x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0) s = s.substr(0, s.size() - x.size());
  }
  while (!s.empty() && (std::isdigit(static_cast<unsigned char>(s.back())) || s.back() == '_' || s.back() == '-')) s.pop_back();
  return s.empty() ? lower(base_name(file)) : s;
}

struct ClipartClass {
  std::string name;
  std::vector<std::string> dirs;  // under /usr/share/openclipart/svg/, each with its subfolders
  std::vector<std::string> skip;  // subfolders left out
};

SuiteRecipe clipart_task(const std::string& name, const std::string& description, std::vector<ClipartClass> classes) {
  SuiteRecipe r;
  r.info = {name, "object", description, {"openclipart-svg", "librsvg2-bin"}};
  r.collect = [classes](SuiteContext& ctx, std::vector<std::string>& names, std::vector<SuiteAsset>& assets) {
    ctx.package("librsvg2-bin");
    for (size_t c = 0; c < classes.size(); ++c) {
      names.push_back(classes[c].name);
      for (const auto& dir : classes[c].dirs) {
        for (const auto& f : ctx.files("openclipart-svg", "/usr/share/openclipart/svg/" + dir + "/", {".svg"})) {
          bool skipped = false;
          for (const auto& s : classes[c].skip) skipped = skipped || contains(f, "/" + dir + "/" + s + "/");
          if (skipped) continue;
          SuiteAsset a;
          a.cls = static_cast<int64_t>(c);
          a.group = classes[c].name + "/" + drawing_stem(f);
          a.key = f;
          const std::string cache = ctx.cache_dir(), size_src = f;
          a.load = [size_src, cache] { return std::vector<at::Tensor>{render_svg(size_src, kSpriteSide, "", cache)}; };
          assets.push_back(std::move(a));
        }
      }
    }
  };
  r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
    return draw_sprite(pick_variant(*pool[pick], rng), rng, size, 0.55, 0.92, 0.35, true, 0.35);
  };
  return r;
}

}  // namespace

void add_clipart_recipes(RecipeBook& book) {
  std::vector<SuiteRecipe>& out = book.suite;
  // ---- objects: openclipart drawings (public domain), split by drawing
  out.push_back(clipart_task("clipart-animals", "mammals, birds, insects, fish, dinosaurs in openclipart drawings; split by drawing",
                             {{"mammal", {"animals/mammals"}, {}},
                              {"bird", {"animals/birds"}, {}},
                              {"insect", {"animals/bugs"}, {}},
                              {"fish", {"animals/fish"}, {}},
                              {"dinosaur", {"animals/dinosaurs"}, {}}}));
  out.push_back(clipart_task("clipart-food", "fruit, desserts, drinks, bread, meat and eggs in openclipart drawings; split by drawing",
                             {{"fruit", {"food/fruit"}, {}},
                              {"dessert", {"food/desserts"}, {}},
                              {"drink", {"food/beverages"}, {}},
                              {"bread", {"food/breads_and_carbs"}, {}},
                              {"meat-or-egg", {"food/meats_and_eggs"}, {}}}));
  out.push_back(clipart_task("clipart-things", "vehicles, boats, instruments, sports gear, houses, flowers, toys, trees, tools (openclipart); split by drawing",
                             {{"vehicle", {"transportation/vehicles"}, {}},
                              {"boat", {"transportation/boating"}, {}},
                              {"instrument", {"recreation/music"}, {}},
                              {"sport", {"recreation/sports"}, {}},
                              {"house", {"buildings/homes"}, {}},
                              {"flower", {"plants/flowers"}, {}},
                              {"toy", {"recreation/toys"}, {}},
                              {"tree", {"plants/trees"}, {}},
                              {"tool", {"tools"}, {"weapons", "toys"}}}));

  // ---- counting objects: 1 to 6 openclipart drawings per image, split by drawing
  {
    SuiteRecipe r;
    r.info = {"count-objects", "counting", "how many objects an image shows (1 to 6), drawn from openclipart; split by drawing",
              {"openclipart-svg", "librsvg2-bin"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      ctx.package("librsvg2-bin");
      for (int n = 1; n <= 6; ++n) classes.push_back(std::to_string(n));
      for (const std::string dir : {"food/fruit", "recreation/toys", "plants/flowers", "food/desserts"}) {
        for (const auto& f : ctx.files("openclipart-svg", "/usr/share/openclipart/svg/" + dir + "/", {".svg"})) {
          SuiteAsset a;
          a.cls = -1;
          a.group = dir + "/" + drawing_stem(f);
          a.key = f;
          const std::string cache = ctx.cache_dir();
          a.load = [f, cache] { return std::vector<at::Tensor>{render_svg(f, kSpriteSide, "", cache)}; };
          assets.push_back(std::move(a));
        }
      }
    };
    r.draw = [](int64_t cls, const std::vector<const std::vector<at::Tensor>*>& pool, size_t, Rng& rng, int64_t size, std::vector<size_t>& used) {
      return draw_count(cls + 1, pool, rng, size, used);
    };
    out.push_back(r);
  }

  // ---- pretraining: openclipart folders that no benchmark task reads (and that are
  // not icons, signs or emoji-like faces).
  SuiteRecipe clip = clipart_task(
      "pool-clipart", "people, office things, maps, school things, electronics, decorations, science, containers, party things",
      {{"people", {"people"}, {"smilies", "stickmen"}},
       {"office", {"office"}, {}},
       {"geography", {"geography"}, {}},
       {"education", {"education"}, {}},
       {"electronics", {"electronics"}, {}},
       {"decoration", {"decorations"}, {}},
       {"science", {"science"}, {}},
       {"container", {"containers"}, {}},
       {"party", {"recreation/party"}, {}}});
  clip.info.kind = "pretrain";
  book.pretrain.push_back(clip);
}

}  // namespace clr::data::suite_internal
