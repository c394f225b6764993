#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/adapters/clr_layer.h"
#include "clr/adapters/reprogram.h"
#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/core/safetensors.h"
#include "clr/eval/cost.h"
#include "clr/models/registry.h"
#include "test_util.h"

namespace clr {
namespace {

using adapters::ReprogrammedNet;
using adapters::ReprogramOptions;
using adapters::Variant;

// A backbone with non-trivial BatchNorm statistics, and an independent copy of it.
std::pair<models::ResNet, models::ResNet> backbone_pair(const std::string& arch, bool small = false) {
  torch::manual_seed(7);
  models::ResNet a = models::make_resnet(arch, 0, small);
  {
    torch::NoGradGuard ng;
    for (auto& m : a->modules()) {
      if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
        bn->weight.uniform_(0.5, 1.5);
        bn->bias.uniform_(-0.2, 0.2);
        bn->running_mean.uniform_(-0.1, 0.1);
        bn->running_var.uniform_(0.5, 2.0);
      }
    }
  }
  models::ResNet b = models::make_resnet(arch, 0, small);
  models::load_state_dict(*b, models::state_dict(*a), models::LoadOptions{});
  return {a, b};
}

TEST(ClrLayer, IdentityKernel) {
  adapters::ClrLayer layer(adapters::ClrLayerOptions(4));
  EXPECT_EQ(layer->weight.sizes(), (std::vector<int64_t>{4, 1, 3, 3}));
  EXPECT_EQ(layer->weight.sum().item<float>(), 4.0f);
  EXPECT_EQ(layer->weight[2][0][1][1].item<float>(), 1.0f);
  at::Tensor x = torch::randn({2, 4, 5, 6});
  EXPECT_TRUE(test::bit_identical(layer->forward(x), x));
  EXPECT_THROW(adapters::ClrLayer(adapters::ClrLayerOptions(4).kernel_size(2)), ConfigError);
}

TEST(Reprogram, VariantsAttachWhereTheAuthorsDo) {
  struct Case { const char* arch; Variant v; size_t adapted; };
  for (const Case& c : {Case{"resnet18", Variant::kClr, 17}, Case{"resnet18", Variant::kClrFull, 20},
                        Case{"resnet18", Variant::kResidual, 20}, Case{"resnet50", Variant::kClr, 17},
                        Case{"resnet50", Variant::kClrFull, 53}}) {
    ReprogrammedNet net(models::make_resnet(c.arch, 0), ReprogramOptions().variant(c.v), 10);
    EXPECT_EQ(net->adapted_sites().size(), c.adapted) << c.arch << " " << adapters::variant_name(c.v);
  }
  EXPECT_THROW(adapters::parse_variant("lora"), ConfigError);
}

TEST(Reprogram, ParameterCountsFromTorchvisionShapes) {
  const auto r18 = eval::measure_cost("resnet18", ReprogramOptions(), 10, 224, false);
  EXPECT_EQ(r18.task.adapter_params, 35136);
  EXPECT_EQ(r18.task.norm_affine, 9600);
  EXPECT_EQ(r18.backbone_params_with_fc, 11689512);
  const auto r50 = eval::measure_cost("resnet50", ReprogramOptions(), 30, 224, false);
  EXPECT_EQ(r50.task.adapter_params, 34560);
  EXPECT_EQ(r50.task.norm_affine, 53120);
  EXPECT_EQ(r50.task.trainable(), 149150);
  EXPECT_EQ(r50.backbone_params_with_fc, 25557032);
  EXPECT_NEAR(100.0 * r50.task.trainable() / r50.backbone_params_with_fc, 0.58, 0.005);
  EXPECT_EQ(r50.backbone_macs, 4087136256);  // conv MACs of torchvision's ResNet-50 at 224 px
  const auto res = eval::measure_cost("resnet18", ReprogramOptions().variant(Variant::kResidual), 10, 64, false);
  EXPECT_EQ(res.task.norm_affine, 0);  // BatchNorm stays frozen
  EXPECT_GT(res.task.adapter_params, 1000000);
}

TEST(Reprogram, IdentityAtStart) {
  for (const char* arch : {"resnet18", "resnet50"}) {
    for (Variant v : {Variant::kClr, Variant::kClrFull}) {
      auto [plain, copy] = backbone_pair(arch);
      ReprogrammedNet net(copy, ReprogramOptions().variant(v), 5);
      plain->eval();
      net->eval();
      torch::NoGradGuard ng;
      at::Tensor x = torch::randn({2, 3, 64, 64});
      EXPECT_LE(test::max_abs_diff(net->backbone()->features(x), plain->features(x)), 1e-6) << arch;
    }
  }
}

TEST(Reprogram, FreezesTheBackboneAndTrainsOnlyTaskState) {
  ReprogrammedNet net(models::make_resnet("resnet18", 0), ReprogramOptions(), 4);
  int64_t trainable = 0;
  for (const auto& p : net->trainable_parameters()) trainable += p.numel();
  EXPECT_EQ(trainable, 35136 + 9600 + 512 * 4 + 4);
  EXPECT_FALSE(net->backbone()->conv1->weight.requires_grad());
  EXPECT_TRUE(net->backbone()->bn1->weight.requires_grad());
}

TEST(Reprogram, BackboneUntouchedByTraining) {
  auto [plain, copy] = backbone_pair("resnet18", /*small=*/true);
  const std::string original = fingerprint(models::state_dict(*plain));
  ReprogrammedNet net(copy, ReprogramOptions(), 3);
  EXPECT_EQ(net->backbone_fingerprint(), original);
  const TensorMap before = net->task_state();
  test::train_steps(net, 3, 11, 8, 32);
  EXPECT_EQ(net->backbone_fingerprint(), original);
  EXPECT_FALSE(net->backbone()->conv1->weight.grad().defined());
  // The task state did change, so the check above is not vacuous.
  const TensorMap after = net->task_state();
  EXPECT_FALSE(test::bit_identical(before.at("clr.layer1.0.conv1.weight"), after.at("clr.layer1.0.conv1.weight")));
  EXPECT_FALSE(test::bit_identical(before.at("bn.bn1.running_mean"), after.at("bn.bn1.running_mean")));
  // Live conv weights equal the original backbone's bit for bit.
  const TensorMap live = models::state_dict(*net->backbone());
  for (const auto& [k, v] : models::state_dict(*plain)) {
    if (k.find("bn") == std::string::npos && k.find("downsample.1") == std::string::npos) {
      EXPECT_TRUE(test::bit_identical(live.at(k), v)) << k;
    }
  }
}

TEST(Reprogram, IsolationBetweenTasks) {
  for (Variant v : {Variant::kClr, Variant::kResidual}) {
    ReprogrammedNet net(backbone_pair("resnet18", true).second, ReprogramOptions().variant(v), 3);
    test::train_steps(net, 3, 1, 8, 32);
    const TensorMap task_a = net->task_state();
    net->eval();
    at::Tensor probe = torch::randn({4, 3, 32, 32});
    at::Tensor out_a;
    {
      torch::NoGradGuard ng;
      out_a = net->forward(probe);
    }
    net->begin_task(6);
    test::train_steps(net, 3, 2, 8, 32);
    EXPECT_EQ(net->num_classes(), 6);
    net->load_task_state(task_a);
    net->eval();
    torch::NoGradGuard ng;
    EXPECT_TRUE(test::bit_identical(net->forward(probe), out_a)) << adapters::variant_name(v);

    // The same through a file.
    test::TempDir dir("isolation");
    write_safetensors(dir.file("a.safetensors"), task_a);
    net->begin_task(2);
    net->load_task_state(read_safetensors(dir.file("a.safetensors")).tensors);
    EXPECT_TRUE(test::bit_identical(net->forward(probe), out_a));
  }
}

TEST(Reprogram, ResidualVariantKeepsBatchNormFrozen) {
  ReprogrammedNet net(models::make_resnet("resnet18", 0, true), ReprogramOptions().variant(Variant::kResidual), 3);
  const at::Tensor mean = net->backbone()->bn1->running_mean.clone();
  test::train_steps(net, 2, 3, 8, 32);
  EXPECT_FALSE(net->backbone()->bn1->is_training());
  EXPECT_TRUE(test::bit_identical(net->backbone()->bn1->running_mean, mean));
  for (const auto& k : net->task_state_keys()) EXPECT_EQ(k.rfind("bn.", 0), std::string::npos) << k;
}

// The BatchNorm ablation: `affine` keeps and trains only weight and bias per task (the
// statistics stay the backbone's, in eval mode), `frozen` keeps nothing of BatchNorm.
TEST(Reprogram, NormModesKeepWhatTheyName) {
  for (adapters::NormMode mode : {adapters::NormMode::kAffine, adapters::NormMode::kFrozen}) {
    const std::string name = adapters::norm_mode_name(mode);
    auto [plain, copy] = backbone_pair("resnet18", /*small=*/true);
    const TensorMap original = clone_tensors(models::state_dict(*plain));
    ReprogrammedNet net(copy, ReprogramOptions().norm(mode), 3);
    const TensorMap before = net->task_state();
    test::train_steps(net, 3, 4, 8, 32);
    EXPECT_FALSE(net->backbone()->bn1->is_training()) << name;
    EXPECT_TRUE(test::bit_identical(net->backbone()->bn1->running_mean, original.at("bn1.running_mean"))) << name;
    const TensorMap after = net->task_state();
    bool affine_moved = false;
    for (const auto& [k, v] : after) {
      EXPECT_EQ(k.find(".running_"), std::string::npos) << name << ": " << k;
      if (k.rfind("bn.", 0) == 0) affine_moved = affine_moved || !test::bit_identical(v, before.at(k));
    }
    EXPECT_EQ(after.count("bn.bn1.weight"), mode == adapters::NormMode::kAffine ? 1u : 0u) << name;
    EXPECT_EQ(affine_moved, mode == adapters::NormMode::kAffine) << name;
    EXPECT_EQ(net->task_state_size().norm_affine, mode == adapters::NormMode::kAffine ? 9600 : 0) << name;
    EXPECT_EQ(net->task_state_size().norm_statistics, 0) << name;
    // A new task starts from the backbone's affine values again.
    net->begin_task(2);
    if (mode == adapters::NormMode::kAffine) {
      EXPECT_TRUE(test::bit_identical(net->backbone()->bn1->weight, original.at("bn1.weight")));
    }
  }
  EXPECT_THROW(adapters::parse_norm_mode("shared"), ConfigError);
}

TEST(Reprogram, LoadTaskStateIsStrict) {
  ReprogrammedNet net(models::make_resnet("resnet18", 0), ReprogramOptions(), 3);
  TensorMap state = net->new_task_state(3);
  state.erase("clr.layer2.1.conv2.weight");
  state["extra.weight"] = torch::zeros({1});
  state["bn.bn1.weight"] = torch::ones({65});
  try {
    net->load_task_state(state);
    FAIL() << "expected IncompatibleError";
  } catch (const IncompatibleError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("clr.layer2.1.conv2.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("extra.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("bn.bn1.weight (got F32[65], expected F32[64])"), std::string::npos) << m;
  }
  // A clr state does not load into a clr-full network.
  ReprogrammedNet full(models::make_resnet("resnet18", 0), ReprogramOptions().variant(Variant::kClrFull), 3);
  EXPECT_THROW(full->load_task_state(net->task_state()), IncompatibleError);
}

TEST(Reprogram, NewTaskStartsFromTheBackbonesBatchNorm) {
  auto [plain, copy] = backbone_pair("resnet18", true);
  ReprogrammedNet net(copy, ReprogramOptions(), 3);
  test::train_steps(net, 2, 5, 8, 32);
  const TensorMap fresh = net->new_task_state(3);
  EXPECT_TRUE(test::bit_identical(fresh.at("bn.layer1.0.bn1.running_var"), plain->layer1[0]->as<models::BasicBlock>()->bn1->running_var));
  EXPECT_TRUE(test::bit_identical(fresh.at("clr.conv1.weight"), adapters::identity_depthwise_kernel(64, 3)));
}

}  // namespace
}  // namespace clr
