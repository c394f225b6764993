// The continual-learning baselines (docs/METHODS.md) through the real runner: the
// exact sanity checks of METHODS.md, the replay buffer's budget and balance, and a
// two-task sequence built so that plain fine-tuning must forget.
#include <map>
#include <random>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/progress.h"
#include "clr/core/safetensors.h"
#include "clr/data/synthetic.h"
#include "clr/eval/runner.h"
#include "clr/models/registry.h"
#include "clr/train/methods/registry.h"
#include "clr/train/methods/regularized.h"
#include "clr/train/methods/replay.h"
#include "clr/train/methods/psp.h"
#include "clr/train/methods/separate.h"
#include "clr/data/image.h"
#include "clr/data/loader.h"
#include "test_util.h"

namespace clr {
namespace {

data::Sequence shapes_sequence(int tasks) {
  data::Sequence seq;
  const int classes[] = {3, 5, 4};
  for (int t = 0; t < tasks; ++t) {
    data::ShapesOptions o;
    o.classes = classes[t % 3];
    o.train_per_class = 8;
    o.val_per_class = 2;
    o.test_per_class = 4;
    o.size = 8;
    o.seed = 10 + static_cast<uint64_t>(t);
    data::TaskData task = data::make_shapes_task(o);
    task.name = "t" + std::to_string(t);
    seq.push_back(task);
  }
  return seq;
}

// Task 1: the colour of a noisy, bright, uniformly coloured image. Task 2: where a
// white square sits on a black image. Fine-tuning everything on task 2 moves the
// shared features and BatchNorm statistics far from what task 1's head was trained
// on, so sgd must lose task 1.
data::Sequence conflicting_sequence() {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> noise(-25, 25), pos(0, 3);
  const int colours[4][3] = {{220, 40, 40}, {40, 220, 40}, {40, 40, 220}, {220, 220, 40}};
  auto make = [&](int task, int64_t per_class) {
    data::Split s;
    s.images = torch::zeros({4 * per_class, 16, 16, 3}, torch::kUInt8);
    auto a = s.images.accessor<uint8_t, 4>();
    for (int64_t i = 0; i < 4 * per_class; ++i) {
      const int k = static_cast<int>(i % 4);
      s.labels.push_back(k);
      for (int y = 0; y < 16; ++y) {
        for (int x = 0; x < 16; ++x) {
          for (int c = 0; c < 3; ++c) {
            int v = 0;
            if (task == 0) {
              v = colours[k][c] + noise(rng);
            } else {
              const int qy = (k / 2) * 8 + 2, qx = (k % 2) * 8 + 2;
              v = (y >= qy && y < qy + 4 && x >= qx && x < qx + 4) ? 255 : pos(rng) * 4;
            }
            a[i][y][x][c] = static_cast<uint8_t>(std::clamp(v, 0, 255));
          }
        }
      }
    }
    return s;
  };
  data::Sequence seq;
  for (int t = 0; t < 2; ++t) {
    data::TaskData task;
    task.name = t == 0 ? "colour" : "where";
    task.origin = "test";
    task.classes = {"0", "1", "2", "3"};
    task.train = make(t, 24);
    task.val = make(t, 4);
    task.test = make(t, 10);
    seq.push_back(task);
  }
  return seq;
}

struct MethodRun {
  eval::Results results;
  std::string backbone;  // fingerprint of the final backbone
  TensorMap heads;       // every task's saved state
  TensorMap method_state;
};

// The runner's options for the small CPU runs of these tests (no progress bars).
eval::RunOptions small_run(const std::string& out, int64_t epochs, int64_t size = 8) {
  eval::RunOptions o;
  o.train.epochs = epochs;
  o.train.batch_size = 8;
  o.prepare.size = size;  // 8 x 8 by default: eleven runs of ResNet-18 stay cheap on 2 cores
  o.out_dir = out;
  o.backbone_arch = "resnet18";
  o.device = "cpu";
  Progress::set_enabled(false);
  return o;
}

MethodRun run_method(const std::string& name, train::MethodOptions mo, data::Sequence seq, const std::string& out,
               int64_t epochs = 2, double lr = 1e-3, int64_t size = 8) {
  torch::manual_seed(0);
  models::ResNet backbone = models::make_resnet("resnet18", 0, true);
  for (const auto& t : seq) mo.max_classes = std::max<int64_t>(mo.max_classes, static_cast<int64_t>(t.classes.size()));
  auto method = train::make_method(name, backbone, 11689512, mo);
  eval::RunOptions o = small_run(out, epochs, size);
  o.train.lr = lr;
  MethodRun r;
  r.results = eval::run_sequence(*method, std::move(seq), o);
  r.backbone = fingerprint(models::state_dict(*backbone));
  for (size_t t = 0; t < r.results.tasks.size(); ++t) {
    for (const auto& [k, v] : method->task_state(static_cast<int64_t>(t))) r.heads.emplace(std::to_string(t) + k, v);
  }
  r.method_state = method->method_state();
  return r;
}

void expect_same_run(const MethodRun& a, const MethodRun& b, const std::string& what) {
  ASSERT_EQ(a.results.accuracy.size(), b.results.accuracy.size());
  for (size_t i = 0; i < a.results.accuracy.size(); ++i) {
    for (size_t j = 0; j <= i; ++j) EXPECT_EQ(*a.results.accuracy[i][j], *b.results.accuracy[i][j]) << what;
  }
  EXPECT_EQ(a.backbone, b.backbone) << what << ": the final backbones differ";
  EXPECT_EQ(fingerprint(a.heads), fingerprint(b.heads)) << what << ": the heads differ";
}

// lambda = 0 (and c = 0, alpha = 0, an empty buffer) must be sgd bit for bit; with the
// default weight the same run must differ, so the comparison can fail.
TEST(Baselines, ZeroWeightIsSgdBitForBit) {
  test::TempDir dir("zero");
  const MethodRun sgd = run_method("sgd", {}, shapes_sequence(3), dir.path() + "/sgd");
  train::MethodOptions zero;
  zero.ewc.lambda = 0;
  zero.ewc.fisher_samples = 8;
  zero.si.c = 0;
  zero.lwf.alpha = 0;
  zero.replay.buffer = 0;
  for (const std::string name : {"ewc", "online-ewc", "si", "lwf", "er", "derpp"}) {
    const MethodRun r = run_method(name, zero, shapes_sequence(3), dir.path() + "/" + name);
    expect_same_run(sgd, r, name + " with a zero weight");
  }
  train::MethodOptions strong;
  strong.ewc.lambda = 1e8;
  strong.ewc.fisher_samples = 8;
  strong.si.c = 1e3;
  strong.lwf.alpha = 10;
  strong.replay.buffer = 16;
  for (const std::string name : {"ewc", "si", "lwf", "er"}) {
    const MethodRun r = run_method(name, strong, shapes_sequence(3), dir.path() + "/strong-" + name);
    EXPECT_NE(sgd.backbone, r.backbone) << name << " with a non-zero weight should not be sgd";
  }
}

// With two tasks online EWC and EWC see the same Fisher and anchor: the same run.
TEST(Baselines, OnlineEwcEqualsEwcOnTwoTasks) {
  test::TempDir dir("ewc2");
  train::MethodOptions mo;
  mo.ewc.lambda = 1e5;
  mo.ewc.fisher_samples = 8;
  // (At lr 1e-2 this tiny model saturates, p = 1 exactly, and its Fisher is 0.)
  const MethodRun a = run_method("ewc", mo, shapes_sequence(2), dir.path() + "/ewc");
  const MethodRun b = run_method("online-ewc", mo, shapes_sequence(2), dir.path() + "/online");
  expect_same_run(a, b, "online-ewc vs ewc on two tasks");
  // The Fisher is a sum of squares: >= 0 everywhere, and not all 0.
  double total = 0;
  for (const auto& [k, v] : a.method_state) {
    if (k.rfind("ewc.precision.", 0) != 0) continue;
    EXPECT_GE(v.min().item<double>(), 0.0) << k;
    total += v.sum().item<double>();
  }
  EXPECT_GT(total, 0.0);
  // Stored bytes count the Fisher and centre once: 2 x backbone floats when the
  // state appears, then only heads.
  int64_t backbone_floats = 0;
  for (const auto& [k, v] : models::state_dict(*models::make_resnet("resnet18", 0, true))) {
    if (k.find("running") == std::string::npos && k.find("num_batches") == std::string::npos) {
      backbone_floats += v.numel();
    }
  }
  EXPECT_EQ(a.results.tasks[0].stored_bytes, 2 * 4 * backbone_floats + 4 * (512 * 3 + 3));
  EXPECT_EQ(a.results.tasks[1].stored_bytes, 4 * (512 * 5 + 5));
}

TEST(Baselines, SgdForgetsAConflictingSecondTask) {
  test::TempDir dir("forget");
  const MethodRun sgd = run_method("sgd", {}, conflicting_sequence(), dir.path() + "/sgd", 4, 1e-3, 16);
  const auto& r = sgd.results.accuracy;
  std::printf("sgd on the conflicting sequence: task 1 %.3f -> %.3f, task 2 %.3f\n", *r[0][0], *r[1][0], *r[1][1]);
  EXPECT_GT(*r[0][0], 0.9);  // task 1 was learned
  EXPECT_GT(*r[0][0] - *r[1][0], 0.3) << "sgd should lose task 1";
  EXPECT_GT(eval::forgetting(r), 0.3);
  // The methods that cannot forget, on the same sequence.
  for (const std::string name : {"clr", "linear", "separate"}) {
    const MethodRun m = run_method(name, {}, conflicting_sequence(), dir.path() + "/" + name, 4, 1e-3, 16);
    EXPECT_EQ(*m.results.accuracy[1][0], *m.results.accuracy[0][0]) << name;
  }
}

TEST(ReplayBuffer, NeverExceedsItsBudgetAndStaysClassBalanced) {
  // 10 tasks of 5 classes x 100 images offered in class order; 500 slots.
  train::ReplayBuffer buffer(500, 0, 7);
  std::map<std::pair<int64_t, int64_t>, int64_t> counts;
  for (int64_t task = 0; task < 10; ++task) {
    const at::Tensor images = torch::full({500, 3, 2, 2}, task, torch::kUInt8);
    const at::Tensor labels = torch::arange(500, torch::kLong).div(100, "floor");
    buffer.offer(images, labels, task);
    EXPECT_LE(buffer.size(), 500);
    EXPECT_EQ(buffer.size(), std::min<int64_t>(500, (task + 1) * 500));
  }
  EXPECT_EQ(buffer.seen(), 5000);
  const at::Tensor tasks = buffer.tasks(), labels = buffer.labels();
  for (int64_t i = 0; i < buffer.size(); ++i) ++counts[{tasks[i].item<int64_t>(), labels[i].item<int64_t>()}];
  // Each of the 50 (task, class) pairs expects 10 slots (binomial sd ~3.1).
  ASSERT_EQ(counts.size(), 50u);
  for (const auto& [key, n] : counts) EXPECT_NEAR(n, 10, 10) << "task " << key.first << " class " << key.second;
  // Images, labels and tasks stay aligned.
  EXPECT_TRUE(buffer.images().select(1, 0).select(1, 0).select(1, 0).to(torch::kLong).equal(tasks));
}

TEST(ReplayBuffer, EveryItemIsKeptWithProbabilityBudgetOverStream) {
  const int64_t n = 100, m = 10, trials = 2000;
  std::vector<int64_t> kept(n, 0);
  for (int64_t s = 0; s < trials; ++s) {
    train::ReplayBuffer buffer(m, 0, static_cast<uint64_t>(s));
    for (int64_t chunk = 0; chunk < 4; ++chunk) {  // offered in several calls, like tasks
      const at::Tensor ids = torch::arange(chunk * 25, (chunk + 1) * 25, torch::kLong);
      buffer.offer(torch::zeros({25, 3, 1, 1}, torch::kUInt8), ids, chunk);
    }
    const at::Tensor l = buffer.labels();
    for (int64_t i = 0; i < l.size(0); ++i) ++kept[static_cast<size_t>(l[i].item<int64_t>())];
  }
  for (int64_t i = 0; i < n; ++i) {  // expected 200 each, sd ~13.4
    EXPECT_NEAR(static_cast<double>(kept[static_cast<size_t>(i)]) / trials, 0.1, 0.03) << "item " << i;
  }
}

TEST(Baselines, DerppStoresLogitsAndSavesItsBuffer) {
  test::TempDir dir("derpp");
  train::MethodOptions mo;
  mo.replay.buffer = 12;
  const MethodRun r = run_method("derpp", mo, shapes_sequence(2), dir.path());
  ASSERT_EQ(r.method_state.count("buffer.logits"), 1u);
  EXPECT_EQ(r.method_state.at("buffer.images").size(0), 12);
  EXPECT_EQ(r.method_state.at("buffer.logits").sizes(), (std::vector<int64_t>{12, 5}));
  EXPECT_GT(r.method_state.at("buffer.logits").abs().sum().item<double>(), 0.0);
  const TensorMap saved = read_safetensors(dir.path() + "/method_state.safetensors").tensors;
  EXPECT_TRUE(saved.at("buffer.images").equal(r.method_state.at("buffer.images")));
  // The buffer is counted in the stored bytes: 12 images of 3x8x8 bytes with their
  // labels, tasks and logits, and the head.
  EXPECT_EQ(r.results.tasks[0].stored_bytes, 4 * (512 * 3 + 3) + total_bytes(r.method_state));
}

// Each DER++ term has an effect: switching either weight on changes the run that has
// both off (which still replays through BatchNorm, so it is compared with itself).
TEST(Baselines, EachDerppTermChangesTheRun) {
  test::TempDir dir("derpp-terms");
  auto with = [&](double alpha, double beta, const std::string& name) {
    train::MethodOptions mo;
    mo.replay.buffer = 12;
    mo.replay.alpha = alpha;
    mo.replay.beta = beta;
    return run_method("derpp", mo, shapes_sequence(2), dir.path() + "/" + name);
  };
  const MethodRun none = with(0, 0, "none");
  EXPECT_EQ(with(0, 0, "none-again").backbone, none.backbone) << "the run is not deterministic";
  EXPECT_NE(with(0.2, 0, "alpha").backbone, none.backbone) << "the logit-matching term has no effect";
  EXPECT_NE(with(0, 0.5, "beta").backbone, none.backbone) << "the replayed cross-entropy has no effect";
}

// The logits DER++ stores for the last task's images are that task's final model's
// eval-mode logits of the very images stored.
TEST(Baselines, DerppStoresTheFinalModelsLogits) {
  test::TempDir dir("derpp-logits");
  torch::manual_seed(0);
  train::MethodOptions mo;
  mo.replay.buffer = 40;
  mo.max_classes = 5;
  auto method = train::make_method("derpp", models::make_resnet("resnet18", 0, true), 11689512, mo);
  eval::run_sequence(*method, shapes_sequence(2), small_run(dir.path(), 1));
  const auto& replay = dynamic_cast<const train::ReplayMethod&>(*method);
  const at::Tensor tasks = replay.buffer().tasks();
  const at::Tensor last = tasks.eq(1).nonzero().squeeze(1);
  ASSERT_GT(last.size(0), 0) << "the buffer holds none of the last task's images";
  method->set_training(false);
  torch::NoGradGuard ng;
  const at::Tensor images = data::normalize(replay.buffer().images().index_select(0, last));
  const at::Tensor expected = method->predict(1, images);
  const at::Tensor stored = replay.buffer().logits().index_select(0, last).narrow(1, 0, 5);
  EXPECT_LT((expected - stored).abs().max().item<double>(), 1e-5);
}

// ER trains an old head only while its task has images in the buffer.
TEST(Baselines, ErTrainsOnlyTheHeadsOfReplayedTasks) {
  train::ReplayOptions ro;
  ro.buffer = 4;
  train::ReplayMethod m(models::make_resnet("resnet18", 0, true), 1, 3, ro);
  data::PreparedSplit some, none;
  some.images = torch::zeros({10, 3, 8, 8}, torch::kUInt8);
  some.labels = torch::zeros({10}, torch::kLong);
  none.images = torch::zeros({0, 3, 8, 8}, torch::kUInt8);
  none.labels = torch::zeros({0}, torch::kLong);
  train::TaskEnd end;
  m.begin_task({0, "a", 3});
  end.train = &some;
  m.end_task(end);  // the buffer now holds only task 0
  m.begin_task({1, "b", 3});
  end.train = &none;
  m.end_task(end);  // task 1 offers nothing
  m.begin_task({2, "c", 3});
  EXPECT_EQ(m.replayed_tasks(), (std::vector<int64_t>{0}));
  // Trainable: the backbone, the current head and task 0's head; task 1's is left out.
  int64_t head_weights = 0;
  for (const auto& p : m.trainable_parameters()) head_weights += p.dim() == 2 && p.size(1) == 512 ? 1 : 0;
  EXPECT_EQ(head_weights, 2);
}

// Every replayed sample goes through its own task's head (all heads in one product,
// the other tasks' columns masked): with the whole buffer replayed and BatchNorm in
// eval mode, ER's loss and DER++'s terms equal what each head gives on its own.
TEST(Baselines, ReplayedSamplesGoThroughTheirOwnTasksHeads) {
  for (const bool derpp : {false, true}) {
    torch::manual_seed(11);
    train::ReplayOptions ro;
    ro.buffer = 12;
    ro.batch = 12;  // replay the whole buffer: the loss does not depend on the draw's order
    ro.derpp = derpp;
    ro.alpha = 1.0;
    ro.beta = 1.0;
    train::ReplayMethod m(models::make_resnet("resnet18", 0, true), 1, 5, ro);
    const std::vector<int64_t> classes{3, 5, 2};
    std::vector<data::PreparedSplit> splits(3);
    train::TaskEnd end;
    for (int64_t t = 0; t < 3; ++t) {
      splits[t].images = torch::randint(0, 256, {4, 3, 8, 8}).to(torch::kUInt8);
      splits[t].labels = torch::randint(0, classes[t], {4});
      m.begin_task({t, "t" + std::to_string(t), classes[t]});
      end.train = &splits[t];
      m.end_task(end);
    }
    ASSERT_EQ(m.buffer().size(), 12);
    m.begin_task({3, "d", 4});
    m.set_training(false);
    const at::Tensor x = data::normalize(torch::randint(0, 256, {6, 3, 8, 8}).to(torch::kUInt8));
    const at::Tensor y = torch::randint(0, 4, {6});
    const double loss = m.loss(x, y).item<double>();
    namespace F = torch::nn::functional;
    const auto sum = F::CrossEntropyFuncOptions().reduction(torch::kSum);
    double current = F::cross_entropy(m.predict(3, x), y, sum).item<double>(), replayed = 0;
    for (int64_t t = 0; t < 3; ++t) {
      replayed += F::cross_entropy(m.predict(t, data::normalize(splits[static_cast<size_t>(t)].images)),
                                   splits[static_cast<size_t>(t)].labels, sum)
                      .item<double>();
    }
    // ER: one mean over current and replayed samples. DER++: the current mean, the
    // logit term (0: nothing has trained since the logits were stored) and the replayed mean.
    const double expected = derpp ? current / 6 + replayed / 12 : (current + replayed) / 18;
    EXPECT_NEAR(loss, expected, 1e-4 * std::max(1.0, std::abs(expected))) << (derpp ? "derpp" : "er");
  }
}

// EWC's merged penalty (lambda/2) A (theta - c)^2 has the gradient of the sum of one
// penalty per task, sum_k lambda F_k (theta - theta*_k), over three tasks (the merge
// is not exercised by two), with Fisher values that are 0 in places.
TEST(Baselines, OfflineEwcMergeHasTheGradientOfOnePenaltyPerTask) {
  torch::manual_seed(5);
  std::vector<at::Tensor> a, c, fs, thetas;
  for (int k = 0; k < 3; ++k) {
    at::Tensor f = torch::rand({50}, torch::kDouble) * (torch::rand({50}, torch::kDouble) > 0.3);
    at::Tensor theta = torch::randn({50}, torch::kDouble);
    fs.push_back(f);
    thetas.push_back(theta);
    std::vector<at::Tensor> fk{f}, tk{theta};
    train::EwcMethod::merge_offline(a, c, fk, tk);
  }
  const at::Tensor theta = torch::randn({50}, torch::kDouble);
  const double lambda = 3;
  at::Tensor expected = torch::zeros({50}, torch::kDouble);
  for (int k = 0; k < 3; ++k) expected += lambda * fs[k] * (theta - thetas[k]);
  const at::Tensor merged = lambda * a[0] * (theta - c[0]);
  EXPECT_LT((merged - expected).abs().max().item<double>(), 1e-12);
  EXPECT_TRUE(a[0].equal(fs[0] + fs[1] + fs[2]));
}

TEST(Baselines, SeparateStartsEveryTaskFromThePretrainedBackbone) {
  torch::manual_seed(0);
  models::ResNet backbone = models::make_resnet("resnet18", 0, true);
  const std::string pretrained = fingerprint(models::state_dict(*backbone));
  train::SeparateMethod m(backbone, 1);
  data::PreparedSplit s;
  s.images = torch::zeros({2, 3, 8, 8}, torch::kUInt8);
  s.labels = torch::zeros({2}, torch::kLong);
  train::TaskEnd end;
  end.train = &s;
  m.begin_task({0, "a", 3});
  {
    torch::NoGradGuard ng;
    backbone->conv1->weight.add_(1);  // what training task 0 would do
  }
  m.end_task(end);
  EXPECT_NE(fingerprint(m.task_state(0)), "");
  m.begin_task({1, "b", 3});
  EXPECT_EQ(fingerprint(models::state_dict(*backbone)), pretrained);
  EXPECT_TRUE(m.task_state(0).at("backbone.conv1.weight").equal(backbone->conv1->weight + 1));
}

TEST(Baselines, SeparateCostsAWholeBackbonePerTask) {
  test::TempDir dir("separate");
  const MethodRun r = run_method("separate", {}, shapes_sequence(2), dir.path());
  int64_t backbone = 0;  // resnet18 with the small stem, without fc
  for (const auto& p : models::make_resnet("resnet18", 0, true)->parameters()) backbone += p.numel();
  EXPECT_EQ(r.results.tasks[1].extra_params, backbone + 512 * 5 + 5);
  EXPECT_EQ(*r.results.accuracy[1][0], *r.results.accuracy[0][0]);
}

// METHODS.md §9 Sanity: with every context all ones PSP is sgd with a head per task,
// bit for bit; with random contexts it is not, and the contexts stay +-1, fixed.
TEST(Baselines, PspWithOnesContextsIsSgdBitForBit) {
  test::TempDir dir("psp");
  const MethodRun sgd = run_method("sgd", {}, shapes_sequence(3), dir.path() + "/sgd");
  train::MethodOptions ones;
  ones.psp.context = "ones";
  MethodRun psp = run_method("psp", ones, shapes_sequence(3), dir.path() + "/ones");
  TensorMap heads;  // psp's states also hold the (all-ones) contexts
  for (const auto& [k, v] : psp.heads) {
    if (k.find("context.") == std::string::npos) heads.emplace(k, v);
  }
  psp.heads = heads;
  expect_same_run(sgd, psp, "psp with all-ones contexts");
  const MethodRun random = run_method("psp", {}, shapes_sequence(3), dir.path() + "/random");
  EXPECT_NE(sgd.backbone, random.backbone) << "random contexts should change the run";
  // Each task's contexts: +-1, about half of each, and different tasks differ.
  torch::manual_seed(0);
  train::PspOptions o;
  o.seed = 3;
  train::PspMethod m(models::make_resnet("resnet18", 0, true), 1, o);
  m.begin_task({0, "a", 2});
  m.begin_task({1, "b", 2});
  const at::Tensor c0 = m.context(0, 19).clone(), c1 = m.context(1, 19);  // layer4.1.conv2: 4,608 values
  EXPECT_TRUE(c0.abs().eq(1).all().item<bool>());
  EXPECT_NEAR(c0.gt(0).to(torch::kFloat64).mean().item<double>(), 0.5, 0.05);
  EXPECT_FALSE(c0.equal(c1));
}

TEST(Baselines, UnknownMethodNamesTheKnownOnes) {
  try {
    train::make_method("ewcc", models::make_resnet("resnet18", 0, true), 1, {});
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("online-ewc"), std::string::npos) << e.what();
  }
}

// Method::checkpoint / resume (a stopped run going on, eval/checkpoint.h): every method,
// built afresh and given the checkpoint of one that learned two tasks, predicts every
// task as that one does, bit for bit, and holds the same state.
TEST(Resume, ACheckpointPutsEveryMethodBackExactly) {
  for (const std::string& name : train::method_names()) {
    SCOPED_TRACE(name);
    test::TempDir out("resume-" + name);
    train::MethodOptions mo;
    mo.max_classes = 5;
    torch::manual_seed(0);
    auto method = train::make_method(name, models::make_resnet("resnet18", 0, true), 11689512, mo);
    ASSERT_TRUE(method->resumable());
    data::Sequence seq = shapes_sequence(2);
    std::vector<train::TaskInfo> done;
    for (size_t t = 0; t < seq.size(); ++t) {
      done.push_back({static_cast<int64_t>(t), seq[t].name, static_cast<int64_t>(seq[t].classes.size())});
    }
    eval::run_sequence(*method, seq, small_run(out.path(), 1));
    const TensorMap saved = method->checkpoint();

    torch::manual_seed(0);
    auto again = train::make_method(name, models::make_resnet("resnet18", 0, true), 11689512, mo);
    again->resume(done, saved);
    EXPECT_EQ(fingerprint(again->checkpoint()), fingerprint(saved));
    EXPECT_EQ(fingerprint(again->method_state()), fingerprint(method->method_state()));
    const at::Tensor x = torch::randn({6, 3, 8, 8});
    method->set_training(false);
    again->set_training(false);
    torch::NoGradGuard no_grad;
    for (int64_t t = 0; t < 2; ++t) {
      EXPECT_TRUE(test::bit_identical(method->predict(t, x), again->predict(t, x))) << "task " << t;
      EXPECT_EQ(fingerprint(method->task_state(t)), fingerprint(again->task_state(t))) << "task " << t;
      EXPECT_EQ(method->extra_params(t), again->extra_params(t)) << "task " << t;
    }
  }
}

// A run stopped (as Ctrl-C stops it) in the middle of its first task, then in the middle
// of its second, and resumed each time by a new method object, as a new process would,
// ends with the accuracies, chosen epochs and stored states of a run never stopped:
// every method, the cross-task state (Fisher, buffer, path integrals, bases) and the
// state within a task (SI's path integral, the buffer's draws) included.
TEST(Resume, StoppedTwiceEveryMethodEndsAsIfNeverStopped) {
  for (const std::string& name : train::method_names()) {
    SCOPED_TRACE(name);
    test::TempDir out("resume-stop-" + name);
    train::MethodOptions mo;
    mo.max_classes = 5;
    const auto run = [&](const std::string& dir, int stop_at_call, TensorMap* checkpoint) {
      torch::manual_seed(0);
      auto method = train::make_method(name, models::make_resnet("resnet18", 0, true), 11689512, mo);
      eval::RunOptions o = small_run(dir, 2);
      o.train.patience = 100;
      int calls = 0;
      o.stop = [&] { return ++calls == stop_at_call; };
      try {
        eval::run_sequence(*method, shapes_sequence(2), o);
      } catch (const StoppedError&) {
        return false;
      }
      *checkpoint = method->checkpoint();
      return true;
    };
    TensorMap whole, resumed;
    ASSERT_TRUE(run(out.path() + "/whole", 0, &whole));
    // Asked after epoch 1 of task 1, task 1 and epoch 1 of task 2 (not after a task's
    // last epoch, nor after the last task).
    EXPECT_FALSE(run(out.path() + "/stopped", 1, &resumed));  // after epoch 1 of task 1
    EXPECT_FALSE(run(out.path() + "/stopped", 2, &resumed));  // then after epoch 1 of task 2
    ASSERT_TRUE(run(out.path() + "/stopped", 0, &resumed));
    EXPECT_EQ(fingerprint(whole), fingerprint(resumed));
    const eval::Results a = eval::read_results(out.path() + "/whole/results.json");
    const eval::Results b = eval::read_results(out.path() + "/stopped/results.json");
    EXPECT_TRUE(b.complete);
    EXPECT_EQ(a.accuracy, b.accuracy);
    ASSERT_EQ(a.tasks.size(), b.tasks.size());
    for (size_t t = 0; t < a.tasks.size(); ++t) {
      EXPECT_EQ(a.tasks[t].best_epoch, b.tasks[t].best_epoch) << t;
      EXPECT_EQ(a.tasks[t].best_val_accuracy, b.tasks[t].best_val_accuracy) << t;
      EXPECT_EQ(a.tasks[t].stored_bytes, b.tasks[t].stored_bytes) << t;
    }
  }
}

// Tasks learned in parallel (--parallel-tasks) are checkpointed at each task's epoch
// ends: a run stopped twice inside the chunk goes on from there and ends as one never
// stopped. The tasks' epochs end at different steps (3, 5 and 4 batches an epoch), so a
// resumed task repeats the part of an epoch it was in, beside other tasks' mini-batches
// than before: equal up to the floating-point order of the shared convolutions.
TEST(Resume, TasksLearnedInParallelGoOnFromTheirEpochEnds) {
  test::TempDir out("resume-parallel");
  const auto run = [&](const std::string& dir, int stop_at_call, TensorMap* checkpoint, int* calls_made) {
    torch::manual_seed(0);
    auto method = train::make_method("clr", models::make_resnet("resnet18", 0, true), 11689512, {});
    eval::RunOptions o = small_run(dir, 4);
    o.train.patience = 100;
    o.train.parallel_tasks = 3;
    int calls = 0;
    o.stop = [&] { return ++calls == stop_at_call; };
    bool finished = true;
    try {
      eval::run_sequence(*method, shapes_sequence(3), o);
      *checkpoint = method->checkpoint();
    } catch (const StoppedError&) {
      finished = false;
    }
    if (calls_made != nullptr) *calls_made = calls;
    return finished;
  };
  TensorMap whole, resumed;
  int calls = 0;
  ASSERT_TRUE(run(out.path() + "/whole", 0, &whole, &calls));
  EXPECT_GE(calls, 8) << "the chunk's epoch ends (12 in all, the last ones not asked)";
  EXPECT_FALSE(run(out.path() + "/stopped", 2, &resumed, nullptr));
  EXPECT_TRUE(file_exists(out.path() + "/stopped/checkpoint/parallel.safetensors"));
  EXPECT_FALSE(run(out.path() + "/stopped", 4, &resumed, nullptr));
  int calls_left = 0;
  ASSERT_TRUE(run(out.path() + "/stopped", 0, &resumed, &calls_left));
  EXPECT_FALSE(file_exists(out.path() + "/stopped/checkpoint/parallel.safetensors"));
  // It went on from the checkpoint: fewer epochs were left than a start from scratch has
  // (so an equal result is not that of learning the chunk again).
  EXPECT_LT(calls_left, calls - 3) << calls;
  ASSERT_EQ(whole.size(), resumed.size());
  double worst = 0;
  for (const auto& [k, v] : whole) worst = std::max(worst, test::max_abs_diff(v, resumed.at(k)));
  EXPECT_LT(worst, 1e-4);
  std::printf("[resume] parallel tasks stopped twice: worst difference of the task states %.3g\n", worst);
  const eval::Results a = eval::read_results(out.path() + "/whole/results.json");
  const eval::Results b = eval::read_results(out.path() + "/stopped/results.json");
  EXPECT_TRUE(b.complete);
  EXPECT_EQ(a.accuracy, b.accuracy);
  ASSERT_EQ(a.tasks.size(), b.tasks.size());
  for (size_t t = 0; t < a.tasks.size(); ++t) {
    EXPECT_EQ(a.tasks[t].epochs, b.tasks[t].epochs) << t;
    EXPECT_EQ(a.tasks[t].best_epoch, b.tasks[t].best_epoch) << t;
  }
}

}  // namespace
}  // namespace clr
