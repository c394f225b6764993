#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/safetensors.h"
#include "clr/models/registry.h"
#include "test_util.h"

namespace clr {
namespace {

TEST(ResNet, ParameterCountsMatchTorchvision) {
  // torchvision.models.<arch>() parameter counts.
  const std::pair<const char*, int64_t> expected[] = {
      {"resnet18", 11689512}, {"resnet34", 21797672}, {"resnet50", 25557032},
      {"resnet101", 44549160}, {"resnet152", 60192808}};
  for (const auto& [arch, n] : expected) {
    models::ResNet net = models::make_resnet(arch);
    EXPECT_EQ(models::parameter_count(*net), n) << arch;
  }
}

TEST(ResNet, NamesAreTorchvisionNames) {
  const TensorMap sd = models::state_dict(*models::make_resnet("resnet50"));
  for (const char* key : {"conv1.weight", "bn1.weight", "bn1.running_var", "bn1.num_batches_tracked",
                          "layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.bias",
                          "layer4.2.bn3.running_mean", "fc.weight", "fc.bias"}) {
    EXPECT_TRUE(sd.count(key)) << key;
  }
  EXPECT_EQ(sd.size(), 320u);  // len(torchvision.models.resnet50().state_dict())
  EXPECT_EQ(models::state_dict(*models::make_resnet("resnet18")).size(), 122u);
}

TEST(ResNet, TimmAndWrappedCheckpointsLoadUnderTorchvisionNames) {
  // A checkpoint as timm's training or a DDP-wrapped model saves it: every key under
  // "module.", the head as head.fc, no num_batches_tracked.
  torch::manual_seed(3);
  models::ResNet source = models::make_resnet("resnet18", 7, true);
  TensorMap file;
  for (const auto& [k, t] : models::state_dict(*source)) {
    if (k.find("num_batches_tracked") != std::string::npos) continue;
    const std::string name = k.rfind("fc.", 0) == 0 ? "head." + k : k;
    file.emplace("module." + name, t.clone());
  }
  test::TempDir dir("timm");
  write_safetensors(dir.file("timm.safetensors"), file);
  models::ResNet loaded = models::load_resnet("resnet18", dir.file("timm.safetensors"), 7, true);
  for (const auto& [k, t] : models::state_dict(*loaded)) {
    if (k.find("num_batches_tracked") != std::string::npos) {
      EXPECT_EQ(t.item<int64_t>(), 0) << k;
    } else {
      EXPECT_TRUE(test::bit_identical(t, models::state_dict(*source).at(k))) << k;
    }
  }
  // A prefix that only some keys carry is a real mismatch, not a wrapper.
  file.emplace("extra.weight", torch::zeros({1}));
  write_safetensors(dir.file("odd.safetensors"), file);
  EXPECT_THROW(models::load_resnet("resnet18", dir.file("odd.safetensors"), 7, true), IncompatibleError);
}

TEST(ResNet, FeatureModeHasNoFc) {
  models::ResNet net = models::make_resnet("resnet18", 0);
  EXPECT_FALSE(models::state_dict(*net).count("fc.weight"));
  net->eval();
  EXPECT_EQ(net->forward(torch::randn({2, 3, 32, 32})).sizes(), (std::vector<int64_t>{2, 512}));
  models::ResNet with_fc = models::make_resnet("resnet50", 10);
  with_fc->eval();
  EXPECT_EQ(with_fc->forward(torch::randn({1, 3, 32, 32})).sizes(), (std::vector<int64_t>{1, 10}));
}

TEST(ResNet, SmallStemKeepsResolution) {
  models::ResNet net = models::make_resnet("resnet18", 0, /*small_stem=*/true);
  EXPECT_EQ(net->conv1->weight.sizes(), (std::vector<int64_t>{64, 3, 3, 3}));
  const auto shapes = net->site_shapes(32, 32);
  EXPECT_EQ(shapes[0].out_h, 32);
  EXPECT_EQ(shapes.back().out_h, 4);  // 32 / 8 at layer4
}

// Records the spatial size each conv produced during a real forward pass.
struct ShapeRecorder : models::ConvHook {
  std::vector<std::pair<int64_t, int64_t>> out;
  at::Tensor after_conv(size_t site, const at::Tensor&, const at::Tensor& y) override {
    if (out.size() <= site) out.resize(site + 1);
    out[site] = {y.size(2), y.size(3)};
    return y;
  }
};

TEST(ResNet, SiteShapesMatchAForwardPass) {
  for (const char* arch : {"resnet18", "resnet50"}) {
    for (bool small : {false, true}) {
      for (int64_t size : {33, 64, 97}) {
        models::ResNet net = models::make_resnet(arch, 0, small);
        net->eval();
        ShapeRecorder rec;
        net->set_conv_hook(&rec);
        torch::NoGradGuard ng;
        net->forward(torch::randn({1, 3, size, size + 5}));
        const auto shapes = net->site_shapes(size, size + 5);
        ASSERT_EQ(rec.out.size(), shapes.size());
        for (size_t i = 0; i < shapes.size(); ++i) {
          EXPECT_EQ(rec.out[i].first, shapes[i].out_h) << arch << " " << net->conv_sites()[i].name;
          EXPECT_EQ(rec.out[i].second, shapes[i].out_w) << arch << " " << net->conv_sites()[i].name;
        }
        net->set_conv_hook(nullptr);
      }
    }
  }
}

TEST(ResNet, ConvSitesInTorchvisionOrder) {
  models::ResNet net = models::make_resnet("resnet50", 0);
  const auto& s = net->conv_sites();
  ASSERT_EQ(s.size(), 53u);
  EXPECT_EQ(s[0].name, "conv1");
  EXPECT_EQ(s[0].norm, "bn1");
  EXPECT_EQ(s[4].name, "layer1.0.downsample.0");
  EXPECT_EQ(s[4].norm, "layer1.0.downsample.1");
  EXPECT_EQ(s.back().name, "layer4.2.conv3");
  int k3 = 0;
  for (const auto& site : s) k3 += site.kernel > 1;
  EXPECT_EQ(k3, 17);
}

TEST(Registry, UnknownArchitectureListsTheKnownOnes) {
  try {
    models::make_resnet("resnet19");
    FAIL() << "expected NotFoundError";
  } catch (const NotFoundError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'resnet19'"), std::string::npos);
    EXPECT_NE(m.find("resnet152"), std::string::npos);
  }
}

TEST(Registry, WrongArchitectureCheckpointIsIncompatible) {
  test::TempDir dir("wrongarch");
  const std::string path = dir.file("r50.safetensors");
  write_safetensors(path, models::state_dict(*models::make_resnet("resnet50")));
  try {
    models::load_resnet("resnet18", path);
    FAIL() << "expected IncompatibleError";
  } catch (const IncompatibleError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("r50.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected keys"), std::string::npos) << m;
    EXPECT_NE(m.find("layer1.0.conv3.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("shape mismatches"), std::string::npos) << m;
    EXPECT_NE(m.find("looks like a resnet50"), std::string::npos) << m;
  }
}

TEST(Registry, StrictLoadingReportsMissingKeys) {
  TensorMap sd = models::state_dict(*models::make_resnet("resnet18", 0));
  sd.erase("layer3.1.bn2.running_var");
  models::ResNet net = models::make_resnet("resnet18", 0);
  models::LoadOptions opts;
  opts.model_name = "resnet18";
  try {
    models::load_state_dict(*net, sd, opts, "test dict");
    FAIL() << "expected IncompatibleError";
  } catch (const IncompatibleError& e) {
    EXPECT_NE(std::string(e.what()).find("1 missing keys (layer3.1.bn2.running_var)"), std::string::npos) << e.what();
  }
  opts.strict = false;
  EXPECT_NO_THROW(models::load_state_dict(*net, sd, opts, "test dict"));
}

TEST(Registry, LoadCopiesValuesByName) {
  test::TempDir dir("load");
  models::ResNet a = models::make_resnet("resnet18");
  const std::string path = dir.file("r18.safetensors");
  write_safetensors(path, models::state_dict(*a));
  models::ResNet b = models::load_resnet("resnet18", path, 1000);
  for (const auto& [k, v] : models::state_dict(*a)) EXPECT_TRUE(test::bit_identical(v, models::state_dict(*b).at(k))) << k;
  // Feature mode skips the file's fc.
  EXPECT_NO_THROW(models::load_resnet("resnet18", path, 0));
}

}  // namespace
}  // namespace clr
