#include "clr/train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/settings_io.h"
#include "clr/core/log.h"
#include "clr/core/progress.h"
#include "clr/core/torch_compat.h"
#include "clr/train/optimizer.h"

namespace clr::train {

template <class V>
void fields(V& v, TrainConfig& c) {
  v("optimizer", c.optimizer);
  v("lr", c.lr);
  v("momentum", c.momentum);
  v("weight_decay", c.weight_decay);
  v("batch", c.batch_size);
  v("epochs", c.epochs);
  v("schedule", c.schedule);
  v("step_size", c.step_size);
  v("gamma", c.gamma);
  v("penalty", c.penalty);
  v("patience", c.patience);
  v("hflip", c.hflip);
  v("crop", c.crop);
  v("precision", c.precision);
  v("memory_format", c.memory_format);
  v("parallel_tasks", c.parallel_tasks);
}
CLR_SETTINGS_JSON(TrainConfig)

void TrainConfig::validate() const {
  CLR_CHECK(optimizer == "adam" || optimizer == "sgd", ConfigError, "train.optimizer '", optimizer,
            "' is unknown; expected adam or sgd");
  CLR_CHECK(schedule == "step" || schedule == "cosine" || schedule == "none", ConfigError, "train.schedule '", schedule,
            "' is unknown; expected step, cosine or none");
  CLR_CHECK(lr > 0 && std::isfinite(lr), ConfigError, "train.lr must be > 0, got ", lr);
  CLR_CHECK(batch_size >= 1, ConfigError, "train.batch must be >= 1, got ", batch_size);
  CLR_CHECK(epochs >= 1, ConfigError, "train.epochs must be >= 1, got ", epochs);
  CLR_CHECK(step_size >= 1, ConfigError, "train.step_size must be >= 1, got ", step_size);
  CLR_CHECK(gamma > 0, ConfigError, "train.gamma must be > 0, got ", gamma);
  CLR_CHECK(penalty >= 0, ConfigError, "train.penalty must be >= 0, got ", penalty);
  CLR_CHECK(patience >= 0, ConfigError, "train.patience must be >= 0, got ", patience);
  CLR_CHECK(momentum >= 0 && momentum < 1, ConfigError, "train.momentum must be in [0, 1), got ", momentum);
  CLR_CHECK(weight_decay >= 0, ConfigError, "train.weight_decay must be >= 0, got ", weight_decay);
  CLR_CHECK(crop >= 0, ConfigError, "train.crop must be >= 0, got ", crop);
  CLR_CHECK(precision == "auto" || precision == "fp32" || precision == "bf16" || precision == "fp16", ConfigError,
            "train.precision '", precision, "' is unknown; expected auto, fp32, bf16 or fp16");
  CLR_CHECK(parallel_tasks >= 1 && parallel_tasks <= 1024, ConfigError, "train.parallel_tasks must be in [1, 1024], got ",
            parallel_tasks);
  CLR_CHECK(memory_format == "auto" || memory_format == "channels-last" || memory_format == "contiguous", ConfigError,
            "train.memory_format '", memory_format, "' is unknown; expected auto, channels-last or contiguous");
}

Numerics inference_numerics(const std::string& precision, const std::string& memory_format, c10::Device device,
                            const std::string& setting) {
  CLR_CHECK(precision == "auto" || precision == "fp32" || precision == "bf16" || precision == "fp16", ConfigError,
            setting, ".precision '", precision, "' is unknown; expected auto, fp32, bf16 or fp16");
  CLR_CHECK(memory_format == "auto" || memory_format == "channels-last" || memory_format == "contiguous", ConfigError,
            setting, ".memory_format '", memory_format, "' is unknown; expected auto, channels-last or contiguous");
  const bool cuda = device.is_cuda();
  Numerics n;
  if (precision == "bf16" || (precision == "auto" && cuda)) n.autocast = c10::ScalarType::BFloat16;
  if (precision == "fp16") {
    CLR_CHECK(cuda, ConfigError, setting, ".precision fp16 needs a CUDA device (autocast on ", device.str(),
              " has bf16 only); use bf16 or fp32");
    n.autocast = c10::ScalarType::Half;
  }
  n.channels_last = memory_format == "channels-last" || (memory_format == "auto" && cuda);
  return n;
}

Numerics numerics_for(const TrainConfig& c, c10::Device device) {
  c.validate();
  Numerics n = inference_numerics(c.precision, c.memory_format, device, "train");
  n.loss_scaling = n.autocast == c10::ScalarType::Half;
  return n;
}

std::string precision_name(c10::ScalarType autocast) {
  if (autocast == c10::ScalarType::BFloat16) return "bf16";
  if (autocast == c10::ScalarType::Half) return "fp16";
  return "fp32";
}

data::LoaderOptions train_loader_options(const TrainConfig& c, int64_t task_index, c10::Device device) {
  data::LoaderOptions lo;
  lo.batch_size = c.batch_size;
  lo.shuffle = true;
  lo.hflip = c.hflip;
  lo.crop = c.crop;
  lo.random_crop = true;
  lo.drop_last = c.drop_last;
  lo.seed = c.seed * 7919 + static_cast<uint64_t>(task_index);
  lo.device = device;
  return lo;
}

data::LoaderOptions eval_loader_options(int64_t batch_size, int64_t crop, c10::Device device) {
  data::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.device = device;
  lo.crop = crop;
  return lo;
}

double lr_at(const TrainConfig& c, int64_t epoch) {  // epoch 0-based
  if (c.schedule == "step") return c.lr * std::pow(c.gamma, static_cast<double>(epoch / c.step_size));
  if (c.schedule == "cosine") {
    return 0.5 * c.lr * (1.0 + std::cos(M_PI * static_cast<double>(epoch) / static_cast<double>(c.epochs)));
  }
  return c.lr;
}

OptimizerOptions optimizer_options(const TrainConfig& c) {
  OptimizerOptions o;
  o.kind = c.optimizer;
  o.lr = c.lr;
  o.momentum = c.momentum;
  o.weight_decay = c.weight_decay;
  return o;
}

at::Tensor in_layout(const at::Tensor& x, const Numerics& numerics) {
  return numerics.channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

double accuracy(const data::PreparedSplit& split, int64_t batch_size, int64_t crop, const Numerics& numerics,
                c10::Device device, const std::function<at::Tensor(const at::Tensor&)>& logits) {
  if (split.size() == 0) return 0;
  data::BatchLoader loader(split, eval_loader_options(batch_size, crop, device));
  torch::NoGradGuard no_grad;
  // Counted on the device and read once: reading it every batch would wait for the GPU.
  at::Tensor correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device));
  const compat::AutocastGuard autocast(device.type(), numerics.autocast);
  loader.for_each_batch(0, [&](const at::Tensor& x, const at::Tensor& y) {
    correct += logits(in_layout(x, numerics)).argmax(1).eq(y).sum();
  });
  return static_cast<double>(correct.item<int64_t>()) / static_cast<double>(split.size());
}

at::Tensor map_split(const data::PreparedSplit& split, int64_t batch_size, int64_t crop, const Numerics& numerics,
                     c10::Device device, const std::function<at::Tensor(const at::Tensor&)>& fn) {
  data::BatchLoader loader(split, eval_loader_options(batch_size, crop, device));
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  const compat::AutocastGuard autocast(device.type(), numerics.autocast);
  loader.for_each_batch(0, [&](const at::Tensor& x, const at::Tensor&) {
    parts.push_back(fn(in_layout(x, numerics)).to(torch::kFloat));  // stays on the device until the end
  });
  if (parts.empty()) return torch::empty({0});
  return torch::cat(parts).to(torch::kCPU);
}

double evaluate(Method& method, int64_t task, const data::PreparedSplit& split, int64_t batch_size, int64_t crop,
                const Numerics& numerics) {
  if (split.size() == 0) return 0;
  method.set_training(false);
  return accuracy(split, batch_size, crop, numerics, method.device(),
                  [&](const at::Tensor& x) { return method.predict(task, x); });
}

bool record_validation(TaskTrainReport& report, int64_t& since_best, double val_acc, int64_t epoch,
                       const TrainConfig& config, const std::string& task_name, const std::function<void()>& on_best) {
  if (val_acc > report.best_val_accuracy) {
    report.best_val_accuracy = val_acc;
    report.best_epoch = epoch + 1;
    on_best();
    since_best = 0;
    return false;
  }
  if (++since_best <= config.patience) return false;
  log::info("task '", task_name, "': no validation gain for ", since_best, " epochs, stopping early at epoch ",
            epoch + 1);
  return true;
}

void to_json(settings::Json& j, const TaskTrainReport& r) {
  j = settings::Json{{"epochs_run", r.epochs_run},
                     {"best_epoch", r.best_epoch},
                     {"best_val_accuracy", r.best_val_accuracy},
                     {"train_seconds", r.train_seconds},
                     {"images_per_second", r.images_per_second},
                     {"epoch_loss", r.epoch_loss},
                     {"epoch_seconds", r.epoch_seconds},
                     {"epoch_val_accuracy", r.epoch_val_accuracy},
                     {"skipped_steps", r.skipped_steps}};
}

void from_json(const settings::Json& j, TaskTrainReport& r) {
  j.at("epochs_run").get_to(r.epochs_run);
  j.at("best_epoch").get_to(r.best_epoch);
  j.at("best_val_accuracy").get_to(r.best_val_accuracy);
  j.at("train_seconds").get_to(r.train_seconds);
  j.at("images_per_second").get_to(r.images_per_second);
  r.epoch_loss.clear();
  for (const auto& v : j.at("epoch_loss")) r.epoch_loss.push_back(v.is_null() ? std::nan("") : v.get<double>());
  j.at("epoch_seconds").get_to(r.epoch_seconds);
  j.at("epoch_val_accuracy").get_to(r.epoch_val_accuracy);
  j.at("skipped_steps").get_to(r.skipped_steps);
}

TaskTrainReport train_task(Method& method, const TaskInfo& task, const data::PreparedSplit& train,
                           const data::PreparedSplit& val, const TrainConfig& config, const TaskResume& resume) {
  config.validate();
  CLR_CHECK(train.size() > 0, ConfigError, "task '", task.name, "' has no training images left");
  const std::vector<at::Tensor> params = method.trainable_parameters();
  Optimizer opt(params, optimizer_options(config));
  const Numerics numerics = numerics_for(config, method.device());
  LossScaler scaler(numerics.loss_scaling, method.device());
  data::BatchLoader loader(train, train_loader_options(config, task.index, method.device()));

  TaskTrainReport report;
  report.best_val_accuracy = -1;
  TensorMap best;
  int64_t since_best = 0;
  int64_t first_epoch = 0;
  at::Generator cpu_rng = at::detail::getDefaultCPUGenerator();
  if (resume.from != nullptr) {
    const TaskProgress& p = *resume.from;
    CLR_CHECK(p.next_epoch > 0 && p.next_epoch < config.epochs, ConfigError, "task '", task.name,
              "' cannot go on from epoch ", p.next_epoch + 1, " of ", config.epochs);
    method.restore(p.current);
    method.load_step_state(p.steps);
    opt.load_state(p.optimizer);
    scaler.load_state(p.scaler);
    if (p.rng.defined()) {
      std::lock_guard<std::mutex> lock(cpu_rng.mutex());
      cpu_rng.set_state(p.rng);
    }
    report = p.report;
    best = p.best;
    since_best = p.since_best;
    first_epoch = p.next_epoch;
    log::info("task '", task.name, "': going on from epoch ", first_epoch + 1, " (best so far: epoch ",
              report.best_epoch, ", ", resume.score_name, " ", 100 * report.best_val_accuracy, "%)");
  }
  for (int64_t epoch = first_epoch; epoch < config.epochs; ++epoch) {
    opt.set_lr(lr_at(config, epoch));
    method.begin_epoch(epoch, config.epochs);
    method.set_training(true);
    Progress progress(detail::concat("task ", task.index + 1, " '", task.name, "' epoch ", epoch + 1, "/", config.epochs),
                      train.size());
    // The loss is summed on the device and read only when the progress line is drawn
    // and at the end of the epoch: reading it every step would wait for the GPU.
    at::Tensor loss_acc;
    int64_t seen = 0;      // images of the steps taken (the loss's weight)
    int64_t images = 0;    // and of the steps skipped too (the progress line's)
    std::string status_line;
    const auto t0 = std::chrono::steady_clock::now();
    loader.for_each_batch(epoch, [&](const at::Tensor& batch, const at::Tensor& y) {
      const at::Tensor x = in_layout(batch, numerics);
      opt.zero_grad();
      at::Tensor loss;
      {
        // Autocast covers the forward only; backward runs each op in its forward's type.
        const compat::AutocastGuard autocast(method.device().type(), numerics.autocast);
        loss = method.loss(x, y);
      }
      scaler.scale(loss).backward();
      if (!scaler.unscale(params)) {  // fp16 only: an inf or NaN gradient, the step is skipped
        ++report.skipped_steps;
        scaler.update();
        images += x.size(0);
        progress.update(images, status_line);
        return;
      }
      // The penalty's gradient is added to the loss's directly (autograd would run
      // a norm and its backward per tensor); the loss reported includes it.
      if (config.penalty > 0) loss = loss.detach() + config.penalty * add_norm_penalty(params, config.penalty);
      opt.step();
      scaler.update();
      method.after_step();
      const at::Tensor weighted = loss.detach() * static_cast<double>(x.size(0));
      loss_acc = loss_acc.defined() ? loss_acc + weighted : weighted;
      seen += x.size(0);
      images += x.size(0);
      if (progress.due()) {
        char status[64];
        std::snprintf(status, sizeof status, "loss %.4f", loss_acc.item<double>() / static_cast<double>(seen));
        status_line = status;
      }
      progress.update(images, status_line);
    });
    const double loss_sum = loss_acc.defined() ? loss_acc.item<double>() : 0.0;
    const double epoch_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report.train_seconds += epoch_seconds;
    report.epoch_seconds.push_back(epoch_seconds);
    const double val_acc = resume.validate ? resume.validate(epoch)
                                           : evaluate(method, task.index, val, config.batch_size * 2, config.crop, numerics);
    report.epoch_loss.push_back(seen > 0 ? loss_sum / static_cast<double>(seen) : std::nan(""));
    report.epoch_val_accuracy.push_back(val_acc);
    report.epochs_run = epoch + 1;
    char status[96];
    std::snprintf(status, sizeof status, "loss %.4f, %s %.2f%%", report.epoch_loss.back(),
                  resume.score_name.c_str(), 100 * val_acc);
    progress.finish(status);
    if (record_validation(report, since_best, val_acc, epoch, config, task.name, [&] { best = method.snapshot(); })) {
      break;
    }
    if (resume.on_epoch_end && epoch + 1 < config.epochs) {
      // Copied out only if the hook keeps it (a whole network and its Adam moments for sgd).
      resume.on_epoch_end(report, [&] {
        TaskProgress p;
        p.next_epoch = epoch + 1;
        p.since_best = since_best;
        p.report = report;
        p.current = method.snapshot();
        p.best = best;
        p.optimizer = opt.state();
        p.scaler = scaler.state();
        p.steps = method.step_state();
        std::lock_guard<std::mutex> lock(cpu_rng.mutex());
        p.rng = cpu_rng.get_state();
        return p;
      });
    }
  }
  method.restore(best);
  report.images_per_second =
      report.train_seconds > 0 ? static_cast<double>(train.size() * report.epochs_run) / report.train_seconds : 0;
  return report;
}

}  // namespace clr::train
