// Task inference's arithmetic (train/task_inference.h) against direct computations in
// double, and the adapter file's task-mapper statistics (format version 2).
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/safetensors.h"
#include "clr/store/adapter_file.h"
#include "clr/train/task_inference.h"
#include "test_util.h"

namespace clr {
namespace {

TEST(TaskInference, StatisticsAreClassMeansAndPooledWithinClassVariance) {
  torch::manual_seed(3);
  const int64_t k = 3, f = 5;
  const at::Tensor x = torch::randn({40, f}, torch::kDouble) * 2 + 1;
  at::Tensor y = torch::randint(0, k, {40}, torch::kLong);
  y[0] = 0, y[1] = 1, y[2] = 2;
  train::StatisticsAccumulator acc(k);
  acc.add(x.slice(0, 0, 17).to(torch::kFloat), y.slice(0, 0, 17));  // in two batches
  acc.add(x.slice(0, 17).to(torch::kFloat), y.slice(0, 17));
  const train::TaskStatistics s = acc.finish();
  ASSERT_EQ(s.classes(), k);
  ASSERT_EQ(s.feature_dim(), f);
  at::Tensor within = torch::zeros({f}, torch::kDouble);
  for (int64_t c = 0; c < k; ++c) {
    const at::Tensor xc = x.index({y.eq(c)}).to(torch::kFloat).to(torch::kDouble);
    const at::Tensor mean = xc.mean(0);
    EXPECT_LT(test::max_abs_diff(s.class_mean[c].to(torch::kDouble), mean), 1e-5);
    EXPECT_EQ(s.class_count[c].item<int64_t>(), xc.size(0));
    within += ((xc - mean) * (xc - mean)).sum(0);
  }
  EXPECT_LT(test::max_abs_diff(s.variance.to(torch::kDouble), within / (40 - k)), 1e-4);
  EXPECT_THROW(train::StatisticsAccumulator(2).finish(), ConfigError);
  EXPECT_THROW(train::StatisticsAccumulator(2).add(torch::zeros({2, 3}), torch::tensor({0, 2})), ConfigError);
}

// The mapper's score: the log density of the features under the task's equal-weight
// mixture of its class Gaussians (shared diagonal variance, shrunk by a tenth toward
// its mean), per feature.
TEST(TaskInference, GaussianScoresAreMixtureLogDensitiesPerFeature) {
  torch::manual_seed(5);
  const int64_t f = 6;
  std::vector<train::TaskStatistics> tasks(3);
  const int64_t classes[3] = {2, 4, 1};
  for (int t = 0; t < 3; ++t) {
    tasks[t].class_mean = torch::randn({classes[t], f});
    tasks[t].variance = torch::rand({f}) + 0.1;
    tasks[t].class_count = torch::full({classes[t]}, 10, torch::kLong);
  }
  const train::TaskMapper mapper({&tasks[0], &tasks[1], &tasks[2]}, c10::Device(c10::kCPU));
  const at::Tensor x = torch::randn({7, f});
  const at::Tensor got = mapper.scores(x);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{7, 3}));
  for (int64_t i = 0; i < 7; ++i) {
    for (int t = 0; t < 3; ++t) {
      const at::Tensor var = tasks[t].variance.to(torch::kDouble);
      const at::Tensor v = 0.9 * var + 0.1 * var.mean();
      double mix = 0;
      for (int64_t c = 0; c < classes[t]; ++c) {
        const at::Tensor d = x[i].to(torch::kDouble) - tasks[t].class_mean[c].to(torch::kDouble);
        const double log_n = -0.5 * ((d * d / v).sum().item<double>() + v.log().sum().item<double>() +
                                     static_cast<double>(f) * std::log(2 * M_PI));
        mix += std::exp(log_n) / static_cast<double>(classes[t]);
      }
      EXPECT_NEAR(got[i][t].item<double>(), std::log(mix) / static_cast<double>(f), 1e-4) << i << " " << t;
    }
  }
}

// task-gaussian: one Gaussian per task, of the mean and total variance its class
// statistics imply (the same as computed from the images themselves), shrunk likewise.
TEST(TaskInference, TaskGaussianIsOneGaussianOfAllTheTasksImages) {
  torch::manual_seed(9);
  const int64_t f = 4;
  const at::Tensor x = torch::randn({30, f}, torch::kDouble) * 1.5;
  const at::Tensor y = torch::arange(30).remainder(3);
  train::StatisticsAccumulator acc(3);
  acc.add(x.to(torch::kFloat), y);
  const train::TaskStatistics s = acc.finish();
  const train::TaskMapper mapper({&s}, c10::Device(c10::kCPU), /*whole_task=*/true);
  const at::Tensor xf = x.to(torch::kFloat).to(torch::kDouble);
  const at::Tensor mean = xf.mean(0), var = xf.var(0, /*unbiased=*/false);
  const at::Tensor v = 0.9 * var + 0.1 * var.mean();
  const at::Tensor probe = torch::randn({5, f});
  const at::Tensor got = mapper.scores(probe);
  for (int64_t i = 0; i < 5; ++i) {
    const at::Tensor d = probe[i].to(torch::kDouble) - mean;
    const double log_n = -0.5 * ((d * d / v).sum().item<double>() + v.log().sum().item<double>() +
                                 static_cast<double>(f) * std::log(2 * M_PI));
    EXPECT_NEAR(got[i][0].item<double>(), log_n / static_cast<double>(f), 1e-4) << i;
  }
}

TEST(TaskInference, HeadScoresAndConfidences) {
  const at::Tensor z = torch::tensor({{2.0f, 0.0f, -1.0f}, {0.0f, 0.0f, 0.0f}});
  const at::Tensor e = train::head_scores(train::TaskInference::kEnergy, z);
  EXPECT_NEAR(e[0].item<double>(), std::log((std::exp(2.0) + 1 + std::exp(-1.0)) / 3), 1e-6);
  EXPECT_NEAR(e[1].item<double>(), 0.0, 1e-6);  // uniform logits: log of their mean exp
  const at::Tensor m = train::head_scores(train::TaskInference::kMaxSoftmax, z);
  EXPECT_NEAR(m[1].item<double>(), 1.0 / 3, 1e-6);
  const at::Tensor c = train::task_confidences(torch::tensor({{1.0f, 1.0f}, {0.1f, 0.0f}}), 0.1);
  EXPECT_NEAR(c[0][0].item<double>(), 0.5, 1e-6);
  EXPECT_NEAR(c[1][0].item<double>(), 1 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_THROW(train::task_confidences(c, 0), ConfigError);
  // gaussian's: the smaller of the two mappers' confidences, task by task.
  const at::Tensor both = train::mapper_confidences(torch::tensor({{3.0f, 0.0f}}), torch::tensor({{0.0f, 0.0f}}), 1.0);
  EXPECT_NEAR(both[0][0].item<double>(), 0.5, 1e-6);
  EXPECT_NEAR(both[0][1].item<double>(), 1 / (1 + std::exp(3.0)), 1e-6);
  EXPECT_THROW(train::parse_task_inference("oracle"), ConfigError);
  EXPECT_THROW(train::head_scores(train::TaskInference::kGaussian, z), ConfigError);
}

store::Adapter tiny_adapter() {
  store::Adapter a;
  a.task = "t";
  a.classes = {"a", "b"};
  a.backbone.arch = "resnet18";
  a.backbone.fingerprint = "sha256:00";
  a.tensors = {{"head.weight", torch::randn({2, 4})}, {"head.bias", torch::zeros({2})}};
  return a;
}

TEST(TaskInference, AdapterFilesKeepTheStatisticsAsVersion2) {
  torch::manual_seed(1);
  store::Adapter plain = tiny_adapter();
  const std::string v1 = store::encode_adapter(plain);
  EXPECT_EQ(decode_safetensors(v1, "v1").metadata.at("version"), "1");  // readable by a clr before task inference
  EXPECT_TRUE(store::decode_adapter(v1, "v1").mapper.empty());

  train::StatisticsAccumulator acc(2);
  acc.add(torch::randn({6, 4}), torch::tensor({0, 1, 0, 1, 1, 0}));
  store::Adapter a = tiny_adapter();
  a.mapper = acc.finish().to_tensors();
  a.mapper_json = R"({"kind":"gaussian"})";
  const std::string v2 = store::encode_adapter(a);
  EXPECT_EQ(decode_safetensors(v2, "v2").metadata.at("version"), "2");
  const store::Adapter back = store::decode_adapter(v2, "v2");
  EXPECT_EQ(back.tensors.size(), 2u);  // the task state alone
  ASSERT_EQ(back.mapper.size(), 3u);
  EXPECT_TRUE(test::bit_identical(back.mapper.at("class_mean"), a.mapper.at("class_mean")));
  EXPECT_EQ(back.mapper_json, a.mapper_json);
  EXPECT_EQ(train::TaskStatistics::from_tensors(back.mapper, "v2").classes(), 2);

  // A statistic changed after the checksum was taken: the file is corrupt.
  SafetensorsFile f = decode_safetensors(v2, "v2");
  f.tensors.at("mapper.variance")[0] = 123;
  const std::string bad = encode_safetensors(f.tensors, f.metadata);
  EXPECT_NE(test::message_of<FormatError>([&] { store::decode_adapter(bad, "bad"); }).find("task-mapper"),
            std::string::npos);
  // Statistics that do not fit together are refused with the key named.
  TensorMap m = back.mapper;
  m["variance"] = torch::ones({3});
  EXPECT_NE(test::message_of<FormatError>([&] { train::TaskStatistics::from_tensors(m, "x"); }).find("variance"),
            std::string::npos);
  m = back.mapper;
  m["class_mean"] = torch::full({2, 4}, NAN);
  EXPECT_THROW(train::TaskStatistics::from_tensors(m, "x"), FormatError);
}

}  // namespace
}  // namespace clr
