#include "clr/data/image.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <csetjmp>

#include <png.h>
#include <torch/torch.h>
#include <turbojpeg.h>
#include <webp/decode.h>

// stb_image decodes BMP and GIF for decode_image, and every raster of the benchmark
// suite's assets (data/assets.cpp: files of installed Debian packages, decoded as
// before so that the suite's bytes stay the same); decode_image never hands it JPEG
// or PNG bytes (libjpeg-turbo and libpng read those).
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "clr/core/error.h"
#include "clr/core/file_io.h"

namespace clr::data {
namespace {

bool is_webp(const std::string& b) {
  return b.size() >= 12 && b.compare(0, 4, "RIFF") == 0 && b.compare(8, 4, "WEBP") == 0;
}

bool is_bmp_or_gif(const std::string& b) { return b.compare(0, 2, "BM") == 0 || b.compare(0, 4, "GIF8") == 0; }

at::Tensor from_buffer(const uint8_t* data, int w, int h) {
  at::Tensor t = torch::empty({h, w, 3}, torch::kUInt8);
  std::memcpy(t.data_ptr(), data, static_cast<size_t>(w) * h * 3);
  return t;
}

}  // namespace

namespace {

// JPEG is decoded by libjpeg-turbo (through its TurboJPEG API), which OSS-Fuzz fuzzes
// continuously; stb_image's JPEG reader met corrupt files badly (fuzz/README.md).
bool is_jpeg(const std::string& b) {
  return b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xFF && static_cast<uint8_t>(b[1]) == 0xD8 &&
         static_cast<uint8_t>(b[2]) == 0xFF;
}

// One TurboJPEG decompressor, destroyed with the scope.
struct Jpeg {
  tjhandle h = tjInitDecompress();
  Jpeg() { CLR_CHECK(h != nullptr, InternalError, "libjpeg-turbo: cannot make a decompressor: ", tjGetErrorStr2(nullptr)); }
  ~Jpeg() { tjDestroy(h); }
  Jpeg(const Jpeg&) = delete;
  Jpeg& operator=(const Jpeg&) = delete;
  // Width and height from the header; false when it cannot be read.
  bool header(const std::string& b, int& w, int& h_out) {
    int subsampling = 0, colorspace = 0;
    return tjDecompressHeader3(h, reinterpret_cast<const unsigned char*>(b.data()), static_cast<unsigned long>(b.size()),
                               &w, &h_out, &subsampling, &colorspace) == 0;
  }
};

// More pixels than any decoder here allocates for one image (805 MB of RGB): a header may
// declare up to 2^31 x 2^31 in a few bytes. Callers that take images from others check
// declared_size() against a lower limit first (clr serve's --max-pixels).
constexpr int64_t kMaxPixels = int64_t{1} << 28;

void check_pixels(int64_t w, int64_t h, const std::string& origin) {
  CLR_CHECK(w > 0 && h > 0, FormatError, "image '", origin, "' has no pixels (", w, "x", h, ")");
  CLR_CHECK(w * h <= kMaxPixels, FormatError, "image '", origin, "' declares ", w, "x", h,
            " pixels, more than clr decodes (", kMaxPixels, ")");
}

at::Tensor decode_jpeg(const std::string& bytes, const std::string& origin) {
  Jpeg jpeg;
  int w = 0, h = 0;
  CLR_CHECK(jpeg.header(bytes, w, h), FormatError, "cannot decode image '", origin, "': corrupt JPEG: ",
            tjGetErrorStr2(jpeg.h));
  check_pixels(w, h, origin);
  at::Tensor t = torch::empty({h, w, 3}, torch::kUInt8);
  const int rc = tjDecompress2(jpeg.h, reinterpret_cast<const unsigned char*>(bytes.data()),
                               static_cast<unsigned long>(bytes.size()), t.data_ptr<uint8_t>(), w, 0, h, TJPF_RGB,
                               TJFLAG_ACCURATEDCT);
  // libjpeg warns and goes on over damage it can step past (extraneous bytes before a
  // marker, say), and the image is kept, as PIL keeps it; a file that ends early is
  // refused, as PIL refuses it ("image file is truncated"), and so is any error.
  if (rc != 0) {
    const std::string why = tjGetErrorStr2(jpeg.h);
    CLR_CHECK(tjGetErrorCode(jpeg.h) == TJERR_WARNING && why.find("Premature end") == std::string::npos, FormatError,
              "cannot decode image '", origin, "': corrupt JPEG: ", why);
  }
  return t;
}

// PNG is decoded by libpng, which OSS-Fuzz fuzzes continuously (stb_image's reader met
// corrupt files badly: fuzz/README.md). To RGB, 8 bits a channel, as PIL's
// convert("RGB"): palettes and grey expanded, 16-bit samples cut to their high byte,
// alpha and tRNS dropped.
bool is_png(const std::string& b) { return b.size() >= 8 && png_sig_cmp(reinterpret_cast<png_const_bytep>(b.data()), 0, 8) == 0; }

struct PngInput {
  const uint8_t* data;
  size_t size;
  size_t pos;
  char why[200];  // libpng's error message
};

void png_read_input(png_structp p, png_bytep out, size_t n) {
  auto* in = static_cast<PngInput*>(png_get_io_ptr(p));
  if (n > in->size - in->pos) png_error(p, "the file ends early");
  std::memcpy(out, in->data + in->pos, n);
  in->pos += n;
}

[[noreturn]] void png_on_error(png_structp p, png_const_charp message) {
  auto* in = static_cast<PngInput*>(png_get_error_ptr(p));
  std::snprintf(in->why, sizeof in->why, "%s", message);
  std::longjmp(png_jmpbuf(p), 1);
}

void png_on_warning(png_structp, png_const_charp) {}

// libpng reports errors by longjmp: between the setjmp and any png_* call nothing here
// has a destructor. `reserve` is called once the size is known (it may throw: it runs
// before libpng could jump) and returns the rows to fill, or null to stop after the header.
template <class Reserve>
bool png_decode(PngInput& in, int64_t& w, int64_t& h, Reserve&& reserve) {
  png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &in, png_on_error, png_on_warning);
  if (p == nullptr) return false;
  png_infop info = png_create_info_struct(p);
  png_bytepp rows = nullptr;
  if (info == nullptr || setjmp(png_jmpbuf(p))) {
    png_destroy_read_struct(&p, info != nullptr ? &info : nullptr, nullptr);
    return false;
  }
  png_set_read_fn(p, &in, png_read_input);
  png_set_crc_action(p, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);  // as PIL: a bad CRC is not fatal
  png_read_info(p, info);
  w = png_get_image_width(p, info);
  h = png_get_image_height(p, info);
  const int color = png_get_color_type(p, info);
  png_set_expand(p);  // palette to RGB, grey below 8 bits to 8, tRNS to alpha
  png_set_strip_16(p);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(p);
  png_set_strip_alpha(p);
  png_set_interlace_handling(p);
  png_read_update_info(p, info);
  if (png_get_rowbytes(p, info) != static_cast<size_t>(w) * 3) png_error(p, "unexpected row size after conversion");
  rows = reserve(w, h);
  if (rows != nullptr) png_read_image(p, rows);
  png_destroy_read_struct(&p, &info, nullptr);
  return true;
}

at::Tensor decode_png(const std::string& bytes, const std::string& origin) {
  PngInput in{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 0, {}};
  at::Tensor t;
  std::vector<png_bytep> rows;
  std::string refused;  // a size check's message, raised after libpng is done
  int64_t w = 0, h = 0;
  const bool ok = png_decode(in, w, h, [&](int64_t width, int64_t height) -> png_bytepp {
    try {
      check_pixels(width, height, origin);
      t = torch::empty({height, width, 3}, torch::kUInt8);
      rows.resize(static_cast<size_t>(height));
      for (int64_t y = 0; y < height; ++y) rows[static_cast<size_t>(y)] = t.data_ptr<uint8_t>() + y * width * 3;
      return rows.data();
    } catch (const std::exception& e) {
      refused = e.what();
      return nullptr;
    }
  });
  if (!refused.empty()) throw FormatError(refused);
  CLR_CHECK(ok, FormatError, "cannot decode image '", origin, "': corrupt PNG: ", in.why);
  return t;
}

}  // namespace

std::optional<std::pair<int64_t, int64_t>> declared_size(const std::string& bytes) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  int w = 0, h = 0, c = 0;
  if (is_jpeg(bytes)) {
    if (!Jpeg().header(bytes, w, h)) return std::nullopt;
    return std::make_pair(static_cast<int64_t>(w), static_cast<int64_t>(h));
  }
  if (is_png(bytes)) {
    PngInput in{data, bytes.size(), 0, {}};
    int64_t pw = 0, ph = 0;
    if (!png_decode(in, pw, ph, [](int64_t, int64_t) -> png_bytepp { return nullptr; })) return std::nullopt;
    return std::make_pair(pw, ph);
  }
  const bool known = !bytes.empty() && (is_webp(bytes) ? WebPGetInfo(data, bytes.size(), &w, &h) != 0
                                                       : is_bmp_or_gif(bytes) &&
                                                             bytes.size() <= static_cast<size_t>(INT32_MAX) &&
                                                             stbi_info_from_memory(data, static_cast<int>(bytes.size()),
                                                                                   &w, &h, &c) != 0);
  if (!known) return std::nullopt;
  return std::make_pair(static_cast<int64_t>(w), static_cast<int64_t>(h));
}


at::Tensor decode_image(const std::string& bytes, const std::string& origin) {
  CLR_CHECK(!bytes.empty(), FormatError, "image '", origin, "' is empty (0 bytes)");
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (is_webp(bytes)) {
    int w = 0, h = 0;
    uint8_t* rgb = WebPDecodeRGB(data, bytes.size(), &w, &h);
    CLR_CHECK(rgb != nullptr, FormatError, "cannot decode image '", origin, "': corrupt or unsupported WebP");
    std::unique_ptr<uint8_t, void (*)(void*)> owned(rgb, WebPFree);
    CLR_CHECK(w > 0 && h > 0, FormatError, "image '", origin, "' has no pixels (", w, "x", h, ")");
    return from_buffer(rgb, w, h);
  }
  CLR_CHECK(bytes.size() <= static_cast<size_t>(INT32_MAX), FormatError, "image '", origin, "' is too large");
  if (is_jpeg(bytes)) return decode_jpeg(bytes, origin);
  if (is_png(bytes)) return decode_png(bytes, origin);
  CLR_CHECK(is_bmp_or_gif(bytes), FormatError, "cannot decode image '", origin,
            "': not an image of a known type (supported: JPEG, PNG, BMP, GIF, WebP)");
  // The size first, from the header alone: stb_image allocates what it declares (a
  // 31-byte BMP declaring 40 x 16.8 M pixels took 4 GB; found by clr_fuzz).
  {
    int hw = 0, hh = 0, hc = 0;
    CLR_CHECK(stbi_info_from_memory(data, static_cast<int>(bytes.size()), &hw, &hh, &hc) != 0, FormatError,
              "cannot decode image '", origin, "': its header cannot be read (", stbi_failure_reason(), ")");
    check_pixels(hw, hh, origin);
  }
  int w = 0, h = 0, channels = 0;
  stbi_uc* rgb = stbi_load_from_memory(data, static_cast<int>(bytes.size()), &w, &h, &channels, 3);
  CLR_CHECK(rgb != nullptr, FormatError, "cannot decode image '", origin, "': ", stbi_failure_reason(),
            " (supported: JPEG, PNG, BMP, GIF, WebP)");
  std::unique_ptr<stbi_uc, void (*)(void*)> owned(rgb, stbi_image_free);
  // A decoder may hand back an image of no pixels (a GIF of width 0 does): copying it
  // would pass a null destination to memcpy (found by clr_fuzz).
  CLR_CHECK(w > 0 && h > 0, FormatError, "image '", origin, "' has no pixels (", w, "x", h, ")");
  return from_buffer(rgb, w, h);
}

std::string encode_png(const at::Tensor& hwc) {
  CLR_CHECK(hwc.dim() == 3 && (hwc.size(2) == 1 || hwc.size(2) == 3 || hwc.size(2) == 4) &&
                hwc.scalar_type() == torch::kUInt8,
            ConfigError, "PNG encoding expects uint8 [H, W, 1|3|4], got ", hwc.sizes());
  const at::Tensor c = hwc.contiguous();
  std::string bytes;
  auto sink = [](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size); };
  const int w = static_cast<int>(c.size(1)), h = static_cast<int>(c.size(0)), n = static_cast<int>(c.size(2));
  CLR_CHECK(stbi_write_png_to_func(sink, &bytes, w, h, n, c.data_ptr(), w * n) != 0, FormatError,
            "PNG encoding of a ", h, "x", w, " image failed");
  return bytes;
}

void write_png(const std::string& path, const at::Tensor& hwc) {
  CLR_CHECK(hwc.dim() == 3 && hwc.size(2) == 3 && hwc.scalar_type() == torch::kUInt8, ConfigError,
            "write_png expects uint8 [H, W, 3], got ", hwc.sizes());
  write_file_atomic(path, encode_png(hwc));
}

at::Tensor read_image(const std::string& path) { return decode_image(read_file(path), path); }

at::Tensor resize_square(const at::Tensor& hwc, int64_t size) {
  CLR_CHECK(hwc.dim() == 3 && hwc.scalar_type() == torch::kUInt8, ConfigError, "expected a uint8 [H, W, C] image, got ",
            hwc.sizes());
  at::Tensor chw = hwc.permute({2, 0, 1});
  if (hwc.size(0) == size && hwc.size(1) == size) return chw.contiguous();
  at::Tensor f = chw.unsqueeze(0).to(torch::kFloat);
  namespace F = torch::nn::functional;
  at::Tensor r = F::interpolate(f, F::InterpolateFuncOptions()
                                       .size(std::vector<int64_t>{size, size})
                                       .mode(torch::kBilinear)
                                       .align_corners(false)
                                       .antialias(true));
  return r.squeeze(0).round_().clamp_(0, 255).to(torch::kUInt8);
}

at::Tensor normalize(const at::Tensor& batch_u8, const float mean[3], const float std[3]) {
  // The [1,3,1,1] mean and std are made once per thread, device and values: copying
  // them to a GPU for every batch would wait for it each time.
  using Key = std::tuple<std::string, float, float, float, float, float, float>;
  thread_local std::map<Key, std::pair<at::Tensor, at::Tensor>> cache;
  const Key key{batch_u8.device().str(), mean[0], mean[1], mean[2], std[0], std[1], std[2]};
  auto it = cache.find(key);
  if (it == cache.end()) {
    const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(batch_u8.device());
    at::Tensor m = (torch::tensor({mean[0], mean[1], mean[2]}) * 255.0f).to(opts).view({1, 3, 1, 1});
    at::Tensor s = (torch::tensor({std[0], std[1], std[2]}) * 255.0f).to(opts).view({1, 3, 1, 1});
    it = cache.emplace(key, std::make_pair(m, s)).first;
  }
  return (batch_u8.to(torch::kFloat) - it->second.first) / it->second.second;
}

}  // namespace clr::data
