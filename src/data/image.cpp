#include "clr/data/image.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include <torch/torch.h>
#include <webp/decode.h>

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

at::Tensor from_buffer(const uint8_t* data, int w, int h) {
  at::Tensor t = torch::empty({h, w, 3}, torch::kUInt8);
  std::memcpy(t.data_ptr(), data, static_cast<size_t>(w) * h * 3);
  return t;
}

}  // namespace

namespace {

// stb_image (Debian's 2022-09-08) builds a JPEG Huffman table of at most 256 codes
// without checking that a DHT segment's 16 counts add up to no more: a file whose counts
// exceed it writes past the table (found by clr_fuzz, fuzz/README.md). Such files are
// refused here, before stb sees them; a count that runs past its segment too.
std::string jpeg_huffman_problem(const std::string& b) {
  const size_t n = b.size();
  if (n < 4 || static_cast<uint8_t>(b[0]) != 0xFF) return "";  // stb takes fill bytes before the SOI too
  auto at = [&](size_t p) -> size_t { return p < n ? static_cast<uint8_t>(b[p]) : 0; };  // stb reads 0 past the end
  // Walked as stb walks it: bytes that are not a marker (entropy-coded data, junk) are
  // skipped one by one; a marker with a length is skipped whole, a DHT checked first.
  size_t i = 0;
  while (i + 1 < n) {
    const size_t m = at(i + 1);
    if (at(i) != 0xFF || m == 0xFF) {
      ++i;
      continue;
    }
    if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) {  // stuffing, TEM, SOI, RSTn
      i += 2;
      continue;
    }
    if (m == 0xD9) return "";  // EOI
    const size_t end = i + 2 + ((at(i + 2) << 8) | at(i + 3));  // as declared, maybe past the file
    if (m == 0xC4) {
      for (size_t p = i + 4; p < end && p < n;) {
        size_t codes = 0;
        for (size_t k = 1; k <= 16; ++k) codes += at(p + k);
        if (codes > 256) return detail::concat("a Huffman table declares ", codes, " codes (at most 256)");
        p += 17 + codes;
      }
    }
    i = end;
  }
  return "";
}

}  // namespace

std::optional<std::pair<int64_t, int64_t>> declared_size(const std::string& bytes) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  int w = 0, h = 0, c = 0;
  if (!jpeg_huffman_problem(bytes).empty()) return std::nullopt;  // stb's header reader would meet it too
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
  const std::string jpeg_problem = jpeg_huffman_problem(bytes);
  CLR_CHECK(jpeg_problem.empty(), FormatError, "cannot decode image '", origin, "': corrupt JPEG: ", jpeg_problem);
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
