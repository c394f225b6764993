// The inference engine: one frozen backbone, loaded once, serving every task of an
// adapter store. A batch may mix tasks and still runs as one forward pass:
//   - each CLR layer is one grouped convolution over per-sample kernels (the batch is
//     folded into the channels: [1, N*C, H, W] with N*C groups);
//   - eval-mode BatchNorm is a per-sample scale and shift;
//   - the residual variant's 1x1 adapters are one grouped conv with N groups;
//   - the heads are applied per task to that task's rows of the pooled features.
// A batch of one task takes the plain depthwise path (groups = C).
//
// Adapters are loaded from the store on first use, verified, prepared on the device
// and kept in an LRU cache bounded by a byte budget. reload() re-reads the manifest;
// cached tasks whose file changed or that were removed are dropped.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "clr/core/settings.h"
#include "clr/store/store.h"

namespace clr::serve {

struct EngineOptions {
  std::string store_dir;
  std::string backbone_file;  // empty: the store's recorded source
  std::string device = "cpu";
  int64_t cache_bytes = 256ll << 20;  // budget of prepared adapters on the device
  // The forward's arithmetic and layout, as train.precision / train.memory_format:
  // auto is bf16 autocast and channels-last on CUDA, fp32 and contiguous on the CPU
  // (where a mixed-task batch equals each sample run alone, docs/SERVING.md).
  std::string precision = "auto";
  std::string memory_format = "auto";
};
// Keys store, backbone, device, cache_bytes, precision, memory_format.
void to_json(settings::Json& j, const EngineOptions& o);
void from_json(const settings::Json& j, EngineOptions& o);

// What the engine knows of a task without loading it.
struct TaskSummary {
  store::TaskEntry entry;
};

struct CacheStats {
  int64_t bytes = 0, budget = 0, entries = 0, hits = 0, misses = 0, evictions = 0;
};

struct TopClass {
  int64_t index = 0;
  std::string name;
  float prob = 0;
};

// Task inference (train/task_inference.h) when no task is given.
struct IdentifyOptions {
  std::string method = "gaussian";  // gaussian | energy | max-softmax
  // A confidence (softmax over tasks of score / temperature) below this is "unknown".
  double threshold = 0;
  double temperature = 0;  // 0: the method's default
  int64_t top_k = 5;       // classes of the chosen task
  int64_t top_tasks = 3;   // tasks reported, best first
};
// Keys method, threshold, temperature, top_k, top_tasks.
void to_json(settings::Json& j, const IdentifyOptions& o);
void from_json(const settings::Json& j, IdentifyOptions& o);

struct TaskGuess {
  std::string task;
  float confidence = 0;
  float score = 0;  // the method's score (log density per feature, energy, max softmax)
};

struct Identified {
  std::optional<std::string> task;  // the chosen task; nullopt: no task was confident enough
  float confidence = 0;             // of the best task
  std::vector<TaskGuess> tasks;     // the best tasks, best first (top_tasks of them)
  std::vector<TopClass> top;        // classes under the chosen task (empty when unknown)
};

// {"task": name or null, "confidence", "tasks": [{"task", "confidence", "score"}...],
// "top": [{"class", "index", "prob"}...]}: the answer of `clr predict` and
// POST /v1/predict.
void to_json(settings::Json& j, const Identified& r);

class Engine {
 public:
  // Loads the backbone (the store's source file, or options.backbone_file) and checks
  // that its fingerprint is the store's (IncompatibleError otherwise).
  explicit Engine(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const store::BackboneRef& backbone() const;
  std::string device() const;
  // The store's tasks (manifest order) as of the last reload().
  std::vector<store::TaskEntry> tasks() const;
  std::optional<store::TaskEntry> task(const std::string& name) const;
  // A task's whole adapter metadata (tensors dropped), loading it when not cached.
  store::Adapter describe(const std::string& name);

  // A decoded image (uint8 [H, W, 3]) as task `task` takes it: uint8 [3, S, S]
  // (resized, centre-cropped when the task was trained with crops).
  at::Tensor preprocess(const std::string& task, const at::Tensor& hwc);
  // Logits of a batch that may mix tasks: images uint8 [N, 3, S, S] (every task of the
  // batch must take the same S), tasks[i] the task of sample i. One forward pass.
  // Returns a [K_i] float tensor (CPU) per sample.
  std::vector<at::Tensor> logits(const std::vector<std::string>& tasks, const at::Tensor& images);
  // softmax(logits) per sample, top k classes (k clamped to the task's classes).
  std::vector<std::vector<TopClass>> predict(const std::vector<std::string>& tasks, const at::Tensor& images,
                                             int64_t top_k);
  // `clr predict`: classifies image files with one task, `batch` files per forward
  // pass (read, decoded and preprocessed as the task was trained). `each` gets every
  // file's path and either its top classes or, for a file that could not be read or
  // decoded, the error's message (`top` empty), in order, as soon as its batch is done,
  // so a long list streams and a bad file fails alone. After the last file, when any
  // failed, throws an error of the first failure's kind (FormatError, NotFoundError)
  // counting them. NotFoundError for an unknown task (before any file is read),
  // ConfigError for batch < 1 or top_k < 1.
  void predict_files(const std::string& task, const std::vector<std::string>& paths, int64_t top_k, int64_t batch,
                     const std::function<void(const std::string& path, const std::vector<TopClass>& top,
                                              const std::string& error)>& each);

  // Finds the task of each decoded image (uint8 [H, W, 3]) among all the store's tasks,
  // then classifies it under that task (unless unknown). gaussian: one forward of the
  // frozen backbone per image (per preprocessing the tasks use) scores every task from
  // its stored statistics, then one forward under the chosen tasks; IncompatibleError
  // naming the tasks without statistics (`clr tasks fit-mapper` adds them). energy,
  // max-softmax: the image under every task's adapters and head, in mixed batches.
  // NotFoundError for an empty store.
  std::vector<Identified> identify(const std::vector<at::Tensor>& images, const IdentifyOptions& options);
  // `clr predict` without a task: image files, `batch` per call of identify, each
  // file's answer or error reported as predict_files does.
  void identify_files(const std::vector<std::string>& paths, const IdentifyOptions& options, int64_t batch,
                      const std::function<void(const std::string& path, const Identified& answer,
                                               const std::string& error)>& each);

  // Re-reads the store's manifest; returns the number of tasks.
  size_t reload();
  CacheStats cache_stats() const;
  // The manifest's modification stamp (for watching it), empty when unreadable.
  std::string manifest_stamp() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace clr::serve
