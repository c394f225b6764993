#include "clr/eval/results.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "clr/core/json_numbers.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"

namespace clr::eval {
namespace {

double at(const AccuracyMatrix& r, size_t i, size_t j) {
  CLR_ASSERT(i < r.size() && j < r[i].size() && r[i][j].has_value(), "accuracy R[", i, "][", j, "] missing");
  return *r[i][j];
}

}  // namespace

double average_accuracy(const AccuracyMatrix& r) {
  if (r.empty()) return 0;
  const size_t t = r.size() - 1;
  double s = 0;
  for (size_t j = 0; j <= t; ++j) s += at(r, t, j);
  return s / static_cast<double>(t + 1);
}

double backward_transfer(const AccuracyMatrix& r) {
  if (r.size() < 2) return 0;
  const size_t t = r.size() - 1;
  double s = 0;
  for (size_t j = 0; j < t; ++j) s += at(r, t, j) - at(r, j, j);
  return s / static_cast<double>(t);
}

double forgetting(const AccuracyMatrix& r) {
  if (r.size() < 2) return 0;
  const size_t t = r.size() - 1;
  double s = 0;
  for (size_t j = 0; j < t; ++j) {
    double best = at(r, j, j);
    for (size_t i = j; i < t; ++i) best = std::max(best, at(r, i, j));
    s += best - at(r, t, j);
  }
  return s / static_cast<double>(t);
}

std::vector<double> first_task_curve(const AccuracyMatrix& r) {
  std::vector<double> c;
  for (size_t i = 0; i < r.size(); ++i) c.push_back(at(r, i, 0));
  return c;
}

std::string results_json(const Results& r) {
  using json = nlohmann::ordered_json;
  json tasks = json::array();
  json extra = json::array(), fraction = json::array(), seconds = json::array(), bytes = json::array();
  for (const auto& t : r.tasks) {
    tasks.push_back({{"name", t.name},
                     {"classes", t.classes},
                     {"train_images", t.train_images},
                     {"val_images", t.val_images},
                     {"test_images", t.test_images},
                     {"skipped_images", t.skipped_images},
                     {"test_is_val", t.test_is_val},
                     {"epochs", t.epochs},
                     {"best_epoch", t.best_epoch},
                     {"best_val_accuracy", t.best_val_accuracy},
                     {"train_images_per_second", t.train_images_per_second},
                     {"end_task_seconds", t.end_task_seconds},
                     {"decode_seconds", t.decode_seconds},
                     {"train_decode_seconds", t.train_decode_seconds},
                     {"epoch_seconds", t.epoch_seconds},
                     {"adapter", t.adapter_file}});
    extra.push_back(t.extra_params);
    fraction.push_back(r.backbone_params > 0 ? static_cast<double>(t.extra_params) / r.backbone_params : 0.0);
    seconds.push_back(t.train_seconds);
    bytes.push_back(t.stored_bytes);
  }
  auto matrix_json = [&](const AccuracyMatrix& m) {
    json out = json::array();
    for (const auto& row : m) {
      json jr = json::array();
      for (size_t j = 0; j < r.tasks.size(); ++j) {
        if (j < row.size() && row[j].has_value()) jr.push_back(*row[j]);
        else jr.push_back(nullptr);
      }
      out.push_back(jr);
    }
    return out;
  };
  const json matrix = matrix_json(r.accuracy);
  const bool have = !r.accuracy.empty();
  json inference = json::array();
  for (const auto& ti : r.task_inference) {
    const bool rows = !ti.task_accuracy.empty();
    inference.push_back({{"method", ti.method},
                         {"average_task_accuracy", rows ? json(average_accuracy(ti.task_accuracy)) : json(nullptr)},
                         {"average_agnostic_accuracy",
                          rows ? json(average_accuracy(ti.agnostic_accuracy)) : json(nullptr)},
                         {"task_accuracy_matrix", matrix_json(ti.task_accuracy)},
                         {"agnostic_accuracy_matrix", matrix_json(ti.agnostic_accuracy)}});
  }
  json j = {
      {"schema", "clr.results/1"},
      {"method", r.method},
      {"variant", r.variant},
      {"backbone",
       {{"arch", r.backbone_arch}, {"params", r.backbone_params}, {"fingerprint", r.backbone_fingerprint},
        {"source", r.backbone_source},
        {"params_note", "the feature extractor plus a 1000-class fc, as torchvision counts the model and as the "
                        "paper's per-task fractions use it"}}},
      {"tasks", tasks},
      {"accuracy_matrix", matrix},
      {"average_accuracy", have ? json(average_accuracy(r.accuracy)) : json(nullptr)},
      {"bwt", have ? json(backward_transfer(r.accuracy)) : json(nullptr)},
      {"forgetting", have ? json(forgetting(r.accuracy)) : json(nullptr)},
      {"first_task_curve", have ? json(first_task_curve(r.accuracy)) : json::array()},
      {"task_inference", inference},
      {"extra_params_per_task", extra},
      {"extra_params_fraction", fraction},
      {"stored_bytes_per_task", bytes},
      {"train_seconds", seconds},
      {"device", r.device},
      {"precision", r.precision},
      {"channels_last", r.channels_last},
      {"seed", r.seed},
      {"complete", r.complete},
  };
  if (!r.run_id.empty()) j["run_id"] = r.run_id;
  if (!r.config_json.empty()) j["config"] = json::parse(r.config_json);
  return j.dump(2) + "\n";
}

Results read_results(const std::string& path) {
  require_file(path, "results file");
  return parse_results(read_file(path), path);
}

Results parse_results(const std::string& text, const std::string& path) {
  using json = nlohmann::json;
  json j;
  try {
    j = json::parse(text);
    check_json_numbers(j, path);
  } catch (const json::exception& e) {
    throw FormatError(detail::concat("'", path, "' is not JSON: ", e.what()));
  }
  CLR_CHECK(json_string_is(j, "schema", "clr.results/1"), FormatError, "'", path,
            "' is not a clr results file (expected \"schema\": \"clr.results/1\")");
  Results r;
  try {
    r.method = j.at("method").get<std::string>();
    r.variant = j.value("variant", "");
    const json& b = j.at("backbone");
    r.backbone_arch = b.at("arch").get<std::string>();
    r.backbone_params = b.at("params").get<int64_t>();
    r.backbone_fingerprint = b.at("fingerprint").get<std::string>();
    r.backbone_source = b.value("source", "");
    r.device = j.at("device").get<std::string>();
    r.precision = j.value("precision", std::string("fp32"));  // written since 2026-12-07; fp32 before
    r.channels_last = j.value("channels_last", false);
    r.seed = j.contains("seed") && j.at("seed").is_number_unsigned() ? j.at("seed").get<uint64_t>() : 0;
    r.complete = j.value("complete", false);
    r.run_id = j.value("run_id", std::string());
    const json& extra = j.at("extra_params_per_task");
    const json& bytes = j.at("stored_bytes_per_task");
    const json& seconds = j.at("train_seconds");
    const json& tasks = j.at("tasks");
    for (size_t i = 0; i < tasks.size(); ++i) {
      const json& t = tasks[i];
      TaskRecord rec;
      rec.name = t.at("name").get<std::string>();
      rec.classes = t.at("classes").get<int64_t>();
      rec.train_images = t.at("train_images").get<int64_t>();
      rec.val_images = t.value("val_images", int64_t{0});
      rec.test_images = t.at("test_images").get<int64_t>();
      rec.skipped_images = t.value("skipped_images", int64_t{0});
      rec.test_is_val = t.value("test_is_val", false);
      rec.epochs = t.value("epochs", int64_t{0});
      rec.best_epoch = t.value("best_epoch", int64_t{0});
      rec.best_val_accuracy = t.value("best_val_accuracy", 0.0);
      rec.train_images_per_second = t.value("train_images_per_second", 0.0);
      rec.end_task_seconds = t.value("end_task_seconds", 0.0);
      rec.decode_seconds = t.value("decode_seconds", 0.0);
      rec.train_decode_seconds = t.value("train_decode_seconds", 0.0);
      rec.epoch_seconds = t.value("epoch_seconds", std::vector<double>{});
      rec.adapter_file = t.value("adapter", "");
      rec.extra_params = extra.at(i).get<int64_t>();
      rec.stored_bytes = bytes.at(i).get<int64_t>();
      rec.train_seconds = seconds.at(i).get<double>();
      r.tasks.push_back(rec);
    }
    auto read_matrix = [&](const json& rows, const std::string& name) {
      AccuracyMatrix m;
      for (const json& row : rows) {
        std::vector<std::optional<double>> out;
        for (const json& v : row) out.push_back(v.is_null() ? std::nullopt : std::optional<double>(v.get<double>()));
        CLR_CHECK(out.size() == r.tasks.size(), FormatError, "'", path, "': a ", name, " row has ", out.size(),
                  " entries for ", r.tasks.size(), " tasks");
        for (size_t k = 0; k <= m.size() && k < out.size(); ++k) {
          CLR_CHECK(out[k].has_value(), FormatError, "'", path, "': ", name, "[", m.size(), "][", k, "] is null");
        }
        m.push_back(out);
      }
      return m;
    };
    r.accuracy = read_matrix(j.at("accuracy_matrix"), "accuracy_matrix");
    if (j.contains("task_inference")) {  // written since 2026-12-07 (sixth session)
      for (const json& t : j.at("task_inference")) {
        TaskInferenceResult ti;
        ti.method = t.at("method").get<std::string>();
        ti.task_accuracy = read_matrix(t.at("task_accuracy_matrix"), "task_inference." + ti.method + ".task_accuracy_matrix");
        ti.agnostic_accuracy =
            read_matrix(t.at("agnostic_accuracy_matrix"), "task_inference." + ti.method + ".agnostic_accuracy_matrix");
        CLR_CHECK(ti.task_accuracy.size() == r.accuracy.size() && ti.agnostic_accuracy.size() == r.accuracy.size(),
                  FormatError, "'", path, "': task_inference '", ti.method, "' has ", ti.task_accuracy.size(),
                  " rows for ", r.accuracy.size(), " accuracy rows");
        r.task_inference.push_back(std::move(ti));
      }
    }
    if (j.contains("config")) r.config_json = j.at("config").dump();
  } catch (const json::exception& e) {
    throw FormatError(detail::concat("'", path, "' is missing a field or has one of the wrong type: ", e.what()));
  }
  CLR_CHECK(r.accuracy.size() <= r.tasks.size(), FormatError, "'", path, "': more accuracy rows than tasks");
  return r;
}

std::string results_csv(const Results& r) {
  std::ostringstream os;
  os << "after_task,after_task_name,task,task_name,accuracy\n";
  for (size_t i = 0; i < r.accuracy.size(); ++i) {
    for (size_t j = 0; j < r.accuracy[i].size(); ++j) {
      if (!r.accuracy[i][j]) continue;
      char acc[32];
      std::snprintf(acc, sizeof acc, "%.6f", *r.accuracy[i][j]);
      os << i << ',' << r.tasks[i].name << ',' << j << ',' << r.tasks[j].name << ',' << acc << '\n';
    }
  }
  return os.str();
}

std::string format_matrix(const Results& r) {
  std::ostringstream os;
  size_t w = 10;
  for (const auto& t : r.tasks) w = std::max(w, std::min<size_t>(t.name.size(), 16));
  char buf[64];
  os << "accuracy (%) on task (columns) after learning task (rows)\n";
  os << std::string(w + 3, ' ');
  for (size_t j = 0; j < r.tasks.size(); ++j) {
    std::snprintf(buf, sizeof buf, "%8zu", j + 1);
    os << buf;
  }
  os << '\n';
  for (size_t i = 0; i < r.accuracy.size(); ++i) {
    std::string name = r.tasks[i].name.substr(0, w);
    std::snprintf(buf, sizeof buf, "%2zu ", i + 1);
    os << buf << name << std::string(w - name.size(), ' ');
    for (size_t j = 0; j < r.accuracy[i].size(); ++j) {
      if (r.accuracy[i][j]) {
        std::snprintf(buf, sizeof buf, "%8.2f", 100.0 * *r.accuracy[i][j]);
        os << buf;
      }
    }
    os << '\n';
  }
  if (!r.accuracy.empty()) {
    std::snprintf(buf, sizeof buf, "%.2f", 100.0 * average_accuracy(r.accuracy));
    os << "average accuracy: " << buf << "%";
    std::snprintf(buf, sizeof buf, "%.2f", 100.0 * backward_transfer(r.accuracy));
    os << "   BWT: " << buf;
    std::snprintf(buf, sizeof buf, "%.2f", 100.0 * forgetting(r.accuracy));
    os << "   forgetting: " << buf << '\n';
    for (const auto& ti : r.task_inference) {
      if (ti.task_accuracy.size() != r.accuracy.size()) continue;
      std::snprintf(buf, sizeof buf, "%.2f%%, task-ID accuracy %.2f%% (oracle %.2f%%)",
                    100.0 * average_accuracy(ti.agnostic_accuracy), 100.0 * average_accuracy(ti.task_accuracy),
                    100.0 * average_accuracy(r.accuracy));
      os << "without a task oracle (" << ti.method << "): average accuracy " << buf << '\n';
    }
  }
  return os.str();
}

}  // namespace clr::eval
