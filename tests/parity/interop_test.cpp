// PyTorch interop: a stored adapter loaded in plain PyTorch (torchvision's ResNet, a
// depthwise conv after each conv, the task's BatchNorm, a Linear head; the code of
// tests/python/adapter_in_pytorch.py, which docs/SERVING.md shows) gives clr's
// predictions.
#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/serve/engine.h"
#include "clr/store/store.h"
#include "test_util.h"

namespace clr {
namespace {

constexpr int64_t kSize = 20;

std::string run_python(const std::string& args) {
  const std::string cmd = detail::concat("\"", CLR_TEST_PYTHON, "\" \"", CLR_TEST_PYTHON_DIR,
                                         "/adapter_in_pytorch.py\" ", args, " 2>&1");
  std::FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = ::pclose(p);
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  return out;
}

class Interop : public ::testing::TestWithParam<std::string> {};

TEST_P(Interop, PlainPyTorchGivesClrsPredictions) {
  const std::string variant = GetParam();
  test::TempDir dir("interop");
  const test::TestStore ts = test::make_test_store(dir.path(), variant, 3, kSize, 31);
  serve::EngineOptions eo;
  eo.store_dir = ts.store;
  serve::Engine engine(eo);
  torch::manual_seed(5);
  const int64_t n = 6;
  const at::Tensor images = torch::randint(0, 256, {n, 3, kSize, kSize}, torch::kLong).to(torch::kByte);
  {
    std::ofstream f(dir.file("images.u8"), std::ios::binary);
    f.write(static_cast<const char*>(images.data_ptr()), static_cast<std::streamsize>(images.numel()));
  }
  double worst = 0;
  for (const std::string& task : ts.names) {
    const std::vector<at::Tensor> logits = engine.logits(std::vector<std::string>(n, task), images);
    const std::string file = ts.store + "/" + store::Store::open(ts.store).find(task)->file;
    const std::string out = run_python(detail::concat(ts.backbone, " ", file, " --images ",
                                                      dir.file("images.u8"), " --count ", n, " --size ", kSize,
                                                      " --threads ", at::get_num_threads()));
    std::istringstream lines(out);
    std::string line;
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(std::getline(lines, line)) << out;
      const auto row = nlohmann::json::parse(line).get<std::vector<float>>();
      const at::Tensor want = torch::softmax(logits[static_cast<size_t>(i)], 0);
      ASSERT_EQ(static_cast<int64_t>(row.size()), want.size(0)) << line;
      const double d = test::max_abs_diff(torch::tensor(row), want);
      worst = std::max(worst, d);
      EXPECT_LE(d, 1e-4) << variant << " task " << task << " image " << i;
    }
  }
  std::cout << "[interop] " << variant << ": worst max-abs probability difference clr vs PyTorch " << worst << std::endl;
}

INSTANTIATE_TEST_SUITE_P(Variants, Interop, ::testing::Values("clr", "clr-full", "residual", "linear"));

}  // namespace
}  // namespace clr
