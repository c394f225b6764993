// The catalogue of the benchmark suite: every task, where its assets come from, how
// they are grouped for splitting, and how an image is drawn.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/log.h"
#include "clr/data/sources.h"
#include "detail/suite_recipe.h"

namespace clr::data::suite_internal {
namespace {

constexpr double kPi = 3.14159265358979323846;
// Asset resolutions: enough for images up to about 80 px (the suite's default is 64),
// small enough that a bundle of every asset travels to the GPU machine.
constexpr int64_t kSpriteSide = 80;   // drawings, cards, tiles, flags, terrain pieces (longer side)
constexpr int64_t kGlyphHeight = 80;  // a font's full height
constexpr int64_t kTextureSide = 160; // textures are cropped, then resized
constexpr size_t kMaxFontsPerChar = 6;  // scripts: a character in at most this many fonts
const std::vector<std::string> kFontSuffixes = {".ttf", ".otf", ".ttc"};
// Every font package the glyph tasks read.
const std::vector<std::string> kFontPackages = {
    "fonts-dejavu-core", "fonts-dejavu-extra", "fonts-freefont-ttf", "fonts-noto-core", "culmus",
    "fonts-bpg-georgian", "fonts-sil-abyssinica", "fonts-lohit-deva", "fonts-lohit-beng-bengali",
    "fonts-lohit-taml", "fonts-tlwg-garuda-ttf", "fonts-tlwg-kinnari-ttf", "fonts-tlwg-loma-ttf",
    "fonts-tlwg-norasi-ttf", "fonts-nanum", "fonts-unfonts-core", "fonts-ipafont-gothic", "fonts-wqy-microhei",
    "fonts-khmeros", "fonts-gfs-didot", "fonts-gfs-artemisia", "fonts-gfs-neohellenic", "fonts-urw-base35",
    "fonts-dancingscript", "fonts-kaushanscript", "fonts-blankenburg", "fonts-gotico-antiqua", "fonts-comic-neue"};

std::string base_name(const std::string& path) {
  const size_t s = path.rfind('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

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

const at::Tensor& pick_variant(const std::vector<at::Tensor>& variants, Rng& rng) {
  return variants[static_cast<size_t>(rng.below(static_cast<int64_t>(variants.size())))];
}

// ---------------------------------------------------------------- openclipart

// Drawings of one subject come in variants (name_01.svg, name_bw.svg, ...): one group.
std::string drawing_stem(const std::string& file) {
  std::string s = lower(base_name(file));
  if (s.size() > 4) s = s.substr(0, s.size() - 4);
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

// ---------------------------------------------------------------- cards and mahjong tiles

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

// ---------------------------------------------------------------- glyphs

struct Script {
  std::string name;
  std::vector<uint32_t> chars;
};

std::vector<uint32_t> range(uint32_t lo, uint32_t hi, uint32_t step = 1, std::set<uint32_t> skip = {}) {
  std::vector<uint32_t> out;
  for (uint32_t c = lo; c <= hi; c += step) {
    if (!skip.count(c)) out.push_back(c);
  }
  return out;
}

std::vector<Script> scripts() {
  auto join = [](std::vector<uint32_t> a, const std::vector<uint32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  return {
      {"latin", join(range('A', 'Z'), range('a', 'z'))},
      {"greek", join(range(0x391, 0x3A9, 1, {0x3A2}), range(0x3B1, 0x3C9))},
      {"cyrillic", range(0x410, 0x44F)},
      {"armenian", join(range(0x531, 0x556), range(0x561, 0x586))},
      {"hebrew", range(0x5D0, 0x5EA)},
      {"arabic", range(0x627, 0x64A, 1, {0x63B, 0x63C, 0x63D, 0x63E, 0x63F, 0x640})},
      {"devanagari", range(0x905, 0x939, 1, {0x90D, 0x90E, 0x911, 0x912, 0x929, 0x931, 0x934})},
      {"bengali", range(0x985, 0x9B9, 1, {0x98D, 0x98E, 0x991, 0x992, 0x9A9, 0x9B1, 0x9B3, 0x9B4, 0x9B5})},
      {"tamil", {0xB85, 0xB86, 0xB87, 0xB88, 0xB89, 0xB8A, 0xB8E, 0xB8F, 0xB90, 0xB92, 0xB93, 0xB94, 0xB95,
                 0xB99, 0xB9A, 0xB9C, 0xB9E, 0xB9F, 0xBA3, 0xBA4, 0xBA8, 0xBA9, 0xBAA, 0xBAE, 0xBAF, 0xBB0,
                 0xBB1, 0xBB2, 0xBB3, 0xBB4, 0xBB5, 0xBB7, 0xBB8, 0xBB9}},
      {"thai", range(0xE01, 0xE2E)},
      {"georgian", range(0x10D0, 0x10F0)},
      {"ethiopic", range(0x1200, 0x1257, 1, {0x1249, 0x124E, 0x124F})},
      {"khmer", range(0x1780, 0x17A2)},
      {"kana", join(range(0x3042, 0x3093, 2), range(0x30A2, 0x30F3, 2))},
      {"han", range(0x4E00, 0x9F00, 151)},
      {"hangul", range(0xAC00, 0xD7A0, 97)},
  };
}

// Fonts that have at least `coverage` of `chars`.
std::vector<std::shared_ptr<Font>> covering(const std::vector<std::shared_ptr<Font>>& fonts,
                                            const std::vector<uint32_t>& chars, double coverage) {
  std::vector<std::shared_ptr<Font>> out;
  for (const auto& f : fonts) {
    size_t have = 0;
    for (uint32_t c : chars) have += f->has_glyph(c) ? 1 : 0;
    if (static_cast<double>(have) >= coverage * static_cast<double>(chars.size())) out.push_back(f);
  }
  return out;
}

// The glyph of `c` in every font of `fonts` that draws it.
std::function<std::vector<at::Tensor>()> glyph_loader(std::vector<std::shared_ptr<Font>> fonts, uint32_t c) {
  return [fonts, c] {
    std::vector<at::Tensor> out;
    for (const auto& f : fonts) {
      at::Tensor g = f->render(c, kGlyphHeight);
      if (g.numel() > 0 && (g > 0.3).sum().item<int64_t>() >= 12) out.push_back(g);
    }
    return out;
  };
}

at::Tensor draw_glyph(const std::vector<at::Tensor>& variants, Rng& rng, int64_t size) {
  return draw_mask(pick_variant(variants, rng), rng, size, 0.45, 0.85, 0.25);
}

// Glyph tasks whose classes are characters and whose assets are (font family, character):
// split by font family, so test glyphs come from typefaces never seen in training.
SuiteRecipe letters_task(const std::string& name, const std::string& description, std::vector<uint32_t> chars,
                         std::vector<std::string> names, size_t min_fonts) {
  SuiteRecipe r;
  r.info = {name, "characters", description, kFontPackages};
  r.collect = [chars, names, min_fonts, name](SuiteContext& ctx, std::vector<std::string>& classes,
                                              std::vector<SuiteAsset>& assets) {
    classes = names;
    const auto fonts = covering(ctx.fonts(kFontPackages), chars, 1.0);
    std::set<std::string> families;
    for (const auto& f : fonts) families.insert(f->family());
    CLR_CHECK(families.size() >= min_fonts, NotFoundError, "task '", name, "' needs fonts of at least ", min_fonts,
              " families with all its characters, found ", families.size(), "; install ", kFontPackages[0], " ...");
    for (const auto& f : fonts) {
      for (size_t c = 0; c < chars.size(); ++c) {
        SuiteAsset a;
        a.cls = static_cast<int64_t>(c);
        a.group = f->family();
        a.key = f->path() + "#" + utf8_encode(chars[c]);
        a.load = glyph_loader({f}, chars[c]);
        assets.push_back(std::move(a));
      }
    }
  };
  r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
    return draw_glyph(*pool[pick], rng, size);
  };
  return r;
}

// Fonts (by file name) of one style class, for style tasks split by character.
struct FontClass {
  std::string name;
  std::vector<std::string> files;  // base names
};

SuiteRecipe typeface_task(const std::string& name, const std::string& description, std::vector<FontClass> classes,
                          std::vector<uint32_t> chars) {
  SuiteRecipe r;
  r.info = {name, "style", description, kFontPackages};
  r.collect = [classes, chars, name](SuiteContext& ctx, std::vector<std::string>& names, std::vector<SuiteAsset>& assets) {
    const auto fonts = ctx.fonts(kFontPackages);
    for (size_t c = 0; c < classes.size(); ++c) {
      names.push_back(classes[c].name);
      std::vector<std::shared_ptr<Font>> mine;
      for (const auto& f : fonts) {
        if (std::find(classes[c].files.begin(), classes[c].files.end(), base_name(f->path())) != classes[c].files.end()) {
          mine.push_back(f);
        }
      }
      CLR_CHECK(mine.size() * 2 >= classes[c].files.size(), NotFoundError, "task '", name, "': class '", classes[c].name,
                "' found ", mine.size(), " of its ", classes[c].files.size(), " fonts; install the font packages");
      for (uint32_t ch : chars) {
        SuiteAsset a;
        a.cls = static_cast<int64_t>(c);
        a.group = "char " + utf8_encode(ch);
        a.key = classes[c].name + "#" + utf8_encode(ch);
        a.load = glyph_loader(mine, ch);
        assets.push_back(std::move(a));
      }
    }
  };
  r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
    return draw_glyph(*pool[pick], rng, size);
  };
  return r;
}

// ---------------------------------------------------------------- textures and raster sprites

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
  at::Tensor t = lower(f).size() > 4 && lower(f).compare(lower(f).size() - 4, 4, ".pat") == 0 ? read_gimp_pattern(f)
                                                                                              : read_rgba(f);
  return t.narrow(2, 0, 3).contiguous();
}

// ---------------------------------------------------------------- Fashion-MNIST

struct FashionData {
  Split train, test;
};

std::shared_ptr<FashionData> fashion(SuiteContext& ctx) {
  ctx.package("dataset-fashion-mnist");
  static std::map<std::string, std::shared_ptr<FashionData>> cache;
  const std::string dir = ctx.path("/usr/share/datasets/fashion-mnist/");
  auto& d = cache[dir];
  if (!d) {
    d = std::make_shared<FashionData>();
    d->train.images = read_idx_images(dir + "train-images-idx3-ubyte.gz");
    d->train.labels = read_idx_labels(dir + "train-labels-idx1-ubyte.gz");
    d->test.images = read_idx_images(dir + "t10k-images-idx3-ubyte.gz");
    d->test.labels = read_idx_labels(dir + "t10k-labels-idx1-ubyte.gz");
  }
  return d;
}

const char* kFashionNames[10] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                 "sandal",  "shirt",   "sneaker",  "bag",   "ankle-boot"};

SuiteRecipe fashion_task(const std::string& name, const std::string& description, std::vector<int64_t> labels,
                         int64_t per_class) {
  SuiteRecipe r;
  r.info = {name, "fashion", description, {"dataset-fashion-mnist"}};
  r.collect = [labels, per_class](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
    const auto data = fashion(ctx);
    for (int64_t l : labels) classes.push_back(kFashionNames[l]);
    // Each image is its own asset; the dataset's own test images are the test split.
    for (int split : {0, 2}) {
      const Split& s = split == 0 ? data->train : data->test;
      std::vector<int64_t> taken(labels.size(), 0);
      const int64_t cap = split == 0 ? per_class : std::max<int64_t>(per_class / 3, 20);
      for (size_t i = 0; i < s.labels.size(); ++i) {
        const auto it = std::find(labels.begin(), labels.end(), s.labels[i]);
        if (it == labels.end()) continue;
        const auto c = static_cast<size_t>(it - labels.begin());
        if (taken[c]++ >= cap) continue;
        SuiteAsset a;
        a.cls = static_cast<int64_t>(c);
        a.group = detail::concat(split == 0 ? "train#" : "t10k#", i);
        a.key = a.group;
        a.split = split == 0 ? -2 : 2;  // -2: train or val, decided by the builder
        const at::Tensor img = s.images[static_cast<int64_t>(i)];
        a.load = [img] { return std::vector<at::Tensor>{img.squeeze(-1).to(torch::kFloat).div(255.0f)}; };
        assets.push_back(std::move(a));
      }
    }
  };
  r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
    at::Tensor mask = (*pool[pick])[0];
    if (rng.chance(0.5)) mask = mask.flip({1});
    return draw_mask(mask, rng, size, 0.7, 1.0, 0.15);
  };
  return r;
}

}  // namespace

std::vector<SuiteRecipe> suite_recipes() {
  std::vector<SuiteRecipe> out;

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

  // ---- writing systems
  {
    SuiteRecipe r;
    r.info = {"scripts", "characters", "which of 16 writing systems a character belongs to; split by character", kFontPackages};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      const auto fonts = ctx.fonts(kFontPackages);
      for (const auto& s : scripts()) {
        classes.push_back(s.name);
        // Fonts with at least half of the script's sample characters; each character is
        // drawn in those of them that have it.
        const auto have = covering(fonts, s.chars, 0.5);
        CLR_CHECK(!have.empty(), NotFoundError, "no installed font covers the ", s.name,
                  " script; install the font packages (scripts/setup.sh does)");
        for (uint32_t ch : s.chars) {
          SuiteAsset a;
          a.cls = static_cast<int64_t>(classes.size() - 1);
          a.group = s.name + " " + utf8_encode(ch);
          a.key = a.group;
          // At most kMaxFontsPerChar of the fonts that have it, spread over the list.
          std::vector<std::shared_ptr<Font>> with;
          for (const auto& f : have) {
            if (f->has_glyph(ch)) with.push_back(f);
          }
          std::vector<std::shared_ptr<Font>> some;
          for (size_t k = 0; k < std::min(with.size(), kMaxFontsPerChar); ++k) {
            some.push_back(with[k * with.size() / std::min(with.size(), kMaxFontsPerChar)]);
          }
          a.load = glyph_loader(some, ch);
          assets.push_back(std::move(a));
        }
      }
    };
    r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
      return draw_glyph(*pool[pick], rng, size);
    };
    out.push_back(r);
  }
  {
    std::vector<std::string> names;
    const char* greek[24] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
                             "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi",
                             "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"};
    for (const char* g : greek) names.push_back(g);
    out.push_back(letters_task("greek-letters", "the 24 lowercase Greek letters; split by typeface family",
                               range(0x3B1, 0x3C9, 1, {0x3C2}), names, 6));
  }
  {
    const char* hebrew[22] = {"alef", "bet", "gimel", "dalet", "he", "vav", "zayin", "het", "tet", "yod", "kaf",
                              "lamed", "mem", "nun", "samekh", "ayin", "pe", "tsadi", "qof", "resh", "shin", "tav"};
    out.push_back(letters_task("hebrew-letters", "the 22 Hebrew letters; split by typeface family",
                               range(0x5D0, 0x5EA, 1, {0x5DA, 0x5DD, 0x5DF, 0x5E3, 0x5E5}),
                               std::vector<std::string>(hebrew, hebrew + 22), 6));
  }
  {
    std::vector<std::string> names;
    for (uint32_t c = 0x10D0; c <= 0x10F0; ++c) names.push_back(detail::concat("U+", std::hex, c));
    out.push_back(letters_task("georgian-letters", "the 33 Georgian (Mkhedruli) letters; split by typeface family",
                               range(0x10D0, 0x10F0), names, 6));
  }
  {
    SuiteRecipe r;
    r.info = {"digits", "characters", "the value 0-9 of a digit in one of eight numeral systems; split by typeface family",
              kFontPackages};
    r.collect = [](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
      for (int v = 0; v <= 9; ++v) classes.push_back(std::to_string(v));
      const uint32_t zeros[] = {0x30, 0x660, 0x6F0, 0x966, 0x9E6, 0xBE6, 0xE50, 0x17E0};
      const auto fonts = ctx.fonts(kFontPackages);
      for (uint32_t zero : zeros) {
        std::vector<uint32_t> digits;
        for (uint32_t v = 0; v < 10; ++v) digits.push_back(zero + v);
        // At most twelve fonts per numeral system, spread over the list (Western digits
        // are in almost every font).
        const auto all = covering(fonts, digits, 1.0);
        std::vector<std::shared_ptr<Font>> some;
        for (size_t k = 0; k < std::min<size_t>(all.size(), 12); ++k) some.push_back(all[k * all.size() / std::min<size_t>(all.size(), 12)]);
        for (const auto& f : some) {
          for (uint32_t v = 0; v < 10; ++v) {
            SuiteAsset a;
            a.cls = static_cast<int64_t>(v);
            a.group = f->family();
            a.key = f->path() + "#" + utf8_encode(zero + v);
            a.load = glyph_loader({f}, zero + v);
            assets.push_back(std::move(a));
          }
        }
      }
    };
    r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
      return draw_glyph(*pool[pick], rng, size);
    };
    out.push_back(r);
  }
  {
    std::vector<uint32_t> chars = range('A', 'Z');
    for (uint32_t c : range('a', 'z')) chars.push_back(c);
    for (uint32_t c : range('0', '9')) chars.push_back(c);
    out.push_back(typeface_task(
        "typeface", "serif, sans-serif, monospace, script or blackletter type; split by character",
        {{"serif",
          {"DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "FreeSerif.ttf", "FreeSerifBold.ttf", "NotoSerif-Regular.ttf",
           "NotoSerif-Bold.ttf", "GFSDidot.otf", "GFSArtemisia.otf", "NimbusRoman-Regular.otf", "C059-Roman.otf",
           "P052-Roman.otf", "URWBookman-Light.otf"}},
         {"sans",
          {"DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "FreeSans.ttf", "FreeSansBold.ttf", "NotoSans-Regular.ttf",
           "NotoSans-Bold.ttf", "GFSNeohellenic.otf", "NimbusSans-Regular.otf", "URWGothic-Book.otf",
           "NimbusSansNarrow-Regular.otf"}},
         {"mono",
          {"DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "FreeMono.ttf", "FreeMonoBold.ttf", "NimbusMonoPS-Regular.otf", "NimbusMonoPS-Bold.otf"}},
         {"script", {"Z003-MediumItalic.otf", "DancingScript-Regular.otf", "DancingScript-Bold.otf", "KaushanScript-Regular.otf"}},
         {"blackletter",
          {"Blankenburg_UNZ1A.ttf", "Rusch-GoticoAntiqua100G.otf", "Zainer-GoticoAntiqua96G.otf",
           "Fust&Schoeffer-Durandus-GoticoAntiqua118G.otf"}}},
        chars));
  }
  {
    std::vector<uint32_t> chars = range('A', 'Z');
    for (uint32_t c : range('a', 'z')) chars.push_back(c);
    SuiteRecipe r = typeface_task("font-weight", "regular, bold, italic or bold italic of the same typefaces; split by character",
                                  {{"regular", {"DejaVuSans.ttf", "DejaVuSerif.ttf", "FreeSans.ttf", "FreeSerif.ttf",
                                                "NimbusSans-Regular.otf", "NimbusRoman-Regular.otf", "NotoSans-Regular.otf"}},
                                   {"bold", {"DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "FreeSansBold.ttf",
                                             "FreeSerifBold.ttf", "NimbusSans-Bold.otf", "NimbusRoman-Bold.otf",
                                             "NotoSans-Bold.ttf"}},
                                   {"italic", {"DejaVuSans-Oblique.ttf", "DejaVuSerif-Italic.ttf", "FreeSansOblique.ttf",
                                               "FreeSerifItalic.ttf", "NimbusSans-Italic.otf", "NimbusRoman-Italic.otf",
                                               "NotoSans-Italic.ttf"}},
                                   {"bold-italic", {"DejaVuSans-BoldOblique.ttf", "DejaVuSerif-BoldItalic.ttf",
                                                    "FreeSansBoldOblique.ttf", "FreeSerifBoldItalic.ttf",
                                                    "NimbusSans-BoldItalic.otf", "NimbusRoman-BoldItalic.otf",
                                                    "NotoSans-BoldItalic.ttf"}}},
                                  chars);
    out.push_back(r);
  }

  // ---- Fashion-MNIST (dataset-fashion-mnist), each image an asset, its own test set
  // Enough source images per class for a full-scale suite to draw each training image
  // from its own (train + val assets; a third as many test assets).
  out.push_back(fashion_task("fashion-tops", "t-shirt, pullover, coat or shirt (Fashion-MNIST, recoloured)", {0, 2, 4, 6}, 400));
  out.push_back(fashion_task("fashion-other", "trouser, dress, sandal, sneaker, bag or ankle boot (Fashion-MNIST, recoloured)",
                             {1, 3, 5, 7, 8, 9}, 350));
  return out;
}

std::vector<SuiteRecipe> pretrain_recipes() {
  std::vector<SuiteRecipe> out;
  // openclipart folders that no benchmark task reads (and that are not icons, signs or
  // emoji-like faces).
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
  out.push_back(clip);
  // Symbols of Unicode blocks no benchmark task uses (arrows, mathematical operators,
  // geometric shapes, currency, letterlike, IPA): one class per symbol, split by typeface.
  std::vector<uint32_t> symbols;
  for (uint32_t c : range(0x2190, 0x21FF, 5)) symbols.push_back(c);
  for (uint32_t c : range(0x2200, 0x22FF, 6)) symbols.push_back(c);
  for (uint32_t c : range(0x25A0, 0x25FF, 4)) symbols.push_back(c);
  for (uint32_t c : range(0x20A0, 0x20B5, 2)) symbols.push_back(c);
  for (uint32_t c : range(0x2100, 0x214F, 4)) symbols.push_back(c);
  for (uint32_t c : range(0x0250, 0x02AF, 4)) symbols.push_back(c);
  std::vector<std::string> names;
  for (uint32_t c : symbols) names.push_back(detail::concat("U+", std::hex, c));
  SuiteRecipe sym;
  sym.info = {"pool-symbols", "pretrain", "arrows, mathematical, geometric, currency, letterlike and IPA symbols, each a class; split by typeface family",
              kFontPackages};
  sym.collect = [symbols, names](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
    const auto fonts = ctx.fonts(kFontPackages);
    // Keep the symbols that at least six typeface families draw (a class needs three
    // split groups even if a thin glyph or two are dropped).
    for (size_t i = 0; i < symbols.size(); ++i) {
      std::set<std::string> families;
      std::vector<std::shared_ptr<Font>> with;
      for (const auto& f : fonts) {
        if (f->has_glyph(symbols[i]) && families.insert(f->family()).second) with.push_back(f);
      }
      if (families.size() < 6) continue;
      const auto cls = static_cast<int64_t>(classes.size());
      classes.push_back(names[i]);
      for (const auto& f : with) {
        SuiteAsset a;
        a.cls = cls;
        a.group = f->family() + "/" + names[i];
        a.key = f->path() + "#" + utf8_encode(symbols[i]);
        a.load = glyph_loader({f}, symbols[i]);
        assets.push_back(std::move(a));
      }
    }
  };
  sym.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
    return draw_glyph(*pool[pick], rng, size);
  };
  out.push_back(sym);
  return out;
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

std::string SuiteContext::path(const std::string& packaged_file) const {
  const std::string& root = options_.root;
  if (root.empty() || root == "/") return packaged_file;
  return (root.back() == '/' ? root.substr(0, root.size() - 1) : root) + packaged_file;
}

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
