// Reading back what build_suite wrote into a suite's manifest.json.
#include <nlohmann/json.hpp>

#include "clr/core/json_numbers.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/data/suite.h"

namespace clr::data {

SuiteManifest read_suite_manifest(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  SuiteManifest m;
  try {
    const nlohmann::json j = nlohmann::json::parse(read_file(path));
    check_json_numbers(j, path);
    m.set = j.value("set", "");
    m.scale = j.at("scale").get<std::string>();
    CLR_CHECK(j.at("seed").is_number_unsigned(), FormatError, "'", path, "': seed must be a non-negative integer");
    m.seed = j.at("seed").get<uint64_t>();
    m.size = j.at("size").get<int64_t>();
    for (const auto& t : j.at("tasks")) m.tasks.push_back(t.at("name").get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(clr::detail::concat("'", path, "' is not a suite manifest (", e.what(), "); remove '", dir,
                                     "' to build it again"));
  }
  return m;
}

}  // namespace clr::data
