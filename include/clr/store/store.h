// The adapter store: one directory that holds the per-task state of any number of
// tasks learned on one shared, frozen backbone.
//
//   STORE/manifest.json               format "clr.store", version, the backbone (arch,
//                                     stem, fingerprint, the file it was loaded from) and
//                                     every task (file, SHA-256 of its bytes, size, ...)
//   STORE/tasks/<task>.<sha12>.safetensors   one task (named by its content): CLR kernels, BatchNorm affine and running
//                                     statistics, head; metadata with the class names,
//                                     preprocessing, variant, training configuration,
//                                     metrics, creation time and the tensors' SHA-256
//
// Every write goes to a temporary name, is fsync'ed and renamed; a task file (named by
// its content) is written before the manifest that names it, and a replaced version is
// removed only after, so a killed writer leaves the old store or the new one. Writers take an advisory lock (STORE/.lock) and re-read the manifest
// under it, so two processes adding tasks do not lose each other's. Reads verify the
// file's SHA-256 against the manifest, the tensors against the checksum in the file,
// and the backbone fingerprint against the store's. An adapter file is
// self-contained: `clr tasks export` copies one out, `import` checks and adds it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "clr/core/tensor_map.h"

namespace clr::store {

inline constexpr const char* kStoreFormat = "clr.store";
inline constexpr const char* kAdapterFormat = "clr.adapter";
// The newest format version this build reads and the one it writes (manifest and
// adapter files). A file from a newer clr is refused with IncompatibleError.
inline constexpr int kFormatVersion = 1;
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
};

// The self-contained safetensors bytes of an adapter (the store's task file and the
// export format). Checks the task name, variant and head.
std::string encode_adapter(Adapter& adapter);
// Parses and checks an adapter file's bytes: FormatError for anything malformed or a
// tensor checksum that does not match (corrupt file), IncompatibleError for a format
// version newer than this build reads. Reads the earlier "clr.adapter/0" files too.
Adapter decode_adapter(const std::string& bytes, const std::string& origin);
Adapter read_adapter_file(const std::string& path);

// One line of the manifest.
struct TaskEntry;
// The adapter's metadata as JSON (no tensors): task, variant, classes, preprocessing,
// backbone, training, metrics, created, checksums, sizes (from `entry` when given).
std::string adapter_json(const Adapter& adapter, const TaskEntry* entry, int indent = -1);

struct TaskEntry {
  std::string name;
  std::string file;     // relative to the store: tasks/<name>.<first 12 hex of sha256>.safetensors
  std::string sha256;   // of the file's bytes
  int64_t bytes = 0;    // the file's size
  int64_t tensor_bytes = 0;
  std::string variant;
  int64_t classes = 0;
  int64_t input_size = 0;
  std::string created;
};

struct TaskCheck {
  std::string task;  // or the file's name for a file no task names
  bool ok = true;
  std::string problem;
};

class Store {
 public:
  // An existing store. NotFoundError when `dir` holds no manifest, FormatError for a
  // malformed one, IncompatibleError for one written by a newer clr.
  static Store open(const std::string& dir);
  // `dir`'s store, made empty for `backbone` when there is none yet. An existing store
  // must be for the same backbone fingerprint (IncompatibleError otherwise).
  static Store create(const std::string& dir, const BackboneRef& backbone);
  static bool exists(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string manifest_path() const { return dir_ + "/manifest.json"; }
  const BackboneRef& backbone() const { return backbone_; }
  const std::vector<TaskEntry>& tasks() const { return tasks_; }
  // nullptr when no task has this name.
  const TaskEntry* find(const std::string& name) const;
  // Reads the manifest again (another process may have written).
  void refresh();

  // Adds a task (or replaces one of the same name when `replace`; ConfigError
  // otherwise). The adapter's backbone fingerprint must be the store's
  // (IncompatibleError). The file is written before the manifest.
  TaskEntry put(Adapter adapter, bool replace = false);
  // A task, verified (NotFoundError for an unknown name; FormatError for a missing,
  // truncated or corrupt file; IncompatibleError for a foreign backbone).
  Adapter load(const std::string& name) const;
  // The verified bytes of a task's file (what export writes).
  std::string load_bytes(const std::string& name) const;
  // Removes a task: the manifest first, then its file.
  void remove(const std::string& name);
  // Every task checked as load() does, and files under tasks/ that no task names.
  std::vector<TaskCheck> verify() const;

 private:
  explicit Store(std::string dir) : dir_(std::move(dir)) {}
  void read_manifest();
  void write_manifest() const;

  std::string dir_;
  BackboneRef backbone_;
  std::string created_;
  std::vector<TaskEntry> tasks_;
};

}  // namespace clr::store
