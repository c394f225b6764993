// Suite task family: glyphs of the installed fonts — writing systems, the letters of
// three alphabets, digits of eight numeral systems, typeface classes and weights, and the
// pretraining pool of symbols; split by typeface family or by character.
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

constexpr int64_t kGlyphHeight = 80;    // a font's full height
constexpr size_t kMaxFontsPerChar = 6;  // scripts: a character in at most this many fonts
// Every font package the glyph tasks read.
const std::vector<std::string> kFontPackages = {
    "fonts-dejavu-core", "fonts-dejavu-extra", "fonts-freefont-ttf", "fonts-noto-core", "culmus",
    "fonts-bpg-georgian", "fonts-sil-abyssinica", "fonts-lohit-deva", "fonts-lohit-beng-bengali",
    "fonts-lohit-taml", "fonts-tlwg-garuda-ttf", "fonts-tlwg-kinnari-ttf", "fonts-tlwg-loma-ttf",
    "fonts-tlwg-norasi-ttf", "fonts-nanum", "fonts-unfonts-core", "fonts-ipafont-gothic", "fonts-wqy-microhei",
    "fonts-khmeros", "fonts-gfs-didot", "fonts-gfs-artemisia", "fonts-gfs-neohellenic", "fonts-urw-base35",
    "fonts-dancingscript", "fonts-kaushanscript", "fonts-blankenburg", "fonts-gotico-antiqua", "fonts-comic-neue"};

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

}  // namespace

void add_glyph_recipes(RecipeBook& book) {
  std::vector<SuiteRecipe>& out = book.suite;
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

  // ---- pretraining: symbols of Unicode blocks no benchmark task uses (arrows,
  // mathematical operators, geometric shapes, currency, letterlike, IPA): one class per
  // symbol, split by typeface.
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
  book.pretrain.push_back(sym);
}

}  // namespace clr::data::suite_internal
