// Process start-up: thread count and device selection.
#pragma once

#include <string>

namespace c10 { struct Device; }

namespace clr::runtime {

// Where the thread count came from, for logs and benchmark reports.
struct ThreadConfig {
  int intra_op = 1;
  std::string source;  // "flag", "CLR_NUM_THREADS", "OMP_NUM_THREADS" or "hardware"
};

// Decides the intra-op thread count without applying it: `requested` > 0 wins,
// then the environment variable CLR_NUM_THREADS, then OMP_NUM_THREADS, then the
// number of hardware threads. Throws ConfigError for a malformed variable.
ThreadConfig resolve_threads(int requested);

// Resolves (as above) and applies the thread count to LibTorch. Debian's LibTorch
// starts with one intra-op thread; every program calls this at start-up.
ThreadConfig configure_threads(int requested = 0);

// Parses "cpu", "cuda", "cuda:N" (and "auto": cuda when available, else cpu).
// Throws ConfigError for a malformed name and NotFoundError when CUDA is asked for
// but not available.
c10::Device parse_device(const std::string& name);

// A short description of the machine for reports ("Intel(R) Xeon(R) ... x2 threads").
std::string machine_description();

// The current time in UTC, ISO 8601 to the second ("2026-12-01T09:30:00Z").
std::string utc_timestamp();

}  // namespace clr::runtime
