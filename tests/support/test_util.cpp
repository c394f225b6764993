#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"

namespace clr::test {

TempDir::TempDir(const std::string& tag) {
  static std::atomic<int> counter{0};
  path_ = detail::concat(CLR_TEST_SCRATCH, "/", tag, ".", ::getpid(), ".", counter++);
  remove_tree(path_);
  make_directories(path_);
}

TempDir::~TempDir() {
  remove_tree(path_);
}

std::string python_fixture_dir(const std::string& script_name, const std::string& extra_args) {
  // Made once and shared by every test process: the directory name carries the
  // script's hash and the arguments, so a changed script makes new files.
  const std::string script = detail::concat(CLR_TEST_PYTHON_DIR, "/", script_name);
  const std::string tag = sha256_hex(read_file(script) + extra_args).substr(0, 12);
  const std::string stem = script_name.substr(0, script_name.rfind('.'));
  const std::string out = detail::concat(CLR_TEST_SCRATCH, "/", stem, "-", tag);
  if (file_exists(out + "/DONE")) return out;
  const std::string tmp = detail::concat(out, ".tmp.", ::getpid());
  const std::string cmd = detail::concat("\"", CLR_TEST_PYTHON, "\" \"", script, "\" ", extra_args, " --out \"", tmp, "\"");
  const int rc = std::system(cmd.c_str());
  CLR_CHECK(rc == 0, NotFoundError, "the test-data generator failed (exit ", rc, "): ", cmd,
            "; it needs python3 with torch, torchvision and PIL (Debian: python3-torch python3-torchvision python3-pil)");
  write_file_atomic(tmp + "/DONE", "ok\n");
  // Fails harmlessly when another process won the race.
  if (std::rename(tmp.c_str(), out.c_str()) != 0) remove_tree(tmp);
  return out;
}

const std::string& torch_reference_dir() {
  // The thread count is part of the arguments: GEMM blocking, hence rounding, depends on it.
  static const std::string dir =
      python_fixture_dir("torch_reference.py", detail::concat("--threads ", at::get_num_threads()));
  return dir;
}

const std::string& test_data_dir() {
  static const std::string dir = python_fixture_dir("make_data.py", "");
  return dir;
}

CliResult run_clr(const std::string& args) {
  const std::string cmd = std::string("\"") + CLR_TEST_BINARY + "\" " + args + " 2>&1";
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(torch::kCPU, torch::kDouble) - b.to(torch::kCPU, torch::kDouble)).abs().max().item<double>();
}

bool bit_identical(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && torch::equal(a.cpu(), b.cpu());
}

void train_steps(adapters::ReprogrammedNet& net, int steps, uint64_t seed, int64_t batch, int64_t size) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::optim::Adam opt(net->trainable_parameters(), torch::optim::AdamOptions(1e-2));
  net->train();
  for (int i = 0; i < steps; ++i) {
    at::Tensor x = at::randn({batch, 3, size, size}, gen).to(net->device());
    at::Tensor y = at::randint(0, net->num_classes(), {batch}, gen).to(net->device());
    opt.zero_grad();
    at::Tensor loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
  }
}

}  // namespace clr::test
