// `clr run` writes an adapter store; `clr tasks` manages it; `clr predict` answers
// from it what the run measured.
#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clr/core/file_io.h"
#include "test_util.h"

namespace clr {
namespace {

using nlohmann::json;

using test::test_data;
std::string shipped() { return std::string(CLR_SOURCE_DIR) + "/models/resnet18-pretrain-64px.safetensors"; }

// Image files of a task's test split with their class index (class directories in
// sorted order, as the ImageFolder reader numbers them).
std::vector<std::pair<std::string, int>> test_images(const std::string& task_dir) {
  std::vector<std::pair<std::string, int>> out;
  const auto classes = list_directory(task_dir + "/test");
  for (size_t c = 0; c < classes.size(); ++c) {
    for (const auto& f : list_directory(task_dir + "/test/" + classes[c])) {
      out.emplace_back(task_dir + "/test/" + classes[c] + "/" + f, static_cast<int>(c));
    }
  }
  return out;
}

std::string images_of_first(const std::string& seq) {
  return test_images(seq + "/alpha").front().first;
}

TEST(StoreCli, RunWritesAStoreThatPredictAndTasksUse) {
  test::TempDir out("storecli");
  test::CliResult r = test::run_clr("run " + test_data("seq") + " --backbone " + shipped() +
                                    " --size 24 --epochs 2 --batch 8 --seed 3 --out " + out.path());
  ASSERT_EQ(r.code, 0) << r.out;
  const json results = json::parse(read_file(out.file("results.json")));
  const std::string store = out.file("adapters");

  r = test::run_clr("tasks list --json --store " + store);
  ASSERT_EQ(r.code, 0) << r.out;
  const json list = json::parse(r.out.substr(r.out.find('{')));
  ASSERT_EQ(list["tasks"].size(), 3u);
  EXPECT_EQ(list["backbone"]["fingerprint"], results["backbone"]["fingerprint"]);
  EXPECT_EQ(list["tasks"][0]["name"], results["tasks"][0]["name"]);

  r = test::run_clr("tasks verify --store " + store);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("0 problems"), std::string::npos) << r.out;

  // clr predict on every test image of each task gives the run's final accuracy.
  const auto& tasks = results["tasks"];
  const auto& last = results["accuracy_matrix"].back();
  for (size_t t = 0; t < tasks.size(); ++t) {
    const std::string name = tasks[t]["name"];
    const auto images = test_images(test_data("seq/" + name));
    std::string args = "predict --top-k 1 --store " + store + " --task " + name;
    for (const auto& [path, label] : images) args += " " + path;
    r = test::run_clr(args);
    ASSERT_EQ(r.code, 0) << r.out;
    std::istringstream lines(r.out);
    std::string line;
    std::map<std::string, int> predicted;
    while (std::getline(lines, line)) {
      if (line.empty() || line[0] != '{') continue;
      const json j = json::parse(line);
      EXPECT_EQ(j["task"], name);
      predicted[j["image"]] = j["top"][0]["index"];
    }
    ASSERT_EQ(predicted.size(), images.size()) << r.out;
    int correct = 0;
    for (const auto& [path, label] : images) correct += predicted.at(path) == label ? 1 : 0;
    EXPECT_NEAR(static_cast<double>(correct) / static_cast<double>(images.size()), last[t].get<double>(), 1e-9)
        << name;
  }

  r = test::run_clr("tasks show --store " + store + " " + tasks[1]["name"].get<std::string>());
  ASSERT_EQ(r.code, 0) << r.out;
  const json shown = json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(shown["classes"], tasks[1]["classes"]);
  EXPECT_NEAR(shown["metrics"]["test_accuracy"].get<double>(), results["accuracy_matrix"][1][1].get<double>(), 1e-12);

  // Export, import into a new store under another name, remove.
  const std::string file = out.file("exported.safetensors");
  r = test::run_clr("tasks export --store " + store + " " + tasks[0]["name"].get<std::string>() + " --out " + file);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string other = out.file("other");
  r = test::run_clr("tasks import --store " + other + " " + file + " --name copied");
  ASSERT_EQ(r.code, 0) << r.out;
  r = test::run_clr("tasks import --store " + other + " " + file + " --name copied");
  EXPECT_EQ(r.code, 2) << r.out;  // exists
  r = test::run_clr("tasks import --store " + other + " " + file + " --name ../evil");
  EXPECT_EQ(r.code, 2) << r.out;
  r = test::run_clr("tasks rm --store " + other + " copied");
  ASSERT_EQ(r.code, 0) << r.out;
  r = test::run_clr("tasks list --store " + other);
  EXPECT_NE(r.out.find("0 tasks"), std::string::npos) << r.out;

  // Errors: unknown task, missing store, corrupt file.
  EXPECT_EQ(test::run_clr("predict --store " + store + " --task nope " + images_of_first(test_data("seq"))).code, 3);
  // A bad image among good ones (issue 15, row 14): a line for each, in order, the bad
  // one with its error, and the exit code of the failure after the last line.
  {
    const std::string good = test_images(test_data("seq/alpha")).front().first;
    const std::string bad = out.file("not-an-image.png");
    write_file_atomic(bad, "this is not a PNG");
    const std::string task = tasks[0]["name"].get<std::string>();
    r = test::run_clr("predict --top-k 1 --store " + store + " --task " + task + " " + good + " " + bad + " " + good +
                      " " + out.file("missing.png"));
    EXPECT_EQ(r.code, 4) << r.out;
    std::vector<json> lines;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] == '{') lines.push_back(json::parse(line));  // not the summary on stderr
    }
    EXPECT_NE(r.out.find("2 of 4 images could not be classified"), std::string::npos) << r.out;
    ASSERT_EQ(lines.size(), 4u) << r.out;
    EXPECT_EQ(lines[0]["image"], good);
    EXPECT_TRUE(lines[0].contains("top"));
    EXPECT_EQ(lines[1]["image"], bad);
    EXPECT_NE(lines[1]["error"].get<std::string>().find("not-an-image.png"), std::string::npos) << r.out;
    EXPECT_EQ(lines[2]["top"], lines[0]["top"]);
    EXPECT_TRUE(lines[3].contains("error"));
  }
  EXPECT_EQ(test::run_clr("tasks list --store " + out.file("missing")).code, 3);
  {
    const std::string victim = store + "/" + tasks[2]["adapter"].get<std::string>().substr(std::string("adapters/").size());
    std::string b = read_file(victim);
    b[b.size() / 2] ^= 1;
    std::ofstream(victim, std::ios::binary | std::ios::trunc) << b;
  }
  r = test::run_clr("tasks verify --store " + store);
  EXPECT_EQ(r.code, 4) << r.out;
  EXPECT_NE(r.out.find("FAIL"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace clr
