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
// starts with one intra-op thread; every program calls this at start-up, and it
// configures the allocator too (configure_allocator).
ThreadConfig configure_threads(int requested = 0);

// glibc's malloc gives freed memory back to the system as soon as a few tens of MB lie
// free, and maps large blocks afresh each time: CPU training, which frees and takes
// back its gradients every step, then spends most of its time in page faults (sgd on
// ResNet-18 ran 2-3x slower). This keeps up to 1 GiB of freed memory for reuse and
// fixes the mapping threshold at its largest (32 MiB). Idempotent; a no-op elsewhere
// and with CLR_KEEP_FREED_MEMORY=0 (glibc's defaults: for a host short of memory, and
// for measuring the difference).
void configure_allocator();

// Parses "cpu", "cuda", "cuda:N" (and "auto": cuda when available, else cpu).
// Throws ConfigError for a malformed name and NotFoundError when CUDA is asked for
// but not available.
c10::Device parse_device(const std::string& name);

// A short description of the machine for reports ("Intel(R) Xeon(R) ... x2 threads").
std::string machine_description();

// The current time in UTC, ISO 8601 to the second ("2026-12-01T09:30:00Z").
std::string utc_timestamp();

}  // namespace clr::runtime
