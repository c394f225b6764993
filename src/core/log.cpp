#include "clr/core/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace clr::log {
namespace {

Level initial_level() {
  const char* env = std::getenv("CLR_LOG_LEVEL");
  if (env == nullptr || *env == '\0') return Level::kInfo;
  try {
    return parse_level(env);
  } catch (const ConfigError&) {
    std::fprintf(stderr, "clr: ignoring CLR_LOG_LEVEL='%s' (expected trace, debug, info, warn, error or off)\n", env);
    return Level::kInfo;
  }
}

std::atomic<int>& current() {
  static std::atomic<int> value{static_cast<int>(initial_level())};
  return value;
}

const char* tag(Level level) {
  switch (level) {
    case Level::kTrace: return "trace";
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
    case Level::kOff: return "off";
  }
  return "?";
}

}  // namespace

Level level() { return static_cast<Level>(current().load()); }
void set_level(Level l) { current().store(static_cast<int>(l)); }
bool enabled(Level l) { return l != Level::kOff && static_cast<int>(l) >= current().load(); }

Level parse_level(const std::string& name) {
  for (Level l : {Level::kTrace, Level::kDebug, Level::kInfo, Level::kWarn, Level::kError, Level::kOff}) {
    if (name == tag(l)) return l;
  }
  throw ConfigError(detail::concat("unknown log level '", name,
                                   "'; expected one of trace, debug, info, warn, error, off"));
}

std::mutex& log_mutex() {
  static std::mutex m;
  return m;
}

std::FILE*& log_file() {
  static std::FILE* f = nullptr;
  return f;
}

void set_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(log_mutex());
  if (log_file() != nullptr) std::fclose(log_file());
  log_file() = nullptr;
  if (path.empty()) return;
  log_file() = std::fopen(path.c_str(), "a");
  CLR_CHECK(log_file() != nullptr, NotFoundError, "cannot open log file '", path, "'");
}

void write(Level l, const std::string& message) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(log_mutex());
  std::fprintf(stderr, "[%s %s] %s\n", stamp, tag(l), message.c_str());
  if (log_file() != nullptr && l >= Level::kInfo) {
    std::fprintf(log_file(), "[%s %s] %s\n", stamp, tag(l), message.c_str());
    std::fflush(log_file());
  }
}

}  // namespace clr::log
