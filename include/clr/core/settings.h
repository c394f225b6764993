// Settings: every component's options are one plain struct (train::TrainConfig,
// train::MethodOptions, data::DataConfig, data::SuiteOptions, train::PretrainConfig,
// serve::ServeConfig, eval::RunConfig, ...) with one JSON conversion, declared beside
// the struct as
//
//   void to_json(nlohmann::ordered_json& j, const Struct& s);
//   void from_json(const nlohmann::ordered_json& j, Struct& s);
//
// and defined from ONE list of its keys (clr/core/settings_io.h). from_json refuses
// an unknown key (naming it and listing the known ones) and a value of the wrong type;
// a key that is absent keeps the struct's default. A TOML file is read into the same
// JSON (read_toml), so a config file, the flags written into the structs, and the
// `config` stored in results.json all go through one description of each component.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "clr/core/error.h"

namespace clr::settings {

using Json = nlohmann::ordered_json;

// A setting that cannot be read. path() is its dotted key ("train.lr",
// "data.tasks[2].kind"; empty for the top level), problem() what is wrong with it.
class SettingError : public ConfigError {
 public:
  enum class Kind { kUnknownKey, kBadValue };
  SettingError(Kind kind, std::string path, std::string problem);
  // The same error one level further out: path "lr" within "train" is "train.lr".
  SettingError within(const std::string& parent) const;
  const std::string& path() const { return path_; }
  const std::string& problem() const { return problem_; }
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
  std::string path_, problem_;
};

// A TOML file as JSON: tables become objects (keys in file order), arrays arrays, and
// strings, integers, floats and booleans the same JSON values; dates and times become
// strings. Throws NotFoundError for a missing file and ConfigError with the line and
// column for a file that is not TOML.
Json read_toml(const std::string& path);

// Empty when two settings documents are equal; otherwise the first setting (as a
// dotted key) that differs, as a phrase: "was made with train.epochs = 4, not 5", "has
// no setting x.y", "was made with a setting x.y this one lacks". For the checks that a
// resumed run (clr run, clr pretrain) was started with the same settings.
std::string difference(const Json& was, const Json& now);

// `path` relative to `base_dir` unless empty or absolute.
std::string resolve_path(const std::string& base_dir, const std::string& path);

}  // namespace clr::settings
