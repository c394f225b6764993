// The adapter store (store.h): the manifest, the lock, and adding, loading, removing
// and verifying tasks. One task's file is adapter_file.cpp.
#include "clr/store/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "clr/core/json_numbers.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/log.h"
#include "clr/core/runtime.h"
#include "clr/models/registry.h"
#include "clr/models/resnet.h"
#include "clr/store/peft.h"

namespace clr::store {
namespace {

using nlohmann::json;

// An exclusive advisory lock on STORE/.lock for the lifetime of the object.
class StoreLock {
 public:
  explicit StoreLock(const std::string& dir) {
    const std::string path = dir + "/.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CLR_CHECK(fd_ >= 0, NotFoundError, "cannot open the store lock '", path, "': ", std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      CLR_CHECK(errno == EINTR, InternalError, "cannot lock '", path, "': ", std::strerror(errno));
    }
  }
  ~StoreLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  int fd_ = -1;
};

template <typename T>
T field(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  CLR_CHECK(it != j.end(), FormatError, where, ": missing \"", key, "\"");
  try {
    return it->get<T>();
  } catch (const json::exception& e) {
    throw FormatError(detail::concat(where, ": \"", key, "\" has the wrong type (", e.what(), ")"));
  }
}

json backbone_json(const BackboneRef& b) {
  return {{"arch", b.arch}, {"small_stem", b.small_stem}, {"fingerprint", b.fingerprint}, {"params", b.params},
          {"source", b.source}};
}

// A task's file is named by its content, so that replacing a task writes a new file,
// then the manifest, and only then removes the old file: a crash anywhere leaves the
// manifest naming a complete file with the checksum it records.
std::string file_of(const std::string& task, const std::string& sha256) {
  return "tasks/" + task + "." + sha256.substr(0, 12) + ".safetensors";
}

bool is_file_of(const std::string& file, const std::string& task) {
  const std::string prefix = "tasks/" + task + ".", suffix = ".safetensors";
  if (file.size() != prefix.size() + 12 + suffix.size() || file.compare(0, prefix.size(), prefix) != 0 ||
      file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  return std::all_of(file.begin() + static_cast<std::ptrdiff_t>(prefix.size()),
                     file.begin() + static_cast<std::ptrdiff_t>(prefix.size() + 12),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

}  // namespace

bool Store::exists(const std::string& dir) { return file_exists(dir + "/manifest.json"); }

Store Store::open(const std::string& dir) {
  require_directory(dir, "store directory");
  CLR_CHECK(exists(dir), NotFoundError, "'", dir, "' is not an adapter store: it has no manifest.json (clr run writes "
            "one under OUT/adapters; clr tasks import FILE --store DIR starts one)");
  Store s(dir);
  s.read_manifest();
  return s;
}

Store Store::create(const std::string& dir, const BackboneRef& backbone) {
  CLR_CHECK(backbone.fingerprint.rfind("sha256:", 0) == 0, ConfigError, "a store needs a backbone fingerprint, got '",
            backbone.fingerprint, "'");
  make_directories(dir + "/tasks");
  StoreLock lock(dir);
  if (exists(dir)) {
    Store s = open(dir);
    CLR_CHECK(s.backbone_.fingerprint == backbone.fingerprint, IncompatibleError, "store '", dir,
              "' holds tasks for backbone ", s.backbone_.fingerprint, " (", s.backbone_.arch, "), not for ",
              backbone.fingerprint, " (", backbone.arch, "); use another store directory");
    return s;
  }
  Store s(dir);
  s.backbone_ = backbone;
  s.created_ = runtime::utc_timestamp();
  s.write_manifest();
  return s;
}

void Store::read_manifest() {
  const std::string path = manifest_path();
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
    check_json_numbers(j, path);
  } catch (const json::exception& e) {
    throw FormatError(detail::concat("store manifest '", path, "' is not valid JSON: ", e.what()));
  }
  const std::string where = "store manifest '" + path + "'";
  CLR_CHECK(j.is_object(), FormatError, where, " is not a JSON object");
  const std::string format = field<std::string>(j, "format", where);
  CLR_CHECK(format == kStoreFormat, FormatError, where, " has format '", format, "', expected '", kStoreFormat, "'");
  const int64_t version = field<int64_t>(j, "version", where);
  CLR_CHECK(version <= kFormatVersion, IncompatibleError, where, " was written by a newer clr (store format version ",
            version, "; this build reads versions up to ", kFormatVersion, "): upgrade clr to use this store");
  CLR_CHECK(version >= 1, FormatError, where, ": format version ", version, " is not valid");
  const json b = field<json>(j, "backbone", where);
  CLR_CHECK(b.is_object(), FormatError, where, ": \"backbone\" must be an object");
  BackboneRef ref;
  ref.arch = field<std::string>(b, "arch", where + " backbone");
  ref.small_stem = field<bool>(b, "small_stem", where + " backbone");
  ref.fingerprint = field<std::string>(b, "fingerprint", where + " backbone");
  ref.params = field<int64_t>(b, "params", where + " backbone");
  ref.source = b.contains("source") && b["source"].is_string() ? b["source"].get<std::string>() : "";
  std::vector<TaskEntry> tasks;
  std::set<std::string> names;
  const json list = field<json>(j, "tasks", where);
  CLR_CHECK(list.is_array(), FormatError, where, ": \"tasks\" must be an array");
  for (const json& t : list) {
    CLR_CHECK(t.is_object(), FormatError, where, ": every task must be an object");
    TaskEntry e;
    const std::string w = where + " task";
    e.name = field<std::string>(t, "name", w);
    const std::string why = task_name_problem(e.name);
    CLR_CHECK(why.empty(), FormatError, where, ": task name '", e.name, "' is not allowed (", why, ")");
    CLR_CHECK(names.insert(e.name).second, FormatError, where, " lists task '", e.name, "' twice");
    e.file = field<std::string>(t, "file", w);
    CLR_CHECK(is_file_of(e.file, e.name), FormatError, where, ": task '", e.name, "' points at '", e.file,
              "', expected 'tasks/", e.name, ".<12 hex digits>.safetensors'");
    e.sha256 = field<std::string>(t, "sha256", w);
    e.bytes = field<int64_t>(t, "bytes", w);
    e.tensor_bytes = t.contains("tensor_bytes") ? field<int64_t>(t, "tensor_bytes", w) : 0;
    e.variant = field<std::string>(t, "variant", w);
    e.classes = field<int64_t>(t, "classes", w);
    e.input_size = t.contains("input_size") ? field<int64_t>(t, "input_size", w) : 0;
    e.created = t.contains("created") ? field<std::string>(t, "created", w) : "";
    tasks.push_back(std::move(e));
  }
  backbone_ = ref;
  created_ = j.contains("created") && j["created"].is_string() ? j["created"].get<std::string>() : "";
  tasks_ = std::move(tasks);
}

void Store::write_manifest() const {
  json tasks = json::array();
  for (const auto& e : tasks_) {
    tasks.push_back({{"name", e.name},
                     {"file", e.file},
                     {"sha256", e.sha256},
                     {"bytes", e.bytes},
                     {"tensor_bytes", e.tensor_bytes},
                     {"variant", e.variant},
                     {"classes", e.classes},
                     {"input_size", e.input_size},
                     {"created", e.created}});
  }
  nlohmann::ordered_json j = {{"format", kStoreFormat},     {"version", kFormatVersion},
                              {"backbone", backbone_json(backbone_)}, {"created", created_},
                              {"updated", runtime::utc_timestamp()},        {"tasks", tasks}};
  write_file_atomic(manifest_path(), j.dump(2) + "\n");
}

const TaskEntry* Store::find(const std::string& name) const {
  for (const auto& e : tasks_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

void Store::refresh() { read_manifest(); }

TaskEntry Store::put(Adapter adapter, bool replace) {
  const std::string bytes = encode_adapter(adapter);  // checks the name, variant, head
  CLR_CHECK(adapter.backbone.fingerprint == backbone_.fingerprint, IncompatibleError, "task '", adapter.task,
            "' was trained on backbone ", adapter.backbone.fingerprint, ", but store '", dir_, "' serves ",
            backbone_.fingerprint);
  StoreLock lock(dir_);
  read_manifest();  // another writer may have added tasks since this object read it
  TaskEntry e;
  e.name = adapter.task;
  e.sha256 = sha256_hex(bytes);
  e.file = file_of(adapter.task, e.sha256);
  e.bytes = static_cast<int64_t>(bytes.size());
  e.tensor_bytes = total_bytes(adapter.tensors);
  e.variant = adapter.variant;
  e.classes = static_cast<int64_t>(adapter.classes.size());
  e.input_size = adapter.preprocess.input_size();
  e.created = adapter.created;
  auto it = std::find_if(tasks_.begin(), tasks_.end(), [&](const TaskEntry& t) { return t.name == e.name; });
  CLR_CHECK(it == tasks_.end() || replace, ConfigError, "store '", dir_, "' already has a task '", e.name,
            "' (remove it first, or replace it)");
  make_directories(dir_ + "/tasks");
  write_file_atomic(dir_ + "/" + e.file, bytes);  // the file first, the manifest that names it last
  std::string replaced;
  if (it != tasks_.end()) {
    if (it->file != e.file) replaced = dir_ + "/" + it->file;
    *it = e;
  } else {
    tasks_.push_back(e);
  }
  write_manifest();
  // The replaced version goes only once no manifest names it.
  if (!replaced.empty() && ::unlink(replaced.c_str()) != 0 && errno != ENOENT) {
    log::warn("store: could not remove the replaced '", replaced, "': ", std::strerror(errno));
  }
  return e;
}

std::string Store::load_bytes(const std::string& name) const {
  const TaskEntry* e = find(name);
  CLR_CHECK(e != nullptr, NotFoundError, "store '", dir_, "' has no task '", name, "'");
  const std::string path = dir_ + "/" + e->file;
  CLR_CHECK(file_exists(path), FormatError, "store '", dir_, "': the file of task '", name, "' (", e->file,
            ") is missing");
  std::string bytes = read_file(path);
  CLR_CHECK(static_cast<int64_t>(bytes.size()) == e->bytes, FormatError, "store '", dir_, "': '", e->file, "' has ",
            bytes.size(), " bytes, the manifest says ", e->bytes, " (truncated or replaced)");
  const std::string sha = sha256_hex(bytes);
  CLR_CHECK(sha == e->sha256, FormatError, "store '", dir_, "': '", e->file, "' is corrupt (SHA-256 ", sha,
            ", the manifest says ", e->sha256, ")");
  return bytes;
}

Adapter Store::load(const std::string& name) const {
  std::string bytes = load_bytes(name);  // throws NotFoundError before find() is used below
  Adapter a = decode_adapter(bytes, dir_ + "/" + find(name)->file);
  CLR_CHECK(a.task == name, FormatError, "store '", dir_, "': the file of task '", name, "' holds task '", a.task, "'");
  CLR_CHECK(a.backbone.fingerprint == backbone_.fingerprint, IncompatibleError, "store '", dir_, "': task '", name,
            "' was trained on backbone ", a.backbone.fingerprint, ", the store's is ", backbone_.fingerprint);
  return a;
}

void Store::remove(const std::string& name) {
  StoreLock lock(dir_);
  read_manifest();
  auto it = std::find_if(tasks_.begin(), tasks_.end(), [&](const TaskEntry& t) { return t.name == name; });
  CLR_CHECK(it != tasks_.end(), NotFoundError, "store '", dir_, "' has no task '", name, "'");
  const std::string path = dir_ + "/" + it->file;
  tasks_.erase(it);
  write_manifest();  // the manifest first: a crash now leaves only an unnamed file
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    log::warn("store: could not remove '", path, "': ", std::strerror(errno));
  }
}

std::vector<TaskCheck> Store::verify() const {
  std::vector<TaskCheck> out;
  std::set<std::string> named;
  for (const auto& e : tasks_) {
    TaskCheck c;
    c.task = e.name;
    named.insert(e.file.substr(std::string("tasks/").size()));
    try {
      load(e.name);
    } catch (const Error& err) {
      c.ok = false;
      c.problem = err.what();
    }
    out.push_back(c);
  }
  if (directory_exists(dir_ + "/tasks")) {
    for (const auto& f : list_directory(dir_ + "/tasks")) {
      if (named.count(f)) continue;
      TaskCheck c;
      c.task = "tasks/" + f;
      c.ok = false;
      c.problem = f.find(".tmp.") != std::string::npos ? "a temporary file left by an interrupted write"
                                                      : "a file that no task of the manifest names";
      out.push_back(c);
    }
  }
  return out;
}

TaskEntry import_adapter(const std::string& dir, const std::string& file, const std::string& name, bool replace) {
  Adapter a = is_peft_folder(file) ? read_peft_folder(file) : read_adapter_file(file);
  if (!name.empty()) a.task = name;
  check_task_name(a.task);
  Store s = Store::exists(dir) ? Store::open(dir) : Store::create(dir, a.backbone);
  CLR_CHECK(a.backbone.fingerprint == s.backbone().fingerprint, IncompatibleError, "'", file,
            "' was trained on backbone ", a.backbone.fingerprint, " (", a.backbone.arch, "); store '", dir,
            "' serves ", s.backbone().fingerprint, " (", s.backbone().arch, ")");
  return s.put(std::move(a), replace);
}

std::string export_adapter(const Store& store, const std::string& name, const std::string& out, int64_t* bytes_out,
                           const std::string& format) {
  CLR_CHECK(!out.empty(), ConfigError, "no file to export task '", name, "' to");
  CLR_CHECK(format == "safetensors" || format == "peft", ConfigError, "unknown export format '", format,
            "' (expected safetensors or peft)");
  const std::string bytes = store.load_bytes(name);  // the file's checksum is verified
  Adapter a = decode_adapter(bytes, store.dir() + "/" + store.find(name)->file);  // and its tensors'
  if (format == "peft") {
    a.backbone.source = store.backbone().source;
    const int64_t written = write_peft_folder(a, out);
    if (bytes_out != nullptr) *bytes_out = written;
    return out;
  }
  const std::string file = directory_exists(out) ? out + "/" + name + ".safetensors" : out;
  write_file_atomic(file, bytes);
  if (bytes_out != nullptr) *bytes_out = static_cast<int64_t>(bytes.size());
  return file;
}

std::string store_json(const Store& store, int indent) {
  nlohmann::ordered_json tasks = nlohmann::ordered_json::array();
  for (const auto& e : store.tasks()) {
    tasks.push_back({{"name", e.name}, {"variant", e.variant}, {"classes", e.classes}, {"input_size", e.input_size},
                     {"bytes", e.bytes}, {"sha256", e.sha256}, {"created", e.created}});
  }
  const BackboneRef& b = store.backbone();
  const nlohmann::ordered_json j = {
      {"store", store.dir()},
      {"backbone",
       {{"arch", b.arch}, {"small_stem", b.small_stem}, {"fingerprint", b.fingerprint}, {"source", b.source}}},
      {"tasks", tasks}};
  return j.dump(indent);
}

models::ResNet load_store_backbone(const Store& store, const std::string& given) {
  const BackboneRef& ref = store.backbone();
  const std::string file = given.empty() ? ref.source : given;
  CLR_CHECK(!file.empty() && file != "random", ConfigError, "store '", store.dir(),
            "' records no backbone file (its tasks were trained on ",
            file == "random" ? "a randomly initialised backbone" : "a backbone of unknown origin",
            "); pass the backbone with --backbone FILE");
  CLR_CHECK(file_exists(file), NotFoundError, "the store's backbone file '", file,
            "' does not exist; pass its new place with --backbone FILE");
  models::ResNet backbone = models::load_resnet(ref.arch, file, 0, ref.small_stem);
  const std::string fp = fingerprint(models::state_dict(*backbone));
  CLR_CHECK(fp == ref.fingerprint, IncompatibleError, "backbone '", file, "' has fingerprint ", fp, ", but store '",
            store.dir(), "' was made for ", ref.fingerprint, ": its adapters would compute nonsense");
  return backbone;
}

}  // namespace clr::store
