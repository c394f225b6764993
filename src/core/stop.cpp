#include "clr/core/stop.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

namespace clr {
namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the flag is set from a signal handler");

extern "C" void on_stop_signal(int sig) {
  g_stop.store(true);
  // Only async-signal-safe calls here: a fixed message, and the default action back
  // for the next signal.
  const char* msg = "\nclr: stopping at the next checkpoint (the end of this epoch); signal again to stop now\n";
  const ssize_t ignored = write(STDERR_FILENO, msg, std::strlen(msg));
  (void)ignored;
  std::signal(sig, SIG_DFL);
}

}  // namespace

void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

bool stop_requested() { return g_stop.load(); }

void request_stop() { g_stop.store(true); }

}  // namespace clr
