// Tasks learned in one pass (train::train_parallel) against the same tasks learned
// one at a time (train::train_task on a ClrMethod): same data order, optimiser,
// schedule, early stopping and best-validation restore, so the same adapters up to the
// floating-point order of the shared convolutions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/adapters/parallel.h"
#include "clr/core/error.h"
#include "clr/models/registry.h"
#include "clr/train/clr_method.h"
#include "clr/train/parallel.h"
#include "clr/train/trainer.h"

namespace clr {
namespace {

// A small task whose classes differ in mean colour (learnable in a few epochs).
data::PreparedSplit par_split(int64_t n, int64_t classes, uint64_t seed) {
  torch::manual_seed(seed);
  data::PreparedSplit s;
  s.labels = torch::randint(0, classes, {n}, torch::kLong);
  const at::Tensor base = (s.labels.to(torch::kFloat) * (200.0 / classes)).view({n, 1, 1, 1});
  s.images = (base + 40 * torch::rand({n, 3, 12, 12})).clamp(0, 255).to(torch::kUInt8);
  return s;
}

struct Task {
  train::TaskInfo info;
  data::PreparedSplit train, val;
};

models::ResNet par_backbone() {
  torch::manual_seed(11);
  return models::make_resnet("resnet18", 0, /*small_stem=*/true);
}

void expect_states_close(const TensorMap& a, const TensorMap& b, double tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const auto& [k, v] : a) {
    ASSERT_TRUE(b.count(k)) << what << " " << k;
    const at::Tensor w = b.at(k);
    ASSERT_EQ(v.sizes(), w.sizes()) << what << " " << k;
    if (!v.is_floating_point()) {
      EXPECT_TRUE(v.equal(w)) << what << " " << k;
      continue;
    }
    const double scale = std::max(1.0, v.abs().max().item<double>());
    EXPECT_LE((v - w).abs().max().item<double>(), tol * scale) << what << " " << k;
  }
}

TEST(Parallel, TasksLearnedTogetherEndWithTheAdaptersTheyReachAlone) {
  for (const std::string variant : {"clr", "residual"}) {
    // Three tasks of different sizes (different batch counts, short last batches) and classes.
    std::vector<Task> tasks;
    const int64_t sizes[] = {21, 30, 13}, classes[] = {3, 2, 4};
    for (int64_t t = 0; t < 3; ++t) {
      tasks.push_back({{t, "t" + std::to_string(t), classes[t]},
                       par_split(sizes[t], classes[t], 100 + t),
                       par_split(10, classes[t], 200 + t)});
    }
    train::TrainConfig c;
    c.epochs = 3;
    c.batch_size = 8;
    c.patience = 0;  // early stopping in play: a task may stop before the others
    c.lr = 1e-2;
    c.seed = 4;

    // Alone, as the runner does it.
    train::ClrMethod alone(par_backbone(), adapters::ReprogramOptions().variant(adapters::parse_variant(variant)),
                           11689512);
    std::vector<train::TaskTrainReport> alone_reports;
    std::vector<TensorMap> initial;
    for (auto& t : tasks) {
      torch::manual_seed(c.seed * 1000003ull + static_cast<uint64_t>(t.info.index));
      initial.push_back(alone.net()->new_task_state(t.info.num_classes));
      torch::manual_seed(c.seed * 1000003ull + static_cast<uint64_t>(t.info.index));
      alone.begin_task(t.info);
      ASSERT_TRUE(alone.snapshot().at("head.weight").equal(initial.back().at("head.weight")));
      alone_reports.push_back(train::train_task(alone, t.info, t.train, t.val, c));
      train::TaskEnd end;
      end.train = &t.train;
      alone.end_task(end);
    }

    // Together, from the same starting states, on another copy of the same backbone.
    adapters::ReprogrammedNet net(par_backbone(),
                                  adapters::ReprogramOptions().variant(adapters::parse_variant(variant)), 2);
    const TensorMap backbone_before = net->backbone_state();
    std::vector<train::ParallelTask> together;
    for (size_t k = 0; k < tasks.size(); ++k) {
      together.push_back({tasks[k].info, &tasks[k].train, &tasks[k].val, initial[k]});
    }
    const train::ParallelResult r = train::train_parallel(net, together, c);
    ASSERT_EQ(r.states.size(), 3u);
    for (size_t k = 0; k < tasks.size(); ++k) {
      const std::string what = variant + " task " + std::to_string(k);
      EXPECT_EQ(r.reports[k].epochs_run, alone_reports[k].epochs_run) << what;
      EXPECT_EQ(r.reports[k].best_epoch, alone_reports[k].best_epoch) << what;
      ASSERT_EQ(r.reports[k].epoch_val_accuracy.size(), alone_reports[k].epoch_val_accuracy.size()) << what;
      for (size_t e = 0; e < r.reports[k].epoch_val_accuracy.size(); ++e) {
        EXPECT_EQ(r.reports[k].epoch_val_accuracy[e], alone_reports[k].epoch_val_accuracy[e]) << what << " epoch " << e;
        EXPECT_NEAR(r.reports[k].epoch_loss[e], alone_reports[k].epoch_loss[e], 1e-4) << what << " epoch " << e;
      }
      expect_states_close(r.states[k], alone.task_state(static_cast<int64_t>(k)), 1e-4, what);
      // The tasks did train (the adapters moved away from where they started).
      EXPECT_FALSE(r.states[k].at("head.weight").equal(initial[k].at("head.weight"))) << what;
    }
    // The shared backbone was only read.
    for (const auto& [k, v] : net->backbone_state()) EXPECT_TRUE(v.equal(backbone_before.at(k))) << k;
  }
}

// A batch of every task with equal counts runs grouped (one depthwise convolution and
// one BatchNorm over all tasks' channels at a site); it must compute what each task's
// slice computes alone: logits, and the running statistics and counts it updates.
TEST(Parallel, GroupedBatchEqualsEachTaskAlone) {
  for (const bool channels_last : {false, true}) {
    adapters::ReprogrammedNet net(par_backbone(), adapters::ReprogramOptions(), 2);
    std::vector<TensorMap> states;
    for (int64_t k = 0; k < 3; ++k) {
      torch::manual_seed(30 + k);
      TensorMap s = net->new_task_state(2 + k);
      for (auto& [key, v] : s) {  // tasks that differ: kernels, affine and statistics
        if (v.is_floating_point()) v = v + 0.05 * torch::randn_like(v) * (key.find("running_var") != std::string::npos ? 0 : 1);
      }
      states.push_back(s);
    }
    adapters::ParallelTasks together(net, states), alone(net, states);
    together.set_training(true);
    alone.set_training(true);
    torch::manual_seed(40);
    const at::Tensor x = torch::randn({12, 3, 12, 12});
    const at::Tensor xin = channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
    const std::vector<at::Tensor> grouped = together.forward(xin, {0, 1, 2}, {4, 4, 4});
    for (size_t k = 0; k < 3; ++k) {
      const std::string what = (channels_last ? "channels-last task " : "task ") + std::to_string(k);
      const at::Tensor one = alone.forward(x.narrow(0, static_cast<int64_t>(4 * k), 4), {k}, {4}).front();
      ASSERT_EQ(grouped[k].sizes(), one.sizes()) << what;
      EXPECT_LE((grouped[k] - one).abs().max().item<double>(), 1e-4) << what;
      expect_states_close(together.task_state(k), alone.task_state(k), 1e-5, what);
    }
    // The gradient reaches every task's own kernels.
    torch::stack({grouped[0].sum(), grouped[1].sum(), grouped[2].sum()}).sum().backward();
    for (size_t k = 0; k < 3; ++k) {
      for (const auto& p : together.trainable_parameters(k)) EXPECT_TRUE(p.grad().defined());
    }
  }
}

TEST(Parallel, BadBatchesAndFp16AreRefused) {
  adapters::ReprogrammedNet net(par_backbone(), adapters::ReprogramOptions(), 2);
  adapters::ParallelTasks p(net, {net->new_task_state(2), net->new_task_state(3)});
  const at::Tensor x = torch::randn({5, 3, 8, 8});
  EXPECT_THROW(p.forward(x, {0, 1}, {2, 2}), ConfigError);  // counts add up to 4, not 5
  EXPECT_THROW(p.forward(x, {0, 2}, {2, 3}), ConfigError);  // no task 2
  const auto logits = p.forward(x, {1, 0}, {2, 3});
  EXPECT_EQ(logits[0].sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(logits[1].sizes(), (std::vector<int64_t>{3, 2}));
  TensorMap bad = net->new_task_state(2);
  bad.erase("head.bias");
  EXPECT_THROW(adapters::ParallelTasks(net, {bad}), IncompatibleError);
  train::TrainConfig c;
  c.precision = "fp16";
  data::PreparedSplit s = par_split(4, 2, 1);
  train::ParallelTask one;
  one.info = {0, "a", 2};
  one.train = one.val = &s;
  one.initial_state = net->new_task_state(2);
  EXPECT_THROW(train::train_parallel(net, {one}, c), ConfigError);
}

}  // namespace
}  // namespace clr
