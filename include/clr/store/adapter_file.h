// One adapter file: the self-contained safetensors file of one task's adapter, as the
// store keeps it (STORE/tasks/<task>.<sha12>.safetensors, store.h) and as
// `clr tasks export` / `import` move it. Its tensors are the task state (CLR kernels or
// residual convs, BatchNorm affine and running statistics, head); its metadata are
// strings: format "clr.adapter" and version, task, variant, kernel size, class names
// (JSON), the backbone (arch, small stem, fingerprint), preprocessing (resize, crop,
// input size, mean and std as JSON), training configuration and metrics (JSON),
// creation time and the tensors' SHA-256 (core fingerprint), checked on every read.
// The rules for task names live here too: a task name names a file.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "clr/core/tensor_map.h"

namespace clr::store {

inline constexpr const char* kAdapterFormat = "clr.adapter";
// The newest format versions this build reads. A file from a newer clr is refused with
// IncompatibleError. The manifest is version 1. An adapter file is version 2 when it
// holds task-mapper statistics ("mapper." tensors and "mapper" metadata, for task
// inference), version 1 otherwise, so that a clr from before task inference still
// reads every file it could use.
inline constexpr int kFormatVersion = 1;
inline constexpr int kAdapterVersion = 2;
inline constexpr size_t kMaxTaskNameBytes = 128;

// Empty when `name` can name a task (and so a file in the store): 1 to 128 bytes, no
// '/', '\\' or control character, not starting with '.' or a space, not ending with a
// space. Otherwise the reason.
std::string task_name_problem(const std::string& name);
// Throws ConfigError naming the task and the rule it breaks.
void check_task_name(const std::string& name);

// The backbone every task of a store runs on.
struct BackboneRef {
  std::string arch;         // "resnet18"
  bool small_stem = false;
  std::string fingerprint;  // "sha256:..." of the feature extractor (models' fingerprint)
  int64_t params = 0;       // torchvision's parameter count (whole model), for fractions
  std::string source;       // the weight file the tasks were trained from (absolute path;
                            // a hint for serving), "random" for a random initialisation
};

// How an image is turned into the network's input.
struct Preprocess {
  int64_t resize = 224;  // squashed to resize x resize (data::resize_square)
  int64_t crop = 0;      // > 0: then the centred crop x crop window
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
  int64_t input_size() const { return crop > 0 ? crop : resize; }
};

// One task's adapter, as stored.
struct Adapter {
  std::string task;
  std::string variant = "clr";  // clr, clr-full, residual (adapters), linear (head only)
  int64_t kernel_size = 3;      // CLR kernel
  std::vector<std::string> classes;
  Preprocess preprocess;
  BackboneRef backbone;             // arch, small_stem, fingerprint (source and params unused)
  std::string training_json = "{}";  // the configuration it was trained with
  std::string metrics_json = "{}";   // e.g. {"test_accuracy": 0.91, "best_val_accuracy": ...}
  std::string created;               // UTC, ISO 8601; filled by encode_adapter when empty
  TensorMap tensors;                 // clr.*, residual.*, bn.*, head.weight, head.bias
  std::string tensors_sha256;        // fingerprint(tensors); filled by encode/decode
  // Task-mapper statistics (train::TaskStatistics::to_tensors: class_mean, variance,
  // class_count), empty when the task has none; stored as "mapper.<key>" tensors with
  // their own checksum, and `mapper_json` describing how they were made.
  TensorMap mapper;
  std::string mapper_json = "{}";
  std::string mapper_sha256;         // fingerprint(mapper); filled by encode/decode
};

// The self-contained safetensors bytes of an adapter (the store's task file and the
// export format). Checks the task name, variant and head.
std::string encode_adapter(Adapter& adapter);
// Parses and checks an adapter file's bytes: FormatError for anything malformed or a
// tensor checksum that does not match (corrupt file), IncompatibleError for a format
// version newer than this build reads. Reads the earlier "clr.adapter/0" files too.
Adapter decode_adapter(const std::string& bytes, const std::string& origin);
Adapter read_adapter_file(const std::string& path);

// One line of a store's manifest (store.h).
struct TaskEntry;
// The adapter's metadata as JSON (no tensors): task, variant, classes, preprocessing,
// backbone, training, metrics, created, checksums, sizes (from `entry` when given).
std::string adapter_json(const Adapter& adapter, const TaskEntry* entry, int indent = -1);

}  // namespace clr::store
