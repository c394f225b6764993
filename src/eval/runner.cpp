#include "clr/eval/runner.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/log.h"
#include "clr/core/runtime.h"
#include "clr/core/safetensors.h"
#include "clr/core/strings.h"
#include "clr/core/tensor_map.h"
#include "clr/eval/checkpoint.h"
#include "clr/eval/tensorboard.h"
#include "clr/store/store.h"
#include "clr/train/clr_method.h"
#include "clr/train/parallel.h"
#include "detail/inference_eval.h"

namespace clr::eval {
namespace {

std::string safe_file_name(const std::string& name, size_t index) {
  std::string out;
  for (char c : name) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return detail::concat(index + 1 < 10 ? "0" : "", index + 1, "_", out.substr(0, 64));
}

std::string absolute_path(const std::string& path) {
  char buf[PATH_MAX];
  if (path.empty() || path == "random" || ::realpath(path.c_str(), buf) == nullptr) return path;
  return buf;
}

// The run's adapter store, OUT/adapters, kept as it is: tasks already there are never
// removed, and one that has the name of a task of this sequence is replaced (when the
// new one is learned) only when this run or a run it was started over (`replaces`, run
// ids separated by spaces: a restart of a restart that stopped early may still find the
// first run's tasks) wrote it; any other is a conflict, reported before anything is
// trained.
store::Store open_run_store(const std::string& dir, const store::BackboneRef& ref, const data::Sequence& sequence,
                            const std::string& run_id, const std::string& replaces, const std::string& out_dir) {
  if (directory_exists(dir) && !store::Store::exists(dir)) {
    for (const auto& name : list_directory(dir)) {
      CLR_CHECK(name == ".lock" || name == "tasks", ConfigError, "'", dir, "' holds '", name,
                "' but is not an adapter store; move it or choose another --out");
    }
  }
  store::Store st = store::Store::create(dir, ref);
  std::vector<std::string> foreign;
  for (const auto& t : sequence) {
    if (st.find(t.name) == nullptr) continue;
    std::string writer, why;
    try {
      const nlohmann::json m = nlohmann::json::parse(st.load(t.name).metrics_json);
      writer = m.value("run_id", std::string());
      // Written into this directory by a clr from before run ids: its earlier run.
      if (writer.empty() && m.value("run", std::string()) == out_dir) continue;
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!writer.empty() && (writer == run_id || (" " + replaces + " ").find(" " + writer + " ") != std::string::npos)) {
      continue;
    }
    foreign.push_back(detail::concat("'", t.name, "'", why.empty() ? "" : " (unreadable: " + why + ")"));
  }
  CLR_CHECK(foreign.empty(), ConfigError, "adapter store '", dir, "' already holds ", join_first(foreign),
            ", which this run did not write (imported, or learned by another run): remove ",
            foreign.size() == 1 ? "it" : "them", " with `clr tasks rm ", dir, " NAME`, or choose another --out");
  return st;
}

// Empty when a run checkpoint is of this very run (configuration, method and tasks);
// otherwise what differs.
std::string checkpoint_mismatch(const RunCheckpoint& c, const std::string& config_json, const std::string& identity,
                                size_t tasks) {
  const std::string config = configuration_difference(c.config_json, config_json);
  if (!config.empty()) return config;
  if (c.sequence_json != identity) {
    const nlohmann::json a = nlohmann::json::parse(c.sequence_json), b = nlohmann::json::parse(identity);
    if (a.size() != b.size()) return detail::concat("learns ", a.size(), " tasks, this one ", b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i] != b[i]) {
        return detail::concat("has another task ", i + 1, " (", a[i].value("name", "?"), ": ", a[i].value("train", 0),
                              " / ", a[i].value("val", 0), " / ", a[i].value("test", 0), " images; now ",
                              b[i].value("name", "?"), ": ", b[i].value("train", 0), " / ", b[i].value("val", 0),
                              " / ", b[i].value("test", 0), ", or other files)");
      }
    }
  }
  if (c.tasks_done < 0 || static_cast<size_t>(c.tasks_done) > tasks) {
    return detail::concat("claims ", c.tasks_done, " finished tasks of ", tasks);
  }
  return "";
}

void write_results(const Results& r, const std::string& out) {
  write_file_atomic(out + "/results.json", results_json(r));
  write_file_atomic(out + "/results.csv", results_csv(r));
}

}  // namespace

Results run_sequence(train::Method& method, data::Sequence sequence, const RunOptions& o) {
  o.train.validate();
  const train::Numerics numerics = train::numerics_for(o.train, method.device());  // fp16 on a CPU: an error now
  internal::InferenceEval inference(o, method, numerics);
  const auto parallel = static_cast<size_t>(o.train.parallel_tasks);
  auto* clr_method = dynamic_cast<train::ClrMethod*>(&method);
  CLR_CHECK(parallel == 1 || clr_method != nullptr, ConfigError, "train.parallel_tasks ", parallel,
            " applies to clr, clr-full and residual only: ", method.name(),
            " shares what it trains across tasks, so they cannot be learned independently");
  const std::string variant = method.store_variant();
  if (!variant.empty()) {
    std::string bad;
    for (const auto& t : sequence) {
      const std::string why = store::task_name_problem(t.name);
      if (!why.empty()) bad += detail::concat(bad.empty() ? "" : "; ", "'", t.name, "': ", why);
    }
    CLR_CHECK(bad.empty(), ConfigError, "task names must be able to name files of the adapter store: ", bad,
              " (rename the task or its directory)");
  }
  for (auto& t : sequence) data::complete_splits(t, o.split);
  data::validate_sequence(sequence);
  const std::string identity = sequence_identity(sequence);

  // What an earlier run left in OUT: a checkpoint of this very run is resumed (unless
  // restart); any other is learned again, its stored tasks replaced one by one as the
  // new ones are learned, never before.
  std::optional<RunCheckpoint> previous;
  std::string replaces;  // the runs whose stored tasks this one may replace (ids, space-separated)
  if (!o.restart) {
    previous = read_run_checkpoint(o.out_dir);
  } else {
    try {
      previous = read_run_checkpoint(o.out_dir);
    } catch (const FormatError& e) {
      log::warn("restart: ignoring a damaged checkpoint: ", e.what());
    }
  }
  if (previous) {
    replaces = o.restart ? previous->run_id + (previous->replaces.empty() ? "" : " " + previous->replaces)
                         : previous->replaces;
    const std::string why = checkpoint_mismatch(*previous, o.config_json, identity, sequence.size());
    CLR_CHECK(o.restart || why.empty(), ConfigError, "'", o.out_dir, "' holds a run (", previous->tasks_done, " of its ",
              "tasks learned) that ", why, ": give --restart to learn this one there instead (the tasks it stored are "
              "replaced only as the new ones are learned) or choose another --out");
    if (o.restart) previous.reset();
  } else if (file_exists(o.out_dir + "/results.json")) {
    try {
      const Results old = read_results(o.out_dir + "/results.json");
      replaces = old.run_id;
      if (!o.restart) {
        log::warn("'", o.out_dir, "' holds an earlier ", old.method, " run with ", old.accuracy.size(), " of ",
                  old.tasks.size(), " tasks and no checkpoint to go on from (", old.method,
                  " cannot resume, or an older clr made it): learning from task 1 again");
      }
    } catch (const Error& e) {
      log::warn("'", o.out_dir, "/results.json' is not readable (", e.what(), "); learning from task 1");
    }
  }
  CLR_CHECK(!previous || method.resumable(), ConfigError, "'", o.out_dir, "' holds a checkpoint, but ", method.name(),
            " cannot resume; give --restart");

  make_directories(o.out_dir);
  log::set_file(o.out_dir + "/log.txt");
  struct CloseLog {
    ~CloseLog() { log::set_file(""); }
  } close_log;

  Results r;
  size_t first_task = 0;
  if (previous) {
    r = parse_results(previous->results_json, checkpoint_dir(o.out_dir) + "/run.safetensors (results)");
    first_task = static_cast<size_t>(previous->tasks_done);
    CLR_CHECK(r.tasks.size() == first_task && r.accuracy.size() == first_task, FormatError, "the checkpoint in '",
              checkpoint_dir(o.out_dir), "' holds results of ", r.accuracy.size(), " tasks for ", first_task,
              " finished ones; give --restart");
    for (auto& row : r.accuracy) row.resize(sequence.size());
    if (first_task == 0) r.task_inference.clear();  // checkpointed before the first task ended: no rows yet
    bool same = first_task == 0 || r.task_inference.size() == inference.methods().size();
    for (size_t m = 0; same && m < r.task_inference.size(); ++m) {
      same = r.task_inference[m].method == train::task_inference_name(inference.methods()[m]) &&
             r.task_inference[m].task_accuracy.size() == first_task;
      for (auto* rows : {&r.task_inference[m].task_accuracy, &r.task_inference[m].agnostic_accuracy}) {
        for (auto& row : *rows) row.resize(sequence.size());
      }
    }
    CLR_CHECK(same, FormatError, "the checkpoint in '", checkpoint_dir(o.out_dir),
              "' holds task-inference results that do not match run.task_inference; give --restart");
  }
  r.method = method.name();
  r.variant = method.name();
  r.backbone_arch = o.backbone_arch;
  r.backbone_source = o.backbone_source;
  r.backbone_params = method.backbone_params();
  r.backbone_fingerprint = method.backbone_fingerprint();
  r.device = o.device;
  r.precision = train::precision_name(numerics.autocast);
  r.channels_last = numerics.channels_last;
  r.seed = o.train.seed;
  r.config_json = o.config_json;
  r.run_id = previous ? previous->run_id : new_run_id();
  r.complete = false;
  log::info("run: ", sequence.size(), " tasks, method ", r.variant, ", backbone ", r.backbone_arch, " (",
            r.backbone_source, ", ", r.backbone_fingerprint.substr(0, 19), "...), device ", r.device, " (", r.precision,
            numerics.channels_last ? ", channels-last" : "", "), out ", o.out_dir, " (run ", r.run_id, ")");

  std::unique_ptr<store::Store> adapters;
  if (!variant.empty()) {
    store::BackboneRef ref;
    ref.arch = o.backbone_arch;
    ref.small_stem = o.backbone_small_stem;
    ref.fingerprint = r.backbone_fingerprint;
    ref.params = r.backbone_params;
    ref.source = absolute_path(o.backbone_source);
    adapters = std::make_unique<store::Store>(
        open_run_store(o.out_dir + "/adapters", ref, sequence, r.run_id, replaces, o.out_dir));
  } else {
    make_directories(o.out_dir + "/task_states");
  }
  if (method.resumable() && !previous) {
    // From now on a stopped run goes on from here (its first task's epochs included).
    write_run_checkpoint(o.out_dir, {r.run_id, replaces, o.config_json, identity, 0, results_json(r), {}});
    remove_task_checkpoint(o.out_dir);
  }

  auto describe_task = [&](size_t t) {
    const data::TaskData& task = sequence[t];
    log::info("task ", t + 1, "/", sequence.size(), " '", task.name, "': ", task.classes.size(), " classes, ",
              task.train.size(), " train / ", task.val.size(), " val / ", task.test.size(), " test images");
  };
  auto info_of = [&](size_t t) {
    return train::TaskInfo{static_cast<int64_t>(t), sequence[t].name, static_cast<int64_t>(sequence[t].classes.size())};
  };
  // Task t's state into the store, with its results (r.tasks[t], r.accuracy[t][t]).
  auto store_task = [&](size_t t) {
    const TaskRecord& rec = r.tasks[t];
    store::Adapter a;
    a.task = sequence[t].name;
    a.variant = variant;
    a.kernel_size = method.store_kernel_size();
    a.classes = sequence[t].classes;
    a.preprocess.resize = o.prepare.size;
    a.preprocess.crop = o.train.crop;
    a.backbone = adapters->backbone();
    a.training_json = o.config_json.empty() ? "{}" : o.config_json;
    a.metrics_json = nlohmann::json{{"test_accuracy", *r.accuracy[t][t]},
                                    {"best_val_accuracy", rec.best_val_accuracy},
                                    {"epochs", rec.epochs},
                                    {"best_epoch", rec.best_epoch},
                                    {"train_images", rec.train_images},
                                    {"test_images", rec.test_images},
                                    {"task_index", t},
                                    {"run", o.out_dir},
                                    {"run_id", r.run_id}}
                         .dump();
    a.tensors = method.task_state(static_cast<int64_t>(t));
    if (inference.has_statistics(t)) {
      const train::TaskStatistics& st = inference.statistics(t);
      a.mapper = st.to_tensors();
      a.mapper_json = nlohmann::json{{"kind", "gaussian"},
                                     {"features", "the frozen backbone's pooled features"},
                                     {"classes", st.classes()},
                                     {"feature_dim", st.feature_dim()},
                                     {"images", st.class_count.sum().item<int64_t>()}}
                          .dump();
    }
    const store::TaskEntry e = adapters->put(std::move(a), /*replace=*/true);
    r.tasks[t].adapter_file = "adapters/" + e.file;
  };

  std::vector<data::PreparedSplit> tests;
  if (previous) {
    std::vector<train::TaskInfo> done;
    std::vector<std::string> names;
    for (size_t t = 0; t < first_task; ++t) {
      done.push_back(info_of(t));
      names.push_back("'" + sequence[t].name + "'");
    }
    method.resume(done, previous->method);
    previous->method.clear();
    if (first_task == sequence.size()) {
      log::info("resuming run ", r.run_id, " in ", o.out_dir, ": all ", first_task, " tasks were learned already");
    } else if (first_task == 0) {
      log::info("resuming run ", r.run_id, " in ", o.out_dir, ": no task finished yet; going on with task 1 '",
                sequence[0].name, "'");
    } else {
      log::info("resuming run ", r.run_id, " in ", o.out_dir, ": ", first_task, " learned task",
                first_task == 1 ? "" : "s", " kept (", join_first(names), "); going on with task ", first_task + 1,
                " '", sequence[first_task].name, "'");
    }
    // The test splits of learned tasks, for the evaluations after every later task;
    // a learned task the store lost since (`clr tasks rm`) is stored again. The task
    // mapper's statistics of learned tasks come from the store, or again from their
    // training images.
    for (size_t t = 0; t < first_task; ++t) {
      if (first_task < sequence.size()) {
        tests.push_back(data::prepare_split(sequence[t].test, sequence[t].origin + " (test)", o.prepare));
      }
      if (inference.gaussian() && first_task < sequence.size()) {
        if (adapters && adapters->find(sequence[t].name) != nullptr) {
          try {
            const store::Adapter a = adapters->load(sequence[t].name);
            if (!a.mapper.empty()) inference.set_statistics(t, train::TaskStatistics::from_tensors(a.mapper, a.task));
          } catch (const Error& e) {
            log::warn("task '", sequence[t].name, "': its stored statistics cannot be used (", e.what(), ")");
          }
        }
        if (!inference.has_statistics(t)) {
          const data::PreparedSplit train =
              data::prepare_split(sequence[t].train, sequence[t].origin + " (train)", o.prepare);
          inference.fit(t, train, static_cast<int64_t>(sequence[t].classes.size()));
        }
      }
      if (adapters && adapters->find(sequence[t].name) == nullptr) {
        log::warn("task '", sequence[t].name, "' is missing from ", adapters->dir(), ": storing it again");
        store_task(t);
      }
    }
  }
  const int64_t method_bytes_start = previous ? total_bytes(method.method_state()) : 0;
  int64_t method_bytes_before = method_bytes_start;

  // The epoch checkpoint's cost is kept under kCheckpointShare of the task's training
  // time: every epoch where epochs are long against the write (CLR's few kilobytes
  // always), less often for a whole network on a small task, so that a stop loses at most
  // the epoch in flight, or a few epochs that took no longer together than
  // ~1/kCheckpointShare writes.
  constexpr double kCheckpointShare = 0.05;
  // Tasks learned together (train.parallel_tasks, CLR variants): their training and
  // validation splits and what train_parallel gave each, kept until the task's turn.
  std::map<size_t, data::PreparedSplit> early_train, early_val;
  std::map<size_t, std::pair<TensorMap, train::TaskTrainReport>> learned;
  // TensorBoard scalars (--tensorboard): each task's epochs (loss, val accuracy, lr;
  // step = the epoch), and after each task the test accuracies and averages (step = the
  // tasks learned).
  std::unique_ptr<TensorBoardWriter> board;
  if (!o.tensorboard_dir.empty()) board = std::make_unique<TensorBoardWriter>(o.tensorboard_dir);
  std::map<size_t, int64_t> board_written;  // epochs written per task
  auto board_epochs = [&](size_t t, const train::TaskTrainReport& rep) {
    if (!board) return;
    const std::string& name = sequence[t].name;
    const auto n = std::min({rep.epochs_run, static_cast<int64_t>(rep.epoch_loss.size()),
                             static_cast<int64_t>(rep.epoch_val_accuracy.size())});
    for (int64_t e = board_written[t]; e < n; ++e) {
      board->scalar("loss/" + name, rep.epoch_loss[static_cast<size_t>(e)], e + 1);
      board->scalar("val_accuracy/" + name, rep.epoch_val_accuracy[static_cast<size_t>(e)], e + 1);
      board->scalar("lr/" + name, train::lr_at(o.train, e), e + 1);
    }
    board_written[t] = std::max(board_written[t], n);
  };
  for (size_t t = first_task; t < sequence.size(); ++t) {
    const data::TaskData& task = sequence[t];
    const size_t chunk_end = std::min(sequence.size(), t + parallel);
    if (parallel > 1 && learned.count(t) == 0 && chunk_end - t > 1) {
      std::vector<train::ParallelTask> chunk;
      for (size_t u = t; u < chunk_end; ++u) {
        describe_task(u);
        early_train[u] = data::prepare_split(sequence[u].train, sequence[u].origin + " (train)", o.prepare);
        early_val[u] = data::prepare_split(sequence[u].val, sequence[u].origin + " (val)", o.prepare);
        train::ParallelTask p;
        p.info = info_of(u);
        p.train = &early_train[u];
        p.val = &early_val[u];
        torch::manual_seed(o.train.seed * 1000003ull + u);  // the head this task would start from alone
        p.initial_state = clr_method->net()->new_task_state(p.info.num_classes);
        chunk.push_back(std::move(p));
      }
      log::info("learning tasks ", t + 1, "-", chunk_end, " in parallel");
      // Checkpoints as for a task learned alone (below): each task's progress at its
      // latest epoch end, written while the writes cost under kCheckpointShare of the time.
      train::ParallelResume hooks;
      if (previous && t == first_task) {
        try {
          hooks.from = read_parallel_checkpoint(o.out_dir, r.run_id, static_cast<int64_t>(t), chunk.size());
        } catch (const FormatError& e) {
          log::warn("tasks ", t + 1, "-", chunk_end, " start again from their first epoch: ", e.what());
        }
      }
      double write_seconds = 0, last_write = 0;
      hooks.on_epoch_end = [&](const std::vector<std::optional<train::TaskProgress>>& progress, double seconds) {
        const bool stop = o.stop && o.stop();
        if (!stop && write_seconds + last_write > kCheckpointShare * seconds) return;
        const auto w0 = std::chrono::steady_clock::now();
        write_parallel_checkpoint(o.out_dir, r.run_id, static_cast<int64_t>(t), progress);
        last_write = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
        write_seconds += last_write;
        CLR_CHECK(!stop, StoppedError, "stopped while learning tasks ", t + 1, "-", chunk_end, " in parallel (", t,
                  " of ", sequence.size(), " tasks learned); the same command goes on from there");
      };
      train::ParallelResult res = train::train_parallel(clr_method->net(), chunk, o.train, hooks);
      for (size_t u = t; u < chunk_end; ++u) {
        learned[u] = {std::move(res.states[u - t]), res.reports[u - t]};
      }
    }
    const bool early = learned.count(t) != 0;
    if (!early) describe_task(t);
    const data::PreparedSplit train =
        early ? std::move(early_train.at(t)) : data::prepare_split(task.train, task.origin + " (train)", o.prepare);
    const data::PreparedSplit val =
        early ? std::move(early_val.at(t)) : data::prepare_split(task.val, task.origin + " (val)", o.prepare);
    early_train.erase(t);
    early_val.erase(t);
    tests.push_back(data::prepare_split(task.test, task.origin + " (test)", o.prepare));
    const double decode = train.decode_seconds + val.decode_seconds + tests.back().decode_seconds;
    const int64_t decoded = train.size() + val.size() + tests.back().size();
    log::info("  decoded and resized ", decoded, " images in ", decode, " s (", decode > 0 ? decoded / decode : 0,
              " img/s)");

    const train::TaskInfo info = info_of(t);
    train::TaskTrainReport rep;
    if (early) {
      rep = learned.at(t).second;
      clr_method->add_learned_task(info, learned.at(t).first);
      learned.erase(t);
    } else {
      torch::manual_seed(o.train.seed * 1000003ull + t);
      method.begin_task(info);
      train::TaskResume hooks;
      std::optional<train::TaskProgress> progress;
      double write_seconds = 0, last_write = 0;
      if (method.resumable() && previous && t == first_task) {
        try {
          progress = read_task_checkpoint(o.out_dir, r.run_id, static_cast<int64_t>(t));
        } catch (const FormatError& e) {
          log::warn("task '", task.name, "' starts again from its first epoch: ", e.what());
        }
      }
      hooks.from = progress ? &*progress : nullptr;
      if (board || method.resumable()) {
        hooks.on_epoch_end = [&](const train::TaskTrainReport& so_far,
                                 const std::function<train::TaskProgress()>& progress) {
          board_epochs(t, so_far);
          if (!method.resumable()) return;
          const bool stop = o.stop && o.stop();
          if (!stop && write_seconds + last_write > kCheckpointShare * so_far.train_seconds) return;
          const auto w0 = std::chrono::steady_clock::now();  // the copy out counts with the write
          write_task_checkpoint(o.out_dir, r.run_id, static_cast<int64_t>(t), progress());
          last_write = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
          write_seconds += last_write;
          CLR_CHECK(!stop, StoppedError, "stopped after epoch ", so_far.epochs_run, " of task ", t + 1, " '",
                    task.name, "' (", t, " of ", sequence.size(), " tasks learned); the same command goes on from there");
        };
      }
      rep = train::train_task(method, info, train, val, o.train, hooks);
    }
    train::TaskEnd end;
    end.train = &train;
    end.batch_size = o.train.batch_size * 2;
    end.crop = o.train.crop;
    const auto end_start = std::chrono::steady_clock::now();
    if (!early) method.end_task(end);  // a task learned in parallel was appended above
    if (inference.gaussian()) inference.fit(t, train, info.num_classes);
    const double end_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - end_start).count();
    const TensorMap method_state = method.method_state();
    const int64_t method_bytes = total_bytes(method_state);
    if (!method_state.empty()) {
      write_safetensors(o.out_dir + "/method_state.safetensors", method_state,
                        {{"format", "clr.method_state/0"}, {"method", method.name()}, {"after_task", task.name}});
    }

    TaskRecord rec;
    rec.name = task.name;
    rec.classes = info.num_classes;
    rec.train_images = train.size();
    rec.val_images = val.size();
    rec.test_images = tests.back().size();
    rec.skipped_images = static_cast<int64_t>(train.skipped.size() + val.skipped.size() + tests.back().skipped.size());
    rec.test_is_val = task.test_is_val;
    rec.extra_params = method.extra_params(info.index);
    rec.stored_bytes = total_bytes(method.task_state(info.index)) + std::max<int64_t>(0, method_bytes - method_bytes_before);
    method_bytes_before = method_bytes;
    rec.train_seconds = rep.train_seconds;
    rec.end_task_seconds = end_seconds;
    rec.train_images_per_second = rep.images_per_second;
    rec.decode_seconds = decode;
    rec.train_decode_seconds = train.decode_seconds;
    rec.epoch_seconds = rep.epoch_seconds;
    rec.epochs = rep.epochs_run;
    rec.best_epoch = rep.best_epoch;
    rec.best_val_accuracy = rep.best_val_accuracy;
    r.tasks.push_back(rec);

    std::vector<std::optional<double>> row(sequence.size());
    if (inference.active()) {
      inference.evaluate(t, tests, row, r);
    } else {
      for (size_t j = 0; j <= t; ++j) {
        row[j] = train::evaluate(method, static_cast<int64_t>(j), tests[j], o.train.batch_size * 2, o.train.crop,
                                 numerics);
      }
    }
    r.accuracy.push_back(row);
    if (board) {
      board_epochs(t, rep);
      const auto step = static_cast<int64_t>(t + 1);
      for (size_t j = 0; j <= t; ++j) {
        if (row[j]) board->scalar("test_accuracy/" + sequence[j].name, *row[j], step);
      }
      board->scalar("average_accuracy", average_accuracy(r.accuracy), step);
      for (const auto& ti : r.task_inference) {
        board->scalar("task_id_accuracy/" + ti.method, average_accuracy(ti.task_accuracy), step);
        board->scalar("agnostic_accuracy/" + ti.method, average_accuracy(ti.agnostic_accuracy), step);
      }
    }

    if (adapters) {
      store_task(t);
    } else {
      // Replay trains old heads: their saved states are rewritten with the new ones.
      for (size_t j = method.changes_old_task_states() ? 0 : t; j <= t; ++j) {
        nlohmann::json classes = sequence[j].classes;
        r.tasks[j].adapter_file = "task_states/" + safe_file_name(sequence[j].name, j) + ".safetensors";
        write_safetensors(o.out_dir + "/" + r.tasks[j].adapter_file, method.task_state(static_cast<int64_t>(j)),
                          {{"format", "clr.task_state/0"},
                           {"task", sequence[j].name},
                           {"classes", classes.dump()},
                           {"method", method.name()},
                           {"backbone_arch", o.backbone_arch},
                           {"initial_backbone_fingerprint", method.backbone_fingerprint()},
                           {"after_task", std::to_string(t + 1)},
                           {"created", runtime::utc_timestamp()}});
      }
    }
    log::info("  task ", t + 1, " done: ", rep.epochs_run, " epochs (best ", rep.best_epoch, ", val ",
              100 * rep.best_val_accuracy, "%), test ", 100 * *row[t], "%, ", rep.images_per_second,
              " train img/s; average accuracy so far ", 100 * average_accuracy(r.accuracy), "%");
    for (const auto& ti : r.task_inference) {
      log::info("  without a task oracle (", ti.method, "): task-ID accuracy ", 100 * average_accuracy(ti.task_accuracy),
                "%, average accuracy ", 100 * average_accuracy(ti.agnostic_accuracy), "%");
    }
    r.complete = t + 1 == sequence.size();
    write_results(r, o.out_dir);
    if (method.resumable()) {
      // Only now is the task part of what a resumed run starts from.
      RunCheckpoint c{r.run_id, replaces, o.config_json, identity, static_cast<int64_t>(t + 1), results_json(r),
                      method.checkpoint()};
      c.fixed_tasks = method.changes_old_task_states() ? 0 : c.tasks_done;
      write_run_checkpoint(o.out_dir, c);
      remove_task_checkpoint(o.out_dir);
    }
    if (o.on_task) o.on_task(r);
    CLR_CHECK(r.complete || !o.stop || !o.stop(), StoppedError, "stopped after task ", t + 1, " '", task.name, "' (",
              t + 1, " of ", sequence.size(), " tasks learned); the same command goes on from there");
  }
  r.complete = true;
  write_results(r, o.out_dir);
  return r;
}

}  // namespace clr::eval
