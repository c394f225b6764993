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
#include "clr/core/path.h"
#include "clr/core/safetensors.h"
#include "clr/models/registry.h"
#include "clr/store/store.h"

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
  const std::string out = detail::concat(CLR_TEST_SCRATCH, "/", stem(script_name), "-", tag);
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

bool missing_system_data_allowed() {
  const char* allow = std::getenv("CLR_TEST_ALLOW_MISSING_SYSTEM_DATA");
  return allow != nullptr && std::string(allow) == "1";
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

TensorMap random_task_state(adapters::ReprogrammedNet& net, int64_t classes, uint64_t seed) {
  torch::manual_seed(seed);
  TensorMap s = net->new_task_state(classes);  // starts from the backbone's BatchNorm
  for (auto& [k, t] : s) {
    if (!t.is_floating_point()) continue;
    if (k.rfind("clr.", 0) == 0) {
      t = t + 0.05 * torch::randn_like(t);
    } else if (k.rfind("residual.", 0) == 0) {
      t = 0.1 * t;  // PyTorch's default init, scaled to a tenth of the conv it joins
    } else if (k.find("running_var") != std::string::npos) {
      t = t * (0.8 + 0.4 * torch::rand_like(t));
    } else if (k.find("running_mean") != std::string::npos) {
      t = t + 0.1 * torch::randn_like(t) * torch::sqrt(s.at(k.substr(0, k.size() - 4) + "var"));
    } else if (k.rfind("bn.", 0) == 0 && k.size() > 7 && k.compare(k.size() - 7, 7, ".weight") == 0) {
      t = t * (1 + 0.1 * torch::randn_like(t));
    } else if (k.rfind("bn.", 0) == 0) {
      t = t + 0.05 * torch::randn_like(t);
    }  // the head keeps PyTorch's default Linear initialisation (logits of order 1)
  }
  return s;
}

TestStore make_test_store(const std::string& dir, const std::string& variant, int tasks, int64_t size, uint64_t seed) {
  TestStore out;
  torch::manual_seed(seed);
  models::ResNet backbone = models::make_resnet("resnet18", 0, true);
  // BatchNorm statistics measured on images, as a trained network has them (with the
  // defaults, activations grow block by block and logits reach the thousands).
  {
    torch::NoGradGuard g;
    for (const auto& item : backbone->named_modules("", false)) {
      if (auto* bn = item.value()->as<torch::nn::BatchNorm2dImpl>()) bn->options.momentum(c10::nullopt);
    }
    backbone->train();
    for (int i = 0; i < 4; ++i) backbone->features(torch::randn({32, 3, size, size}));
    backbone->eval();
  }
  out.backbone = dir + "/backbone.safetensors";
  write_safetensors(out.backbone, models::state_dict(*backbone), {{"arch", "resnet18"}, {"small_stem", "true"}});
  out.fingerprint = fingerprint(models::state_dict(*backbone));
  out.store = dir + "/store";
  store::BackboneRef ref{"resnet18", true, out.fingerprint, 11689512, out.backbone};
  store::Store st = store::Store::create(out.store, ref);
  const bool linear = variant == "linear";
  adapters::ReprogrammedNet net(models::load_resnet("resnet18", out.backbone, 0, true),
                                adapters::ReprogramOptions().variant(adapters::parse_variant(linear ? "clr" : variant)), 2);
  for (int i = 0; i < tasks; ++i) {
    const int64_t k = 2 + i % 5;
    TensorMap state = random_task_state(net, k, seed * 1000 + static_cast<uint64_t>(i));
    if (linear) state = {{"head.weight", state.at("head.weight")}, {"head.bias", state.at("head.bias")}};
    store::Adapter a;
    a.task = detail::concat("t", i);
    a.variant = variant;
    for (int64_t c = 0; c < k; ++c) a.classes.push_back(detail::concat("c", c));
    a.preprocess.resize = size;
    a.backbone = ref;
    a.tensors = state;
    st.put(a);
    out.names.push_back(a.task);
    out.states.push_back(state);
  }
  return out;
}

}  // namespace clr::test
