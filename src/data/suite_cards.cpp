// Suite task family: playing cards (gnome-cards-data, split by deck) and mahjong tiles
// (kdegames-mahjongg-data-kf5, split by tile set), each one element of an SVG file.
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

// Decks of gnome-cards-data with the French suits, one of each near-duplicate pair.
const std::vector<std::string> kDecks = {
    "ancient_french", "anglo",     "anglo_modern", "atlasnye",   "bellot",   "berlin",  "dondorf",
    "gnomangelo",     "guyenne-classic", "lattmann", "neoclassical", "orell", "ornamental", "paris",
    "plastic",        "rheinland", "simplistic",   "slavic_costumes", "tango", "tango_nuevo", "tigullio"};
const char* kSuits[4] = {"club", "diamond", "heart", "spade"};
const char* kRanks[13] = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "jack", "queen", "king"};

// A card of a deck as an asset: one SVG element of the deck's file.
SuiteAsset card_asset(SuiteContext& ctx, const std::string& deck, const std::string& id, int64_t cls,
                      const std::string& group) {
  SuiteAsset a;
  a.cls = cls;
  a.group = group;
  const std::string file = ctx.path("/usr/share/aisleriot/cards/" + deck + ".svgz");
  a.key = file + "#" + id;
  const std::string cache = ctx.cache_dir();
  a.load = [file, id, cache] { return std::vector<at::Tensor>{render_svg(file, kSpriteSide, id, cache)}; };
  return a;
}

void require_decks(SuiteContext& ctx) {
  ctx.package("gnome-cards-data");
  ctx.package("librsvg2-bin");
  for (const auto& d : kDecks) {
    const std::string f = ctx.path("/usr/share/aisleriot/cards/" + d + ".svgz");
    CLR_CHECK(file_exists(f), NotFoundError, "card deck '", f, "' is missing from gnome-cards-data");
  }
}

at::Tensor draw_card(const std::vector<at::Tensor>& variants, Rng& rng, int64_t size) {
  return draw_sprite(pick_variant(variants, rng), rng, size, 0.65, 0.95, 0.3, false, 0.15);
}

// The sets with mahjong designs ("alphabet" draws letters instead).
const std::vector<std::string> kTilesets = {"classic", "default", "jade", "traditional", "egypt"};

SuiteAsset tile_asset(SuiteContext& ctx, const std::string& set, const std::string& id, int64_t cls,
                      const std::string& group) {
  SuiteAsset a;
  a.cls = cls;
  a.group = group;
  const std::string file = ctx.path("/usr/share/kmahjongglib/tilesets/" + set + ".svgz");
  a.key = file + "#" + id;
  const std::string cache = ctx.cache_dir();
  a.load = [file, id, cache] { return std::vector<at::Tensor>{render_svg(file, kSpriteSide, id, cache)}; };
  return a;
}

}  // namespace

void add_card_recipes(RecipeBook& book) {
  std::vector<SuiteRecipe>& out = book.suite;
  // ---- playing cards (gnome-cards-data), split by deck
  {
    SuiteRecipe r;
    r.info = {"card-suit", "object", "the suit of a playing card (clubs, diamonds, hearts, spades); split by deck",
              {"gnome-cards-data", "librsvg2-bin"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      require_decks(ctx);
      classes = {"club", "diamond", "heart", "spade"};
      for (const auto& deck : kDecks) {
        for (int s = 0; s < 4; ++s) {
          for (const char* rank : {"1", "3", "5", "7", "9", "jack", "king"}) {
            assets.push_back(card_asset(ctx, deck, std::string(kSuits[s]) + "_" + rank, s, deck));
          }
        }
      }
    };
    r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
      return draw_card(*pool[pick], rng, size);
    };
    out.push_back(r);
  }
  {
    SuiteRecipe r;
    r.info = {"card-face", "object", "ace, jack, queen or king of a playing card; split by deck",
              {"gnome-cards-data", "librsvg2-bin"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      require_decks(ctx);
      classes = {"ace", "jack", "queen", "king"};
      const char* ids[4] = {"1", "jack", "queen", "king"};
      for (const auto& deck : kDecks) {
        for (int c = 0; c < 4; ++c) {
          for (const char* suit : kSuits) assets.push_back(card_asset(ctx, deck, std::string(suit) + "_" + ids[c], c, deck));
        }
      }
    };
    r.draw = out.back().draw;
    out.push_back(r);
  }
  {
    SuiteRecipe r;
    r.info = {"card-count", "counting", "how many pips a playing card shows (2 to 10); split by deck",
              {"gnome-cards-data", "librsvg2-bin"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      require_decks(ctx);
      for (int n = 2; n <= 10; ++n) classes.push_back(std::to_string(n));
      for (const auto& deck : kDecks) {
        for (int n = 2; n <= 10; ++n) {
          for (const char* suit : kSuits) assets.push_back(card_asset(ctx, deck, detail::concat(suit, "_", n), n - 2, deck));
        }
      }
    };
    r.draw = out.back().draw;
    out.push_back(r);
  }
  {
    SuiteRecipe r;
    r.info = {"card-deck", "style", "which of eight card decks a card comes from; split by rank",
              {"gnome-cards-data", "librsvg2-bin"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      require_decks(ctx);
      classes = {"anglo", "bellot", "berlin", "dondorf", "neoclassical", "plastic", "slavic_costumes", "tango_nuevo"};
      for (size_t d = 0; d < classes.size(); ++d) {
        for (const char* rank : kRanks) {
          for (const char* suit : kSuits) {
            assets.push_back(card_asset(ctx, classes[d], std::string(suit) + "_" + rank, static_cast<int64_t>(d),
                                        std::string("rank ") + rank));
          }
        }
      }
    };
    r.draw = out.back().draw;
    out.push_back(r);
  }

  // ---- mahjong tiles (kdegames-mahjongg-data-kf5), split by tile set
  {
    SuiteRecipe r;
    r.info = {"mahjong-suit", "object", "dots, bamboo, characters, winds or dragons on a mahjong tile; split by tile set",
              {"kdegames-mahjongg-data-kf5", "librsvg2-bin"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      ctx.package("kdegames-mahjongg-data-kf5");
      ctx.package("librsvg2-bin");
      classes = {"dots", "bamboo", "characters", "wind", "dragon"};
      const std::pair<const char*, int> ids[5] = {{"ROD", 9}, {"BAMBOO", 9}, {"CHARACTER", 9}, {"WIND", 4}, {"DRAGON", 3}};
      for (const auto& set : kTilesets) {
        for (int c = 0; c < 5; ++c) {
          for (int n = 1; n <= ids[c].second; ++n) {
            assets.push_back(tile_asset(ctx, set, detail::concat(ids[c].first, "_", n), c, set));
          }
        }
      }
    };
    r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
      return draw_sprite(pick_variant(*pool[pick], rng), rng, size, 0.6, 0.92, 0.3, false, 0.2);
    };
    r.val_fraction = 0.2;
    r.test_fraction = 0.2;
    out.push_back(r);
  }
  {
    SuiteRecipe r;
    r.info = {"mahjong-count", "counting", "how many dots or bamboo sticks a mahjong tile shows (1 to 9); split by tile set",
              {"kdegames-mahjongg-data-kf5", "librsvg2-bin"}};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      ctx.package("kdegames-mahjongg-data-kf5");
      ctx.package("librsvg2-bin");
      for (int n = 1; n <= 9; ++n) classes.push_back(std::to_string(n));
      // The sets that draw their dots and sticks (not letters or pictures).
      for (const std::string set : {"classic", "default", "jade", "traditional"}) {
        for (int n = 1; n <= 9; ++n) {
          for (const char* suit : {"ROD", "BAMBOO"}) assets.push_back(tile_asset(ctx, set, detail::concat(suit, "_", n), n - 1, set));
        }
      }
    };
    r.draw = out.back().draw;
    r.val_fraction = 0.25;
    r.test_fraction = 0.25;
    out.push_back(r);
  }
}

}  // namespace clr::data::suite_internal
