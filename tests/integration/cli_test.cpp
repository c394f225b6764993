// The `clr` program end to end: output, exit codes and messages.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>
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

}  // namespace
}  // namespace clr
