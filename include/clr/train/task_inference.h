// Task inference without an oracle: which learned task an image belongs to.
//
// Two families, each reduced to a score per (image, task), higher meaning "more
// likely this task", then a confidence per task = softmax over tasks of score / T:
//   gaussian     the task mapper: at the end of each task, the frozen backbone's pooled
//                features of the task's own training images give class means and one
//                diagonal covariance shared by the task's classes (pooled within-class
//                variance, shrunk toward its mean); the score is the log density of the
//                image's features under the task's equal-weight mixture of its class
//                Gaussians, per feature dimension. One backbone forward per image scores
//                every task; nothing of a task's images is kept, only its statistics
//                (class count x feature dim means, in the task's file).
//   task-gaussian  the same statistics taken as one Gaussian per task (the mean and total
//                variance of all its training images, labels ignored): less sharp where a
//                task's classes lie apart, but two tasks of the same images get the same
//                score, so its confidence says "either" where gaussian's picks one.
//   energy       the task heads: the image is run under every task's adapters and head;
//                score log(mean_k exp z_k) of the task's logits z (energy with the
//                class-count bias removed). T forwards per image for T tasks.
//   max-softmax  the same forwards; score max_k softmax(z)_k.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "clr/core/tensor_map.h"

namespace clr::train {

enum class TaskInference { kGaussian, kTaskGaussian, kEnergy, kMaxSoftmax };
// "gaussian", "task-gaussian", "energy", "max-softmax"; parse throws ConfigError naming them.
TaskInference parse_task_inference(const std::string& name);
std::string task_inference_name(TaskInference method);
std::vector<std::string> task_inference_names();
// The temperature of a method's confidences (docs/METHODS.md says how they were chosen).
double default_temperature(TaskInference method);
// True for the methods that score with the task heads (energy, max-softmax); the
// others score with the stored statistics.
bool uses_heads(TaskInference method);

// The statistics the gaussian mapper keeps for one task.
struct TaskStatistics {
  at::Tensor class_mean;   // [K, F] float (stored as fp16)
  at::Tensor variance;     // [F] float: pooled within-class variance, before shrinkage
  at::Tensor class_count;  // [K] int64: training images per class
  int64_t classes() const { return class_mean.defined() ? class_mean.size(0) : 0; }
  int64_t feature_dim() const { return class_mean.defined() ? class_mean.size(1) : 0; }
  bool empty() const { return !class_mean.defined(); }
  // The stored form: keys class_mean, variance, class_count (an adapter file keeps them
  // under "mapper.").
  TensorMap to_tensors() const;
  // FormatError naming `where` when keys are missing or extra, shapes disagree, or a
  // value is not finite (a variance <= 0 included).
  static TaskStatistics from_tensors(const TensorMap& tensors, const std::string& where);
};

// Accumulates a task's features [N, F] with labels [N] in 0..K-1 (any device; summed in
// float64 on the CPU), then gives its statistics.
class StatisticsAccumulator {
 public:
  explicit StatisticsAccumulator(int64_t classes);
  void add(const at::Tensor& features, const at::Tensor& labels);
  int64_t count() const { return n_; }
  // ConfigError when no image was added.
  TaskStatistics finish() const;

 private:
  int64_t classes_;
  int64_t n_ = 0;
  at::Tensor sum_, sum_sq_, count_;  // [K, F], [F], [K]
};

// A gaussian mapper over several tasks' statistics (same feature dimension), ready on
// a device: scores of a batch of features for every task in one pass. `whole_task`:
// task-gaussian (one Gaussian per task), else gaussian (the class mixture).
class TaskMapper {
 public:
  TaskMapper() = default;
  TaskMapper(const std::vector<const TaskStatistics*>& tasks, c10::Device device, bool whole_task = false);
  int64_t tasks() const { return tasks_; }
  // features [N, F] (float, on the mapper's device) -> [N, T] scores, float.
  at::Tensor scores(const at::Tensor& features) const;

 private:
  int64_t tasks_ = 0, kmax_ = 0, dim_ = 0;
  at::Tensor inv_var_;  // [T, F]
  at::Tensor weight_;   // [T * Kmax, F]: mean / variance (zero rows for padding)
  at::Tensor bias_;     // [T, Kmax]: -0.5 (sum mean^2/var + sum log var + F log 2 pi); -inf on padding
  at::Tensor log_k_;    // [T]: log of each task's class count
};

// Score of each row of one task's logits [N, K] under a heads method -> [N].
at::Tensor head_scores(TaskInference method, const at::Tensor& logits);

// Confidences [N, T] (rows sum to 1) of scores [N, T] at a temperature.
at::Tensor task_confidences(const at::Tensor& scores, double temperature);
// gaussian's confidences: for each task the smaller of the class mixture's (`classes`
// scores) and task-gaussian's (`whole` scores) — the class mixture alone is confident
// between two tasks of the same images, which one Gaussian per task cannot tell apart;
// so a task is confident only when both models favour it.
at::Tensor mapper_confidences(const at::Tensor& classes, const at::Tensor& whole, double temperature);

}  // namespace clr::train
