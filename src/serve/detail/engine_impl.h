// Private to clr_serve (src/serve/engine.cpp, src/serve/identify.cpp): the engine's state
// (Engine::Impl), a task prepared on the device, the task-mapper index and the batched
// reading of image files that predict_files and identify_files share.
#pragma once

#include <array>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/data/image.h"
#include "clr/models/resnet.h"
#include "clr/serve/engine.h"
#include "clr/train/task_inference.h"
#include "clr/train/trainer.h"

namespace clr::serve {
namespace engine_detail {

// An image as a task with preprocessing `pre` takes it: uint8 [3, S, S].
inline at::Tensor apply_preprocess(const store::Preprocess& pre, const at::Tensor& hwc) {
  at::Tensor chw = data::resize_square(hwc, pre.resize);
  if (pre.crop > 0 && pre.crop < pre.resize) {
    const int64_t o = (pre.resize - pre.crop) / 2;
    chw = chw.slice(1, o, o + pre.crop).slice(2, o, o + pre.crop).contiguous();
  }
  return chw;
}

// What distinguishes two preprocessings (a map key).
inline std::string preprocess_key(const store::Preprocess& pre) {
  std::ostringstream key;
  key << pre.resize << "/" << pre.crop << std::hexfloat;
  for (int c = 0; c < 3; ++c) key << "/" << pre.mean[static_cast<size_t>(c)] << "," << pre.std[static_cast<size_t>(c)];
  return key.str();
}

// The gaussian task mapper over every task of the store as of one reload, its tasks
// grouped by preprocessing (each group's images go through the backbone once).
struct MapperIndex {
  int64_t generation = -1;
  std::vector<std::string> names;
  struct Group {
    store::Preprocess pre;
    std::vector<int64_t> tasks;  // indices into names
    train::TaskMapper classes;   // gaussian: the class mixtures
    train::TaskMapper whole;     // task-gaussian: one Gaussian per task
  };
  std::vector<Group> groups;
};

// Reads image files in batches: `load` turns a path into what `run` takes, `run` answers
// a batch, `each` reports every file in order (its answer, or the error's message).
// After the last file, when any failed, throws an error of the first failure's kind
// counting them.
template <class Answer>
void over_files(const std::vector<std::string>& paths, int64_t batch,
                const std::function<at::Tensor(const std::string&)>& load,
                const std::function<std::vector<Answer>(const std::vector<at::Tensor>&)>& run,
                const std::function<void(const std::string&, const Answer*, const std::string&)>& each) {
  CLR_CHECK(batch >= 1, ConfigError, "batch must be at least 1, got ", batch);
  const size_t step = static_cast<size_t>(batch);
  size_t failed = 0;
  std::exception_ptr first;
  for (size_t start = 0; start < paths.size(); start += step) {
    const size_t end = std::min(paths.size(), start + step);
    std::vector<at::Tensor> images;
    std::vector<std::string> errors(end - start);
    for (size_t i = start; i < end; ++i) {
      try {
        images.push_back(load(paths[i]));
        continue;
      } catch (const FormatError& e) {
        errors[i - start] = e.what();
        if (!first) first = std::current_exception();
      } catch (const NotFoundError& e) {
        errors[i - start] = e.what();
        if (!first) first = std::current_exception();
      }
      ++failed;
    }
    std::vector<Answer> answers;
    if (!images.empty()) answers = run(images);
    size_t k = 0;
    for (size_t i = start; i < end; ++i) {
      if (errors[i - start].empty()) {
        each(paths[i], &answers[k++], "");
      } else {
        each(paths[i], nullptr, errors[i - start]);
      }
    }
  }
  if (failed == 0) return;
  const std::string count = detail::concat(failed, " of ", paths.size(), " images could not be classified; the first: ");
  try {
    std::rethrow_exception(first);
  } catch (const NotFoundError& e) {
    throw NotFoundError(count + e.what());
  } catch (const FormatError& e) {
    throw FormatError(count + e.what());
  }
}

enum class Kind { kClr, kResidual, kLinear };

// One task, ready on the device. Per conv site (in the backbone's site order):
//   clr variants: `kernel` (the CLR kernel; undefined at sites without a CLR layer) and
//                 the task's BatchNorm `norm` = {weight, bias, running mean, running var};
//                 a mixed batch applies it as one eval-mode batch_norm over the folded
//                 [1, N*C, H, W] tensor with the per-sample vectors gathered to N*C,
//                 which computes each sample's per-channel scale and shift exactly as
//                 the sample alone would get them;
//   residual:     `kernel` is the 1x1 adapter [out, in, 1, 1]; BatchNorm is the backbone's;
//   linear:       nothing but the head.
struct Prepared {
  store::Adapter meta;  // tensors dropped
  std::string sha256;   // of the file, to notice replacements on reload
  Kind kind = Kind::kClr;
  std::vector<at::Tensor> kernel;
  std::vector<std::array<at::Tensor, 4>> norm;  // weight, bias, running_mean, running_var
  at::Tensor head_w, head_b;
  int64_t bytes = 0;
};

}  // namespace engine_detail

using engine_detail::Kind;
using engine_detail::MapperIndex;
using engine_detail::Prepared;

struct Engine::Impl {
  EngineOptions options;
  c10::Device device{c10::kCPU};
  train::Numerics numerics;  // options.precision and memory_format on `device`
  mutable std::mutex mu;        // store, cache, generation and counters
  std::mutex forward_mu;        // one forward at a time
  std::mutex reload_mu;         // one reload at a time
  store::Store store;
  const store::BackboneRef backbone_ref;  // the store's, fixed for the engine's life
  int64_t generation = 0;                 // reloads so far
  models::ResNet backbone{nullptr};
  std::map<std::string, torch::nn::BatchNorm2dImpl*> norms;
  // LRU: most recently used at the front.
  std::list<std::string> lru;
  struct Entry {
    std::shared_ptr<const Prepared> task;
    std::list<std::string>::iterator pos;
  };
  std::map<std::string, Entry> cache;
  CacheStats stats;
  bool warned_budget = false;
  std::shared_ptr<const MapperIndex> mapper_index;  // under mu; rebuilt after a reload

  explicit Impl(const EngineOptions& o)
      : options(o), store(store::Store::open(o.store_dir)), backbone_ref(store.backbone()) {}

  std::shared_ptr<const Prepared> prepare(const store::Adapter& a, const std::string& sha) const;
  std::shared_ptr<const Prepared> get(const std::string& name);
  // One forward of a batch that may mix tasks (Engine::logits); `used`, when given,
  // receives the prepared task of each sample.
  std::vector<at::Tensor> forward(const std::vector<std::string>& tasks, const at::Tensor& images,
                                  std::vector<std::shared_ptr<const Prepared>>* used);
  void evict_to(int64_t budget);
  // The gaussian mappers over the store's tasks as of the last reload.
  std::shared_ptr<const MapperIndex> mapper();
  // Backbone features [N, F] (float, on the device) of uint8 images [N, 3, S, S] taken
  // as `pre` says, without any task's adapters.
  at::Tensor shared_features(const at::Tensor& images, const store::Preprocess& pre);
};

}  // namespace clr::serve
