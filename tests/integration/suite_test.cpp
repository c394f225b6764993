// `clr data build` end to end on a few cheap tasks of the suite (their Debian packages
// are installed by scripts/setup.sh): byte-identical for a seed, split by source
// asset, readable through both layouts, and clear errors.
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clr/core/file_io.h"
#include "clr/data/sources.h"
#include "test_util.h"

namespace clr {
namespace {

const char* kTasks = "materials,flag-country,fashion-tops,greek-letters";

// The packages kTasks read (scripts/setup.sh installs them); only a machine that
// declares them possibly absent (test::missing_system_data_allowed) skips without them.
bool packages_missing() {
  return test::missing_system_data_allowed() &&
         (!file_exists("/var/lib/dpkg/info/kgeography-data.list") || !file_exists("/var/lib/dpkg/info/gimp-data.list"));
}
#define SKIP_WITHOUT_PACKAGES() \
  if (packages_missing()) GTEST_SKIP() << "the suite's Debian packages are not installed on this machine"

std::string build(const std::string& out, const std::string& extra = "") {
  const auto r = test::run_clr(std::string("--threads 1 data build --scale small --size 32 --tasks ") + kTasks + " --out " +
                               out + " " + extra);
  EXPECT_EQ(r.code, 0) << r.out;
  return r.out;
}

// Every regular file under `dir` (relative path -> bytes).
void collect(const std::string& dir, const std::string& rel, std::map<std::string, std::string>& out) {
  for (const auto& e : list_directory(dir + rel)) {
    const std::string p = rel + "/" + e;
    if (directory_exists(dir + p)) collect(dir, p, out);
    else out[p] = read_file(dir + p);
  }
}

std::vector<std::vector<std::string>> csv_rows(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> cols;
    std::string cur;
    bool quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quoted) {
        if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') cur += '"', ++i;
        else if (c == '"') quoted = false;
        else cur += c;
      } else if (c == '"') {
        quoted = true;
      } else if (c == ',') {
        cols.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    cols.push_back(cur);
    rows.push_back(cols);
  }
  return rows;
}

TEST(Suite, SameSeedSameBytesSplitByAssetAndBothLayoutsRead) {
  SKIP_WITHOUT_PACKAGES();
  test::TempDir dir("suite");
  const std::string a = dir.file("a"), b = dir.file("b");
  const std::string printed = build(a);
  EXPECT_NE(printed.find("4 tasks"), std::string::npos) << printed;
  build(b);
  std::map<std::string, std::string> fa, fb;
  collect(a, "", fa);
  collect(b, "", fb);
  ASSERT_GT(fa.size(), 1000u);
  ASSERT_EQ(fa.size(), fb.size());
  for (const auto& [k, v] : fa) EXPECT_TRUE(fb.count(k) && fb.at(k) == v) << k << " differs between two builds";

  // Another seed draws other images.
  const std::string c = dir.file("c");
  build(c, "--seed 7");
  EXPECT_NE(read_file(c + "/imagefolder/materials/train/wood/train-0.png"),
            read_file(a + "/imagefolder/materials/train/wood/train-0.png"));

  // No source asset (group) in two splits of a task.
  std::map<std::pair<std::string, std::string>, std::set<std::string>> splits_of;  // (task, group) -> splits
  const auto rows = csv_rows(read_file(a + "/provenance.csv"));
  for (const auto& r : rows) {
    ASSERT_EQ(r.size(), 6u);
    std::istringstream groups(r[5]);  // several, ';'-separated, when an image shows several assets
    for (std::string g; std::getline(groups, g, ';');) splits_of[{r[0], g}].insert(r[1]);
  }
  for (const auto& [key, s] : splits_of) EXPECT_EQ(s.size(), 1u) << key.first << " / " << key.second;

  // The manifest agrees with what the readers find in both layouts.
  const auto m = nlohmann::json::parse(read_file(a + "/manifest.json"));
  EXPECT_EQ(m["schema"], "clr.suite/1");
  ASSERT_EQ(m["tasks"].size(), 4u);
  std::set<std::string> packages;
  for (const auto& p : m["packages"]) {
    packages.insert(p["name"].get<std::string>());
    EXPECT_FALSE(p["version"].get<std::string>().empty());
    EXPECT_FALSE(p["licenses"].empty());
  }
  for (const char* p : {"gimp-data", "kgeography-data", "dataset-fashion-mnist", "fonts-dejavu-core"}) {
    EXPECT_TRUE(packages.count(p)) << p;
  }
  const data::Sequence folder = data::read_imagefolder_tasks(a + "/imagefolder");
  data::SkillOptions so;
  so.task_csv = a + "/skill/tasks.csv";
  const data::Sequence skill = data::read_skill(a + "/skill", so);
  ASSERT_EQ(folder.size(), 4u);
  ASSERT_EQ(skill.size(), 4u);
  for (size_t t = 0; t < 4; ++t) {
    const auto& mt = m["tasks"][t];
    EXPECT_EQ(folder[t].name, mt["name"]);
    EXPECT_EQ(skill[t].name, mt["name"]);
    EXPECT_EQ(skill[t].classes, mt["classes"].get<std::vector<std::string>>());
    EXPECT_GE(skill[t].classes.size(), 4u);
    for (const data::TaskData* task : {&folder[t], &skill[t]}) {
      EXPECT_EQ(static_cast<int64_t>(task->train.size()), mt["images"]["train"].get<int64_t>()) << task->name;
      EXPECT_EQ(static_cast<int64_t>(task->val.size()), mt["images"]["val"].get<int64_t>()) << task->name;
      EXPECT_EQ(static_cast<int64_t>(task->test.size()), mt["images"]["test"].get<int64_t>()) << task->name;
    }
  }
}

// A bundle carries what the suite is drawn from: building from it gives the same bytes
// without reading any package (an empty dpkg database as the root proves it).
TEST(Suite, ABundleBuildsTheSameBytes) {
  SKIP_WITHOUT_PACKAGES();
  test::TempDir dir("suite-bundle");
  build(dir.file("direct"));
  auto r = test::run_clr(std::string("--threads 1 data bundle --tasks ") + kTasks + " --out " + dir.file("bundle"));
  ASSERT_EQ(r.code, 0) << r.out;
  make_directories(dir.file("root/var/lib/dpkg/info"));
  write_file_atomic(dir.file("root/var/lib/dpkg/status"), "");
  build(dir.file("from-bundle"), "--bundle " + dir.file("bundle") + " --root " + dir.file("root"));
  std::map<std::string, std::string> a, b;
  collect(dir.file("direct"), "", a);
  collect(dir.file("from-bundle"), "", b);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) EXPECT_TRUE(b.count(k) && b.at(k) == v) << k << " differs when built from the bundle";
  // A task the bundle does not hold is named.
  r = test::run_clr("data build --tasks typeface --bundle " + dir.file("bundle") + " --out " + dir.file("x"));
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("no task 'typeface'"), std::string::npos) << r.out;
}

// The pretraining set: assets that no benchmark task uses.
TEST(Suite, PretrainSetBuildsItsOwnTasks) {
  SKIP_WITHOUT_PACKAGES();
  test::TempDir dir("suite-pretrain");
  const auto r = test::run_clr("--threads 1 data build --set pretrain --tasks pool-symbols --scale small --size 32 --out " +
                               dir.file("p"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto m = nlohmann::json::parse(read_file(dir.file("p/manifest.json")));
  EXPECT_EQ(m["set"], "pretrain");
  ASSERT_EQ(m["tasks"].size(), 1u);
  EXPECT_GE(m["tasks"][0]["classes"].size(), 30u);
  // A pretraining task is not a benchmark task, and the other way round.
  EXPECT_EQ(test::run_clr("data build --tasks pool-symbols --out " + dir.file("q")).code, 2);
  EXPECT_EQ(test::run_clr("data build --set pretrain --tasks materials --out " + dir.file("q")).code, 2);
}

TEST(Suite, ClearErrorsAndNothingLeftBehind) {
  SKIP_WITHOUT_PACKAGES();
  test::TempDir dir("suite-errors");
  auto r = test::run_clr("data build --tasks materials,nope --out " + dir.file("x"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown suite task 'nope'"), std::string::npos) << r.out;
  r = test::run_clr("data build --scale huge --out " + dir.file("x"));
  EXPECT_EQ(r.code, 2) << r.out;
  // An existing output is kept unless --overwrite.
  make_directories(dir.file("y"));
  r = test::run_clr("--threads 1 data build --tasks materials --out " + dir.file("y"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--overwrite"), std::string::npos) << r.out;
  r = test::run_clr("--threads 1 data build --tasks materials --size 32 --overwrite --out " + dir.file("y"));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(file_exists(dir.file("y/manifest.json")));
  // --overwrite replaces a suite (as just made), never a directory with other files.
  r = test::run_clr("--threads 1 data build --tasks materials --size 32 --overwrite --out " + dir.file("y"));
  EXPECT_EQ(r.code, 0) << r.out;
  make_directories(dir.file("w"));
  write_file_atomic(dir.file("w/keep.txt"), "mine");
  r = test::run_clr("data build --tasks materials --overwrite --out " + dir.file("w"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(read_file(dir.file("w/keep.txt")), "mine");
  // A package that is not installed (an empty dpkg database): exit 3, the apt command,
  // and no partial output.
  make_directories(dir.file("root/var/lib/dpkg/info"));
  write_file_atomic(dir.file("root/var/lib/dpkg/status"), "");
  r = test::run_clr("data build --tasks materials --root " + dir.file("root") + " --out " + dir.file("z"));
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("apt-get install gimp-data"), std::string::npos) << r.out;
  for (const auto& e : list_directory(dir.path())) EXPECT_EQ(e.find("partial"), std::string::npos) << e;
  EXPECT_FALSE(directory_exists(dir.file("z")));
}

// A run config's [data.suite] builds the named tasks into its dir on first use, reads
// them from there afterwards, and refuses a dir built with other settings.
TEST(Suite, RunConfigBuildsOnceAndReuses) {
  SKIP_WITHOUT_PACKAGES();
  test::TempDir dir("suite-config");
  const std::string cfg = dir.file("c.toml");
  const auto config = [&](const std::string& scale) {
    write_file_atomic(cfg, "[data]\nsize = 24\n[data.suite]\ntasks = [\"materials\", \"fashion-tops\"]\nscale = \"" +
                               scale + "\"\ndir = \"built\"\n");
  };
  config("small");
  auto r = test::run_clr("--threads 1 preview " + cfg + " --per-class 1 --out " + dir.file("p1"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("suite: building 2 tasks"), std::string::npos) << r.out;
  EXPECT_TRUE(file_exists(dir.file("built/manifest.json")));  // relative to the config's folder
  EXPECT_TRUE(file_exists(dir.file("p1/materials.png")));
  EXPECT_TRUE(file_exists(dir.file("p1/fashion-tops.png")));
  const std::string manifest = read_file(dir.file("built/manifest.json"));
  r = test::run_clr("--threads 1 preview " + cfg + " --per-class 1 --out " + dir.file("p2"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("suite: reading the 2 tasks"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(dir.file("built/manifest.json")), manifest);  // not rebuilt
  config("full");
  r = test::run_clr("--threads 1 preview " + cfg + " --per-class 1 --out " + dir.file("p3"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("built with other settings"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(dir.file("built/manifest.json")), manifest);
  // --scale asks for the whole suite, in a folder of its own; it needs [data.suite].
  r = test::run_clr("run " + cfg + " --scale huge");
  EXPECT_NE(r.code, 0) << r.out;
  write_file_atomic(dir.file("plain.toml"), "[data]\nsize = 24\n");
  r = test::run_clr("run " + dir.file("plain.toml") + " --scale small --out " + dir.file("r"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--scale needs a config with [data.suite]"), std::string::npos) << r.out;
}

// [data.suite] set = "pretrain": the pretraining pools as a config's tasks (clr pretrain's
// --monitor), and a dir built for one set is not read as the other.
TEST(Suite, RunConfigOpensThePretrainingSet) {
  SKIP_WITHOUT_PACKAGES();
  test::TempDir dir("suite-pretrain-config");
  const std::string cfg = dir.file("c.toml");
  const auto config = [&](const std::string& set) {
    write_file_atomic(cfg, "[data]\nsize = 16\n[data.suite]\nset = \"" + set +
                               "\"\ntasks = [\"pool-symbols\"]\ndir = \"built\"\n");
  };
  config("pretrain");
  auto r = test::run_clr("--threads 1 preview " + cfg + " --per-class 1 --out " + dir.file("p"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(file_exists(dir.file("p/pool-symbols.png")));
  config("suite");  // pool-symbols is no benchmark task, and the dir holds the other set
  r = test::run_clr("--threads 1 preview " + cfg + " --per-class 1 --out " + dir.file("q"));
  EXPECT_EQ(r.code, 2) << r.out;
  config("bench");
  r = test::run_clr("--threads 1 preview " + cfg + " --per-class 1 --out " + dir.file("q"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("expected suite (the benchmark) or pretrain"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace clr
