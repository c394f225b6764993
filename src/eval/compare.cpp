#include "clr/eval/compare.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "clr/adapters/reprogram.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/log.h"
#include "clr/core/path.h"
#include "clr/core/strings.h"
#include "clr/eval/checkpoint.h"

namespace clr::eval {

std::vector<CompareRow> compare_rows(const std::vector<Results>& runs, const std::vector<std::string>& run_dirs) {
  CLR_ASSERT(runs.size() == run_dirs.size(), "one directory per run");
  std::vector<CompareRow> rows;
  std::optional<double> sgd_seconds;
  for (size_t i = 0; i < runs.size(); ++i) {
    const Results& r = runs[i];
    CompareRow row;
    row.method = r.method;
    row.run_dir = run_dirs[i];
    row.tasks = static_cast<int64_t>(r.tasks.size());
    if (!r.accuracy.empty()) {
      row.average_accuracy = average_accuracy(r.accuracy);
      row.bwt = backward_transfer(r.accuracy);
      row.forgetting = forgetting(r.accuracy);
      row.first_task_curve = first_task_curve(r.accuracy);
      row.first_task_final = row.first_task_curve.back();
      for (const auto& ti : r.task_inference) {
        if (ti.task_accuracy.size() != r.accuracy.size()) continue;
        row.no_oracle.push_back({ti.method, average_accuracy(ti.task_accuracy), average_accuracy(ti.agnostic_accuracy)});
      }
    }
    for (const auto& t : r.tasks) {
      row.extra_params_per_task += static_cast<double>(t.extra_params);
      row.stored_bytes_total += t.stored_bytes;
      row.train_seconds += t.train_seconds + t.end_task_seconds;
    }
    if (!r.tasks.empty()) {
      const auto n = static_cast<double>(r.tasks.size());
      row.extra_params_per_task /= n;
      row.stored_bytes_per_task = static_cast<double>(row.stored_bytes_total) / n;
      row.extra_params_fraction =
          r.backbone_params > 0 ? row.extra_params_per_task / static_cast<double>(r.backbone_params) : 0;
    }
    if (r.method == "sgd") sgd_seconds = row.train_seconds;
    rows.push_back(row);
  }
  if (sgd_seconds && *sgd_seconds > 0) {
    for (auto& row : rows) row.train_time_vs_sgd = row.train_seconds / *sgd_seconds;
  }
  return rows;
}

std::string compare_json(const std::vector<CompareRow>& rows, const std::string& config_json) {
  using json = nlohmann::ordered_json;
  json methods = json::array();
  for (const auto& r : rows) {
    methods.push_back({{"method", r.method},
                       {"run_dir", r.run_dir},
                       {"tasks", r.tasks},
                       {"average_accuracy", r.average_accuracy},
                       {"bwt", r.bwt},
                       {"forgetting", r.forgetting},
                       {"first_task_final", r.first_task_final},
                       {"first_task_curve", r.first_task_curve},
                       {"extra_params_per_task", r.extra_params_per_task},
                       {"extra_params_fraction", r.extra_params_fraction},
                       {"stored_bytes_per_task", r.stored_bytes_per_task},
                       {"stored_bytes_total", r.stored_bytes_total},
                       {"train_seconds", r.train_seconds},
                       {"train_time_vs_sgd", r.train_time_vs_sgd ? json(*r.train_time_vs_sgd) : json(nullptr)}});
    json no_oracle = json::object();
    for (const auto& n : r.no_oracle) {
      no_oracle[n.method] = {{"average_task_accuracy", n.task_accuracy}, {"average_agnostic_accuracy", n.agnostic_accuracy}};
    }
    methods.back()["task_inference"] = no_oracle;
  }
  json j = {{"schema", "clr.compare/1"}, {"methods", methods}};
  if (!config_json.empty()) j["config"] = json::parse(config_json);
  return j.dump(2) + "\n";
}

std::string compare_csv(const std::vector<CompareRow>& rows) {
  std::ostringstream os;
  os << "method,tasks,average_accuracy,bwt,forgetting,first_task_final,extra_params_per_task,extra_params_fraction,"
        "stored_bytes_per_task,stored_bytes_total,train_seconds,train_time_vs_sgd\n";
  char buf[512];
  for (const auto& r : rows) {
    std::snprintf(buf, sizeof buf, "%s,%lld,%.6f,%.6f,%.6f,%.6f,%.1f,%.8f,%.1f,%lld,%.3f,", r.method.c_str(),
                  static_cast<long long>(r.tasks), r.average_accuracy, r.bwt, r.forgetting, r.first_task_final,
                  r.extra_params_per_task, r.extra_params_fraction, r.stored_bytes_per_task,
                  static_cast<long long>(r.stored_bytes_total), r.train_seconds);
    os << buf;
    if (r.train_time_vs_sgd) {
      std::snprintf(buf, sizeof buf, "%.4f", *r.train_time_vs_sgd);
      os << buf;
    }
    os << '\n';
  }
  return os.str();
}

std::string format_compare(const std::vector<CompareRow>& rows) {
  std::ostringstream os;
  char buf[256];
  // The first task-inference method the runs share, as one more column.
  std::string inference;
  for (const auto& r : rows) {
    if (!r.no_oracle.empty()) {
      inference = r.no_oracle.front().method;
      break;
    }
  }
  std::snprintf(buf, sizeof buf, "%-15s %8s %8s %10s %8s %14s %12s %9s", "method", "avg acc", "BWT", "forgetting",
                "task 1", "extra params", "stored/task", "time/sgd");
  os << buf << (inference.empty() ? "" : "  no oracle") << '\n';
  for (const auto& r : rows) {
    std::string ratio = "-";
    if (r.train_time_vs_sgd) {
      std::snprintf(buf, sizeof buf, "%.2fx", *r.train_time_vs_sgd);
      ratio = buf;
    }
    std::snprintf(buf, sizeof buf, "%-15s %7.2f%% %+7.2f %9.2f%% %7.2f%% %13.3f%% %12s %9s", r.method.c_str(),
                  100 * r.average_accuracy, 100 * r.bwt, 100 * r.forgetting, 100 * r.first_task_final,
                  100 * r.extra_params_fraction, human_bytes(r.stored_bytes_per_task).c_str(), ratio.c_str());
    os << buf;
    if (!inference.empty()) {
      std::string cell = "-";
      for (const auto& n : r.no_oracle) {
        if (n.method != inference) continue;
        std::snprintf(buf, sizeof buf, "%10.2f%%", 100 * n.agnostic_accuracy);
        cell = buf;
      }
      os << ' ' << cell;
    }
    os << '\n';
  }
  os << "avg acc: mean over tasks after the last one; BWT and forgetting in points; task 1: accuracy on the first\n"
        "task after the last; extra params: mean per task, % of the backbone; stored/task: mean bytes kept per task\n"
        "beyond the shared backbone (heads, adapters, Fisher, buffers); time/sgd: training time relative to sgd.\n";
  if (!inference.empty()) {
    os << "no oracle: average accuracy when the task of each test image is found by " << inference
       << " (task inference,\ndocs/METHODS.md) instead of given.\n";
  }
  return os.str();
}

std::optional<Results> reusable_run(const RunConfig& c, const data::Sequence& seq) {
  const std::string path = c.run.out + "/results.json";
  if (!file_exists(path)) return std::nullopt;
  Results r;
  try {
    r = read_results(path);
  } catch (const Error& e) {
    log::warn("compare: not reusing ", path, ": ", e.what());
    return std::nullopt;
  }
  auto comparable = [](const std::string& text) {  // key order does not matter
    nlohmann::json j = nlohmann::json::parse(text);
    if (j.contains("run")) {
      j["run"].erase("out");
      j["run"].erase("method");
    }
    return j;
  };
  std::string why;
  if (!r.complete) {
    why = "the run did not finish";
  } else if (r.method != c.run.method) {
    why = "it is a run of '" + r.method + "'";
  } else if (r.config_json.empty() || comparable(r.config_json) != comparable(settings::Json(c).dump())) {
    why = "it was made with another configuration";
  } else if (r.tasks.size() != seq.size()) {
    why = detail::concat("it has ", r.tasks.size(), " tasks, the sequence ", seq.size());
  } else {
    for (size_t i = 0; i < seq.size() && why.empty(); ++i) {
      if (r.tasks[i].name != seq[i].name || r.tasks[i].classes != static_cast<int64_t>(seq[i].classes.size())) {
        why = detail::concat("its task ", i + 1, " is '", r.tasks[i].name, "' with ", r.tasks[i].classes,
                             " classes, the sequence's '", seq[i].name, "' with ", seq[i].classes.size());
      }
    }
  }
  if (!why.empty()) {
    log::info("compare: running '", c.run.method, "' again (", path, ": ", why, ")");
    return std::nullopt;
  }
  log::info("compare: reusing the finished run in ", c.run.out);
  return r;
}

Results first_tasks(const Results& run, size_t k) {
  CLR_CHECK(k >= 1 && k <= run.tasks.size() && k <= run.accuracy.size(), ConfigError, "the run of '", run.method,
            "' finished ", run.tasks.size(), " tasks, not ", k);
  Results r = run;
  r.tasks.resize(k);
  r.accuracy.resize(k);
  for (auto& row : r.accuracy) row.resize(k);
  r.complete = true;
  return r;
}

std::vector<CompareRow> tabulate_runs(const TabulateOptions& o) {
  CLR_CHECK(!o.out.empty(), ConfigError, "--out DIR is required");
  CLR_CHECK(!o.runs.empty(), ConfigError, "no runs to tabulate");
  CLR_CHECK(o.tasks >= 0, ConfigError, "--tasks must be >= 0 (0: the fewest any run finished), got ", o.tasks);
  std::vector<Results> runs;
  std::vector<std::string> names;
  size_t fewest = SIZE_MAX;
  for (const auto& dir : o.runs) {
    const std::string name = base_name(strip_trailing_slashes(dir));
    CLR_CHECK(std::find(names.begin(), names.end(), name) == names.end(), ConfigError, "two runs are named '", name,
              "' (", dir, "): the tabulated runs are stored by directory name");
    runs.push_back(read_results(dir + "/results.json"));
    names.push_back(name);
    fewest = std::min(fewest, std::min(runs.back().tasks.size(), runs.back().accuracy.size()));
    CLR_CHECK(fewest > 0, ConfigError, "the run in ", dir, " has not finished a task");
  }
  const size_t k = o.tasks > 0 ? static_cast<size_t>(o.tasks) : fewest;
  const Results& first = runs.front();
  for (size_t i = 0; i < runs.size(); ++i) {
    runs[i] = first_tasks(runs[i], k);
    for (size_t t = 0; t < k; ++t) {
      const TaskRecord& a = runs[i].tasks[t];
      const TaskRecord& b = first.tasks[t];
      CLR_CHECK(a.name == b.name && a.classes == b.classes, ConfigError, "the run in ", o.runs[i], " learned '", a.name,
                "' (", a.classes, " classes) as task ", t + 1, ", the run in ", o.runs[0], " '", b.name, "' (",
                b.classes, " classes)");
    }
    if (runs[i].backbone_fingerprint != first.backbone_fingerprint || runs[i].seed != first.seed) {
      log::warn("tabulate: ", o.runs[i], " started from another backbone or seed than ", o.runs[0]);
    }
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    CLR_CHECK(!same_file(o.runs[i], o.out + "/" + names[i]), ConfigError, "--out ", o.out,
              " would overwrite the run in ", o.runs[i], " with its cut copy; choose another directory");
  }
  make_directories(o.out);
  for (size_t i = 0; i < runs.size(); ++i) {
    make_directories(o.out + "/" + names[i]);
    write_file_atomic(o.out + "/" + names[i] + "/results.json", results_json(runs[i]));
  }
  nlohmann::json shown = {{"tabulated", o.runs}, {"first_tasks", k}};
  // Rows are labelled by run name (clr-random, sgd-b, ...); time/sgd is against the run named sgd.
  for (size_t i = 0; i < runs.size(); ++i) runs[i].method = names[i];
  const auto rows = compare_rows(runs, names);
  write_file_atomic(o.out + "/compare.json", compare_json(rows, shown.dump()));
  write_file_atomic(o.out + "/compare.csv", compare_csv(rows));
  log::info("tabulate: ", runs.size(), " runs on their first ", k, " tasks -> ", o.out);
  return rows;
}

std::vector<CompareRow> compare_methods(const RunConfig& base, const data::Sequence& seq, const CompareOptions& o) {
  CLR_CHECK(!o.out.empty(), ConfigError, "--out DIR is required");
  CLR_CHECK(!o.methods.empty(), ConfigError, "no methods to compare");
  make_directories(o.out);
  RunConfig shown = base;  // the configuration compare.json records
  shown.run.out = o.out;
  shown.run.method.clear();
  for (const auto& m : o.methods) shown.run.method += (shown.run.method.empty() ? "" : ",") + m;
  const std::string shown_json = settings::Json(shown).dump();
  std::vector<Results> runs;
  std::vector<std::string> dirs;
  for (size_t i = 0; i < o.methods.size(); ++i) {
    RunConfig c = base;
    c.run.method = o.methods[i];
    c.run.out = o.out + "/" + o.methods[i];
    // Tasks learned in parallel: the CLR variants only; the others share what they train.
    const auto variants = adapters::variant_names();
    if (std::find(variants.begin(), variants.end(), c.run.method) == variants.end()) c.train.parallel_tasks = 1;
    log::info("compare: method ", i + 1, "/", o.methods.size(), " '", c.run.method, "' -> ", c.run.out);
    std::optional<Results> previous = o.reuse ? reusable_run(c, seq) : std::nullopt;
    bool restart = o.restart;
    if (o.reuse && !previous && !restart) {
      // --reuse runs again what was made otherwise (a stopped run of the same
      // configuration goes on instead).
      try {
        const auto checkpoint = read_run_checkpoint(c.run.out);
        restart = checkpoint && !configuration_difference(checkpoint->config_json, settings::Json(c).dump()).empty();
      } catch (const FormatError&) {
        restart = true;
      }
    }
    runs.push_back(previous ? *previous : run(c, seq, restart));
    dirs.push_back(o.methods[i]);
    const auto rows = compare_rows(runs, dirs);
    write_file_atomic(o.out + "/compare.json", compare_json(rows, shown_json));
    write_file_atomic(o.out + "/compare.csv", compare_csv(rows));
  }
  return compare_rows(runs, dirs);
}

}  // namespace clr::eval
