#include "clr/core/progress.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace clr {
namespace {
std::atomic<bool> g_enabled{true};

std::string duration(double s) {
  char buf[32];
  if (s < 0 || s > 1e7) return "--:--";
  const auto t = static_cast<long>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%02ld:%02ld", t / 60, t % 60);
  return buf;
}
}  // namespace

void Progress::set_enabled(bool on) { g_enabled = on; }

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(::isatty(STDERR_FILENO) == 1) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_ && done_ > 0) finish();
}

void Progress::update(int64_t done, const std::string& status) {
  done_ = done;
  status_ = status;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= interval()) {
    last_draw_ = now;
    draw(false);
  }
}

bool Progress::due() const {
  return g_enabled && std::chrono::duration<double>(std::chrono::steady_clock::now() - last_draw_).count() >= interval();
}

void Progress::finish(const std::string& status) {
  if (!status.empty()) status_ = status;
  finished_ = true;
  draw(true);
}

void Progress::draw(bool final_line) {
  if (!g_enabled) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : -1;
  const double frac = total_ > 0 ? std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_)) : 1.0;
  char line[512];
  if (tty_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(frac * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(kWidth - filled), '.');
    std::snprintf(line, sizeof line, "\r%s [%s] %3.0f%% %.0f %s/s %s<%s %s\033[K", label_.c_str(), bar.c_str(),
                  100 * frac, rate, unit_.c_str(), duration(elapsed).c_str(), duration(eta).c_str(), status_.c_str());
    std::fputs(line, stderr);
    if (final_line) std::fputc('\n', stderr);
  } else {
    std::snprintf(line, sizeof line, "%s: %lld/%lld %s (%.0f%%), %.1f %s/s, elapsed %s, eta %s%s%s\n", label_.c_str(),
                  static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(), 100 * frac, rate,
                  unit_.c_str(), duration(elapsed).c_str(), duration(eta).c_str(), status_.empty() ? "" : ", ",
                  status_.c_str());
    std::fputs(line, stderr);
  }
  std::fflush(stderr);
}

}  // namespace clr
