#include "clr/train/task_inference.h"

#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/strings.h"

namespace clr::train {
namespace {

// The shared diagonal variance is shrunk toward its mean over features by this share
// (a task of few images per class estimates some features' spread as near zero, which
// would make its density spike there).
constexpr double kShrink = 0.1;

}  // namespace

TaskInference parse_task_inference(const std::string& name) {
  if (name == "gaussian") return TaskInference::kGaussian;
  if (name == "task-gaussian") return TaskInference::kTaskGaussian;
  if (name == "energy") return TaskInference::kEnergy;
  if (name == "max-softmax") return TaskInference::kMaxSoftmax;
  throw ConfigError(detail::concat("unknown task-inference method '", name,
                                   "' (expected gaussian, task-gaussian, energy or max-softmax)"));
}

std::string task_inference_name(TaskInference method) {
  switch (method) {
    case TaskInference::kGaussian: return "gaussian";
    case TaskInference::kTaskGaussian: return "task-gaussian";
    case TaskInference::kEnergy: return "energy";
    case TaskInference::kMaxSoftmax: return "max-softmax";
  }
  return "?";
}

std::vector<std::string> task_inference_names() { return {"gaussian", "task-gaussian", "energy", "max-softmax"}; }

double default_temperature(TaskInference method) {
  switch (method) {
    case TaskInference::kGaussian: return 0.05;
    case TaskInference::kTaskGaussian: return 0.05;
    case TaskInference::kEnergy: return 1.0;
    case TaskInference::kMaxSoftmax: return 0.05;
  }
  return 1.0;
}

bool uses_heads(TaskInference method) {
  return method == TaskInference::kEnergy || method == TaskInference::kMaxSoftmax;
}

TensorMap TaskStatistics::to_tensors() const {
  CLR_CHECK(!empty(), ConfigError, "task statistics are empty");
  return {{"class_mean", class_mean.to(torch::kCPU).to(torch::kHalf).contiguous()},
          {"variance", variance.to(torch::kCPU).to(torch::kFloat).contiguous()},
          {"class_count", class_count.to(torch::kCPU).to(torch::kLong).contiguous()}};
}

TaskStatistics TaskStatistics::from_tensors(const TensorMap& tensors, const std::string& where) {
  for (const auto& kv : tensors) {
    CLR_CHECK(kv.first == "class_mean" || kv.first == "variance" || kv.first == "class_count", FormatError, where,
              ": unexpected task-mapper tensor '", kv.first, "' (expected class_mean, variance, class_count)");
  }
  for (const char* key : {"class_mean", "variance", "class_count"}) {
    CLR_CHECK(tensors.count(key) != 0, FormatError, where, ": task-mapper tensor '", key, "' is missing");
  }
  const at::Tensor& mean = tensors.at("class_mean");
  const at::Tensor& var = tensors.at("variance");
  const at::Tensor& count = tensors.at("class_count");
  CLR_CHECK(mean.dim() == 2 && mean.size(0) >= 1 && mean.size(1) >= 1 && mean.is_floating_point(), FormatError, where,
            ": task-mapper class_mean must be a float [K, F] tensor, got ", describe(mean));
  CLR_CHECK(var.dim() == 1 && var.size(0) == mean.size(1) && var.is_floating_point(), FormatError, where,
            ": task-mapper variance must be a float [", mean.size(1), "] tensor, got ", describe(var));
  CLR_CHECK(count.dim() == 1 && count.size(0) == mean.size(0) && !count.is_floating_point(), FormatError, where,
            ": task-mapper class_count must be an integer [", mean.size(0), "] tensor, got ", describe(count));
  TaskStatistics s;
  s.class_mean = mean.to(torch::kFloat);
  s.variance = var.to(torch::kFloat);
  s.class_count = count.to(torch::kLong);
  CLR_CHECK(torch::isfinite(s.class_mean).all().item<bool>(), FormatError, where,
            ": task-mapper class_mean holds values that are not finite");
  CLR_CHECK(torch::isfinite(s.variance).all().item<bool>() && (s.variance >= 0).all().item<bool>() &&
                s.variance.sum().item<double>() > 0,
            FormatError, where, ": task-mapper variance must be finite, >= 0 and not all 0");
  CLR_CHECK((s.class_count >= 0).all().item<bool>(), FormatError, where, ": task-mapper class_count is negative");
  return s;
}

StatisticsAccumulator::StatisticsAccumulator(int64_t classes) : classes_(classes) {
  CLR_CHECK(classes >= 1, ConfigError, "task statistics need at least one class, got ", classes);
}

void StatisticsAccumulator::add(const at::Tensor& features, const at::Tensor& labels) {
  CLR_CHECK(features.dim() == 2 && labels.dim() == 1 && labels.size(0) == features.size(0), ConfigError,
            "expected features [N, F] and labels [N], got ", describe(features), " and ", describe(labels));
  if (features.size(0) == 0) return;
  torch::NoGradGuard no_grad;
  const at::Tensor x = features.detach().to(torch::kCPU, torch::kDouble);
  const at::Tensor y = labels.to(torch::kCPU, torch::kLong);
  CLR_CHECK(y.min().item<int64_t>() >= 0 && y.max().item<int64_t>() < classes_, ConfigError, "labels outside 0..",
            classes_ - 1);
  if (!sum_.defined()) {
    sum_ = torch::zeros({classes_, x.size(1)}, x.options());
    sum_sq_ = torch::zeros({x.size(1)}, x.options());
    count_ = torch::zeros({classes_}, y.options());
  }
  CLR_CHECK(x.size(1) == sum_.size(1), ConfigError, "features of ", x.size(1), " values after ", sum_.size(1));
  sum_.index_add_(0, y, x);
  sum_sq_ += (x * x).sum(0);
  count_.index_add_(0, y, torch::ones_like(y));
  n_ += x.size(0);
}

TaskStatistics StatisticsAccumulator::finish() const {
  CLR_CHECK(n_ > 0, ConfigError, "task statistics need at least one image");
  const at::Tensor n_k = count_.to(torch::kDouble).unsqueeze(1);
  const at::Tensor mean = sum_ / n_k.clamp_min(1);  // a class without images keeps a zero mean
  // Pooled within-class variance: (sum x^2 - sum_k n_k mean_k^2) / (N - K), N - K >= 1.
  const at::Tensor within = sum_sq_ - (n_k * mean * mean).sum(0);
  int64_t used = 0;
  for (int64_t k = 0; k < classes_; ++k) used += count_[k].item<int64_t>() > 0;
  const double dof = static_cast<double>(std::max<int64_t>(1, n_ - used));
  TaskStatistics s;
  s.class_mean = mean.to(torch::kFloat);
  s.variance = (within / dof).clamp_min(0).to(torch::kFloat);
  s.class_count = count_.clone();
  return s;
}

TaskMapper::TaskMapper(const std::vector<const TaskStatistics*>& tasks, c10::Device device, bool whole_task) {
  CLR_CHECK(!tasks.empty(), ConfigError, "a task mapper needs at least one task's statistics");
  tasks_ = static_cast<int64_t>(tasks.size());
  dim_ = tasks.front()->feature_dim();
  for (const TaskStatistics* s : tasks) {
    CLR_CHECK(!s->empty() && s->feature_dim() == dim_, ConfigError, "task statistics of ", s->feature_dim(),
              " features beside ", dim_);
    kmax_ = std::max(kmax_, s->classes());
  }
  torch::NoGradGuard no_grad;
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  at::Tensor inv = torch::zeros({tasks_, dim_}, f64);
  at::Tensor w = torch::zeros({tasks_, kmax_, dim_}, f64);
  at::Tensor b = torch::full({tasks_, kmax_}, -std::numeric_limits<double>::infinity(), f64);
  at::Tensor logk = torch::zeros({tasks_}, f64);
  const double log2pi = std::log(2 * M_PI);
  for (int64_t t = 0; t < tasks_; ++t) {
    const TaskStatistics& s = *tasks[static_cast<size_t>(t)];
    at::Tensor var = s.variance.to(torch::kDouble);
    at::Tensor mu = s.class_mean.to(torch::kDouble);
    int64_t k = s.classes();
    if (whole_task) {  // one Gaussian of all the task's images: their mean and total variance
      const at::Tensor n_k = s.class_count.to(torch::kDouble).unsqueeze(1);
      const double n = std::max(1.0, n_k.sum().item<double>());
      const at::Tensor m = (n_k * mu).sum(0) / n;
      const at::Tensor between = (n_k * (mu - m) * (mu - m)).sum(0) / n;
      var = var * std::max(0.0, n - static_cast<double>(k)) / n + between;
      mu = m.unsqueeze(0);
      k = 1;
    }
    const double floor = std::max(var.mean().item<double>(), 1e-12);
    const at::Tensor v = (1 - kShrink) * var + kShrink * floor;
    inv[t] = 1 / v;
    w[t].narrow(0, 0, k).copy_(mu / v);
    b[t].narrow(0, 0, k).copy_(-0.5 * ((mu * mu / v).sum(1) + v.log().sum() + static_cast<double>(dim_) * log2pi));
    logk[t] = std::log(static_cast<double>(k));
  }
  inv_var_ = inv.to(torch::kFloat).to(device);
  weight_ = w.reshape({tasks_ * kmax_, dim_}).to(torch::kFloat).to(device);
  bias_ = b.to(torch::kFloat).to(device);
  log_k_ = logk.to(torch::kFloat).to(device);
}

at::Tensor TaskMapper::scores(const at::Tensor& features) const {
  CLR_CHECK(tasks_ > 0, ConfigError, "the task mapper holds no task");
  CLR_CHECK(features.dim() == 2 && features.size(1) == dim_, ConfigError, "expected features [N, ", dim_, "], got ",
            describe(features));
  torch::NoGradGuard no_grad;
  const at::Tensor x = features.to(torch::kFloat);
  const int64_t n = x.size(0);
  const at::Tensor quad = torch::matmul(x * x, inv_var_.t());                       // [N, T]
  const at::Tensor cross = torch::matmul(x, weight_.t()).view({n, tasks_, kmax_});  // [N, T, Kmax]
  const at::Tensor log_density = cross - 0.5 * quad.unsqueeze(2) + bias_.unsqueeze(0);
  return (torch::logsumexp(log_density, 2) - log_k_.unsqueeze(0)) / static_cast<double>(dim_);
}

at::Tensor head_scores(TaskInference method, const at::Tensor& logits) {
  CLR_CHECK(logits.dim() == 2 && logits.size(1) >= 1, ConfigError, "expected logits [N, K], got ", describe(logits));
  const at::Tensor z = logits.to(torch::kFloat);
  switch (method) {
    case TaskInference::kEnergy:
      return torch::logsumexp(z, 1) - std::log(static_cast<double>(z.size(1)));
    case TaskInference::kMaxSoftmax:
      return std::get<0>(torch::softmax(z, 1).max(1));
    case TaskInference::kGaussian:
    case TaskInference::kTaskGaussian:
      break;
  }
  throw ConfigError("the gaussian task mappers do not score with the task heads");
}

at::Tensor task_confidences(const at::Tensor& scores, double temperature) {
  CLR_CHECK(temperature > 0 && std::isfinite(temperature), ConfigError, "the temperature must be positive, got ",
            temperature);
  return torch::softmax(scores.to(torch::kFloat) / temperature, 1);
}

at::Tensor mapper_confidences(const at::Tensor& classes, const at::Tensor& whole, double temperature) {
  CLR_CHECK(classes.sizes() == whole.sizes(), ConfigError, "scores of ", describe(classes), " beside ", describe(whole));
  return torch::min(task_confidences(classes, temperature), task_confidences(whole, temperature));
}

}  // namespace clr::train
