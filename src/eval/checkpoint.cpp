#include "clr/eval/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/safetensors.h"
#include "clr/train/progress_file.h"
#include "clr/train/task_states.h"

namespace clr::eval {
namespace {

using json = nlohmann::json;

std::string run_file(const std::string& out) { return checkpoint_dir(out) + "/run.safetensors"; }
std::string task_file(const std::string& out) { return checkpoint_dir(out) + "/task.safetensors"; }
std::string part_file(const std::string& out, int64_t task) {
  return detail::concat(checkpoint_dir(out), "/task-", task, ".safetensors");
}

// A split's content as far as a run sees it: its paths (or its count, preloaded) and labels.
std::string split_digest(const data::Split& s) {
  std::string bytes;
  for (const auto& p : s.paths) bytes += p + '\n';
  for (int64_t l : s.labels) bytes += std::to_string(l) + ',';
  return sha256_hex(bytes).substr(0, 16);
}

const std::string& meta(const Metadata& m, const std::string& key, const std::string& file) {
  return metadata_value(m, key, "checkpoint '" + file + "'");
}
int64_t meta_int(const Metadata& m, const std::string& key, const std::string& file) {
  return metadata_count(m, key, "checkpoint '" + file + "'");
}

// The stored configuration as far as it decides the results: the output directory and
// how many tasks are learned at once (the same results either way) aside.
settings::Json result_config(const std::string& config_json) {
  if (config_json.empty()) return settings::Json::object();
  settings::Json j = settings::Json::parse(config_json);
  if (j.contains("run")) j["run"].erase("out");
  if (j.contains("train")) j["train"].erase("parallel_tasks");
  return j;
}

// A checkpoint file of `kind` ("run", "task"): FormatError for anything else.
SafetensorsFile read_checkpoint_file(const std::string& file, const std::string& kind) {
  SafetensorsFile f = read_safetensors(file);
  const auto is = [&](const char* key, const std::string& value) {
    return f.metadata.count(key) && f.metadata.at(key) == value;
  };
  CLR_CHECK(is("format", kCheckpointFormat) && is("kind", kind), FormatError, "'", file, "' is not a clr ", kind,
            " checkpoint (expected format ", kCheckpointFormat, ")");
  return f;
}

}  // namespace

std::string configuration_difference(const std::string& was_json, const std::string& now_json) {
  return settings::difference(result_config(was_json), result_config(now_json));
}

std::string checkpoint_dir(const std::string& out) { return out + "/checkpoint"; }

std::string new_run_id() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string sequence_identity(const data::Sequence& sequence) {
  json tasks = json::array();
  for (const auto& t : sequence) {
    tasks.push_back({{"name", t.name},
                     {"classes", t.classes},
                     {"train", t.train.size()},
                     {"val", t.val.size()},
                     {"test", t.test.size()},
                     {"digest", split_digest(t.train) + split_digest(t.val) + split_digest(t.test)}});
  }
  return tasks.dump();
}

void write_run_checkpoint(const std::string& out, const RunCheckpoint& c) {
  make_directories(checkpoint_dir(out));
  // Each fixed task's tensors go to a file of their own, written once per run; the
  // run file names how many there are and is written last.
  std::vector<TensorMap> parts(static_cast<size_t>(c.fixed_tasks));
  TensorMap rest;
  for (const auto& [k, v] : c.method) {
    std::string name;
    const int64_t task = train::task_key_index(k, &name);
    if (task >= 0 && task < c.fixed_tasks) {
      parts[static_cast<size_t>(task)].emplace(name, v);
    } else {
      rest.emplace(k, v);
    }
  }
  for (int64_t t = 0; t < c.fixed_tasks; ++t) {
    const std::string file = part_file(out, t);
    if (file_exists(file)) {
      try {
        const Metadata m = read_safetensors_metadata(file);
        if (m.count("run_id") && m.at("run_id") == c.run_id && m.count("task") && m.at("task") == std::to_string(t)) {
          continue;  // written by this run already
        }
      } catch (const Error&) {
      }
    }
    write_safetensors(file, parts[static_cast<size_t>(t)],
                      {{"format", kCheckpointFormat}, {"kind", "task-state"}, {"run_id", c.run_id},
                       {"task", std::to_string(t)}});
  }
  write_safetensors(run_file(out), rest,
                    {{"format", kCheckpointFormat},
                     {"kind", "run"},
                     {"run_id", c.run_id},
                     {"replaces", c.replaces},
                     {"config", c.config_json},
                     {"sequence", c.sequence_json},
                     {"tasks_done", std::to_string(c.tasks_done)},
                     {"fixed_tasks", std::to_string(c.fixed_tasks)},
                     {"results", c.results_json}});
}

std::optional<RunCheckpoint> read_run_checkpoint(const std::string& out) {
  const std::string file = run_file(out);
  if (!file_exists(file)) return std::nullopt;
  SafetensorsFile f = read_checkpoint_file(file, "run");
  RunCheckpoint c;
  c.run_id = meta(f.metadata, "run_id", file);
  c.replaces = f.metadata.count("replaces") ? f.metadata.at("replaces") : "";
  c.config_json = meta(f.metadata, "config", file);
  c.sequence_json = meta(f.metadata, "sequence", file);
  c.tasks_done = meta_int(f.metadata, "tasks_done", file);
  c.results_json = meta(f.metadata, "results", file);
  c.fixed_tasks = f.metadata.count("fixed_tasks") ? meta_int(f.metadata, "fixed_tasks", file) : 0;
  CLR_CHECK(c.fixed_tasks <= c.tasks_done, FormatError, "checkpoint '", file, "' names ", c.fixed_tasks,
            " task files for ", c.tasks_done, " learned tasks");
  c.method = std::move(f.tensors);
  for (int64_t t = 0; t < c.fixed_tasks; ++t) {
    const std::string part = part_file(out, t);
    CLR_CHECK(file_exists(part), FormatError, "checkpoint '", file, "' needs '", part, "', which is missing");
    SafetensorsFile p = read_checkpoint_file(part, "task-state");
    CLR_CHECK(meta(p.metadata, "run_id", part) == c.run_id && meta_int(p.metadata, "task", part) == t, FormatError,
              "'", part, "' is not task ", t + 1, " of run ", c.run_id);
    for (auto& [k, v] : p.tensors) c.method.emplace(detail::concat("task.", t, ".", k), std::move(v));
  }
  return c;
}

namespace {

std::string chunk_file(const std::string& out) { return checkpoint_dir(out) + "/parallel.safetensors"; }

}  // namespace

void write_task_checkpoint(const std::string& out, const std::string& run_id, int64_t task,
                           const train::TaskProgress& p) {
  TensorMap tensors;
  Metadata metadata{{"format", kCheckpointFormat}, {"kind", "task"}, {"run_id", run_id}, {"task", std::to_string(task)}};
  train::add_progress(tensors, metadata, "", p);
  make_directories(checkpoint_dir(out));
  // Rewritten after every epoch, so not fsync'ed: a machine crash may damage it, and
  // the task then starts again from its first epoch (read_task_checkpoint).
  write_file_replacing(task_file(out), encode_safetensors(tensors, metadata));
}

std::optional<train::TaskProgress> read_task_checkpoint(const std::string& out, const std::string& run_id,
                                                        int64_t task) {
  const std::string file = task_file(out);
  if (!file_exists(file)) return std::nullopt;
  SafetensorsFile f = read_checkpoint_file(file, "task");
  if (meta(f.metadata, "run_id", file) != run_id || meta_int(f.metadata, "task", file) != task) return std::nullopt;
  return train::take_progress(f.tensors, f.metadata, "", file);
}

void write_parallel_checkpoint(const std::string& out, const std::string& run_id, int64_t first_task,
                               const std::vector<std::optional<train::TaskProgress>>& progress) {
  TensorMap tensors;
  Metadata metadata{{"format", kCheckpointFormat},
                    {"kind", "parallel"},
                    {"run_id", run_id},
                    {"first_task", std::to_string(first_task)},
                    {"tasks", std::to_string(progress.size())}};
  for (size_t k = 0; k < progress.size(); ++k) {
    if (progress[k]) train::add_progress(tensors, metadata, detail::concat("lane.", k, "."), *progress[k]);
  }
  make_directories(checkpoint_dir(out));
  write_file_replacing(chunk_file(out), encode_safetensors(tensors, metadata));  // as the task checkpoint
}

std::vector<std::optional<train::TaskProgress>> read_parallel_checkpoint(const std::string& out,
                                                                        const std::string& run_id, int64_t first_task,
                                                                        size_t tasks) {
  const std::string file = chunk_file(out);
  if (!file_exists(file)) return {};
  SafetensorsFile f = read_checkpoint_file(file, "parallel");
  if (meta(f.metadata, "run_id", file) != run_id || meta_int(f.metadata, "first_task", file) != first_task ||
      meta_int(f.metadata, "tasks", file) != static_cast<int64_t>(tasks)) {
    return {};
  }
  std::vector<std::optional<train::TaskProgress>> progress(tasks);
  for (size_t k = 0; k < tasks; ++k) {
    const std::string prefix = detail::concat("lane.", k, ".");
    if (f.metadata.count(prefix + "next_epoch")) progress[k] = train::take_progress(f.tensors, f.metadata, prefix, file);
  }
  return progress;
}

void remove_task_checkpoint(const std::string& out) {
  std::remove(task_file(out).c_str());
  std::remove(chunk_file(out).c_str());
}

}  // namespace clr::eval
