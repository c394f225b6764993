// Parity with the real torchvision: reference weights and outputs are made at test
// time by tests/python/torch_reference.py with python3-torch / python3-torchvision.
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/adapters/reprogram.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/safetensors.h"
#include "clr/core/tensor_io.h"
#include "clr/models/registry.h"
#include "test_util.h"

namespace clr {
namespace {

constexpr double kTolerance = 1e-4;

std::string ref_file(const std::string& name) { return test::torch_reference_dir() + "/" + name; }

class TorchvisionParity : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(TorchvisionParity, EvalLogitsMatch) {
  const auto& [arch, ext] = GetParam();
  models::ResNet net = models::load_resnet(arch, ref_file(arch + ext), 1000);
  net->eval();
  const TensorMap r = read_safetensors(ref_file(arch + "_ref.safetensors")).tensors;
  torch::NoGradGuard ng;
  for (int size : {224, 64}) {
    const std::string s = std::to_string(size);
    const at::Tensor logits = net->forward(r.at("input_" + s));
    const double diff = test::max_abs_diff(logits, r.at("logits_" + s));
    EXPECT_LE(diff, kTolerance) << arch << ext << " at " << size << " px";
    EXPECT_GT(r.at("logits_" + s).abs().max().item<double>(), 1e-2);  // not trivially zero
    EXPECT_LE(test::max_abs_diff(net->features(r.at("input_" + s)), r.at("features_" + s)), kTolerance);
    std::printf("[parity] %s%s %d px: max |ours - torchvision| = %.3g\n", arch.c_str(), ext.c_str(), size, diff);
  }
}

INSTANTIATE_TEST_SUITE_P(ResNets, TorchvisionParity,
                         ::testing::Combine(::testing::Values("resnet18", "resnet50"),
                                            ::testing::Values(".pth", ".safetensors")));

TEST(TorchvisionParitySmallStem, Resnet18At32Px) {
  models::ResNet net = models::load_resnet("resnet18", ref_file("resnet18_small.pth"), 1000, /*small_stem=*/true);
  net->eval();
  const TensorMap r = read_safetensors(ref_file("resnet18_small_ref.safetensors")).tensors;
  torch::NoGradGuard ng;
  EXPECT_LE(test::max_abs_diff(net->forward(r.at("input_32")), r.at("logits_32")), kTolerance);
}

TEST(WeightFiles, PthAndSafetensorsHoldTheSameTensors) {
  for (const char* arch : {"resnet18", "resnet50"}) {
    const TensorMap a = read_pytorch_state_dict(ref_file(std::string(arch) + ".pth"));
    const TensorMap b = read_safetensors(ref_file(std::string(arch) + ".safetensors")).tensors;
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [k, v] : a) EXPECT_TRUE(test::bit_identical(v, b.at(k))) << k;
    EXPECT_EQ(fingerprint(a), fingerprint(b));
    // The backbone fingerprint is the same from either file.
    const auto f1 = fingerprint(models::state_dict(*models::load_resnet(arch, ref_file(std::string(arch) + ".pth"))));
    const auto f2 = fingerprint(models::state_dict(*models::load_resnet(arch, ref_file(std::string(arch) + ".safetensors"))));
    EXPECT_EQ(f1, f2);
  }
}

TEST(WeightFiles, ReadsNestedCheckpointsPlainDictsViewsAndHalfTypes) {
  const TensorMap nested = read_pytorch_state_dict(ref_file("resnet18_nested.pth"));
  EXPECT_EQ(fingerprint(nested), fingerprint(read_pytorch_state_dict(ref_file("resnet18.pth"))));
  const TensorMap mixed = read_pytorch_state_dict(ref_file("mixed.pth"));
  const TensorMap expect = read_safetensors(ref_file("mixed_ref.safetensors")).tensors;
  ASSERT_EQ(mixed.size(), expect.size());
  for (const auto& [k, v] : expect) EXPECT_TRUE(test::bit_identical(mixed.at(k), v)) << k;
  EXPECT_EQ(mixed.at("bf16").scalar_type(), at::kBFloat16);
  EXPECT_EQ(mixed.at("strided").sizes(), (std::vector<int64_t>{6, 4}));
}

TEST(WeightFiles, CorruptPthIsAFormatError) {
  test::TempDir dir("badpth");
  const std::string good = read_file(ref_file("mixed.pth"));
  const std::string path = dir.file("cut.pth");
  write_file_atomic(path, good.substr(0, good.size() / 2));
  try {
    read_pytorch_state_dict(path);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.pth"), std::string::npos) << e.what();
  }
  write_file_atomic(path, "PK\x03\x04 not really a zip archive at all, just bytes");
  EXPECT_THROW(load_tensor_file(path), FormatError);
}

TEST(WeightFiles, WrongArchitecturePthIsIncompatible) {
  try {
    models::load_resnet("resnet18", ref_file("resnet50.pth"));
    FAIL() << "expected IncompatibleError";
  } catch (const IncompatibleError& e) {
    EXPECT_NE(std::string(e.what()).find("looks like a resnet50"), std::string::npos) << e.what();
  }
}

// Our reprogrammed network against a PyTorch construction of the same thing
// (torchvision ResNet with depthwise convs inserted), with random non-identity task
// state.
class ClrParity : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(ClrParity, LogitsMatchThePyTorchConstruction) {
  const auto& [arch, variant] = GetParam();
  adapters::ReprogrammedNet net(models::load_resnet(arch, ref_file(arch + ".pth")),
                                adapters::ReprogramOptions().variant(adapters::parse_variant(variant)), 1);
  net->load_task_state(read_safetensors(ref_file(arch + "_" + variant + "_task.safetensors")).tensors);
  net->eval();
  const TensorMap r = read_safetensors(ref_file(arch + "_" + variant + "_ref.safetensors")).tensors;
  torch::NoGradGuard ng;
  const at::Tensor logits = net->forward(r.at("input"));
  const double diff = test::max_abs_diff(logits, r.at("logits"));
  EXPECT_LE(diff, kTolerance);
  std::printf("[parity] %s %s: max |ours - pytorch| = %.3g\n", arch.c_str(), variant.c_str(), diff);
  // The task state is far from the identity: the backbone alone gives other logits.
  adapters::ReprogrammedNet fresh(models::load_resnet(arch, ref_file(arch + ".pth")),
                                  adapters::ReprogramOptions().variant(adapters::parse_variant(variant)), 7);
  TensorMap identity = fresh->new_task_state(7);
  if (variant != "residual") {
    for (auto& [k, v] : read_safetensors(ref_file(arch + "_" + variant + "_task.safetensors")).tensors) {
      if (k.rfind("clr.", 0) != 0) identity[k] = v;
    }
    fresh->load_task_state(identity);
    fresh->eval();
    EXPECT_GT(test::max_abs_diff(fresh->forward(r.at("input")), r.at("logits")), 1e-2);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, ClrParity,
                         ::testing::Values(std::make_tuple("resnet18", "clr"), std::make_tuple("resnet18", "clr-full"),
                                           std::make_tuple("resnet18", "residual"),
                                           std::make_tuple("resnet50", "clr")));

}  // namespace
}  // namespace clr
