#include "clr/train/parallel.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <torch/torch.h>

#include "clr/adapters/parallel.h"
#include "clr/core/error.h"
#include "clr/core/log.h"
#include "clr/core/progress.h"
#include "clr/core/torch_compat.h"
#include "clr/train/optimizer.h"

namespace clr::train {
namespace {

// What train_task keeps for one task, stepped from outside.
struct Lane {
  std::unique_ptr<data::BatchLoader> loader;
  std::unique_ptr<Optimizer> opt;
  std::vector<at::Tensor> params;
  data::BatchLoader::EpochPlan plan;
  int64_t epoch = 0, next = 0, since_best = 0, seen = 0;
  at::Tensor loss_sum;
  double epoch_seconds = 0;
  TensorMap best;
  TaskTrainReport report;
  bool done = false;
  std::optional<TaskProgress> saved;  // at the latest epoch end (with resume hooks)
};

double evaluate_one(adapters::ParallelTasks& tasks, size_t k, const data::PreparedSplit& split, int64_t batch_size,
                    int64_t crop, const Numerics& numerics, c10::Device device) {
  tasks.set_training(false);
  const double acc = accuracy(split, batch_size, crop, numerics, device, [&](const at::Tensor& x) {
    return tasks.forward(x, {k}, {x.size(0)}).front();
  });
  tasks.set_training(true);
  return acc;
}

}  // namespace

ParallelResult train_parallel(adapters::ReprogrammedNet net, const std::vector<ParallelTask>& tasks,
                              const TrainConfig& config, const ParallelResume& resume) {
  config.validate();
  CLR_CHECK(!tasks.empty(), ConfigError, "no tasks to learn");
  const c10::Device device = net->device();
  const Numerics numerics = numerics_for(config, device);
  CLR_CHECK(!numerics.loss_scaling, ConfigError,
            "train.precision fp16 is not supported with parallel tasks (its steps are skipped per task); use bf16");
  CLR_CHECK(resume.from.empty() || resume.from.size() == tasks.size(), ConfigError, "progress for ",
            resume.from.size(), " tasks given to learn ", tasks.size());
  auto from = [&](size_t k) -> const TaskProgress* {
    return resume.from.empty() || !resume.from[k] ? nullptr : &*resume.from[k];
  };
  std::vector<TensorMap> initial;
  for (size_t k = 0; k < tasks.size(); ++k) {
    const ParallelTask& t = tasks[k];
    CLR_CHECK(t.train != nullptr && t.val != nullptr && t.train->size() > 0, ConfigError, "task '", t.info.name,
              "' has no training images left");
    if (const TaskProgress* p = from(k)) {
      CLR_CHECK(p->next_epoch > 0 && (p->finished || p->next_epoch < config.epochs), ConfigError, "task '",
                t.info.name, "' cannot go on from epoch ", p->next_epoch + 1, " of ", config.epochs);
    }
    initial.push_back(from(k) != nullptr ? from(k)->current : t.initial_state);
  }
  adapters::ParallelTasks model(net, initial);
  model.set_training(true);

  std::vector<Lane> lanes(tasks.size());
  for (size_t k = 0; k < tasks.size(); ++k) {
    Lane& l = lanes[k];
    l.loader = std::make_unique<data::BatchLoader>(*tasks[k].train,
                                                   train_loader_options(config, tasks[k].info.index, device));
    l.params = model.trainable_parameters(k);
    l.opt = std::make_unique<Optimizer>(l.params, optimizer_options(config));
    l.report.best_val_accuracy = -1;
    if (const TaskProgress* p = from(k)) {
      l.opt->load_state(p->optimizer);
      l.report = p->report;
      l.best = p->best;
      l.since_best = p->since_best;
      l.epoch = p->next_epoch;
      l.saved = *p;
      log::info("task '", tasks[k].info.name, "': ",
                p->finished ? "learned already" : detail::concat("going on from epoch ", l.epoch + 1),
                " (best so far: epoch ", l.report.best_epoch, ", val ", 100 * l.report.best_val_accuracy, "%)");
    }
    l.done = from(k) != nullptr && from(k)->finished;
    if (!l.done) {
      l.opt->set_lr(lr_at(config, l.epoch));
      l.plan = l.loader->plan(l.epoch);
      l.done = l.plan.batches == 0;
    }
  }
  double trained_seconds = 0;

  int64_t total = 0;
  for (const auto& t : tasks) total += t.train->size();
  Progress progress(detail::concat("tasks ", tasks.front().info.index + 1, "-", tasks.back().info.index + 1,
                                   " in parallel"),
                    total * config.epochs);
  int64_t images = 0;
  while (true) {
    std::vector<size_t> active;
    std::vector<int64_t> sizes;
    std::vector<at::Tensor> xs, ys;
    for (size_t k = 0; k < lanes.size(); ++k) {
      if (lanes[k].done) continue;
      auto [x, y] = lanes[k].loader->batch(lanes[k].plan, lanes[k].next);
      active.push_back(k);
      sizes.push_back(x.size(0));
      xs.push_back(x);
      ys.push_back(y);
    }
    if (active.empty()) break;
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor x = xs.size() == 1 ? xs.front() : torch::cat(xs, 0);
    x = in_layout(x, numerics);
    for (size_t k : active) lanes[k].opt->zero_grad();
    std::vector<at::Tensor> losses;
    {
      const compat::AutocastGuard autocast(device.type(), numerics.autocast);
      const std::vector<at::Tensor> logits = model.forward(x, active, sizes);
      for (size_t i = 0; i < active.size(); ++i) {
        losses.push_back(torch::nn::functional::cross_entropy(logits[i], ys[i]));
      }
    }
    // Tasks share no trainable tensor, so the sum's gradient is each task's own.
    (losses.size() == 1 ? losses.front() : torch::stack(losses).sum()).backward();
    for (size_t i = 0; i < active.size(); ++i) {
      Lane& l = lanes[active[i]];
      at::Tensor loss = losses[i].detach();
      if (config.penalty > 0) loss = loss + config.penalty * add_norm_penalty(l.params, config.penalty);
      l.opt->step();
      const at::Tensor weighted = loss * static_cast<double>(sizes[i]);
      l.loss_sum = l.loss_sum.defined() ? l.loss_sum + weighted : weighted;
      l.seen += sizes[i];
      images += sizes[i];
    }
    const double step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    trained_seconds += step_seconds;
    progress.update(images, "");
    bool epoch_ended = false;
    for (size_t i = 0; i < active.size(); ++i) {
      const size_t k = active[i];
      Lane& l = lanes[k];
      l.epoch_seconds += step_seconds;
      if (++l.next < l.plan.batches) continue;
      // The task's epoch is over: validation, best state, early stopping, as train_task.
      const ParallelTask& task = tasks[k];
      TaskTrainReport& r = l.report;
      r.train_seconds += l.epoch_seconds;
      r.epoch_seconds.push_back(l.epoch_seconds);
      r.epoch_loss.push_back(l.seen > 0 ? l.loss_sum.item<double>() / static_cast<double>(l.seen) : std::nan(""));
      const double val = evaluate_one(model, k, *task.val, config.batch_size * 2, config.crop, numerics, device);
      r.epoch_val_accuracy.push_back(val);
      r.epochs_run = l.epoch + 1;
      log::info("task ", task.info.index + 1, " '", task.info.name, "' epoch ", l.epoch + 1, "/", config.epochs,
                ": loss ", r.epoch_loss.back(), ", val acc ", 100 * val, "%");
      const bool stop = record_validation(r, l.since_best, val, l.epoch, config, task.info.name,
                                          [&] { l.best = model.task_state(k); });
      ++l.epoch;
      l.done = stop || l.epoch >= config.epochs;
      if (resume.on_epoch_end) {
        TaskProgress p;
        p.next_epoch = l.epoch;
        p.since_best = l.since_best;
        p.report = r;
        p.current = model.task_state(k);
        p.best = l.best;
        p.optimizer = l.opt->state();
        p.finished = l.done;
        l.saved = std::move(p);
        epoch_ended = true;
      }
      if (l.done) continue;
      l.opt->set_lr(lr_at(config, l.epoch));
      l.plan = l.loader->plan(l.epoch);
      l.next = 0;
      l.seen = 0;
      l.loss_sum = at::Tensor();
      l.epoch_seconds = 0;
    }
    const bool more = std::any_of(lanes.begin(), lanes.end(), [](const Lane& l) { return !l.done; });
    if (epoch_ended && more) {
      std::vector<std::optional<TaskProgress>> saved;
      for (const Lane& l : lanes) saved.push_back(l.saved);
      resume.on_epoch_end(saved, trained_seconds);
    }
  }
  progress.finish("done");

  ParallelResult out;
  for (size_t k = 0; k < lanes.size(); ++k) {
    Lane& l = lanes[k];
    l.report.images_per_second =
        l.report.train_seconds > 0
            ? static_cast<double>(tasks[k].train->size() * l.report.epochs_run) / l.report.train_seconds
            : 0;
    out.reports.push_back(l.report);
    out.states.push_back(l.best.empty() ? model.task_state(k) : l.best);
  }
  return out;
}

}  // namespace clr::train
