// libFuzzer targets for every parser of untrusted bytes (issue 15): one program,
// `clr_fuzz`, the target chosen by $CLR_FUZZ_TARGET (fuzz/README.md). A parser may
// refuse its input only with a clr::Error (ConfigError, NotFoundError, FormatError,
// IncompatibleError); anything else that escapes — a LibTorch c10::Error, std::bad_alloc,
// std::out_of_range — is reported as a crash, as are the sanitizers' findings.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/safetensors.h"
#include "clr/core/settings.h"
#include "clr/core/tensor_io.h"
#include "clr/data/image.h"
#include "clr/data/sources.h"
#include "clr/eval/results.h"
#include "clr/adapters/reprogram.h"
#include "clr/core/hash.h"
#include "clr/eval/run_config.h"
#include "clr/models/registry.h"
#include "clr/serve/engine.h"
#include "clr/serve/http.h"
#include "clr/store/adapter_file.h"
#include "clr/store/peft.h"
#include "clr/store/store.h"
#include "clr/train/task_inference.h"

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

// `clr serve` on a loopback port, started once: a random ResNet-18 (small stem) and a
// store of one CLR task of 3 classes at 8 px.
struct Served {
  std::unique_ptr<clr::serve::Engine> engine;
  std::unique_ptr<clr::serve::HttpServer> server;
  std::thread thread;
  std::promise<void> stopped;  // set when serve() has returned
  int port = 0;
};

// At exit (libFuzzer's, after the last input, or a replay's) the server is stopped and
// the requests it still handles are finished first: an exchange may have given up on a
// slow answer, and a forward still running while LibTorch's and oneDNN's globals are
// destroyed would crash the process after the fuzzing is over.
void stop_served();

Served& served() {
  static Served* s = [] {
    auto* out = new Served;  // never destroyed: the server serves until the process ends
    const std::string dir = scratch() + "/serve";
    clr::make_directories(dir);
    torch::manual_seed(0);
    clr::models::ResNet backbone = clr::models::make_resnet("resnet18", 0, true);
    const std::string file = dir + "/backbone.safetensors";
    clr::write_safetensors(file, clr::models::state_dict(*backbone));
    clr::adapters::ReprogrammedNet net(clr::models::load_resnet("resnet18", file, 0, true),
                                       clr::adapters::ReprogramOptions(), 3);
    clr::store::BackboneRef ref{"resnet18", true, net->backbone_fingerprint(),
                                clr::models::torchvision_param_count(*backbone), file};
    clr::store::Store store = clr::store::Store::create(dir + "/store", ref);
    clr::store::Adapter a;
    a.task = "t";
    a.classes = {"a", "b", "c"};
    a.preprocess.resize = 8;
    a.backbone = ref;
    a.tensors = net->new_task_state(3);
    clr::train::TaskStatistics stats;  // so that POST /v1/predict finds the task
    stats.class_mean = torch::rand({3, backbone->feature_dim()});
    stats.variance = torch::rand({backbone->feature_dim()}) + 0.1;
    stats.class_count = torch::full({3}, 4, torch::kLong);
    a.mapper = stats.to_tensors();
    store.put(a);
    clr::serve::EngineOptions eo;
    eo.store_dir = dir + "/store";
    out->engine = std::make_unique<clr::serve::Engine>(eo);
    clr::serve::HttpOptions ho;
    ho.port = 0;
    ho.watch_seconds = 0;
    ho.http_threads = 4;
    ho.max_body_bytes = 1 << 16;
    ho.request_timeout_s = 0.5;
    ho.body_timeout_s = 1;
    out->server = std::make_unique<clr::serve::HttpServer>(*out->engine, ho);
    out->port = out->server->bind();
    // Every path of a forward runs once before the server starts, so that the lazily
    // made globals of LibTorch and oneDNN exist before stop_served is registered (and
    // so are destroyed after it runs).
    const at::Tensor hwc = torch::zeros({8, 8, 3}, torch::kByte);
    out->engine->predict({"t"}, out->engine->preprocess("t", hwc).unsqueeze(0), 1);
    for (const char* method : {"gaussian", "energy"}) {
      clr::serve::IdentifyOptions io;
      io.method = method;
      out->engine->identify({hwc}, io);
    }
    out->thread = std::thread([out] {
      out->server->serve();
      out->stopped.set_value();
    });
    out->thread.detach();
    std::atexit(stop_served);
    return out;
  }();
  return *s;
}

void stop_served() {
  Served& s = served();
  s.server->stop();
  s.stopped.get_future().wait_for(std::chrono::seconds(30));
}

// What a client sends on one connection (then it stops sending and reads the answers
// until the server closes or is silent for 60 ms).
void http_exchange(const std::string& bytes) {
  const int port = served().port;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Reading stops after 60 ms of silence: a request the server waits on (a body shorter
  // than its Content-Length, after the half-close) would otherwise hold each execution
  // until the server's deadline. An answer slower than that is cut short, its request
  // still handled.
  timeval tv{0, 60000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  for (int tries = 0; ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0; ++tries) {
    if (tries == 100) {  // the server must come up and stay up
      std::fprintf(stderr, "clr_fuzz: http: cannot connect to the server on port %d\n", port);
      std::abort();
    }
    usleep(10000);
  }
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  char buf[4096];
  while (::recv(fd, buf, sizeof buf, 0) > 0) {
  }
  ::close(fd);
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
      {"peft",  // a PEFT-style folder: adapter_config.json, a NUL byte, adapter_model.safetensors
       [](const std::string& b) {
         const std::string dir = scratch() + "/peft";
         clr::make_directories(dir);
         const size_t nul = b.find('\0');
         clr::write_file(dir + "/adapter_config.json", b.substr(0, nul));
         clr::write_file(dir + "/adapter_model.safetensors", nul == std::string::npos ? "" : b.substr(nul + 1));
         clr::store::read_peft_folder(dir);
       }},
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
      {"skill",  // the input is the catalog's SQLite database
       [](const std::string& b) {
         const std::string root = scratch() + "/skill";
         clr::make_directories(root + "/rolling_releases");
         clr::write_file(root + "/rolling_releases/database_2.sqlite", b);
         clr::data::read_skill(root, {});
       }},
      {"http", [](const std::string& b) { http_exchange(b); }},
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
