// Nothing lost, and a stopped run goes on (issue 15, rows 1 and 2): `clr run` killed at
// random moments and started again ends with the results of a run never stopped; a
// re-run never removes a task it did not write.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clr/core/file_io.h"
#include "clr/core/safetensors.h"
#include "test_util.h"

namespace clr {
namespace {

using json = nlohmann::json;
using test::test_data;

const char* kSettings = " --backbone resnet18 --small-stem --size 16 --epochs 10 --patience 100 --batch 8 --seed 5";

json results_of(const std::string& dir) { return json::parse(read_file(dir + "/results.json")); }

// The tensors of every task's stored state (store or task_states/), by task.
std::map<std::string, TensorMap> stored_states(const std::string& dir) {
  std::map<std::string, TensorMap> out;
  for (const auto& t : results_of(dir)["tasks"]) {
    out[t["name"].get<std::string>()] = read_safetensors(dir + "/" + t["adapter"].get<std::string>()).tensors;
  }
  return out;
}

void expect_same_run(const std::string& a, const std::string& b) {
  const json ja = results_of(a), jb = results_of(b);
  EXPECT_TRUE(jb["complete"].get<bool>());
  EXPECT_EQ(ja["accuracy_matrix"], jb["accuracy_matrix"]);
  // Task inference (the gaussian mapper, on by default) too: its statistics of finished
  // tasks come back from the store or their training images.
  EXPECT_FALSE(ja["task_inference"].empty());
  EXPECT_EQ(ja["task_inference"], jb["task_inference"]);
  ASSERT_EQ(ja["tasks"].size(), jb["tasks"].size());
  for (size_t t = 0; t < ja["tasks"].size(); ++t) {
    EXPECT_EQ(ja["tasks"][t]["best_epoch"], jb["tasks"][t]["best_epoch"]) << t;
    EXPECT_EQ(ja["tasks"][t]["best_val_accuracy"], jb["tasks"][t]["best_val_accuracy"]) << t;
    EXPECT_EQ(ja["tasks"][t]["epochs"], jb["tasks"][t]["epochs"]) << t;
  }
  const auto sa = stored_states(a), sb = stored_states(b);
  for (const auto& [task, tensors] : sa) {
    ASSERT_TRUE(sb.count(task)) << task;
    for (const auto& [k, v] : tensors) EXPECT_TRUE(test::bit_identical(v, sb.at(task).at(k))) << task << " " << k;
  }
}

// Kills `clr run` (SIGKILL) after random delays, up to 12 times, then lets it finish;
// returns the number of attempts killed before one finished. The delays grow with the
// attempts, so that a loaded machine (slow starts) still makes progress between kills.
int run_with_random_kills(const std::string& args, std::mt19937& rng, std::string* trace) {
  std::uniform_real_distribution<double> delay(0.4, 2.5);
  for (int attempt = 0; attempt <= 12; ++attempt) {
    const double d = delay(rng) * (1 + 0.5 * attempt);
    const std::string limit = attempt < 12 ? "timeout -s KILL " + std::to_string(d) + " " : "";
    if (attempt < 12) *trace += std::to_string(d) + " ";
    const std::string cmd = limit + "\"" + CLR_TEST_BINARY + "\" --threads 1 run" + args + " > /dev/null 2>&1";
    const int status = std::system(cmd.c_str());
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return attempt;
  }
  ADD_FAILURE() << "the run did not finish even without a kill";
  return -1;
}

TEST(Resume, RunsKilledAtRandomMomentsEndWithTheResultsOfAnUninterruptedOne) {
  test::TempDir out("resume-kill");
  std::mt19937 rng(static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (const std::string method : {"clr", "linear"}) {
    const std::string common = std::string(" ") + test_data("seq") + kSettings + " --method " + method;
    const test::CliResult ref = test::run_clr("--threads 1 run" + common + " --out " + out.path() + "/ref-" + method);
    ASSERT_EQ(ref.code, 0) << ref.out;
    for (int trial = 0; trial < 2; ++trial) {
      const std::string dir = out.path() + "/" + method + "-" + std::to_string(trial);
      std::string delays;
      const int killed = run_with_random_kills(common + " --out " + dir, rng, &delays);
      SCOPED_TRACE(method + " trial " + std::to_string(trial) + ", kills after (s): " + delays);
      EXPECT_GE(killed, 1);
      expect_same_run(out.path() + "/ref-" + method, dir);
    }
  }
}

// Ctrl-C (SIGINT) and SIGTERM stop `clr run` at the end of the epoch, its checkpoint
// written: exit 130 and a line saying where it stopped; the same command then ends with
// the results of a run never stopped. `er` also keeps a replay buffer and its random
// draws across the stop.
TEST(Resume, ASignalStopsAtTheEpochsEndAndTheRunGoesOn) {
  test::TempDir out("resume-signal");
  const std::string common = std::string(" ") + test_data("seq") + kSettings + " --method er";
  const test::CliResult ref = test::run_clr("--threads 1 run" + common + " --out " + out.path() + "/ref");
  ASSERT_EQ(ref.code, 0) << ref.out;
  const std::string dir = out.path() + "/stopped";
  int stops = 0;
  for (const char* sig : {"INT", "TERM"}) {
    // One signal, as a terminal's Ctrl-C or a scheduler's SIGTERM sends it (`timeout`
    // signals its process group too: a second signal, which stops clr at once).
    const std::string cmd = std::string("\"") + CLR_TEST_BINARY + "\" --threads 1 run" + common + " --out " + dir +
                            " > " + out.path() + "/log.txt 2>&1 & pid=$!; sleep 2; kill -s " + sig +
                            " $pid 2> /dev/null; wait $pid";
    const int status = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(status)) << sig;
    const std::string log = read_file(out.path() + "/log.txt");
    if (WEXITSTATUS(status) == 0) break;  // finished within the time (a fast machine)
    EXPECT_EQ(WEXITSTATUS(status), 130) << sig << ": " << log;
    EXPECT_NE(log.find("stopped after"), std::string::npos) << log;
    EXPECT_NE(log.find("the same command goes on from there"), std::string::npos) << log;
    ++stops;
  }
  EXPECT_GE(stops, 1);
  const test::CliResult rest = test::run_clr("--threads 1 run" + common + " --out " + dir);
  ASSERT_EQ(rest.code, 0) << rest.out;
  expect_same_run(out.path() + "/ref", dir);
}

TEST(Resume, ARerunGoesOnOrSaysWhatDiffersAndNeverEmptiesTheStore) {
  test::TempDir out("resume-rerun");
  const std::string common = " " + test_data("seq") + kSettings + " --out " + out.path() + "/run";
  test::CliResult r = test::run_clr("run" + common);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string before = read_file(out.path() + "/run/results.json");
  const std::string id = json::parse(before)["run_id"].get<std::string>();
  EXPECT_EQ(id.size(), 16u);

  // The same command: nothing to learn, the same results.
  r = test::run_clr("run" + common);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("all 3 tasks were learned already"), std::string::npos) << r.out;
  EXPECT_EQ(results_of(out.path() + "/run")["accuracy_matrix"], json::parse(before)["accuracy_matrix"]);

  // Another configuration: an error naming what differs, before anything is touched.
  r = test::run_clr("run" + common + " --lr 0.01");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("train.lr = 0.001, not 0.01"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--restart"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(out.path() + "/run/results.json"), before);

  // --restart killed at once: the store still holds the three tasks.
  const std::string kill = std::string("timeout -s KILL 0.8 \"") + CLR_TEST_BINARY + "\" run" + common +
                           " --lr 0.01 --restart > /dev/null 2>&1";
  const int killed = std::system(kill.c_str());  // SIGKILL'ed by timeout: any status
  (void)killed;
  r = test::run_clr("tasks list --json --store " + out.path() + "/run/adapters");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["tasks"].size(), 3u) << r.out;

  // --restart killed once its own checkpoint is written (a new run id), before it has
  // replaced a task: a restart over that run may still replace the first run's tasks.
  const std::string pid_file = out.path() + "/pid";
  const std::string start = std::string("\"") + CLR_TEST_BINARY + "\" run" + common +
                            " --lr 0.02 --restart > /dev/null 2>&1 & echo $! > " + pid_file;
  ASSERT_EQ(std::system(start.c_str()), 0);
  const std::string run_file = out.path() + "/run/checkpoint/run.safetensors";
  bool written = false;
  for (int i = 0; i < 600 && !written; ++i) {
    try {
      written = read_safetensors_metadata(run_file).at("run_id") != id;
    } catch (const std::exception&) {
    }
    if (!written) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::string stop = "kill -9 $(cat " + pid_file + ") 2> /dev/null; sleep 0.2";
  EXPECT_EQ(std::system(stop.c_str()), 0);
  EXPECT_TRUE(written) << "the --restart run wrote no checkpoint of its own";

  // --restart to the end: a new run, its tasks replace the earlier run's.
  r = test::run_clr("run" + common + " --lr 0.01 --restart");
  ASSERT_EQ(r.code, 0) << r.out;
  const json after = results_of(out.path() + "/run");
  EXPECT_NE(after["run_id"], id);
  r = test::run_clr("tasks list --json --store " + out.path() + "/run/adapters");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["tasks"].size(), 3u) << r.out;
}

TEST(Resume, TasksAnotherRunStoredAreNeverRemoved) {
  test::TempDir out("resume-foreign");
  const std::string settings = " --backbone resnet18 --small-stem --size 16 --epochs 2 --batch 8 --seed 5";
  test::CliResult r = test::run_clr("run " + test_data("seq") + settings + " --out " + out.path() + "/a");
  ASSERT_EQ(r.code, 0) << r.out;
  ASSERT_EQ(test::run_clr("tasks export --store " + out.path() + "/a/adapters beta --out " + out.path() + "/beta.safetensors")
                .code,
            0);
  // OUT/adapters holds one task under a name the sequence does not use, one under a name it does.
  const std::string store = out.path() + "/b/adapters";
  ASSERT_EQ(test::run_clr("tasks import --store " + store + " " + out.path() + "/beta.safetensors --name zeta").code, 0);
  ASSERT_EQ(test::run_clr("tasks import --store " + store + " " + out.path() + "/beta.safetensors").code, 0);
  r = test::run_clr("run " + test_data("seq") + settings + " --out " + out.path() + "/b");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("already holds 'beta', which this run did not write"), std::string::npos) << r.out;
  EXPECT_FALSE(file_exists(out.path() + "/b/results.json"));
  r = test::run_clr("tasks list --json --store " + store);
  EXPECT_EQ(json::parse(r.out)["tasks"].size(), 2u) << r.out;
  // Once the conflicting one is gone the run learns its tasks beside the imported one.
  ASSERT_EQ(test::run_clr("tasks rm --store " + store + " beta").code, 0);
  r = test::run_clr("run " + test_data("seq") + settings + " --out " + out.path() + "/b");
  ASSERT_EQ(r.code, 0) << r.out;
  r = test::run_clr("tasks list --json --store " + store);
  const json tasks = json::parse(r.out)["tasks"];
  ASSERT_EQ(tasks.size(), 4u) << r.out;
  std::vector<std::string> names;
  for (const auto& t : tasks) names.push_back(t["name"]);
  EXPECT_NE(std::find(names.begin(), names.end(), "zeta"), names.end());
  // So does a --restart: a task it did not write is never replaced.
  r = test::run_clr("run " + test_data("seq") + settings + " --lr 0.01 --restart --out " + out.path() + "/b");
  ASSERT_EQ(r.code, 0) << r.out;
  r = test::run_clr("tasks list --json --store " + store);
  EXPECT_EQ(json::parse(r.out)["tasks"].size(), 4u) << r.out;
}

}  // namespace
}  // namespace clr
