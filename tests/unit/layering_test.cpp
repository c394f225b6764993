// Keeps docs/ARCHITECTURE.md's layering true: a layer includes only itself and the
// layers below it. Every file under include/clr/<layer>/ and src/<layer>/ is checked,
// subfolders (train/methods, data/detail) included; an include of a layer that is not
// in the list fails, as does a layer directory the list does not know.
#include <fstream>
#include <functional>
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

// Calls f(path) for every file below dir, at any depth.
void walk(const std::string& dir, const std::function<void(const std::string&)>& f) {
  for (const auto& name : list_directory(dir)) {
    const std::string path = dir + "/" + name;
    if (directory_exists(path)) {
      walk(path, f);
    } else {
      f(path);
    }
  }
}

// Problems of one file of layer `own`: includes of higher or unknown layers.
std::vector<std::string> problems(const std::string& path, int own) {
  static const std::regex include_re(R"re(#include\s+"clr/([^/"]+)/)re");
  std::vector<std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, include_re)) continue;
    const int other = rank(m[1]);
    if (other < 0) out.push_back(path + " includes an unknown layer: " + line);
    if (other > own) out.push_back(path + " includes a higher layer: " + line);
  }
  return out;
}

TEST(Layering, NoLayerIncludesAHigherOne) {
  int files = 0, nested = 0;
  for (const std::string& root : {std::string(CLR_SOURCE_DIR) + "/include/clr", std::string(CLR_SOURCE_DIR) + "/src"}) {
    for (const auto& layer : list_directory(root)) {
      const std::string dir = root + "/" + layer;
      if (!directory_exists(dir)) continue;
      const int own = rank(layer);
      ASSERT_GE(own, 0) << "unknown layer directory " << dir << "; add it to docs/ARCHITECTURE.md and this test";
      walk(dir, [&](const std::string& path) {
        ++files;
        if (path.find('/', dir.size() + 1) != std::string::npos) ++nested;
        for (const auto& p : problems(path, own)) ADD_FAILURE() << p;
      });
    }
  }
  EXPECT_GT(files, 20);
  EXPECT_GT(nested, 3) << "the walk must reach train/methods and data/detail";
}

TEST(Layering, TheCheckCatchesHigherAndUnknownLayers) {
  const std::string dir = std::string(CLR_TEST_SCRATCH) + "/layering";
  make_directories(dir);
  const std::string path = dir + "/sample.h";
  std::ofstream(path) << "#include \"clr/core/error.h\"\n#include \"clr/eval/runner.h\"\n#include \"clr/gui/x.h\"\n";
  const auto found = problems(path, rank("data"));
  ASSERT_EQ(found.size(), 2u);
  EXPECT_NE(found[0].find("higher layer"), std::string::npos) << found[0];
  EXPECT_NE(found[1].find("unknown layer"), std::string::npos) << found[1];
  EXPECT_TRUE(problems(path, rank("serve")).size() == 1u);
}

}  // namespace
}  // namespace clr
