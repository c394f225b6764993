// From a task's image list to batches: validation of a whole sequence before any
// training, the decoded-image cache, and a prefetching batch loader.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
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
  // Where batches are put together. kDevice: the split is copied to the device once
  // and every batch is gathered, flipped, cropped and normalised there, with no copy
  // and no wait for the device per batch; kHost: a background thread does it and
  // copies each batch over. kAuto: kDevice unless the device is the CPU. Both give
  // the same batches (tests/unit/data_test.cpp).
  enum class Assembly { kAuto, kHost, kDevice };
  Assembly assembly = Assembly::kAuto;
};

// Batches of a PreparedSplit, normalised with ImageNet mean/std on `device`, put
// together on the device or by a background thread (LoaderOptions::assembly).
// Shuffling and flips are seeded by (seed, epoch): the same seed gives the same batches.
class BatchLoader {
 public:
  BatchLoader(const PreparedSplit& data, LoaderOptions options);
  int64_t num_batches() const;
  int64_t num_images() const { return data_.size(); }
  // Calls fn(images float [B,3,S,S], labels int64 [B]) for each batch of one epoch.
  void for_each_batch(int64_t epoch, const std::function<void(const at::Tensor&, const at::Tensor&)>& fn) const;

  // The same batches one at a time, for a caller that interleaves several loaders
  // (tasks trained in parallel): plan(epoch) draws the epoch's order, flips and crops
  // (and copies them to the device), batch(plan, b) puts batch b together, with no
  // prefetch thread. for_each_batch(epoch) gives batch(plan(epoch), 0..batches-1).
  struct EpochPlan {
    int64_t batches = 0;
    std::vector<int64_t> order;
    std::vector<uint8_t> flips;
    std::vector<std::pair<int64_t, int64_t>> offsets;
    at::Tensor on_device;  // [4, N]: order, flips, crop rows and columns (device assembly)
  };
  EpochPlan plan(int64_t epoch) const;
  std::pair<at::Tensor, at::Tensor> batch(const EpochPlan& plan, int64_t b) const;

 private:
  bool on_device() const;
  std::pair<at::Tensor, at::Tensor> host_batch(const EpochPlan& plan, int64_t b) const;
  std::pair<at::Tensor, at::Tensor> device_batch(const EpochPlan& plan, int64_t b) const;

  const PreparedSplit& data_;
  LoaderOptions options_;
  mutable at::Tensor images_on_device_, labels_on_device_;  // kDevice: the split, copied on first use
};

}  // namespace clr::data
