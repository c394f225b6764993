// Keeps docs/ARCHITECTURE.md's layering true: a layer includes only itself and the
// layers below it.
#include <fstream>
#include <map>
#include <regex>

#include <gtest/gtest.h>

#include "clr/core/file_io.h"

namespace clr {
namespace {

const std::vector<std::string> kLayers = {"core", "models", "adapters", "store", "data", "train", "eval", "serve"};

int rank(const std::string& layer) {
  for (size_t i = 0; i < kLayers.size(); ++i) {
    if (kLayers[i] == layer) return static_cast<int>(i);
  }
  return -1;
}

TEST(Layering, NoLayerIncludesAHigherOne) {
  const std::regex include_re(R"re(#include\s+"clr/(\w+)/)re");
  int files = 0;
  for (const std::string& root : {std::string(CLR_SOURCE_DIR) + "/include/clr", std::string(CLR_SOURCE_DIR) + "/src"}) {
    for (const auto& layer : list_directory(root)) {
      if (!directory_exists(root + "/" + layer)) continue;
      const int own = rank(layer);
      ASSERT_GE(own, 0) << "unknown layer directory " << root << "/" << layer << "; add it to docs/ARCHITECTURE.md and this test";
      for (const auto& name : list_directory(root + "/" + layer)) {
        const std::string path = root + "/" + layer + "/" + name;
        if (directory_exists(path)) continue;
        ++files;
        std::ifstream in(path);
        std::string line;
        while (std::getline(in, line)) {
          std::smatch m;
          if (std::regex_search(line, m, include_re)) {
            EXPECT_LE(rank(m[1]), own) << path << " (layer " << layer << ") includes " << line;
          }
        }
      }
    }
  }
  EXPECT_GT(files, 20);
}

}  // namespace
}  // namespace clr
