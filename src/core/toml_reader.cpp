// read_toml, in a library of its own (clr_toml, which uses nothing else of clr's):
// toml++ is a compiled library whose definitions must not reach the precompiled
// header the other targets share.
#include <sys/stat.h>

#include <sstream>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "clr/core/settings.h"

namespace clr::settings {
namespace {

Json to_json_value(const toml::node& n) {
  if (const toml::table* t = n.as_table()) {
    Json j = Json::object();
    for (const auto& [k, v] : *t) j[std::string(k.str())] = to_json_value(v);
    return j;
  }
  if (const toml::array* a = n.as_array()) {
    Json j = Json::array();
    for (const auto& v : *a) j.push_back(to_json_value(v));
    return j;
  }
  if (auto v = n.value_exact<std::string>()) return *v;
  if (auto v = n.value_exact<int64_t>()) return *v;
  if (auto v = n.value_exact<double>()) return *v;
  if (auto v = n.value_exact<bool>()) return *v;
  std::ostringstream os;  // dates, times, date-times
  if (const auto* d = n.as_date()) os << *d;
  if (const auto* t = n.as_time()) os << *t;
  if (const auto* dt = n.as_date_time()) os << *dt;
  return os.str();
}

}  // namespace

Json read_toml(const std::string& path) {
  struct stat st {};
  CLR_CHECK(::stat(path.c_str(), &st) == 0, NotFoundError, "config file '", path, "' does not exist");
  CLR_CHECK(S_ISREG(st.st_mode), NotFoundError, "config file '", path, "' is ",
            S_ISDIR(st.st_mode) ? "a directory, not a file" : "not a regular file");
  try {
    return to_json_value(toml::parse_file(path));
  } catch (const toml::parse_error& e) {
    throw ConfigError(clr::detail::concat("'", path, "' is not valid TOML: ", e.description(), " (line ",
                                     e.source().begin.line, ", column ", e.source().begin.column, ")"));
  }
}

}  // namespace clr::settings
