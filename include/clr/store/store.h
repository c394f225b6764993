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
// self-contained: `clr tasks export` copies one out, `import` checks and adds it. The
// adapter file itself (its codec, task-name rules, BackboneRef) is adapter_file.h,
// included here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "clr/store/adapter_file.h"

namespace clr::models {
class ResNet;
}

namespace clr::store {

inline constexpr const char* kStoreFormat = "clr.store";

// One line of the manifest.
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

// `clr tasks import`: adds the adapter file at `file` (or a PEFT folder, store/peft.h)
// to the store in `dir` (under the
// name `name` when not empty), making a new store for the file's backbone when `dir`
// holds none. FormatError for a bad file, ConfigError for a bad name or an existing
// task without `replace`, IncompatibleError when the file was trained on another
// backbone than the store's (the message names both).
TaskEntry import_adapter(const std::string& dir, const std::string& file, const std::string& name = "",
                         bool replace = false);
// `clr tasks export`: writes task `name`'s verified, self-contained file to `out`
// (atomically), or to OUT/<name>.safetensors when `out` is a directory; with format
// "peft", the PEFT-style folder `out` instead (store/peft.h). Returns the file or folder
// written and puts its size in bytes into `bytes`.
std::string export_adapter(const Store& store, const std::string& name, const std::string& out,
                           int64_t* bytes = nullptr, const std::string& format = "safetensors");
// The backbone a store's tasks run on, loaded from `file` (empty: the file the store
// records) and checked against the store's fingerprint. ConfigError when the store
// records no file (a random backbone) and none is given, NotFoundError when the file is
// gone, IncompatibleError when its fingerprint is not the store's.
models::ResNet load_store_backbone(const Store& store, const std::string& file = "");

// The store as JSON (`clr tasks list --json`): the directory, the backbone and one
// object per task (name, variant, classes, input_size, bytes, sha256, created).
std::string store_json(const Store& store, int indent = -1);

}  // namespace clr::store
