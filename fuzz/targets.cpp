// libFuzzer targets for every parser of untrusted bytes (issue 15): one program,
// `clr_fuzz`, the target chosen by $CLR_FUZZ_TARGET (fuzz/README.md). A parser may
// refuse its input only with a clr::Error (ConfigError, NotFoundError, FormatError,
// IncompatibleError); anything else that escapes — a LibTorch c10::Error, std::bad_alloc,
// std::out_of_range — is reported as a crash, as are the sanitizers' findings.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <string>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/safetensors.h"
#include "clr/core/settings.h"
#include "clr/core/tensor_io.h"
#include "clr/data/image.h"
#include "clr/data/sources.h"
#include "clr/eval/results.h"
#include "clr/eval/run_config.h"
#include "clr/store/adapter_file.h"
#include "clr/store/store.h"

namespace {

using Target = std::function<void(const std::string& bytes)>;

// A private scratch directory for the readers that take a path.
const std::string& scratch() {
  static const std::string dir = [] {
    std::string d = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/clr-fuzz-" +
                    std::to_string(::getpid());
    clr::make_directories(d);
    return d;
  }();
  return dir;
}

std::string as_file(const std::string& bytes, const std::string& name) {
  const std::string path = scratch() + "/" + name;
  clr::write_file(path, bytes);
  return path;
}

const std::map<std::string, Target>& targets() {
  static const std::map<std::string, Target> all = {
      {"safetensors", [](const std::string& b) { clr::decode_safetensors(b, "fuzz"); }},
      {"safetensors-metadata",
       [](const std::string& b) { clr::read_safetensors_metadata(as_file(b, "m.safetensors")); }},
      {"pth", [](const std::string& b) { clr::read_pytorch_state_dict(as_file(b, "w.pth")); }},
      {"weights", [](const std::string& b) { clr::load_tensor_file(as_file(b, "w.bin")); }},
      {"idx",
       [](const std::string& b) {
         const std::string p = as_file(b, "x.idx");
         try {
           clr::data::read_idx_images(p);
         } catch (const clr::Error&) {
         }
         clr::data::read_idx_labels(p);
       }},
      {"cifar", [](const std::string& b) { clr::data::read_cifar_binary({as_file(b, "c.bin")}, !b.empty() && b[0] & 1); }},
      {"image",
       [](const std::string& b) {
         const auto wh = clr::data::declared_size(b);
         // The server refuses images over --max-pixels unread; here the cap is lower (1 MP),
         // so that executions go to the decoders' logic rather than to filling pixels.
         if (wh && wh->first * wh->second > 1'000'000) return;
         clr::data::decode_image(b, "fuzz");
       }},
      {"toml", [](const std::string& b) { clr::eval::read_run_config(as_file(b, "run.toml")); }},
      {"adapter", [](const std::string& b) { clr::store::decode_adapter(b, "fuzz"); }},
      {"manifest",
       [](const std::string& b) {
         const std::string dir = scratch() + "/store";
         clr::make_directories(dir + "/tasks");
         clr::write_file(dir + "/manifest.json", b);
         clr::store::Store::open(dir).verify();
       }},
      {"results", [](const std::string& b) { clr::eval::parse_results(b, "fuzz"); }},
      {"list",
       [](const std::string& b) { clr::data::read_list_file(as_file(b, "list.txt")); }},
  };
  return all;
}

const Target* chosen = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* name = std::getenv("CLR_FUZZ_TARGET");
  std::string known;
  for (const auto& [k, v] : targets()) known += " " + k;
  if (name == nullptr || targets().count(name) == 0) {
    std::fprintf(stderr, "clr_fuzz: set CLR_FUZZ_TARGET to one of:%s\n", known.c_str());
    std::exit(2);
  }
  chosen = &targets().at(name);
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    (*chosen)(bytes);
  } catch (const clr::Error&) {
    // A refusal with a message: what a parser should do with bad bytes.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "clr_fuzz: %s escaped as %s: %s\n", std::getenv("CLR_FUZZ_TARGET"),
                 typeid(e).name(), e.what());
    std::abort();
  }
  return 0;
}
