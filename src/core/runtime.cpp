#include "clr/core/runtime.h"

#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

#include <ATen/Parallel.h>
#include <c10/core/Device.h>

#include "clr/core/error.h"
#include "clr/core/log.h"
#include "clr/core/torch_compat.h"

namespace clr::runtime {
namespace {

int parse_positive(const char* name, const char* value) {
  try {
    size_t used = 0;
    const int n = std::stoi(value, &used);
    if (used == std::string(value).size() && n > 0) return n;
  } catch (const std::exception&) {
  }
  throw ConfigError(detail::concat("environment variable ", name, "='", value,
                                   "' is not a positive integer; expected e.g. ", name, "=4"));
}

}  // namespace

ThreadConfig resolve_threads(int requested) {
  const unsigned hw_count = std::thread::hardware_concurrency();
  const int hw = hw_count == 0 ? 1 : static_cast<int>(hw_count);
  // More intra-op threads than hardware threads only contend (99999 of them hang the
  // process): capped, with a warning.
  auto capped = [hw](int n, const char* source) -> ThreadConfig {
    if (n > hw) {
      log::warn(n, " intra-op threads asked for (", source, "); this machine has ", hw, " hardware threads, using ",
                hw);
      return {hw, source};
    }
    return {n, source};
  };
  if (requested > 0) return capped(requested, "flag");
  for (const char* name : {"CLR_NUM_THREADS", "OMP_NUM_THREADS"}) {
    const char* v = std::getenv(name);
    if (v != nullptr && *v != '\0') return capped(parse_positive(name, v), name);
  }
  return {hw, "hardware"};
}

void configure_allocator() {
#if defined(__GLIBC__)
  static const bool done = [] {
    const char* keep = std::getenv("CLR_KEEP_FREED_MEMORY");
    if (keep != nullptr && std::string(keep) == "0") return false;  // glibc's defaults (bench/, small hosts)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)done;
#endif
}

ThreadConfig configure_threads(int requested) {
  configure_allocator();
  ThreadConfig cfg = resolve_threads(requested);
  at::set_num_threads(cfg.intra_op);
  log::debug("intra-op threads: ", cfg.intra_op, " (from ", cfg.source, ")");
  return cfg;
}

c10::Device parse_device(const std::string& name) {
  std::string n = name;
  if (n == "auto") n = compat::cuda_available() ? "cuda" : "cpu";
  if (n == "cpu") return c10::Device(c10::kCPU);
  if (n.rfind("cuda", 0) == 0) {
    int index = -1;
    if (n.size() > 4) {
      CLR_CHECK(n[4] == ':' && n.size() > 5 && n.find_first_not_of("0123456789", 5) == std::string::npos,
                ConfigError, "malformed device '", name, "'; expected cpu, cuda, cuda:N or auto");
      index = std::stoi(n.substr(5));
    }
    CLR_CHECK(compat::cuda_available(), NotFoundError, "device '", name,
              "' was asked for but CUDA is not available (this LibTorch ", compat::torch_version(),
              " has no CUDA or no GPU is visible); use --device cpu");
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw ConfigError(detail::concat("unknown device '", name, "'; expected cpu, cuda, cuda:N or auto"));
}

std::string machine_description() {
  std::string model = "unknown cpu";
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) model = line.substr(colon + 2);
      break;
    }
  }
  return detail::concat(model, ", ", std::thread::hardware_concurrency(), " hardware threads");
}

std::string utc_timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace clr::runtime
