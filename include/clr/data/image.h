// Image decoding and the per-image transforms.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <ATen/core/Tensor.h>

namespace clr::data {

// Decodes JPEG, PNG, BMP, GIF (first frame) and WebP bytes into a uint8 [H, W, 3]
// RGB tensor; grayscale, palette and alpha images are converted to RGB (alpha is
// dropped). `origin` names the image in errors: a FormatError says which file could
// not be decoded and why.
at::Tensor decode_image(const std::string& bytes, const std::string& origin);

// The width and height an image's header declares, read without decoding it (so a
// caller can refuse a huge image before anything is allocated for it); nullopt when
// the header is not one decode_image knows.
std::optional<std::pair<int64_t, int64_t>> declared_size(const std::string& bytes);

// Reads and decodes a file (NotFoundError if missing, FormatError if undecodable).
at::Tensor read_image(const std::string& path);

// Resizes a uint8 [H, W, C] image to uint8 [C, size, size] ("squash", as the authors
// resize to 224x224), bilinear with antialiasing like PIL's.
at::Tensor resize_square(const at::Tensor& hwc, int64_t size);

// Writes a uint8 [H, W, 3] image as PNG (crash-safely).
void write_png(const std::string& path, const at::Tensor& hwc);
// PNG bytes of a uint8 [H, W, C] image, C = 1 (grey), 3 (RGB) or 4 (RGBA). The same
// pixels always give the same bytes.
std::string encode_png(const at::Tensor& hwc);

// ImageNet mean and std (RGB, 0..1 scale).
constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

// uint8 [N, 3, H, W] -> float [N, 3, H, W], (x / 255 - mean) / std per channel.
at::Tensor normalize(const at::Tensor& batch_u8, const float mean[3] = kImageNetMean,
                     const float std[3] = kImageNetStd);

}  // namespace clr::data
