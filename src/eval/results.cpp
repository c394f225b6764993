#include "clr/eval/results.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "clr/core/error.h"

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
  json matrix = json::array();
  for (const auto& row : r.accuracy) {
    json jr = json::array();
    for (size_t j = 0; j < r.tasks.size(); ++j) {
      if (j < row.size() && row[j].has_value()) jr.push_back(*row[j]);
      else jr.push_back(nullptr);
    }
    matrix.push_back(jr);
  }
  const bool have = !r.accuracy.empty();
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
      {"extra_params_per_task", extra},
      {"extra_params_fraction", fraction},
      {"stored_bytes_per_task", bytes},
      {"train_seconds", seconds},
      {"device", r.device},
      {"seed", r.seed},
      {"complete", r.complete},
  };
  if (!r.config_json.empty()) j["config"] = json::parse(r.config_json);
  return j.dump(2) + "\n";
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
  }
  return os.str();
}

}  // namespace clr::eval
