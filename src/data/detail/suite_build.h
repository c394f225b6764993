// What the suite build (suite.cpp) and the bundle format (suite_bundle.cpp) share: the
// chosen recipes, a task's loaded assets, and a bundle read back. Private to the data
// layer.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "suite_recipe.h"

namespace clr::data::suite_internal {

// The recipes of a set ("suite" or "pretrain"; ConfigError otherwise), all or the named
// ones in catalogue order (ConfigError for an unknown name, listing the known ones).
std::vector<SuiteRecipe> chosen_recipes(const std::string& set, const std::vector<std::string>& names);

// $XDG_CACHE_HOME/clr/assets or ~/.cache/clr/assets ("" when neither is set).
std::string default_cache_dir();

// An existing output may be replaced only if it is what we write there (a suite with its
// manifest, a bundle with its index) or empty: --overwrite never deletes anything else.
void check_replaceable(const std::string& out, const std::string& marker, const std::string& what);

// A task's classes and loaded assets: everything drawing needs, from the installed
// packages or from a bundle.
struct TaskAssets {
  std::vector<std::string> classes;
  std::vector<SuiteAsset> assets;                 // those that loaded and draw something
  std::vector<std::vector<at::Tensor>> payloads;  // per asset
  std::vector<std::string> packages;
  std::vector<std::string> skipped;  // keys of assets that failed to load or drew nothing (in the manifest)
};

// Collects and loads a recipe's assets from the installed packages (in parallel);
// assets that fail to load or draw nothing are skipped (FormatError past 20%).
TaskAssets load_task_assets(const SuiteRecipe& recipe, SuiteContext& ctx);

// ---- bundles (suite_bundle.cpp; the format is described there)

struct PackageRecord {
  std::string version;
  std::vector<std::string> licenses;
};

struct Bundle {
  nlohmann::json index;
  std::map<std::string, PackageRecord> packages;
};

// NotFoundError when `dir` holds no index, FormatError for a malformed one.
Bundle read_bundle(const std::string& dir);
// A task's assets as load_task_assets gives them (NotFoundError for a task the bundle
// lacks, FormatError for a malformed entry).
TaskAssets bundle_task(const Bundle& b, const std::string& task, const std::string& dir);

}  // namespace clr::data::suite_internal
