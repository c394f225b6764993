#include "clr/core/settings.h"

#include <algorithm>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/settings_io.h"

namespace clr::settings {
namespace {

std::string message(SettingError::Kind kind, const std::string& path, const std::string& problem) {
  if (kind == SettingError::Kind::kUnknownKey) return "unknown key '" + path + "'; known keys: " + problem;
  return (path.empty() ? std::string("the value") : path) + " " + problem;
}

}  // namespace

SettingError::SettingError(Kind kind, std::string path, std::string problem)
    : ConfigError(message(kind, path, problem)), kind_(kind), path_(std::move(path)), problem_(std::move(problem)) {}

SettingError SettingError::within(const std::string& parent) const {
  std::string p = parent;
  if (!path_.empty()) p += (path_[0] == '[' ? "" : ".") + path_;
  return SettingError(kind_, p, problem_);
}

std::string resolve_path(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) return path;
  return base_dir + "/" + path;
}

void Reader::finish() const {
  for (const auto& [key, value] : j_.items()) {
    bool found = false;
    for (const auto& k : known_) found = found || k == key;
    if (!found) throw SettingError(SettingError::Kind::kUnknownKey, key, internal::join_keys(known_));
  }
}

namespace internal {

std::string type_name(const Json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "float";
  if (v.is_object()) return "table";
  return v.type_name();
}

void wrong_type(const Json& v, const char* expected) {
  throw SettingError(SettingError::Kind::kBadValue, "",
                     "has the wrong type (" + type_name(v) + " " + v.dump() + "); expected " + expected);
}

std::string join_keys(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
  return out;
}

}  // namespace internal
std::string difference(const Json& was_doc, const Json& now_doc) {
  if (was_doc == now_doc) return "";
  const Json was = was_doc.flatten(), now = now_doc.flatten();
  const auto dotted = [](std::string pointer) {  // "/train/epochs" -> "train.epochs"
    if (!pointer.empty() && pointer[0] == '/') pointer.erase(0, 1);
    std::replace(pointer.begin(), pointer.end(), '/', '.');
    return pointer;
  };
  for (const auto& [k, v] : now.items()) {
    if (!was.contains(k)) return detail::concat("has no setting ", dotted(k));
    if (was.at(k) != v) return detail::concat("was made with ", dotted(k), " = ", was.at(k).dump(), ", not ", v.dump());
  }
  for (const auto& [k, v] : was.items()) {
    if (!now.contains(k)) return detail::concat("was made with a setting ", dotted(k), " this one lacks");
  }
  return "";
}

}  // namespace clr::settings
