// The `clr` program end to end: output, exit codes and messages.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>
#include <torch/version.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/safetensors.h"
#include "clr/models/registry.h"
#include "test_util.h"

namespace clr {
namespace {

using Result = test::CliResult;
Result run(const std::string& args) { return test::run_clr(args); }

TEST(Cli, ParamsResnet50PrintsThePapersFigures) {
  const Result r = run("params --arch resnet50 --classes 30");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["backbone"]["params"], 25557032);
  EXPECT_EQ(j["per_task"]["clr_kernels"]["params"], 34560);
  EXPECT_EQ(j["per_task"]["bn_affine"]["params"], 53120);
  EXPECT_EQ(j["per_task"]["extra_params"], 149150);
  EXPECT_NEAR(j["per_task"]["extra_fraction"].get<double>(), 0.0058, 0.0001);
  EXPECT_GT(j["macs"]["backbone"].get<int64_t>(), 4000000000);
}

TEST(Cli, ParamsResnet18) {
  const Result r = run("--threads 1 params --arch resnet18 --classes 10 --size 64 --small-stem");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["per_task"]["clr_kernels"]["params"], 35136);
  EXPECT_EQ(j["per_task"]["bn_affine"]["params"], 9600);
}

TEST(Cli, HelpListsArchitecturesAndVariants) {
  const Result r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* name : {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "clr-full", "params"}) {
    EXPECT_NE(r.out.find(name), std::string::npos) << name;
  }
}

TEST(Cli, UnknownArchExitsWithNotFound) {
  const Result r = run("params --arch vgg16");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("unknown architecture 'vgg16'"), std::string::npos) << r.out;
}

TEST(Cli, BadValuesExitWithConfigError) {
  EXPECT_EQ(run("params --variant lora").code, 2);
  EXPECT_EQ(run("params --classes 0").code, 2);
  EXPECT_NE(run("params --classes abc").code, 0);
  EXPECT_NE(run("frobnicate").code, 0);
}

TEST(Cli, InspectReportsMissingAndWrongFiles) {
  test::TempDir dir("cli");
  Result r = run("inspect " + dir.file("missing.pth"));
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("missing.pth"), std::string::npos);

  const std::string r50 = dir.file("r50.safetensors");
  write_safetensors(r50, models::state_dict(*models::make_resnet("resnet50")), {{"arch", "resnet50"}});
  r = run("inspect " + r50);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["metadata"]["arch"], "resnet50");
  r = run("inspect " + r50 + " --arch resnet18");
  EXPECT_EQ(r.code, 5) << r.out;
  EXPECT_NE(r.out.find("looks like a resnet50"), std::string::npos) << r.out;
  r = run("inspect " + r50 + " --arch resnet50");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["backbone_fingerprint"].get<std::string>().rfind("sha256:", 0), 0u);
}

// docs/ARCHITECTURE.md and README: 2 bad usage or configuration, 3 not found, 4 a
// malformed file, 5 incompatible inputs; the message names the culprit.
TEST(Cli, ExitCodesAreTheDocumentedOnes) {
  test::TempDir dir("cli-codes");
  auto expect = [](const Result& r, int code, const std::string& needle) {
    EXPECT_EQ(r.code, code) << r.out;
    EXPECT_NE(r.out.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.out;
  };
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = dir.file(name);
    FILE* f = std::fopen(path.c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
    return path;
  };
  // 2: usage and configuration.
  expect(run("run"), 2, "input is required");
  expect(run("run " + write("unknown.toml", "[train]\nlrate = 1\n")), 2, "unknown key 'train.lrate'");
  expect(run("run " + write("type.toml", "[train]\nepochs = \"ten\"\n")), 2, "train.epochs has the wrong type");
  expect(run("run " + write("syntax.toml", "[train\n")), 2, "is not valid TOML");
  expect(run("run " + dir.path() + " --epochs 0"), 2, "train.epochs must be >= 1");
  // Sizes that would overflow LibTorch's allocation arithmetic (issue 15, row 10).
  expect(run("run " + dir.path() + " --size 100000"), 2, "data.size must be in [1, 4096] pixels, got 100000");
  expect(run("run " + write("huge.toml", "[data]\nsize = 99999999999999999\n")), 2, "data.size must be in [1, 4096]");
  expect(run("--threads 0 params --arch resnet18"), 2, "must be a positive integer (capped at the hardware's threads), got '0'");
  expect(run("serve --store " + dir.path() + " --port 70000"), 2, "not in range 0 to 65535");
  expect(run("frobnicate"), 2, "unknown command 'frobnicate'; `clr --help` lists the commands");
  expect(run("--version"), 0, "LibTorch " TORCH_VERSION);
  expect(run("run " + dir.path() + " --parallel-tasks 0"), 2, "train.parallel_tasks must be in [1, 1024], got 0");
  expect(run("run " + dir.path() + " --precision half"), 2, "--precision");
  expect(run("run " + dir.path() + " --val-fraction 1"), 2, "data.val_fraction");
  expect(run("compare " + dir.path() + " --methods clr,nope --out " + dir.file("c")), 2, "unknown method 'nope'");
  expect(run("pretrain " + dir.path() + " --out x.safetensors --mode moco"), 2, "--mode must be supervised, simclr or byol");
  expect(run("serve --store " + dir.path() + " --admin-token s3cret"), 2, "--admin-token is not accepted");
  expect(run("serve --store " + dir.path() + " --admin-token-file " + write("empty-token", "\n")), 2,
         "holds no token on its first line");
  // 3: something named does not exist.
  expect(run("run " + dir.file("absent.toml")), 3, "absent.toml");
  expect(run("inspect " + dir.path()), 3, "is a directory, not a file");
  expect(run("run " + dir.path() + " --backbone " + dir.file("absent.safetensors")), 3, "absent.safetensors");
  expect(run("params --arch vgg16"), 3, "vgg16");
  // 4: a file that is not what its format promises.
  const std::string garbage = write("garbage.safetensors", "these bytes are no safetensors header at all");
  expect(run("inspect " + garbage), 4, "garbage.safetensors");
  write_safetensors(dir.file("future.safetensors"), {{"x", torch::zeros({1})}}, {{"format", "clr.backbone/9"}});
  expect(run("run " + dir.path() + " --backbone " + dir.file("future.safetensors")), 4, "clr.backbone/9");
  // 5: well-formed inputs that do not fit together.
  const std::string r50 = dir.file("r50.safetensors");
  write_safetensors(r50, models::state_dict(*models::make_resnet("resnet50", 0)), {});
  expect(run("inspect " + r50 + " --arch resnet18"), 5, "looks like a resnet50");
}

}  // namespace
}  // namespace clr
