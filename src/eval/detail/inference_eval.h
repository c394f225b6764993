// Private to the runner (src/eval/runner.cpp): task inference measured beside the
// oracle after every task.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/eval/results.h"
#include "clr/eval/runner.h"
#include "clr/train/task_inference.h"
#include "clr/train/trainer.h"

namespace clr::eval::internal {

// Task inference beside the oracle (RunOptions::task_inference): the gaussian mapper's
// statistics per learned task, the shared backbone's features of every test split, and
// the task-ID and task-agnostic rows after each task. When the method's predictions for
// a learned task never change (tasks on the unchanged backbone, old states fixed), the
// logits of test split j under task i are computed once and kept; otherwise every row
// computes them again.
class InferenceEval {
 public:
  InferenceEval(const RunOptions& o, train::Method& method, const train::Numerics& numerics)
      : o_(o), method_(method), numerics_(numerics) {
    for (const auto& name : o.task_inference) {
      const train::TaskInference m = train::parse_task_inference(name);
      CLR_CHECK(std::find(methods_.begin(), methods_.end(), m) == methods_.end(), ConfigError,
                "task inference '", name, "' is asked for twice");
      methods_.push_back(m);
    }
    gaussian_ = !std::all_of(methods_.begin(), methods_.end(), train::uses_heads);  // needs the statistics
    CLR_CHECK(!gaussian_ || o.shared_features, ConfigError,
              "the gaussian task mapper needs the frozen backbone's features (RunOptions::shared_features)");
    fixed_ = !method.store_variant().empty() && !method.changes_old_task_states();
  }

  bool active() const { return !methods_.empty(); }
  bool gaussian() const { return gaussian_; }
  const std::vector<train::TaskInference>& methods() const { return methods_; }

  bool has_statistics(size_t t) const { return t < stats_.size() && !stats_[t].empty(); }
  void set_statistics(size_t t, train::TaskStatistics s) {
    if (stats_.size() <= t) stats_.resize(t + 1);
    stats_[t] = std::move(s);
  }
  const train::TaskStatistics& statistics(size_t t) const { return stats_.at(t); }
  // Task t's statistics from its training split (centred crops, no flips).
  void fit(size_t t, const data::PreparedSplit& train, int64_t classes) {
    train::StatisticsAccumulator acc(classes);
    acc.add(features(train), train.labels);
    set_statistics(t, acc.finish());
  }

  // After learning tasks 0..t: the oracle accuracy of every task (`row`) and each
  // method's rows, appended to r.task_inference.
  void evaluate(size_t t, const std::vector<data::PreparedSplit>& tests, std::vector<std::optional<double>>& row,
                Results& r) {
    if (!fixed_) logits_.clear();
    std::vector<at::Tensor> correct(t + 1);
    for (size_t j = 0; j <= t; ++j) {
      const at::Tensor z = logits(j, j, tests[j]);
      correct[j] = tests[j].size() == 0 ? torch::zeros({0}, torch::kBool)
                                        : z.argmax(1).eq(tests[j].labels.to(torch::kCPU));
      row[j] = share(correct[j]);
    }
    std::vector<const train::TaskStatistics*> stats;
    if (gaussian_) {
      for (size_t i = 0; i <= t; ++i) stats.push_back(&stats_.at(i));
    }
    for (size_t m = 0; m < methods_.size(); ++m) {
      std::vector<std::optional<double>> task_row(row.size()), agnostic_row(row.size());
      std::unique_ptr<train::TaskMapper> mapper;
      if (!train::uses_heads(methods_[m])) {
        mapper = std::make_unique<train::TaskMapper>(stats, c10::Device(c10::kCPU),
                                                     methods_[m] == train::TaskInference::kTaskGaussian);
      }
      for (size_t j = 0; j <= t; ++j) {
        at::Tensor scores;
        if (mapper) {
          scores = mapper->scores(test_features(j, tests[j]));
        } else {
          std::vector<at::Tensor> cols;
          for (size_t i = 0; i <= t; ++i) cols.push_back(train::head_scores(methods_[m], logits(j, i, tests[j])));
          scores = torch::stack(cols, 1);
        }
        const at::Tensor right_task = tests[j].size() == 0 ? torch::zeros({0}, torch::kBool)
                                                           : scores.argmax(1).eq(static_cast<int64_t>(j));
        task_row[j] = share(right_task);
        agnostic_row[j] = share(right_task.logical_and(correct[j]));
      }
      if (r.task_inference.size() <= m) r.task_inference.push_back({train::task_inference_name(methods_[m]), {}, {}});
      r.task_inference[m].task_accuracy.push_back(task_row);
      r.task_inference[m].agnostic_accuracy.push_back(agnostic_row);
    }
  }

 private:
  static double share(const at::Tensor& hits) {
    return hits.numel() == 0 ? 0.0 : hits.to(torch::kDouble).mean().item<double>();
  }
  at::Tensor features(const data::PreparedSplit& split) const {
    return train::map_split(split, o_.train.batch_size * 2, o_.train.crop, numerics_, method_.device(),
                            o_.shared_features);
  }
  const at::Tensor& test_features(size_t j, const data::PreparedSplit& test) {
    auto it = test_features_.find(j);
    if (it == test_features_.end()) it = test_features_.emplace(j, features(test)).first;
    return it->second;
  }
  // Logits [n_j, K_i] of test split j under task i.
  at::Tensor logits(size_t j, size_t i, const data::PreparedSplit& test) {
    auto it = logits_.find({j, i});
    if (it != logits_.end()) return it->second;
    method_.set_training(false);
    at::Tensor z = train::map_split(test, o_.train.batch_size * 2, o_.train.crop, numerics_, method_.device(),
                                    [&](const at::Tensor& x) { return method_.predict(static_cast<int64_t>(i), x); });
    // The oracle's logits alone are kept when no heads method needs the others.
    if (i == j || std::any_of(methods_.begin(), methods_.end(), train::uses_heads)) logits_[{j, i}] = z;
    return z;
  }

  const RunOptions& o_;
  train::Method& method_;
  train::Numerics numerics_;
  std::vector<train::TaskInference> methods_;
  bool gaussian_ = false, fixed_ = false;
  std::vector<train::TaskStatistics> stats_;
  std::map<size_t, at::Tensor> test_features_;
  std::map<std::pair<size_t, size_t>, at::Tensor> logits_;
};

}  // namespace clr::eval::internal
