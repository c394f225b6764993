// Helpers shared by clr's test suites.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <gtest/gtest.h>

#include "clr/adapters/reprogram.h"

namespace clr::test {

// A fresh directory under the build tree's test scratch space, removed at exit of
// the object.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Directory with the files tests/python/torch_reference.py writes, made with the
// Python interpreter CMake found (CLR_TEST_PYTHON) on first use and kept in the
// build tree's scratch space for later test processes.
const std::string& torch_reference_dir();
// Directory with the files tests/python/make_data.py writes (images of every format,
// ImageFolder sequences, list, IDX, CIFAR and SKILL data), made the same way.
const std::string& test_data_dir();
// test_data_dir() + "/" + rel.
inline std::string test_data(const std::string& rel) { return test_data_dir() + "/" + rel; }
// Runs tests/python/<script_name> once into the scratch space and returns the directory.
std::string python_fixture_dir(const std::string& script_name, const std::string& extra_args);

// True when CLR_TEST_ALLOW_MISSING_SYSTEM_DATA=1: a machine not set up by
// scripts/setup.sh (the GPU machine, docs/GPU.md) declares that the Debian data
// packages and programs some tests read may be absent, and those tests skip there.
// Everywhere else (CI included) a missing package is a failure.
bool missing_system_data_allowed();

// Runs the `clr` program with `args` (a shell-quoted string); stdout and stderr together.
struct CliResult {
  int code = -1;
  std::string out;
};
CliResult run_clr(const std::string& args);

// The what() of the exception of type E that f() throws; a test failure if none.
template <typename E, typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b);
bool bit_identical(const at::Tensor& a, const at::Tensor& b);

// `steps` Adam steps (lr 1e-2) of cross-entropy on random images/labels drawn from
// `seed`, in train mode; leaves the network in train mode.
void train_steps(adapters::ReprogrammedNet& net, int steps, uint64_t seed, int64_t batch, int64_t size);

// A task state for `net` far from the identity: perturbed CLR kernels (or residual
// kernels), BatchNorm affine and statistics, and a random head of `classes` outputs.
TensorMap random_task_state(adapters::ReprogrammedNet& net, int64_t classes, uint64_t seed);

// A random ResNet-18 with the small stem saved as DIR/backbone.safetensors, and an
// adapter store DIR/store holding `tasks` tasks "t0", "t1", ... of `variant` (clr,
// clr-full, residual or linear) with random states; task i has 2 + i % 5 classes.
struct TestStore {
  std::string backbone, store;
  std::vector<std::string> names;
  std::vector<TensorMap> states;
  std::string fingerprint;
};
TestStore make_test_store(const std::string& dir, const std::string& variant, int tasks, int64_t size, uint64_t seed);

}  // namespace clr::test
