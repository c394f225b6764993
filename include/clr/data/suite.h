// The offline benchmark suite: classification tasks of several kinds (objects, styles,
// writing systems, counting, textures, Fashion-MNIST) generated from image assets that
// Debian packages ship, so that nobody needs the internet to see continual learning
// work. `clr data build` writes it as an ImageFolder tree (clr run ROOT), as a SKILL
// SQLite catalog (PAPER.md's layout, [data.skill] in a run config) and a manifest
// with every task's classes and counts and every source package's name, version and
// licences. Each task is split by original asset (a drawing, a font family, a deck, a
// texture file, a Fashion-MNIST image: never in two splits); each image then varies
// scale, position, rotation, background and colour. The same seed gives byte-identical
// files.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace clr::data {

struct SuiteOptions {
  std::string out;                 // the suite's directory (built beside it, renamed when done)
  uint64_t seed = 0;
  std::string scale = "small";     // "small" (a few hundred images a task) or "full" (1,000-3,000 training images)
  int64_t size = 64;               // image side in pixels
  std::vector<std::string> tasks;  // only these tasks (names), in catalogue order; empty: all
  std::string cache_dir;           // rendered SVG assets (default: $XDG_CACHE_HOME/clr or ~/.cache/clr)
  std::string root = "/";          // where the Debian packages are installed (tests use a fake root)
  std::string bundle;              // build from this bundle (write_suite_bundle) instead of the packages
  std::string set = "suite";       // "suite" (the benchmark) or "pretrain" (assets no suite task uses, for
                                   // pretraining backbones on data disjoint from the benchmark)
  bool overwrite = false;          // replace an existing suite in `out`
};

// One task of the catalogue, before anything is built.
struct SuiteTaskInfo {
  std::string name;
  std::string kind;         // object, style, characters, counting, texture, fashion
  std::string description;  // one line: what the classes are and what splits it
  std::vector<std::string> packages;
};
// The tasks of a set ("suite" or "pretrain").
std::vector<SuiteTaskInfo> suite_catalogue(const std::string& set = "suite");

struct SuiteTaskSummary {
  std::string name, kind;
  std::vector<std::string> classes;
  std::map<std::string, int64_t> images;  // split -> images
  std::map<std::string, int64_t> assets;  // split -> distinct source assets
};

struct SuiteSummary {
  std::string out;
  std::vector<SuiteTaskSummary> tasks;
  double seconds = 0;
};

// Builds the suite (ConfigError for bad options or an unknown task; NotFoundError
// naming the Debian package to install when an asset source is missing). Progress
// goes to the log; nothing is left in `out` unless the whole build succeeded.
SuiteSummary build_suite(const SuiteOptions& options);

// Writes the loaded assets of the chosen tasks (options.tasks; all when empty) to the
// directory options.out, so that a machine without the Debian packages (the GPU
// machine) can build the same suite with options.bundle = that directory: the same
// seed gives the same bytes. Returns the directory.
std::string write_suite_bundle(const SuiteOptions& options);

// What a built suite's manifest.json says about how it was built.
struct SuiteManifest {
  std::string set;                 // suite | pretrain
  std::string scale;
  uint64_t seed = 0;
  int64_t size = 0;
  std::vector<std::string> tasks;  // in the suite's order
};
// Reads DIR/manifest.json; FormatError naming the file when it is not a suite manifest.
SuiteManifest read_suite_manifest(const std::string& dir);

}  // namespace clr::data
