// From a task's image list to batches: validation of a whole sequence before any
// training, the decoded-image cache, and a prefetching batch loader.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "clr/data/dataset.h"

namespace clr::data {

// Checks a whole sequence before training: every task has train images and >= 2
// classes, every class has training images, val/test labels are within the task's
// classes, every image file exists and starts like a JPEG/PNG/BMP/GIF/WebP file.
// Throws one ConfigError listing every problem found (not just the first).
void validate_sequence(const Sequence& sequence);

struct PrepareOptions {
  int64_t size = 224;         // images are squashed to size x size
  bool skip_corrupt = false;  // skip undecodable images (and count them) instead of failing
};

// A split decoded once: uint8 [N, 3, S, S] images and int64 [N] labels, in host memory.
struct PreparedSplit {
  at::Tensor images;
  at::Tensor labels;
  std::vector<std::string> skipped;  // images that could not be decoded (skip_corrupt)
  double decode_seconds = 0;
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// Decodes and resizes every image of a split in parallel (LibTorch's intra-op
// threads). Undecodable images are a FormatError listing all of them, unless
// options.skip_corrupt.
PreparedSplit prepare_split(const Split& split, const std::string& origin, const PrepareOptions& options);

struct LoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = false;
  bool hflip = false;  // random horizontal flips (augmentation)
  // Crop size (0: none): a crop x crop window of every image, random per image and
  // epoch when random_crop (augmentation), else centred.
  int64_t crop = 0;
  bool random_crop = false;
  bool drop_last = false;  // leave out a last batch smaller than batch_size (contrastive losses need pairs)
  uint64_t seed = 0;
  c10::Device device = c10::Device(c10::kCPU);
};

// Batches of a PreparedSplit, normalised with ImageNet mean/std on `device`. A
// background thread assembles the next batch while the caller uses the current one.
// Shuffling and flips are seeded by (seed, epoch): the same seed gives the same batches.
class BatchLoader {
 public:
  BatchLoader(const PreparedSplit& data, LoaderOptions options);
  int64_t num_batches() const;
  int64_t num_images() const { return data_.size(); }
  // Calls fn(images float [B,3,S,S], labels int64 [B]) for each batch of one epoch.
  void for_each_batch(int64_t epoch, const std::function<void(const at::Tensor&, const at::Tensor&)>& fn) const;

 private:
  const PreparedSplit& data_;
  LoaderOptions options_;
};

}  // namespace clr::data
