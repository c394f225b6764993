#include "clr/data/loader.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/strings.h"
#include "clr/core/file_io.h"
#include "clr/data/image.h"

namespace clr::data {
namespace {

// Why the first bytes of `path` are not an image we can decode, or "" if they look fine.
std::string signature_problem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "does not exist or cannot be read";
  unsigned char h[12] = {0};
  in.read(reinterpret_cast<char*>(h), sizeof h);
  const auto n = in.gcount();
  if (n == 0) return "is empty";
  if (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) return "";                   // JPEG
  if (n >= 8 && h[0] == 0x89 && h[1] == 'P' && h[2] == 'N' && h[3] == 'G') return "";      // PNG
  if (n >= 4 && h[0] == 'G' && h[1] == 'I' && h[2] == 'F' && h[3] == '8') return "";       // GIF
  if (n >= 2 && h[0] == 'B' && h[1] == 'M') return "";                                     // BMP
  if (n >= 12 && std::string(reinterpret_cast<char*>(h), 4) == "RIFF" &&
      std::string(reinterpret_cast<char*>(h) + 8, 4) == "WEBP")
    return "";
  return "is not a JPEG, PNG, BMP, GIF or WebP file";
}

}  // namespace

void validate_sequence(const Sequence& sequence) {
  std::vector<std::string> problems;
  if (sequence.empty()) problems.push_back("the sequence has no tasks");
  std::set<std::string> seen;
  for (const auto& t : sequence) {
    const std::string where = "task '" + escape_bytes(t.name) + "' (" + escape_bytes(t.origin) + ")";
    // Names go into results.json, the store's manifest and the adapters' metadata: text.
    if (!valid_utf8(t.name)) problems.push_back(where + ": the task's name is not UTF-8 text (rename its folder)");
    for (const auto& c : t.classes) {
      if (!valid_utf8(c)) {
        problems.push_back(where + ": class name '" + escape_bytes(c) + "' is not UTF-8 text (rename its folder)");
      }
    }
    if (!seen.insert(t.name).second) problems.push_back(where + ": a task of this name comes earlier");
    if (t.train.size() == 0) problems.push_back(where + ": no training images");
    if (t.classes.size() < 2) problems.push_back(detail::concat(where, ": ", t.classes.size(), " class(es), need >= 2"));
    std::vector<int64_t> per_class(t.classes.size(), 0);
    const std::pair<const char*, const Split*> splits[] = {{"train", &t.train}, {"val", &t.val}, {"test", &t.test}};
    for (const auto& [split_name, split] : splits) {
      size_t bad_labels = 0;
      for (size_t i = 0; i < split->size(); ++i) {
        const int64_t l = split->labels[i];
        if (l < 0 || l >= static_cast<int64_t>(t.classes.size())) {
          if (bad_labels++ < 3) {
            problems.push_back(detail::concat(where, ": ", split_name, " ", split->describe(i, t.origin), " has label ",
                                              l, ", outside 0..", t.classes.size() - 1));
          }
        } else if (split == &t.train) {
          ++per_class[static_cast<size_t>(l)];
        }
      }
      if (bad_labels > 3) problems.push_back(detail::concat(where, ": ", bad_labels - 3, " more out-of-range labels in ", split_name));
      if (!split->preloaded()) {
        for (const auto& p : split->paths) {
          const std::string why = signature_problem(p);
          if (!why.empty()) problems.push_back(detail::concat(where, ": ", split_name, " image '", p, "' ", why));
        }
      }
    }
    for (size_t c = 0; c < per_class.size(); ++c) {
      if (per_class[c] == 0 && t.train.size() > 0) {
        problems.push_back(detail::concat(where, ": class '", t.classes[c], "' has no training images"));
      }
    }
  }
  if (problems.empty()) return;
  std::string msg = detail::concat("the task sequence has ", problems.size(), " problem(s):");
  const size_t shown = std::min<size_t>(problems.size(), 50);
  for (size_t i = 0; i < shown; ++i) msg += "\n  - " + problems[i];
  if (problems.size() > shown) msg += detail::concat("\n  ... and ", problems.size() - shown, " more");
  throw ConfigError(msg);
}

PreparedSplit prepare_split(const Split& split, const std::string& origin, const PrepareOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = static_cast<int64_t>(split.size());
  const int64_t s = options.size;
  PreparedSplit out;
  at::Tensor images = torch::empty({n, 3, s, s}, torch::kUInt8);
  std::vector<std::string> errors(static_cast<size_t>(n));
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      try {
        at::Tensor hwc;
        if (split.preloaded()) {
          hwc = split.images[i];
          if (hwc.size(2) == 1) hwc = hwc.expand({hwc.size(0), hwc.size(1), 3});
        } else {
          hwc = read_image(split.paths[static_cast<size_t>(i)]);
        }
        images[i].copy_(resize_square(hwc.contiguous(), s));
      } catch (const Error& e) {
        errors[static_cast<size_t>(i)] = e.what();
      } catch (const std::exception& e) {  // e.g. LibTorch rejecting a degenerate image
        errors[static_cast<size_t>(i)] =
            detail::concat(split.describe(static_cast<size_t>(i), origin), ": cannot be resized: ", e.what());
      }
    }
  });
  std::vector<int64_t> keep;
  std::vector<std::string> bad;
  for (int64_t i = 0; i < n; ++i) {
    if (errors[static_cast<size_t>(i)].empty()) {
      keep.push_back(i);
    } else {
      bad.push_back(errors[static_cast<size_t>(i)]);
      out.skipped.push_back(split.describe(static_cast<size_t>(i), origin));
    }
  }
  if (!bad.empty() && !options.skip_corrupt) {
    std::string msg = detail::concat(bad.size(), " image(s) of ", origin, " cannot be decoded (use --skip-corrupt to skip and count them):");
    for (size_t i = 0; i < std::min<size_t>(bad.size(), 20); ++i) msg += "\n  - " + bad[i];
    if (bad.size() > 20) msg += detail::concat("\n  ... and ", bad.size() - 20, " more");
    throw FormatError(msg);
  }
  at::Tensor labels = torch::tensor(std::vector<int64_t>(split.labels.begin(), split.labels.end()), torch::kLong);
  if (bad.empty()) {
    out.images = images;
    out.labels = labels;
  } else {
    at::Tensor idx = torch::tensor(keep, torch::kLong);
    out.images = images.index_select(0, idx);
    out.labels = labels.index_select(0, idx);
  }
  out.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

BatchLoader::BatchLoader(const PreparedSplit& data, LoaderOptions options) : data_(data), options_(options) {
  CLR_CHECK(options_.batch_size >= 1, ConfigError, "batch size must be >= 1, got ", options_.batch_size);
}

int64_t BatchLoader::num_batches() const {
  if (options_.drop_last) return data_.size() / options_.batch_size;
  return (data_.size() + options_.batch_size - 1) / options_.batch_size;
}

bool BatchLoader::on_device() const {
  return options_.assembly == LoaderOptions::Assembly::kDevice ||
         (options_.assembly == LoaderOptions::Assembly::kAuto && !options_.device.is_cpu());
}

BatchLoader::EpochPlan BatchLoader::plan(int64_t epoch) const {
  EpochPlan p;
  const int64_t n = data_.size();
  p.batches = n == 0 ? 0 : num_batches();
  if (n == 0) return p;
  p.order.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p.order[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(options_.seed * 1000003ull + static_cast<uint64_t>(epoch));
  if (options_.shuffle) std::shuffle(p.order.begin(), p.order.end(), rng);
  p.flips.assign(static_cast<size_t>(n), 0);
  if (options_.hflip) {
    for (auto& f : p.flips) f = static_cast<uint8_t>(rng() & 1);
  }
  const int64_t full = data_.images.size(2);
  const int64_t crop = options_.crop;
  CLR_CHECK(crop >= 0 && crop <= full, ConfigError, "crop ", crop, " does not fit images of ", full, " px");
  p.offsets.assign(static_cast<size_t>(n), {(full - crop) / 2, (full - crop) / 2});
  if (crop > 0 && options_.random_crop) {
    std::uniform_int_distribution<int64_t> pick(0, full - crop);
    for (auto& o : p.offsets) o = {pick(rng), pick(rng)};
  }
  if (on_device()) {
    const c10::Device device = options_.device;
    if (!images_on_device_.defined()) {
      images_on_device_ = data_.images.to(device).contiguous();
      labels_on_device_ = data_.labels.to(device);
    }
    // The epoch's order, flips and crop offsets go over in one copy.
    std::vector<int64_t> all(static_cast<size_t>(4 * n));
    for (int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<size_t>(i);
      all[k] = p.order[k];
      all[static_cast<size_t>(n) + k] = p.flips[k];
      all[static_cast<size_t>(2 * n) + k] = p.offsets[k].first;
      all[static_cast<size_t>(3 * n) + k] = p.offsets[k].second;
    }
    p.on_device = torch::tensor(all, torch::kLong).to(device).view({4, n});
  }
  return p;
}

std::pair<at::Tensor, at::Tensor> BatchLoader::batch(const EpochPlan& p, int64_t b) const {
  CLR_CHECK(b >= 0 && b < p.batches, ConfigError, "batch ", b, " of an epoch of ", p.batches);
  return p.on_device.defined() ? device_batch(p, b) : host_batch(p, b);
}

std::pair<at::Tensor, at::Tensor> BatchLoader::host_batch(const EpochPlan& p, int64_t b) const {
  // Gathers (and flips, crops) uint8 images, moves them to the device, normalises.
  const int64_t n = data_.size(), bs = options_.batch_size;
  const int64_t full = data_.images.size(2), crop = options_.crop;
  const int64_t lo = b * bs, hi = std::min(n, lo + bs);
  at::Tensor idx = torch::tensor(std::vector<int64_t>(p.order.begin() + lo, p.order.begin() + hi), torch::kLong);
  at::Tensor x = data_.images.index_select(0, idx);
  if (options_.hflip) {
    const at::Tensor flip =
        torch::tensor(std::vector<uint8_t>(p.flips.begin() + lo, p.flips.begin() + hi)).to(torch::kBool).view({-1, 1, 1, 1});
    x = torch::where(flip, x.flip({3}), x);
  }
  if (crop > 0 && crop < full) {
    at::Tensor cropped = torch::empty({hi - lo, 3, crop, crop}, x.options());
    for (int64_t i = lo; i < hi; ++i) {
      const auto [oy, ox] = p.offsets[static_cast<size_t>(i)];
      cropped[i - lo].copy_(x[i - lo].slice(1, oy, oy + crop).slice(2, ox, ox + crop));
    }
    x = cropped;
  }
  return {normalize(x.to(options_.device)), data_.labels.index_select(0, idx).to(options_.device)};
}

std::pair<at::Tensor, at::Tensor> BatchLoader::device_batch(const EpochPlan& p, int64_t b) const {
  const at::Tensor& on = p.on_device;
  const int64_t n = data_.size(), bs = options_.batch_size;
  const int64_t full = data_.images.size(2), crop = options_.crop;
  const bool cropping = crop > 0 && crop < full;
  const int64_t lo = b * bs, hi = std::min(n, lo + bs);
  const at::Tensor idx = on[0].slice(0, lo, hi);
  at::Tensor x = images_on_device_.index_select(0, idx);
  if (cropping) {
    // The host path flips the whole image, then crops at (oy, ox): column j of the
    // window is column ox + j, or W - 1 - ox - j of the unflipped image.
    const at::Tensor ramp = torch::arange(crop, on.options());
    const at::Tensor channels = torch::arange(3, on.options()).view({1, 3, 1, 1});
    const at::Tensor rows = on[2].slice(0, lo, hi).unsqueeze(1) + ramp;  // [B, crop]
    at::Tensor cols = on[3].slice(0, lo, hi).unsqueeze(1) + ramp;
    if (options_.hflip) cols = torch::where(on[1].slice(0, lo, hi).unsqueeze(1).ne(0), (full - 1) - cols, cols);
    const at::Tensor sample = torch::arange(hi - lo, on.options()).view({-1, 1, 1, 1});
    const at::Tensor linear =
        ((sample * 3 + channels) * full + rows.view({-1, 1, crop, 1})) * full + cols.view({-1, 1, 1, crop});
    x = x.take(linear);
  } else if (options_.hflip) {
    x = torch::where(on[1].slice(0, lo, hi).ne(0).view({-1, 1, 1, 1}), x.flip({3}), x);
  }
  return {normalize(x), labels_on_device_.index_select(0, idx)};
}

void BatchLoader::for_each_batch(int64_t epoch,
                                 const std::function<void(const at::Tensor&, const at::Tensor&)>& fn) const {
  const EpochPlan p = plan(epoch);
  if (p.batches == 0) return;
  if (p.on_device.defined()) {
    for (int64_t b = 0; b < p.batches; ++b) {
      const auto [x, y] = device_batch(p, b);
      fn(x, y);
    }
    return;
  }

  struct Batch {
    at::Tensor x, y;
  };
  std::deque<Batch> queue;
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false, stop = false;
  std::exception_ptr error;

  // Producer: the next batches, two ahead of the consumer.
  std::thread producer([&] {
    try {
      for (int64_t b = 0; b < p.batches; ++b) {
        auto [x, y] = host_batch(p, b);
        Batch batch{std::move(x), std::move(y)};
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return queue.size() < 2 || stop; });
        if (stop) return;
        queue.push_back(std::move(batch));
        cv.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex);
    done = true;
    cv.notify_all();
  });

  auto finish = [&] {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    cv.notify_all();
    producer.join();
  };
  try {
    while (true) {
      Batch batch;
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return !queue.empty() || done; });
        if (queue.empty()) break;
        batch = std::move(queue.front());
        queue.pop_front();
        cv.notify_all();
      }
      fn(batch.x, batch.y);
    }
  } catch (...) {
    finish();
    throw;
  }
  finish();
  if (error) std::rethrow_exception(error);
}

}  // namespace clr::data
