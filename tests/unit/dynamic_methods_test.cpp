// The dynamic-network baselines (METHODS.md §10 SupSup, §11 CCLL, §12 EFTs): the sanity checks
// METHODS.md lists for them, driven step by step so that each task's state can be
// looked at after every later task, and once through the real runner.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/progress.h"
#include "clr/data/synthetic.h"
#include "clr/eval/compare.h"
#include "clr/eval/results.h"
#include "clr/eval/runner.h"
#include "clr/models/registry.h"
#include "clr/train/methods/ccll.h"
#include "clr/train/methods/confit.h"
#include "clr/train/methods/eft.h"
#include "clr/train/methods/supsup.h"
#include "clr/train/optimizer.h"
#include "test_util.h"

namespace clr {
namespace {

// One step of the current task on random images, in train mode, as the trainer takes
// it: its Adam and the recipe's norm penalty (whose gradient must not reach tensors a
// method has frozen for the moment).
void step(train::Method& m, train::Optimizer& opt, int64_t classes) {
  m.set_training(true);
  opt.zero_grad();
  m.loss(torch::randn({8, 3, 8, 8}), torch::randint(classes, {8}, torch::kLong)).backward();
  train::add_norm_penalty(m.trainable_parameters(), 1e-5);
  opt.step();
  m.after_step();
}

train::Optimizer adam(const std::vector<at::Tensor>& params) {
  train::OptimizerOptions o;
  o.lr = 1e-2;
  return train::Optimizer(params, o);
}

// A few Adam steps of task `index`: enough to move every trained tensor.
void learn(train::Method& m, int64_t index, int64_t classes, int steps = 3) {
  m.begin_task({index, "t" + std::to_string(index), classes});
  train::Optimizer opt = adam(m.trainable_parameters());
  for (int s = 0; s < steps; ++s) step(m, opt, classes);
  m.set_training(false);
  m.end_task({});
}

TensorMap conv_weights(models::ResNet& net) {
  TensorMap out;
  const TensorMap s = models::state_dict(*net);
  for (const auto& site : net->conv_sites()) out.emplace(site.name, s.at(site.name + ".weight"));
  return out;
}

eval::Results run_shapes_tasks(train::Method& m, const std::string& out, int tasks = 2, const std::string& prefix = "s") {
  data::Sequence seq;
  for (int t = 0; t < tasks; ++t) {
    data::ShapesOptions o;
    o.classes = 3 + t;
    o.train_per_class = 6;
    o.val_per_class = 2;
    o.test_per_class = 4;
    o.size = 8;
    o.seed = 20 + t;
    seq.push_back(data::make_shapes_task(o));
    seq.back().name = prefix + std::to_string(t);
  }
  eval::RunOptions o;
  o.train.epochs = 2;
  o.train.batch_size = 8;
  o.prepare.size = 8;
  o.out_dir = out;
  o.backbone_arch = "resnet18";
  o.device = "cpu";
  Progress::set_enabled(false);
  return eval::run_sequence(m, std::move(seq), o);
}

TEST(Supsup, PackedBitsRoundTrip) {
  const at::Tensor m = torch::rand({3, 5, 7}) < 0.3;  // 105 bits: the last byte is padded
  const at::Tensor packed = train::pack_bits(m);
  EXPECT_EQ(packed.numel(), 14);
  EXPECT_TRUE(train::unpack_bits(packed, m.numel()).view_as(m).equal(m));
  EXPECT_THROW(train::unpack_bits(packed, 200), FormatError);
}

// The sampled-threshold top-k picks the same set as topk, on sizes of ResNet layers,
// on a ramp (a strided sample of sorted values) and on ties.
TEST(Supsup, FastTopKIsTheExactTopK) {
  const std::pair<int64_t, int64_t> cases[] = {{2359296, 8192}, {100000, 3}, {70000, 8000}, {1000, 500}};
  auto as_mask = [](const at::Tensor& idx, int64_t n) { return torch::zeros({n}, torch::kBool).index_fill_(0, idx, true); };
  for (const auto& [n, k] : cases) {
    const at::Tensor x = torch::rand({n});
    EXPECT_TRUE(as_mask(train::top_k_indices(x, k), n).equal(as_mask(std::get<1>(x.topk(k)), n))) << n << " " << k;
  }
  const at::Tensor ramp = torch::arange(300000, torch::kFloat);
  EXPECT_TRUE(as_mask(train::top_k_indices(ramp, 1000), 300000).equal(ramp >= 299000));
  const at::Tensor ties = torch::ones({200000});
  EXPECT_EQ(as_mask(train::top_k_indices(ties, 777), 200000).sum().item<int64_t>(), 777);
  EXPECT_THROW(train::top_k_indices(ties, 0), ConfigError);
}

TEST(Supsup, RandomWeightsAreSignedConstantsFromTheSeed) {
  torch::manual_seed(0);
  train::SupsupOptions o;
  o.seed = 7;
  models::ResNet a = models::make_resnet("resnet18", 0, true);
  train::SupsupMethod ma(a, 1, o);
  models::ResNet b = models::make_resnet("resnet18", 0, true);  // other pretrained weights, same seed
  train::SupsupMethod mb(b, 1, o);
  EXPECT_EQ(fingerprint(conv_weights(a)), fingerprint(conv_weights(b)));
  for (const auto& [name, w] : conv_weights(a)) {
    const double c = std::sqrt(2.0 / static_cast<double>(w.numel() / w.size(0)));
    EXPECT_TRUE(w.abs().sub(c).abs().max().item<double>() < 1e-7) << name;
    const double positive = (w > 0).to(torch::kFloat64).mean().item<double>();
    EXPECT_GT(positive, 0.4) << name;
    EXPECT_LT(positive, 0.6) << name;
  }
  // The pretrained variant keeps the loaded weights.
  models::ResNet p = models::make_resnet("resnet18", 0, true);
  const std::string before = fingerprint(models::state_dict(*p));
  o.weights = "pretrained";
  train::SupsupMethod mp(p, 1, o);
  EXPECT_EQ(fingerprint(models::state_dict(*p)), before);
}

// METHODS.md §10 Sanity: the weights never change, task t's mask is bit-identical after
// task t+1, each layer's density is exactly the ER budget's, old predictions do not move.
TEST(Supsup, MasksFrozenWeightsUntouchedDensityExact) {
  torch::manual_seed(1);
  models::ResNet net = models::make_resnet("resnet18", 0, true);
  train::SupsupMethod m(net, 1, {});
  const std::string weights = fingerprint(models::state_dict(*net));
  const at::Tensor probe = torch::randn({4, 3, 8, 8});
  learn(m, 0, 3);
  const TensorMap first = clone_tensors(m.task_state(0));
  const at::Tensor before = m.predict(0, probe);
  learn(m, 1, 5);
  EXPECT_EQ(fingerprint(m.task_state(0)), fingerprint(first)) << "task 0's mask, statistics or head moved";
  EXPECT_TRUE(m.predict(0, probe).equal(before));
  EXPECT_EQ(fingerprint(models::state_dict(*net)), weights) << "the fixed network changed";
  EXPECT_NE(fingerprint(m.task_state(1)), fingerprint(first));
  const auto& sites = net->conv_sites();
  const TensorMap w = conv_weights(net);
  int64_t bits = 0;
  for (size_t i = 0; i < sites.size(); ++i) {
    const int64_t n = w.at(sites[i].name).numel();
    const double d = std::min(0.5, 8.0 * static_cast<double>(sites[i].in_channels + sites[i].out_channels) /
                                       static_cast<double>(n));
    EXPECT_EQ(m.densities()[i], d) << sites[i].name;
    const int64_t kept = n - static_cast<int64_t>((1.0 - d) * static_cast<double>(n));
    for (int64_t t = 0; t < 2; ++t) EXPECT_EQ(m.mask(t, i).sum().item<int64_t>(), kept) << sites[i].name;
    EXPECT_TRUE(train::unpack_bits(first.at("mask." + sites[i].name), n).view_as(w.at(sites[i].name))
                    .equal(m.mask(0, i)));
    bits += n;
  }
  EXPECT_EQ(m.extra_params(1), (bits + 31) / 32 + 512 * 5 + 5);
}

// The straight-through estimator: every layer's scores get a gradient.
TEST(Supsup, ScoresGetGradientsThroughTheMask) {
  torch::manual_seed(2);
  models::ResNet net = models::make_resnet("resnet18", 0, true);
  train::SupsupOptions o;
  o.density = 0.25;
  train::SupsupMethod m(net, 1, o);
  m.begin_task({0, "a", 3});
  m.set_training(true);
  m.loss(torch::randn({4, 3, 8, 8}), torch::tensor({0, 1, 2, 0}, torch::kLong)).backward();
  const auto params = m.trainable_parameters();
  ASSERT_EQ(params.size(), net->conv_sites().size() + 2);
  for (size_t i = 0; i < net->conv_sites().size(); ++i) {
    ASSERT_TRUE(params[i].grad().defined()) << net->conv_sites()[i].name;
    EXPECT_GT(params[i].grad().abs().sum().item<double>(), 0) << net->conv_sites()[i].name;
  }
}

TEST(Supsup, BadOptionsNameTheFlag) {
  train::SupsupOptions o;
  o.density = 1.5;
  try {
    o.validate();
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--supsup-density"), std::string::npos) << e.what();
  }
  o = {};
  o.er_scale = std::nan("");
  EXPECT_THROW(o.validate(), ConfigError);
  o = {};
  o.weights = "imagenet";
  EXPECT_THROW(o.validate(), ConfigError);
}

// METHODS.md §12 Sanity: the base learns on the first task and is bit-identical after
// every later one; 90 C transformation values per conv of C outputs.
TEST(Efts, BaseLearnsOnTheFirstTaskThenIsFrozen) {
  torch::manual_seed(3);
  models::ResNet net = models::make_resnet("resnet18", 0, true);
  const std::string loaded = fingerprint(conv_weights(net));
  train::EftMethod m(net, 1, {});
  const at::Tensor probe = torch::randn({4, 3, 8, 8});
  learn(m, 0, 3);
  const std::string base = fingerprint(conv_weights(net));
  EXPECT_NE(base, loaded) << "the base should train on the first task";
  const TensorMap first = clone_tensors(m.task_state(0));
  const at::Tensor before = m.predict(0, probe);
  learn(m, 1, 4);
  learn(m, 2, 5);
  EXPECT_EQ(fingerprint(conv_weights(net)), base) << "the base moved after the first task";
  EXPECT_EQ(fingerprint(m.task_state(0)), fingerprint(first));
  EXPECT_TRUE(m.predict(0, probe).equal(before));
  EXPECT_EQ(fingerprint(m.method_state()), fingerprint([&] {
              TensorMap b;
              for (const auto& [k, v] : conv_weights(net)) b.emplace("base." + k + ".weight", v);
              return b;
            }()));
  int64_t per_task = 0;
  for (size_t i = 0; i < net->conv_sites().size(); ++i) {
    const int64_t c = net->conv_sites()[i].out_channels;
    EXPECT_EQ(m.transform_params(i), 90 * c) << net->conv_sites()[i].name;
    per_task += 90 * c + 2 * c;  // + BatchNorm affine
  }
  EXPECT_EQ(m.extra_params(2), per_task + 512 * 5 + 5);
}

TEST(Efts, PretrainedBaseNeverTrains) {
  torch::manual_seed(4);
  models::ResNet net = models::make_resnet("resnet18", 0, true);
  const std::string loaded = fingerprint(conv_weights(net));
  train::EftOptions o;
  o.base = "pretrained";
  train::EftMethod m(net, 1, o);
  learn(m, 0, 3);
  learn(m, 1, 3);
  EXPECT_EQ(fingerprint(conv_weights(net)), loaded);
  EXPECT_TRUE(m.method_state().empty());
}

TEST(Efts, GroupsMustDivideEveryConv) {
  train::EftOptions o;
  o.spatial_group = 48;  // 64 channels are not a multiple
  try {
    train::EftMethod m(models::make_resnet("resnet18", 0, true), 1, o);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("conv1"), std::string::npos) << e.what();
  }
}

// METHODS.md §11 Sanity: the base (convs and BatchNorm, statistics included) learns on
// the first task and is bit-identical after every later one, so task 1 is exactly as it
// was; 12 C + 2 calibration values per conv of C outputs, which for ResNet-18 add up to
// the paper's 0.51% (of ResNet-18 with a 100-class head).
TEST(Ccll, BaseLearnsOnTheFirstTaskThenIsFrozen) {
  torch::manual_seed(6);
  models::ResNet net = models::make_resnet("resnet18", 0, true);
  const std::string loaded = fingerprint(models::state_dict(*net));
  train::CcllMethod m(net, 1, {});
  const at::Tensor probe = torch::randn({4, 3, 8, 8});
  learn(m, 0, 3);
  const std::string base = fingerprint(models::state_dict(*net));
  EXPECT_NE(base, loaded) << "the base should train on the first task";
  EXPECT_EQ(m.task_state(0).size(), 2u) << "the first task keeps its head only";
  const at::Tensor first = m.predict(0, probe);
  learn(m, 1, 4);
  const TensorMap second = clone_tensors(m.task_state(1));
  const at::Tensor second_out = m.predict(1, probe);
  learn(m, 2, 5);
  EXPECT_EQ(fingerprint(models::state_dict(*net)), base) << "the base moved after the first task";
  EXPECT_TRUE(m.predict(0, probe).equal(first));
  EXPECT_TRUE(m.predict(1, probe).equal(second_out));
  EXPECT_EQ(fingerprint(m.task_state(1)), fingerprint(second));
  TensorMap expected_base;
  for (const auto& [k, v] : models::state_dict(*net)) expected_base.emplace("base." + k, v);
  EXPECT_EQ(fingerprint(m.method_state()), fingerprint(expected_base));
  int64_t per_task = 0;
  for (size_t i = 0; i < net->conv_sites().size(); ++i) {
    const int64_t c = net->conv_sites()[i].out_channels;
    EXPECT_EQ(m.calibration_params(i), 12 * c + 2) << net->conv_sites()[i].name;
    per_task += 12 * c + 2;
  }
  EXPECT_EQ(per_task, 57640);
  EXPECT_NEAR(100.0 * per_task / (11176512 + 512 * 100 + 100), 0.51, 0.005);
  EXPECT_EQ(m.extra_params(2), per_task + 512 * 5 + 5);
  EXPECT_EQ(m.extra_params(0), 512 * 3 + 3);
}

// With a pretrained base nothing of the backbone changes, not even its BatchNorm
// statistics, though every task (the first included) trains calibration modules.
TEST(Ccll, PretrainedBaseNeverChanges) {
  torch::manual_seed(7);
  models::ResNet net = models::make_resnet("resnet18", 0, true);
  const std::string loaded = fingerprint(models::state_dict(*net));
  train::CcllOptions o;
  o.base = "pretrained";
  train::CcllMethod m(net, 1, o);
  learn(m, 0, 3);
  const TensorMap first = clone_tensors(m.task_state(0));
  learn(m, 1, 3);
  EXPECT_EQ(fingerprint(models::state_dict(*net)), loaded);
  EXPECT_TRUE(m.method_state().empty());
  EXPECT_GT(first.size(), 2u) << "the first task is calibrated too";
  EXPECT_EQ(fingerprint(m.task_state(0)), fingerprint(first));
}

// With init = identity a calibrated task starts exactly from the base's own features.
TEST(Ccll, IdentityInitStartsFromTheBasesFeatures) {
  torch::manual_seed(8);
  models::ResNet net = models::make_resnet("resnet18", 0, true);
  net->eval();
  const at::Tensor probe = torch::randn({4, 3, 8, 8});
  const at::Tensor features = net->features(probe);
  // Whether a fresh task with this init predicts exactly its head on the base's features.
  auto starts_from_base = [&](const std::string& init) {
    train::CcllOptions o;
    o.base = "pretrained";
    o.init = init;
    train::CcllMethod m(net, 1, o);
    m.begin_task({0, "a", 3});
    m.set_training(false);
    const at::Tensor out = m.predict(0, probe);
    const TensorMap live = m.snapshot();
    return out.equal(torch::nn::functional::linear(features, live.at("head.weight"), live.at("head.bias")));
  };
  EXPECT_TRUE(starts_from_base("identity"));
  EXPECT_FALSE(starts_from_base("default")) << "PyTorch's initialisation is not the identity";
  EXPECT_TRUE(net->features(probe).equal(features)) << "the hook is detached after predict";
}

TEST(Ccll, OptionsAreChecked) {
  for (const auto& [base, kernel] : std::vector<std::pair<std::string, int64_t>>{{"random", 3}, {"first-task", 2},
                                                                                 {"pretrained", 0}}) {
    train::CcllOptions o;
    o.base = base;
    o.kernel = kernel;
    try {
      o.validate();
      FAIL() << base << " " << kernel;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("--ccll-"), std::string::npos) << e.what();
    }
  }
  train::CcllOptions o;
  o.init = "zeros";
  EXPECT_THROW(o.validate(), ConfigError);
}

// METHODS.md §13: each stage trains only what it names (head; + BatchNorm affine; all).
TEST(Confit, StagesTrainOnlyWhatTheyName) {
  torch::manual_seed(5);
  models::ResNet net = models::make_resnet("resnet18", 0, true);
  train::ConfitMethod m(net, 1);
  m.begin_task({0, "a", 3});
  train::Optimizer opt = adam(m.trainable_parameters());
  auto convs = [&] { return fingerprint(conv_weights(net)); };
  auto affine = [&] {
    return fingerprint(
        clone_tensors({{"w", net->bn1->weight}, {"b", net->layer3[0]->as<models::BasicBlockImpl>()->bn2->bias}}));
  };
  const std::string conv0 = convs(), affine0 = affine();
  m.begin_epoch(0, 10);  // [0, 2): the head
  step(m, opt, 3);
  EXPECT_EQ(convs(), conv0);
  EXPECT_EQ(affine(), affine0);
  EXPECT_NE(net->bn1->running_mean.abs().sum().item<double>(), 0.0) << "statistics update in every stage";
  m.begin_epoch(2, 10);  // [2, 5): + BatchNorm affine
  step(m, opt, 3);
  EXPECT_EQ(convs(), conv0);
  EXPECT_NE(affine(), affine0);
  m.begin_epoch(5, 10);  // [5, 10): everything
  step(m, opt, 3);
  EXPECT_NE(convs(), conv0);
}

// METHODS.md §13 Sanity: with the conv weights unchanged since task i, the correction
// gives back task i's BatchNorm means (exactly, up to rounding, for a 1x1 conv, where
// no padding enters); an old task is evaluated with it, the latest task without.
TEST(Confit, CorrectionReproducesTheMeansWhileTheWeightsStayPut) {
  torch::manual_seed(6);
  models::ResNet net = models::make_resnet("resnet18", 0, true);
  train::ConfitMethod m(net, 1);
  m.begin_task({0, "a", 3});
  train::Optimizer opt = adam(m.trainable_parameters());
  m.begin_epoch(2, 10);  // BatchNorm affine and head: the convs stay put
  for (int i = 0; i < 4; ++i) step(m, opt, 3);
  m.set_training(false);
  m.end_task({});
  const TensorMap state = m.task_state(0);
  const TensorMap corrected = m.corrected_means(0, 8);
  const auto& sites = net->conv_sites();
  int checked = 0;
  for (size_t i = 0; i < sites.size(); ++i) {
    if (sites[i].kernel != 1) continue;  // the 1x1 stride-2 downsample convs: four phases, no padding
    ASSERT_TRUE(m.phased(i));
    const at::Tensor stored = state.at("bn." + sites[i].norm + ".running_mean");
    EXPECT_TRUE(torch::allclose(corrected.at(sites[i].norm), stored, 1e-4, 1e-5)) << sites[i].name;
    ++checked;
  }
  EXPECT_EQ(checked, 3);
  // Task 1 trains everything: task 0 is then evaluated through corrected means that
  // differ from its stored ones, and the latest task's BatchNorm stays live.
  m.begin_task({1, "b", 4});
  train::Optimizer opt1 = adam(m.trainable_parameters());
  m.begin_epoch(9, 10);
  for (int i = 0; i < 3; ++i) step(m, opt1, 4);
  m.set_training(false);
  m.end_task({});
  const TensorMap after = m.corrected_means(0, 8);
  EXPECT_FALSE(torch::allclose(after.at(sites[2].norm), state.at("bn." + sites[2].norm + ".running_mean")));
  const TensorMap live = clone_tensors(models::state_dict(*net));
  const at::Tensor probe = torch::randn({4, 3, 8, 8});
  torch::NoGradGuard ng;
  const at::Tensor old = m.predict(0, probe);
  EXPECT_EQ(fingerprint(models::state_dict(*net)), fingerprint(live)) << "evaluating task 0 left its BatchNorm behind";
  EXPECT_TRUE(m.predict(0, probe).equal(old));
  EXPECT_EQ(m.extra_params(1), 2 * 4800 + 512 * 4 + 4);
}

// Through the runner: all three never forget, exactly.
TEST(DynamicMethods, ZeroForgettingThroughTheRunner) {
  test::TempDir dir("dynamic");
  for (const std::string name : {"supsup", "efts", "ccll"}) {
    torch::manual_seed(0);
    models::ResNet net = models::make_resnet("resnet18", 0, true);
    std::unique_ptr<train::Method> m;
    if (name == "supsup") m = std::make_unique<train::SupsupMethod>(net, 1, train::SupsupOptions{});
    else if (name == "efts") m = std::make_unique<train::EftMethod>(net, 1, train::EftOptions{});
    else m = std::make_unique<train::CcllMethod>(net, 1, train::CcllOptions{});
    const eval::Results r = run_shapes_tasks(*m, dir.path() + "/" + name);
    EXPECT_EQ(*r.accuracy[1][0], *r.accuracy[0][0]) << name;
    EXPECT_EQ(eval::forgetting(r.accuracy), 0.0) << name;
  }
}

// `clr tabulate`: a run cut to its first tasks is, bit for bit, the run of those tasks
// alone, so runs stopped at different points compare on the tasks they all finished.
TEST(Tabulate, FirstTasksOfALongerRunAreTheShorterRun) {
  test::TempDir dir("tabulate");
  auto run = [&](int tasks, const std::string& name, const std::string& prefix = "s") {
    torch::manual_seed(0);
    train::CcllMethod m(models::make_resnet("resnet18", 0, true), 1, {});
    return run_shapes_tasks(m, dir.path() + "/" + name, tasks, prefix);
  };
  const eval::Results three = run(3, "three"), two = run(2, "two");
  const eval::Results cut = eval::first_tasks(three, 2);
  ASSERT_EQ(cut.accuracy.size(), 2u);
  for (size_t t = 0; t < 2; ++t) {
    ASSERT_EQ(cut.accuracy[t].size(), 2u);
    for (size_t j = 0; j <= t; ++j) EXPECT_EQ(*cut.accuracy[t][j], *two.accuracy[t][j]) << t << " " << j;
    EXPECT_EQ(cut.tasks[t].extra_params, two.tasks[t].extra_params);
    EXPECT_EQ(cut.tasks[t].stored_bytes, two.tasks[t].stored_bytes);
  }
  EXPECT_TRUE(cut.complete);
  EXPECT_THROW(eval::first_tasks(two, 3), ConfigError);

  eval::TabulateOptions o;
  o.runs = {dir.path() + "/three", dir.path() + "/two/"};
  o.out = dir.path() + "/table";
  const auto rows = eval::tabulate_runs(o);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].tasks, 2);
  EXPECT_EQ(rows[0].method, "three");
  EXPECT_EQ(rows[0].average_accuracy, rows[1].average_accuracy);
  EXPECT_EQ(rows[0].first_task_curve, rows[1].first_task_curve);
  EXPECT_EQ(eval::read_results(o.out + "/three/results.json").tasks.size(), 2u);
  EXPECT_TRUE(file_exists(o.out + "/compare.json"));
  o.tasks = 3;  // more than the shorter run finished
  EXPECT_THROW(eval::tabulate_runs(o), ConfigError);
  o.tasks = 0;
  o.out = dir.path();  // would write the cut copies over the runs themselves
  EXPECT_THROW(eval::tabulate_runs(o), ConfigError);
  EXPECT_EQ(eval::read_results(dir.path() + "/three/results.json").tasks.size(), 3u);
  o.out = dir.path() + "/table";
  run(2, "other", "x");
  o.tasks = 0;
  o.runs = {dir.path() + "/two", dir.path() + "/other"};
  try {
    eval::tabulate_runs(o);
    FAIL() << "runs of other tasks were tabulated together";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'x0'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace clr
