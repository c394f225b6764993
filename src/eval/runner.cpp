#include "clr/eval/runner.h"

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
#include "clr/store/store.h"
#include "clr/train/clr_method.h"
#include "clr/train/parallel.h"

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

// A fresh adapter store in OUT/adapters for this run. What an earlier run left there
// (a store, or the first runner's loose adapter files) is replaced; a directory
// holding anything else is refused rather than deleted.
store::Store fresh_store(const std::string& dir, const store::BackboneRef& ref) {
  if (directory_exists(dir)) {
    for (const auto& name : list_directory(dir)) {
      const bool ours = name == "manifest.json" || name == ".lock" || name == "tasks" ||
                        starts_with(name, "manifest.json.tmp.") || ends_with(name, ".safetensors");
      CLR_CHECK(ours, ConfigError, "'", dir, "' holds '", name, "', which is not part of an adapter store; move it "
                "or choose another --out");
    }
    // Everything but the lock file, which another process may hold.
    for (const auto& name : list_directory(dir)) {
      if (name == ".lock") continue;
      CLR_CHECK(remove_tree(dir + "/" + name), NotFoundError, "cannot remove the previous run's '", dir, "/", name, "'");
    }
  }
  return store::Store::create(dir, ref);
}

void write_results(const Results& r, const std::string& out) {
  write_file_atomic(out + "/results.json", results_json(r));
  write_file_atomic(out + "/results.csv", results_csv(r));
}

}  // namespace

Results run_sequence(train::Method& method, data::Sequence sequence, const RunOptions& o) {
  o.train.validate();
  const train::Numerics numerics = train::numerics_for(o.train, method.device());  // fp16 on a CPU: an error now
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
  make_directories(o.out_dir);
  log::set_file(o.out_dir + "/log.txt");
  struct CloseLog {
    ~CloseLog() { log::set_file(""); }
  } close_log;

  Results r;
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
  log::info("run: ", sequence.size(), " tasks, method ", r.variant, ", backbone ", r.backbone_arch, " (",
            r.backbone_source, ", ", r.backbone_fingerprint.substr(0, 19), "...), device ", r.device, " (", r.precision,
            numerics.channels_last ? ", channels-last" : "", "), out ",
            o.out_dir);

  std::unique_ptr<store::Store> adapters;
  if (!variant.empty()) {
    store::BackboneRef ref;
    ref.arch = o.backbone_arch;
    ref.small_stem = o.backbone_small_stem;
    ref.fingerprint = r.backbone_fingerprint;
    ref.params = r.backbone_params;
    ref.source = absolute_path(o.backbone_source);
    adapters = std::make_unique<store::Store>(fresh_store(o.out_dir + "/adapters", ref));
  } else {
    make_directories(o.out_dir + "/task_states");
  }

  // Tasks learned together (train.parallel_tasks, CLR variants): their training and
  // validation splits and what train_parallel gave each, kept until the task's turn.
  std::map<size_t, data::PreparedSplit> early_train, early_val;
  std::map<size_t, std::pair<TensorMap, train::TaskTrainReport>> learned;
  auto describe_task = [&](size_t t) {
    const data::TaskData& task = sequence[t];
    log::info("task ", t + 1, "/", sequence.size(), " '", task.name, "': ", task.classes.size(), " classes, ",
              task.train.size(), " train / ", task.val.size(), " val / ", task.test.size(), " test images");
  };

  std::vector<data::PreparedSplit> tests;
  int64_t method_bytes_before = 0;
  for (size_t t = 0; t < sequence.size(); ++t) {
    const data::TaskData& task = sequence[t];
    const size_t chunk_end = std::min(sequence.size(), t + parallel);
    if (parallel > 1 && t % parallel == 0 && chunk_end - t > 1) {
      std::vector<train::ParallelTask> chunk;
      for (size_t u = t; u < chunk_end; ++u) {
        describe_task(u);
        early_train[u] = data::prepare_split(sequence[u].train, sequence[u].origin + " (train)", o.prepare);
        early_val[u] = data::prepare_split(sequence[u].val, sequence[u].origin + " (val)", o.prepare);
        train::ParallelTask p;
        p.info = {static_cast<int64_t>(u), sequence[u].name, static_cast<int64_t>(sequence[u].classes.size())};
        p.train = &early_train[u];
        p.val = &early_val[u];
        torch::manual_seed(o.train.seed * 1000003ull + u);  // the head this task would start from alone
        p.initial_state = clr_method->net()->new_task_state(p.info.num_classes);
        chunk.push_back(std::move(p));
      }
      log::info("learning tasks ", t + 1, "-", chunk_end, " in parallel");
      train::ParallelResult res = train::train_parallel(clr_method->net(), chunk, o.train);
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

    train::TaskInfo info{static_cast<int64_t>(t), task.name, static_cast<int64_t>(task.classes.size())};
    train::TaskTrainReport rep;
    if (early) {
      rep = learned.at(t).second;
      clr_method->add_learned_task(info, learned.at(t).first);
      learned.erase(t);
    } else {
      torch::manual_seed(o.train.seed * 1000003ull + t);
      method.begin_task(info);
      rep = train::train_task(method, info, train, val, o.train);
    }
    train::TaskEnd end;
    end.train = &train;
    end.batch_size = o.train.batch_size * 2;
    end.crop = o.train.crop;
    const auto end_start = std::chrono::steady_clock::now();
    if (!early) method.end_task(end);  // a task learned in parallel was appended above
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
    for (size_t j = 0; j <= t; ++j) {
      row[j] = train::evaluate(method, static_cast<int64_t>(j), tests[j], o.train.batch_size * 2, o.train.crop, numerics);
    }
    r.accuracy.push_back(row);

    if (adapters) {
      store::Adapter a;
      a.task = task.name;
      a.variant = variant;
      a.kernel_size = method.store_kernel_size();
      a.classes = task.classes;
      a.preprocess.resize = o.prepare.size;
      a.preprocess.crop = o.train.crop;
      a.backbone = adapters->backbone();
      a.training_json = o.config_json.empty() ? "{}" : o.config_json;
      a.metrics_json = nlohmann::json{{"test_accuracy", *row[t]},
                                      {"best_val_accuracy", rep.best_val_accuracy},
                                      {"epochs", rep.epochs_run},
                                      {"best_epoch", rep.best_epoch},
                                      {"train_images", train.size()},
                                      {"test_images", tests.back().size()},
                                      {"task_index", t},
                                      {"run", o.out_dir}}
                           .dump();
      a.tensors = method.task_state(static_cast<int64_t>(t));
      const store::TaskEntry e = adapters->put(std::move(a), /*replace=*/true);
      r.tasks[t].adapter_file = "adapters/" + e.file;
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
    write_results(r, o.out_dir);
  }
  r.complete = true;
  write_results(r, o.out_dir);
  return r;
}

}  // namespace clr::eval
