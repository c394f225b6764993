#include "clr/data/assets.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>

#include <torch/torch.h>

#define STB_TRUETYPE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include <stb/stb_image.h>      // implemented in image.cpp
#include <stb/stb_truetype.h>   // implemented here
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "clr/core/error.h"
#include "clr/core/strings.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/process.h"
#include "clr/data/image.h"

namespace clr::data {
namespace {

at::Tensor to_float_rgba(const uint8_t* data, int w, int h) {
  at::Tensor t = torch::empty({h, w, 4}, torch::kUInt8);
  std::memcpy(t.data_ptr(), data, static_cast<size_t>(w) * h * 4);
  return t.to(torch::kFloat).div_(255.0f);
}

// Longer side -> `max_side` with antialiasing (only ever shrinks).
at::Tensor shrink_to(const at::Tensor& rgba, int64_t max_side) {
  const int64_t h = rgba.size(0), w = rgba.size(1), longer = std::max(h, w);
  if (longer <= max_side) return rgba;
  if (rgba.size(2) != 4) {
    namespace F = torch::nn::functional;
    const double f = static_cast<double>(max_side) / static_cast<double>(longer);
    return F::interpolate(rgba.permute({2, 0, 1}).unsqueeze(0),
                          F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{std::max<int64_t>(1, std::llround(static_cast<double>(h) * f)),
                                                         std::max<int64_t>(1, std::llround(static_cast<double>(w) * f))})
                              .mode(torch::kBilinear)
                              .align_corners(false)
                              .antialias(true))
        .squeeze(0)
        .permute({1, 2, 0})
        .clamp(0, 1)
        .contiguous();
  }
  const double f = static_cast<double>(max_side) / static_cast<double>(longer);
  const int64_t nh = std::max<int64_t>(1, std::llround(static_cast<double>(h) * f));
  const int64_t nw = std::max<int64_t>(1, std::llround(static_cast<double>(w) * f));
  // Premultiplied alpha, so transparent pixels' colours do not bleed into edges.
  at::Tensor pm = torch::cat({rgba.narrow(2, 0, 3) * rgba.narrow(2, 3, 1), rgba.narrow(2, 3, 1)}, 2);
  namespace F = torch::nn::functional;
  at::Tensor r = F::interpolate(pm.permute({2, 0, 1}).unsqueeze(0),
                                F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{nh, nw})
                                    .mode(torch::kBilinear)
                                    .align_corners(false)
                                    .antialias(true))
                     .squeeze(0)
                     .permute({1, 2, 0})
                     .clamp(0, 1);
  at::Tensor a = r.narrow(2, 3, 1);
  at::Tensor rgb = torch::where(a > 1e-6, r.narrow(2, 0, 3) / a.clamp_min(1e-6), torch::zeros_like(r.narrow(2, 0, 3)));
  return torch::cat({rgb.clamp(0, 1), a}, 2).contiguous();
}

std::string rsvg_png(const std::string& path, double zoom, const std::string& element) {
  std::vector<std::string> argv = {"rsvg-convert", "-f", "png", "-z", detail::concat(zoom)};
  if (!element.empty()) {
    argv.push_back("-i");
    argv.push_back(element);
  }
  argv.push_back(path);
  const ProcessResult r =
      run_process(argv, "install it with `sudo apt-get install librsvg2-bin` (scripts/setup.sh does)", 120);
  CLR_CHECK(!r.timed_out, FormatError, "rsvg-convert took more than 120 s to render '", path, "'",
            element.empty() ? "" : detail::concat(" (element '", element, "')"));
  CLR_CHECK(r.exit_code == 0 && !r.out.empty(), FormatError, "rsvg-convert could not render '", path, "'",
            element.empty() ? "" : detail::concat(" (element '", element, "')"), ": exit ", r.exit_code, ": ",
            r.err.substr(0, 300));
  return r.out;
}

std::string utf16be_to_utf8(const char* s, int len) {
  std::string out;
  for (int i = 0; i + 1 < len; i += 2) {
    uint32_t c = (static_cast<uint32_t>(static_cast<uint8_t>(s[i])) << 8) | static_cast<uint8_t>(s[i + 1]);
    if (c >= 0xD800 && c < 0xDC00 && i + 3 < len) {  // surrogate pair
      const uint32_t lo = (static_cast<uint32_t>(static_cast<uint8_t>(s[i + 2])) << 8) | static_cast<uint8_t>(s[i + 3]);
      c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
      i += 2;
    }
    out += utf8_encode(c);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- raster

at::Tensor decode_rgba(const std::string& bytes, const std::string& origin) {
  CLR_CHECK(!bytes.empty() && bytes.size() <= static_cast<size_t>(INT32_MAX), FormatError, "image '", origin,
            "' is empty or too large");
  int w = 0, h = 0, channels = 0;
  stbi_uc* px = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), static_cast<int>(bytes.size()),
                                      &w, &h, &channels, 4);
  CLR_CHECK(px != nullptr, FormatError, "cannot decode image '", origin, "': ", stbi_failure_reason());
  at::Tensor t = to_float_rgba(px, w, h);
  stbi_image_free(px);
  return t;
}

at::Tensor read_rgba(const std::string& path) { return decode_rgba(read_file(path), path); }

at::Tensor crop_to_content(const at::Tensor& rgba, float threshold) {
  const at::Tensor mask = rgba.select(2, 3) > threshold;
  const at::Tensor rows = mask.any(1).nonzero(), cols = mask.any(0).nonzero();
  if (rows.numel() == 0) return rgba;
  const int64_t r0 = rows.min().item<int64_t>(), r1 = rows.max().item<int64_t>();
  const int64_t c0 = cols.min().item<int64_t>(), c1 = cols.max().item<int64_t>();
  return rgba.slice(0, r0, r1 + 1).slice(1, c0, c1 + 1).contiguous();
}

at::Tensor shrink_image(const at::Tensor& image, int64_t max_side) {
  const at::Tensor hwc = image.dim() == 2 ? image.unsqueeze(2) : image;
  at::Tensor out = (shrink_to(hwc, max_side) * 255).round().clamp(0, 255).div_(255.0f);
  return image.dim() == 2 ? out.squeeze(2).contiguous() : out.contiguous();
}

bool has_content(const at::Tensor& rgba, float threshold, int64_t min_pixels) {
  return rgba.numel() > 0 && (rgba.select(2, 3) > threshold).sum().item<int64_t>() >= min_pixels;
}

// ---------------------------------------------------------------- SVG

at::Tensor render_svg(const std::string& path, int64_t max_side, const std::string& element,
                      const std::string& cache_dir) {
  CLR_CHECK(max_side >= 8, ConfigError, "render_svg: max_side must be >= 8, got ", max_side);
  struct stat st {};
  CLR_CHECK(::stat(path.c_str(), &st) == 0, NotFoundError, "SVG file '", path, "' does not exist");
  std::string cache_file;
  if (!cache_dir.empty()) {
    const std::string key = detail::concat("svg/1|", path, "|", st.st_size, "|", st.st_mtime, "|", element, "|", max_side);
    cache_file = cache_dir + "/" + sha256_hex(key).substr(0, 32) + ".png";
    if (file_exists(cache_file)) return decode_rgba(read_file(cache_file), cache_file);
  }
  const std::string what = element.empty() ? path : detail::concat(path, " (element '", element, "')");
  // At the drawing's own size first; then, if its content came out smaller than wanted,
  // once more at the zoom that makes it `max_side` (never upscale pixels).
  const at::Tensor page = decode_rgba(rsvg_png(path, 1.0, element), what);
  at::Tensor img = crop_to_content(page);
  CLR_CHECK(has_content(img), FormatError, "'", what, "' renders nothing visible");
  const int64_t longer = std::max(img.size(0), img.size(1));
  if (longer < max_side) {
    // The zoom scales the whole page: keep it under 4096 px on its longer side.
    const double page_side = static_cast<double>(std::max(page.size(0), page.size(1)));
    const double zoom = std::min({64.0, static_cast<double>(max_side) / static_cast<double>(longer) * 1.02,
                                  std::max(1.0, 4096.0 / page_side)});
    img = crop_to_content(decode_rgba(rsvg_png(path, zoom, element), what));
  }
  // 8-bit values, as every other asset: the same pixels with or without the cache,
  // and in a bundle.
  const at::Tensor u8 = (shrink_to(img, max_side) * 255).round().clamp(0, 255).to(torch::kUInt8);
  if (!cache_file.empty()) {
    make_directories(cache_dir);
    write_file_atomic(cache_file, encode_png(u8));
  }
  return u8.to(torch::kFloat).div_(255.0f);
}

// ---------------------------------------------------------------- GIMP patterns

at::Tensor read_gimp_pattern(const std::string& path) {
  const std::string b = read_file(path);
  CLR_CHECK(b.size() >= 24, FormatError, "'", path, "' is not a GIMP pattern: ", b.size(), " bytes");
  const uint32_t header = read_be32(b, 0), version = read_be32(b, 4), w = read_be32(b, 8), h = read_be32(b, 12),
                 bpp = read_be32(b, 16);
  CLR_CHECK(b.compare(20, 4, "GPAT") == 0 && version == 1 && header >= 24 && header <= b.size(), FormatError, "'", path,
            "' is not a GIMP pattern (expected magic 'GPAT', version 1)");
  CLR_CHECK(w >= 1 && h >= 1 && w <= 16384 && h <= 16384 && bpp >= 1 && bpp <= 4, FormatError, "'", path,
            "': unsupported pattern of ", w, "x", h, " with ", bpp, " bytes per pixel");
  const size_t need = static_cast<size_t>(header) + static_cast<size_t>(w) * h * bpp;
  CLR_CHECK(b.size() >= need, FormatError, "'", path, "' is truncated: ", b.size(), " bytes, expected ", need);
  at::Tensor px = torch::empty({static_cast<int64_t>(h), static_cast<int64_t>(w), static_cast<int64_t>(bpp)}, torch::kUInt8);
  std::memcpy(px.data_ptr(), b.data() + header, static_cast<size_t>(w) * h * bpp);
  at::Tensor f = px.to(torch::kFloat).div_(255.0f);
  switch (bpp) {
    case 1: return torch::cat({f, f, f, torch::ones_like(f)}, 2);
    case 2: return torch::cat({f.narrow(2, 0, 1).expand({-1, -1, 3}), f.narrow(2, 1, 1)}, 2).contiguous();
    case 3: return torch::cat({f, torch::ones({f.size(0), f.size(1), 1})}, 2);
    default: return f;
  }
}

// ---------------------------------------------------------------- fonts

struct Font::Impl {
  std::string data;
  stbtt_fontinfo info{};
};

Font::Font(const std::string& path, int index) : path_(path), impl_(std::make_unique<Impl>()) {
  impl_->data = read_file(path);
  const auto* bytes = reinterpret_cast<const unsigned char*>(impl_->data.data());
  const int offset = stbtt_GetFontOffsetForIndex(bytes, index);
  CLR_CHECK(offset >= 0 && stbtt_InitFont(&impl_->info, bytes, offset) != 0, FormatError, "'", path,
            "' is not a font stb_truetype can read (face ", index, ")");
  auto name = [&](int id) {
    int len = 0;
    // Windows Unicode English first, then any Unicode / Mac Roman name.
    if (const char* s = stbtt_GetFontNameString(&impl_->info, &len, STBTT_PLATFORM_ID_MICROSOFT,
                                                STBTT_MS_EID_UNICODE_BMP, STBTT_MS_LANG_ENGLISH, id)) {
      return utf16be_to_utf8(s, len);
    }
    if (const char* s = stbtt_GetFontNameString(&impl_->info, &len, STBTT_PLATFORM_ID_MAC, STBTT_MAC_EID_ROMAN,
                                                STBTT_MAC_LANG_ENGLISH, id)) {
      return std::string(s, static_cast<size_t>(len));
    }
    return std::string();
  };
  family_ = name(16);  // typographic family, where given
  if (family_.empty()) family_ = name(1);
  style_ = name(17);
  if (style_.empty()) style_ = name(2);
}

Font::~Font() = default;

bool Font::has_glyph(uint32_t codepoint) const {
  return stbtt_FindGlyphIndex(&impl_->info, static_cast<int>(codepoint)) != 0;
}

at::Tensor Font::render(uint32_t codepoint, double pixel_height, bool draw_missing) const {
  if (!draw_missing && !has_glyph(codepoint)) return torch::empty({0, 0});
  const float scale = stbtt_ScaleForPixelHeight(&impl_->info, static_cast<float>(pixel_height));
  int w = 0, h = 0, xoff = 0, yoff = 0;
  unsigned char* bmp =
      stbtt_GetCodepointBitmap(&impl_->info, scale, scale, static_cast<int>(codepoint), &w, &h, &xoff, &yoff);
  if (bmp == nullptr || w <= 0 || h <= 0) {
    if (bmp) stbtt_FreeBitmap(bmp, nullptr);
    return torch::empty({0, 0});
  }
  at::Tensor t = torch::empty({h, w}, torch::kUInt8);
  std::memcpy(t.data_ptr(), bmp, static_cast<size_t>(w) * h);
  stbtt_FreeBitmap(bmp, nullptr);
  return t.to(torch::kFloat).div_(255.0f);
}

// ---------------------------------------------------------------- UTF-8

std::vector<uint32_t> utf8_codepoints(const std::string& text) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<uint8_t>(text[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    CLR_CHECK(n > 0 && i + static_cast<size_t>(n) <= text.size(), FormatError, "invalid UTF-8 at byte ", i, " of '",
              text, "'");
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1Fu) : n == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (int k = 1; k < n; ++k) {
      const auto cc = static_cast<uint8_t>(text[i + static_cast<size_t>(k)]);
      CLR_CHECK((cc >> 6) == 0x2, FormatError, "invalid UTF-8 at byte ", i + static_cast<size_t>(k), " of '", text, "'");
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

std::string utf8_encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace clr::data
