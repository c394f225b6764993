// A small logging facade: levelled lines on stderr. Results go to stdout, never here.
// The level comes from CLR_LOG_LEVEL (trace, debug, info, warn, error, off) or
// set_level(); the default is info.
#pragma once

#include <string>

#include "clr/core/error.h"

namespace clr::log {

enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

Level level();
void set_level(Level level);
// Parses "trace".."off"; throws ConfigError naming the value otherwise.
Level parse_level(const std::string& name);
bool enabled(Level level);
void write(Level level, const std::string& message);
// Also appends the lines written at info level and above to `path`; an empty path
// stops. Throws NotFoundError if the file cannot be opened.
void set_file(const std::string& path);

template <typename... Args>
void trace(Args&&... args) { if (enabled(Level::kTrace)) write(Level::kTrace, detail::concat(std::forward<Args>(args)...)); }
template <typename... Args>
void debug(Args&&... args) { if (enabled(Level::kDebug)) write(Level::kDebug, detail::concat(std::forward<Args>(args)...)); }
template <typename... Args>
void info(Args&&... args) { if (enabled(Level::kInfo)) write(Level::kInfo, detail::concat(std::forward<Args>(args)...)); }
template <typename... Args>
void warn(Args&&... args) { if (enabled(Level::kWarn)) write(Level::kWarn, detail::concat(std::forward<Args>(args)...)); }
template <typename... Args>
void error(Args&&... args) { if (enabled(Level::kError)) write(Level::kError, detail::concat(std::forward<Args>(args)...)); }

}  // namespace clr::log
