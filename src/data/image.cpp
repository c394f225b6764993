#include "clr/data/image.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include <torch/torch.h>
#include <turbojpeg.h>
#include <webp/decode.h>

#define STB_IMAGE_IMPLEMENTATION
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

at::Tensor decode_jpeg(const std::string& bytes, const std::string& origin) {
  Jpeg jpeg;
  int w = 0, h = 0;
  CLR_CHECK(jpeg.header(bytes, w, h), FormatError, "cannot decode image '", origin, "': corrupt JPEG: ",
            tjGetErrorStr2(jpeg.h));
  CLR_CHECK(w > 0 && h > 0, FormatError, "image '", origin, "' has no pixels (", w, "x", h, ")");
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

}  // namespace

std::optional<std::pair<int64_t, int64_t>> declared_size(const std::string& bytes) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  int w = 0, h = 0, c = 0;
  if (is_jpeg(bytes)) {
    if (!Jpeg().header(bytes, w, h)) return std::nullopt;
    return std::make_pair(static_cast<int64_t>(w), static_cast<int64_t>(h));
  }
  const bool known = !bytes.empty() && (is_webp(bytes) ? WebPGetInfo(data, bytes.size(), &w, &h) != 0
                                                       : bytes.size() <= static_cast<size_t>(INT32_MAX) &&
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
