#include "clr/core/error.h"

namespace clr {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kConfig: return "config error";
    case ErrorKind::kNotFound: return "not found";
    case ErrorKind::kFormat: return "format error";
    case ErrorKind::kIncompatible: return "incompatible";
    case ErrorKind::kInternal: return "internal error";
    case ErrorKind::kStopped: return "stopped";
  }
  return "error";
}

namespace detail {
void throw_internal(const char* cond, const char* file, int line, const std::string& msg) {
  throw InternalError(concat("internal error: ", cond, " failed at ", file, ":", line,
                             msg.empty() ? "" : ": ", msg, " (this is a bug in clr; please report it)"));
}
}  // namespace detail

}  // namespace clr
