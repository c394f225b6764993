// Error types and check macros.
//
// Two macros: CLR_CHECK for bad input a user can fix (the message names the file,
// key or value and what was expected), CLR_ASSERT for internal bugs. Both throw a
// member of a small exception family; only `main` (and later the HTTP layer) turns
// them into exit codes or status codes.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace clr {

enum class ErrorKind { kConfig, kNotFound, kFormat, kIncompatible, kInternal, kStopped };

// Human-readable name of an error kind ("config error", ...).
const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// A value given by the user (flag, config key, argument) is invalid.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& m) : Error(ErrorKind::kConfig, m) {}
};
// A file, key, architecture or task that was asked for does not exist.
class NotFoundError : public Error {
 public:
  explicit NotFoundError(const std::string& m) : Error(ErrorKind::kNotFound, m) {}
};
// A file exists but its bytes are not what its format promises.
class FormatError : public Error {
 public:
  explicit FormatError(const std::string& m) : Error(ErrorKind::kFormat, m) {}
};
// Two well-formed things do not fit together (checkpoint vs architecture, ...).
class IncompatibleError : public Error {
 public:
  explicit IncompatibleError(const std::string& m) : Error(ErrorKind::kIncompatible, m) {}
};
// Work stopped on request (a signal) after saving what it needs to go on.
class StoppedError : public Error {
 public:
  explicit StoppedError(const std::string& m) : Error(ErrorKind::kStopped, m) {}
};
// A bug in clr itself.
class InternalError : public Error {
 public:
  explicit InternalError(const std::string& m) : Error(ErrorKind::kInternal, m) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
[[noreturn]] void throw_internal(const char* cond, const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace clr

// CLR_CHECK(cond, ErrorType, message parts...): throw ErrorType(concat(parts)) unless cond.
#define CLR_CHECK(cond, ErrorType, ...)                         \
  do {                                                          \
    if (!(cond)) throw ErrorType(::clr::detail::concat(__VA_ARGS__)); \
  } while (false)

// CLR_ASSERT(cond, message parts...): an internal invariant; throws InternalError
// with the condition, file and line. A message is required.
#define CLR_ASSERT(cond, ...)                                                         \
  do {                                                                                \
    if (!(cond)) ::clr::detail::throw_internal(#cond, __FILE__, __LINE__,             \
                                               ::clr::detail::concat(__VA_ARGS__));    \
  } while (false)
