// `clr run` end to end on small sequences made by tests/python/make_data.py.
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clr/core/file_io.h"
#include "clr/core/safetensors.h"
#include "test_util.h"

namespace clr {
namespace {

using Result = test::CliResult;
Result clr_cmd(const std::string& args) { return test::run_clr(args); }

using test::test_data;

const char* kQuick = " --backbone resnet18 --small-stem --size 24 --epochs 3 --patience 100 --batch 8 --seed 5";

TEST(Run, ClrHasZeroForgettingAndBitIdenticalOldAccuracies) {
  test::TempDir out("run");
  const Result r = clr_cmd("run " + test_data("seq") + kQuick + " --out " + out.path());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("average accuracy"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(read_file(out.file("results.json")));
  EXPECT_EQ(j["schema"], "clr.results/1");
  EXPECT_TRUE(j["complete"].get<bool>());
  const auto& m = j["accuracy_matrix"];
  ASSERT_EQ(m.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(m[i].size(), 3u);
    for (size_t k = 0; k < 3; ++k) {
      if (k > i) {
        EXPECT_TRUE(m[i][k].is_null());
      } else {
        // Learning later tasks never changes an earlier task's accuracy, bit for bit.
        EXPECT_EQ(m[i][k].get<double>(), m[k][k].get<double>()) << i << "," << k;
      }
    }
  }
  EXPECT_EQ(j["forgetting"].get<double>(), 0.0);
  EXPECT_EQ(j["bwt"].get<double>(), 0.0);
  EXPECT_EQ(j["tasks"][0]["name"], "gamma");  // order.txt
  EXPECT_EQ(j["tasks"][0]["classes"], 4);
  EXPECT_EQ(j["extra_params_per_task"][0], 35136 + 9600 + 512 * 4 + 4);
  EXPECT_GT(j["backbone"]["params"].get<int64_t>(), 11000000);
  for (const auto& t : j["tasks"]) EXPECT_TRUE(file_exists(out.path() + "/" + t["adapter"].get<std::string>()));
  EXPECT_TRUE(file_exists(out.file("results.csv")));
  EXPECT_TRUE(file_exists(out.file("log.txt")));
  const Metadata md = read_safetensors_metadata(out.path() + "/" + j["tasks"][1]["adapter"].get<std::string>());
  EXPECT_EQ(md.at("task"), "beta");
  EXPECT_EQ(md.at("backbone_fingerprint"), j["backbone"]["fingerprint"]);
}

// bf16 autocast and channels-last (the CUDA defaults, asked for on the CPU here): the
// run completes, says what it used, and still never forgets, bit for bit.
TEST(Run, Bf16ChannelsLastRunSaysSoAndKeepsZeroForgetting) {
  test::TempDir out("run-bf16");
  const Result r =
      clr_cmd("run " + test_data("seq") + kQuick + " --precision bf16 --memory-format channels-last --out " + out.path());
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(read_file(out.file("results.json")));
  EXPECT_EQ(j["precision"], "bf16");
  EXPECT_TRUE(j["channels_last"].get<bool>());
  EXPECT_EQ(j["config"]["train"]["precision"], "bf16");
  const auto& m = j["accuracy_matrix"];
  for (size_t i = 1; i < 3; ++i) {
    for (size_t k = 0; k < i; ++k) EXPECT_EQ(m[i][k].get<double>(), m[k][k].get<double>()) << i << "," << k;
  }
  EXPECT_EQ(j["forgetting"].get<double>(), 0.0);
  // The CPU default is fp32; fp16 has no CPU autocast and is refused before any training.
  test::TempDir out2("run-fp16");
  const Result f = clr_cmd("run " + test_data("seq") + kQuick + " --precision fp16 --out " + out2.path() + "/r");
  EXPECT_NE(f.code, 0);
  EXPECT_NE(f.out.find("train.precision fp16 needs a CUDA device"), std::string::npos) << f.out;
  EXPECT_FALSE(file_exists(out2.path() + "/r/results.json"));
}

// Two tasks learned in one pass, then the third alone: the same accuracy matrix and
// best epochs as one after another (the adapters themselves: Parallel.* unit tests).
TEST(Run, ParallelTasksGiveTheSequentialResults) {
  test::TempDir out("run-parallel");
  const Result a = clr_cmd("run " + test_data("seq") + kQuick + " --out " + out.path() + "/one");
  const Result b = clr_cmd("run " + test_data("seq") + kQuick + " --parallel-tasks 2 --out " + out.path() + "/two");
  ASSERT_EQ(a.code, 0) << a.out;
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("learning tasks 1-2 in parallel"), std::string::npos) << b.out;
  const auto ja = nlohmann::json::parse(read_file(out.path() + "/one/results.json"));
  const auto jb = nlohmann::json::parse(read_file(out.path() + "/two/results.json"));
  EXPECT_EQ(ja["accuracy_matrix"], jb["accuracy_matrix"]);
  EXPECT_EQ(jb["forgetting"].get<double>(), 0.0);
  for (size_t t = 0; t < 3; ++t) {
    EXPECT_EQ(ja["tasks"][t]["best_epoch"], jb["tasks"][t]["best_epoch"]) << t;
    EXPECT_EQ(ja["extra_params_per_task"][t], jb["extra_params_per_task"][t]) << t;
  }
  // Methods that share trained weights across tasks are refused before anything is written.
  const Result c = clr_cmd("run " + test_data("seq") + kQuick + " --method sgd --parallel-tasks 2 --out " +
                           out.path() + "/sgd");
  EXPECT_NE(c.code, 0);
  EXPECT_NE(c.out.find("train.parallel_tasks 2 applies to clr, clr-full and residual only"), std::string::npos)
      << c.out;
  EXPECT_FALSE(file_exists(out.path() + "/sgd/results.json"));
}

// Every method on the same small sequence, end to end, and the comparison table.
TEST(Compare, AllMethodsEndToEnd) {
  test::TempDir out("compare");
  const Result r = clr_cmd("compare " + test_data("seq") +
                           " --methods all --backbone resnet18 --small-stem --size 16 --epochs 1 --batch 8 --seed 2"
                           " --buffer 16 --fisher-samples 8 --out " + out.path());
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(read_file(out.file("compare.json")));
  EXPECT_EQ(j["schema"], "clr.compare/1");
  const auto& methods = j["methods"];
  ASSERT_EQ(methods.size(), 18u);
  std::map<std::string, nlohmann::json> by;
  for (const auto& m : methods) {
    by[m["method"].get<std::string>()] = m;
    EXPECT_NE(r.out.find(m["method"].get<std::string>()), std::string::npos) << "the table lists every method";
    const auto res = nlohmann::json::parse(read_file(out.path() + "/" + m["run_dir"].get<std::string>() + "/results.json"));
    EXPECT_TRUE(res["complete"].get<bool>()) << m["method"];
    EXPECT_EQ(res["accuracy_matrix"].size(), 3u);
    EXPECT_EQ(res["stored_bytes_per_task"].size(), 3u);
    EXPECT_EQ(m["average_accuracy"].get<double>(), res["average_accuracy"].get<double>());
    EXPECT_GT(m["stored_bytes_per_task"].get<double>(), 0);
    // Task inference (gaussian, the default) for every method, as its run measured it.
    ASSERT_TRUE(m["task_inference"].contains("gaussian")) << m["method"];
    EXPECT_EQ(m["task_inference"]["gaussian"]["average_agnostic_accuracy"].get<double>(),
              res["task_inference"][0]["average_agnostic_accuracy"].get<double>());
  }
  EXPECT_NE(r.out.find("no oracle"), std::string::npos) << r.out;
  // Every method started from the same backbone.
  const auto clr_fp = nlohmann::json::parse(read_file(out.path() + "/clr/results.json"))["backbone"]["fingerprint"];
  for (const auto& m : methods) {
    const auto res = nlohmann::json::parse(read_file(out.path() + "/" + m["run_dir"].get<std::string>() + "/results.json"));
    EXPECT_EQ(res["backbone"]["fingerprint"], clr_fp) << m["method"];
  }
  EXPECT_EQ(by["clr"]["forgetting"].get<double>(), 0.0);
  EXPECT_EQ(by["separate"]["forgetting"].get<double>(), 0.0);
  EXPECT_EQ(by["linear"]["forgetting"].get<double>(), 0.0);
  EXPECT_EQ(by["supsup"]["forgetting"].get<double>(), 0.0);
  EXPECT_EQ(by["efts"]["forgetting"].get<double>(), 0.0);
  EXPECT_EQ(by["ccll"]["forgetting"].get<double>(), 0.0);
  for (const char* m : {"efts", "ccll"}) {
    EXPECT_TRUE(file_exists(out.path() + "/" + m + "/method_state.safetensors")) << m << ": the base learned on the first task";
  }
  EXPECT_EQ(by["sgd"]["train_time_vs_sgd"].get<double>(), 1.0);
  EXPECT_GT(by["separate"]["extra_params_fraction"].get<double>(), 0.9);
  EXPECT_LT(by["clr"]["extra_params_fraction"].get<double>(), 0.01);
  // EWC keeps a Fisher and a centre: far more bytes than sgd's heads.
  EXPECT_GT(by["ewc"]["stored_bytes_total"].get<int64_t>(), 10 * by["sgd"]["stored_bytes_total"].get<int64_t>());
  EXPECT_TRUE(file_exists(out.path() + "/derpp/method_state.safetensors"));
  // sgd-ll keeps one shared layer, counted once; linear a head per task.
  EXPECT_LT(by["sgd-ll"]["stored_bytes_total"].get<int64_t>(), by["linear"]["stored_bytes_total"].get<int64_t>());
  const std::string csv = read_file(out.file("compare.csv"));
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 19);

  // The report: an HTML page and SVG figures that an SVG renderer accepts.
  const Result rep = clr_cmd("report " + out.path());
  ASSERT_EQ(rep.code, 0) << rep.out;
  const std::string html = read_file(out.file("report.html"));
  size_t svgs = 0;
  for (size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1)) ++svgs;
  EXPECT_EQ(svgs, 6u);
  for (const char* fig : {"first_task", "average_accuracy", "params_vs_accuracy", "train_time", "no_oracle_accuracy",
                          "final_accuracy"}) {
    const std::string svg = out.path() + "/figures/" + fig + ".svg";
    ASSERT_TRUE(file_exists(svg)) << fig;
    if (test::missing_system_data_allowed() && std::system("command -v rsvg-convert > /dev/null") != 0) continue;
    EXPECT_EQ(std::system(("rsvg-convert '" + svg + "' > /dev/null").c_str()), 0) << fig << " is not valid SVG";
  }
  // One run's report: the accuracy matrix.
  ASSERT_EQ(clr_cmd("report " + out.path() + "/clr").code, 0);
  EXPECT_NE(read_file(out.path() + "/clr/report.html").find("accuracy_matrix.svg"), std::string::npos);
  EXPECT_NE(read_file(out.path() + "/clr/report.html").find("task_inference.svg"), std::string::npos);
  EXPECT_EQ(clr_cmd("report " + out.path() + "/nothing-here").code, 3);
}

// --reuse keeps finished runs made with the same settings (also by `clr run`) and runs
// again what differs.
TEST(Compare, ReuseKeepsMatchingFinishedRuns) {
  test::TempDir out("compare-reuse");
  // The shipped backbone: its metadata (arch, small stem) must be part of the stored
  // configuration on both sides, or nothing would ever be reused.
  const std::string common = std::string(" --backbone ") + CLR_SOURCE_DIR +
                             "/models/resnet18-pretrain-64px.safetensors --size 16 --epochs 1 --batch 8 --seed 2";
  ASSERT_EQ(clr_cmd("run " + test_data("seq") + common + " --method linear --out " + out.path() + "/linear").code, 0);
  const std::string before = read_file(out.path() + "/linear/results.json");
  Result r = clr_cmd("compare " + test_data("seq") + common + " --methods linear,sgd-ll --reuse --out " + out.path());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("reusing the finished run in " + out.path() + "/linear"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(out.path() + "/linear/results.json"), before) << "the reused run was rewritten";
  EXPECT_TRUE(file_exists(out.path() + "/sgd-ll/results.json"));
  const auto j = nlohmann::json::parse(read_file(out.file("compare.json")));
  ASSERT_EQ(j["methods"].size(), 2u);
  EXPECT_EQ(j["methods"][0]["average_accuracy"],
            nlohmann::json::parse(before)["average_accuracy"]);
  // Another seed is another experiment: both run again.
  std::string other = common;
  other.replace(other.find("--seed 2"), 8, "--seed 3");
  r = clr_cmd("compare " + test_data("seq") + other + " --methods linear --reuse --out " + out.path());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("another configuration"), std::string::npos) << r.out;
  EXPECT_NE(read_file(out.path() + "/linear/results.json"), before);
}

TEST(Compare, BadMethodListsAreConfigErrors) {
  test::TempDir out("compare-bad");
  Result r = clr_cmd("compare " + test_data("seq") + " --methods clr,ewcc --out " + out.path());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown method 'ewcc'"), std::string::npos) << r.out;
  r = clr_cmd("compare " + test_data("seq") + " --methods clr,clr --out " + out.path());
  EXPECT_EQ(r.code, 2) << r.out;
  r = clr_cmd("run " + test_data("seq") + " --method lwf --lwf-temperature 0 --epochs 1 --out " + out.path());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("temperature"), std::string::npos) << r.out;
  // NaN stands for 'not given' inside the program, so it must not be accepted as a value.
  r = clr_cmd("run " + test_data("seq") + " --method ewc --ewc-lambda nan --epochs 1 --out " + out.path());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("finite"), std::string::npos) << r.out;
  // A bad setting of a later method fails before the first method trains.
  r = clr_cmd("compare " + test_data("seq") + " --methods clr,derpp --derpp-beta -1 --out " + out.path());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--derpp-beta"), std::string::npos) << r.out;
  EXPECT_FALSE(file_exists(out.path() + "/clr/results.json"));
}

TEST(Run, SameSeedSameResults) {
  test::TempDir a("seed_a"), b("seed_b");
  ASSERT_EQ(clr_cmd("run " + test_data("seq/alpha") + kQuick + " --out " + a.path()).code, 0);
  ASSERT_EQ(clr_cmd("run " + test_data("seq/alpha") + kQuick + " --out " + b.path()).code, 0);
  const auto ja = nlohmann::json::parse(read_file(a.file("results.json")));
  const auto jb = nlohmann::json::parse(read_file(b.file("results.json")));
  EXPECT_EQ(ja["accuracy_matrix"], jb["accuracy_matrix"]);
  const auto sa = read_safetensors(a.file(ja["tasks"][0]["adapter"].get<std::string>())).tensors;
  const auto sb = read_safetensors(b.file(jb["tasks"][0]["adapter"].get<std::string>())).tensors;
  for (const auto& [k, v] : sa) EXPECT_TRUE(test::bit_identical(v, sb.at(k))) << k;
}

TEST(Run, ConfigFileWithIdxListAndFolderTasks) {
  test::TempDir out("config");
  const std::string cfg = out.file("run.toml");
  write_file_atomic(cfg, "[run]\nout = \"" + out.file("o") + "\"\nseed = 1\n"
                         "[backbone]\narch = \"resnet18\"\nsmall_stem = true\n"
                         "[data]\nsize = 16\nallow_missing_test = false\n"
                         "[[data.tasks]]\nname = \"idx012\"\nkind = \"idx\"\n"
                         "train_images = \"" + test_data("idx/images-idx3-ubyte.gz") + "\"\n"
                         "train_labels = \"" + test_data("idx/labels-idx1-ubyte.gz") + "\"\n"
                         "test_images = \"" + test_data("idx/images-idx3-ubyte.gz") + "\"\n"
                         "test_labels = \"" + test_data("idx/labels-idx1-ubyte.gz") + "\"\n"
                         "labels = [2, 0]\n"
                         "[[data.tasks]]\nname = \"listed\"\nkind = \"list\"\n"
                         "train = \"" + test_data("lists/train.txt") + "\"\ntest = \"" + test_data("lists/test.txt") + "\"\n"
                         "[[data.tasks]]\nkind = \"imagefolder\"\npath = \"" + test_data("seq/beta") + "\"\n"
                         "[train]\nepochs = 2\nbatch = 4\noptimizer = \"sgd\"\nschedule = \"cosine\"\nlr = 0.01\n");
  const Result r = clr_cmd("run " + cfg);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(read_file(out.file("o/results.json")));
  ASSERT_EQ(j["tasks"].size(), 3u);
  EXPECT_EQ(j["tasks"][0]["name"], "idx012");
  EXPECT_EQ(j["tasks"][0]["classes"], 2);
  EXPECT_EQ(j["tasks"][2]["name"], "beta");
  EXPECT_EQ(j["config"]["train"]["optimizer"], "sgd");
  EXPECT_EQ(j["forgetting"].get<double>(), 0.0);
}

TEST(Run, BadInputsAreReportedClearly) {
  test::TempDir out("bad");
  Result r = clr_cmd("run " + test_data("bad") + kQuick + " --out " + out.path() + " --allow-missing-test");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("fake.png"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("one_class"), std::string::npos) << r.out;
  r = clr_cmd("run " + test_data("dirty") + kQuick + " --out " + out.path());
  EXPECT_EQ(r.code, 4) << r.out;
  EXPECT_NE(r.out.find("broken.jpg"), std::string::npos) << r.out;
  r = clr_cmd("run " + test_data("dirty") + kQuick + " --skip-corrupt --out " + out.file("dirty"));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(read_file(out.file("dirty/results.json")))["tasks"][0]["skipped_images"], 1);
  const std::string cfg = out.file("typo.toml");
  write_file_atomic(cfg, "[train]\nepochz = 3\n");
  r = clr_cmd("run " + cfg);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("train.epochz"), std::string::npos) << r.out;
  r = clr_cmd("run " + out.file("nothing.toml"));
  EXPECT_EQ(r.code, 3) << r.out;
  r = clr_cmd("run " + test_data("seq") + " --backbone not-an-arch");
  EXPECT_EQ(r.code, 3) << r.out;
  // A class folder whose name is not UTF-8 (issue 15, row 9): refused with the others'
  // problems before any training, its bytes shown escaped.
  const std::string root = out.file("latin1");
  const std::string task = test_data("seq/alpha");
  const std::string copy = "mkdir -p '" + root + "/t' && cp -r '" + task + "/train' '" + task + "/test' '" + root +
                           "/t/' && mv '" + root + "/t/train/class0' $'" + root + "/t/train/caf\\xe9' && mv '" + root +
                           "/t/test/class0' $'" + root + "/t/test/caf\\xe9'";
  ASSERT_EQ(std::system(("bash -c \"" + copy + "\"").c_str()), 0) << copy;
  r = clr_cmd("run " + root + kQuick + " --out " + out.file("latin1-run"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("class name 'caf\\xE9' is not UTF-8 text"), std::string::npos) << r.out;
  EXPECT_FALSE(file_exists(out.file("latin1-run/results.json")));
  // A directory where a file belongs says so.
  r = clr_cmd("run " + test_data("seq") + " --backbone " + out.path() + " --out " + out.file("dir-run"));
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("is a directory; give a weight file in it"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace clr

namespace clr {
namespace {

TEST(Default, ConfigAndEmbeddedBackboneAreUsable) {
  // scripts/setup.sh installs the packages the default sequence reads; only a machine
  // set up otherwise (the GPU machine, docs/GPU.md) may declare them absent.
  if (test::missing_system_data_allowed() &&
      (!file_exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") ||
       !file_exists("/var/lib/dpkg/info/gimp-data.list") || !file_exists("/var/lib/dpkg/info/pingus-data.list"))) {
    GTEST_SKIP() << "the default sequence's Debian packages are not installed on this machine";
  }
  test::TempDir out("default");
  const std::string root = CLR_SOURCE_DIR;
  Result r = clr_cmd("inspect " + root + "/models/resnet18-pretrain-64px.safetensors --arch resnet18 --small-stem");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["metadata"]["arch"], "resnet18");
  EXPECT_EQ(j["metadata"]["small_stem"], "true");
  EXPECT_EQ(j["metadata"]["input_size"], "64");
  EXPECT_EQ(j["backbone_fingerprint"], "sha256:f03e3567693e60cc11354f170d93c432411a07487dbbbc29b9e0153d8c1b7f99");
  // Every task of the default sequence builds from the installed packages: the shipped
  // config, with its suite built into a temporary folder (at 16 px, to be quick) and the
  // paths made absolute.
  std::string cfg = read_file(root + "/configs/default.toml");
  const auto replace = [&](const std::string& from, const std::string& to) {
    const size_t at = cfg.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    cfg.replace(at, from.size(), to);
  };
  replace("\"../runs/suite-default\"", "\"" + out.file("suite") + "\"");
  replace("\"../models/", "\"" + root + "/models/");
  replace("size = 64", "size = 16");
  write_file_atomic(out.file("default.toml"), cfg);
  r = clr_cmd("preview " + out.file("default.toml") + " --per-class 2 --out " + out.file("preview"));
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* t : {"materials", "terrain-theme", "greek-letters", "font-weight", "fashion-tops", "fashion-other"}) {
    EXPECT_TRUE(file_exists(out.file("preview/" + std::string(t) + ".png"))) << t;
  }
}

TEST(Pretrain, WritesALoadableTorchvisionNamedBackbone) {
  test::TempDir out("pretrain");
  const std::string cfg = out.file("shapes.toml");
  write_file_atomic(cfg, "[data]\nsize = 16\n[[data.tasks]]\nkind = \"shapes\"\nclasses = 4\ntrain_per_class = 8\n"
                         "val_per_class = 2\nsize = 16\n");
  Result r = clr_cmd("pretrain " + cfg + " --small-stem --epochs 1 --batch 16 --fp16 --out " + out.file("b.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  const Metadata md = read_safetensors_metadata(out.file("b.safetensors"));
  EXPECT_EQ(md.at("arch"), "resnet18");
  EXPECT_EQ(md.at("dtype"), "F16");
  EXPECT_NE(md.at("command").find("pretrain"), std::string::npos);
  const auto tensors = read_safetensors(out.file("b.safetensors")).tensors;
  EXPECT_EQ(tensors.at("fc.weight").size(0), 4);
  EXPECT_EQ(tensors.at("layer1.0.conv1.weight").scalar_type(), at::kHalf);
  // The file serves as a backbone for clr run (arch and stem from its metadata).
  r = clr_cmd("run " + test::test_data_dir() + "/seq/alpha --backbone " + out.file("b.safetensors") +
              " --size 16 --epochs 1 --out " + out.file("run"));
  EXPECT_EQ(r.code, 0) << r.out;
}

// Self-supervised pretraining writes a feature extractor (no fc) that clr run loads.
TEST(Pretrain, SimclrWritesABackboneWithoutFc) {
  test::TempDir out("pretrain-simclr");
  const std::string cfg = out.file("shapes.toml");
  write_file_atomic(cfg, "[data]\nsize = 16\n[[data.tasks]]\nkind = \"shapes\"\nclasses = 4\ntrain_per_class = 12\n"
                         "val_per_class = 3\nsize = 16\n");
  Result r = clr_cmd("pretrain " + cfg + " --mode simclr --small-stem --epochs 2 --batch 16 --out " + out.file("s.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  const Metadata md = read_safetensors_metadata(out.file("s.safetensors"));
  EXPECT_EQ(md.at("mode"), "simclr");
  EXPECT_EQ(md.at("val_metric"), "knn");
  const auto tensors = read_safetensors(out.file("s.safetensors")).tensors;
  EXPECT_EQ(tensors.count("fc.weight"), 0u);
  EXPECT_EQ(tensors.count("layer4.1.bn2.running_var"), 1u);
  r = clr_cmd("run " + test::test_data_dir() + "/seq/alpha --backbone " + out.file("s.safetensors") +
              " --size 16 --epochs 1 --out " + out.file("run"));
  EXPECT_EQ(r.code, 0) << r.out;
  r = clr_cmd("pretrain " + cfg + " --mode moco --out " + out.file("x.safetensors"));
  EXPECT_EQ(r.code, 2) << r.out;
  // BYOL writes the same kind of file.
  r = clr_cmd("pretrain " + cfg + " --mode byol --small-stem --epochs 2 --batch 16 --out " + out.file("b.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(read_safetensors_metadata(out.file("b.safetensors")).at("mode"), "byol");
  EXPECT_EQ(read_safetensors(out.file("b.safetensors")).tensors.count("fc.weight"), 0u);
  // Both at once: the labels' cross-entropy beside BYOL's term; the file keeps its fc.
  r = clr_cmd("pretrain " + cfg + " --mode byol --supervised 1 --small-stem --epochs 1 --batch 16 --out " +
              out.file("both.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(read_safetensors_metadata(out.file("both.safetensors")).at("mode"), "byol+supervised");
  EXPECT_EQ(read_safetensors(out.file("both.safetensors")).tensors.at("fc.weight").size(0), 4);
}

// Several tasks are pretrained on as one dataset with one label space.
TEST(Pretrain, LearnsSeveralTasksAsOneDataset) {
  test::TempDir out("pretrain-union");
  const std::string cfg = out.file("two.toml");
  write_file_atomic(cfg, "[data]\nsize = 16\n"
                         "[[data.tasks]]\nname = \"a\"\nkind = \"shapes\"\nclasses = 3\ntrain_per_class = 6\nval_per_class = 2\nsize = 16\n"
                         "[[data.tasks]]\nname = \"b\"\nkind = \"shapes\"\nclasses = 2\ntrain_per_class = 6\nval_per_class = 2\nsize = 16\nseed = 9\n");
  const Result r = clr_cmd("pretrain " + cfg + " --small-stem --epochs 1 --batch 8 --out " + out.file("u.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto classes = nlohmann::json::parse(read_safetensors_metadata(out.file("u.safetensors")).at("classes"));
  EXPECT_EQ(classes, nlohmann::json({"a/shape0", "a/shape1", "a/shape2", "b/shape0", "b/shape1"}));
  EXPECT_EQ(read_safetensors(out.file("u.safetensors")).tensors.at("fc.weight").size(0), 5);
}

// A pretraining stopped by its time limit goes on from its checkpoint to the very
// weights of an uninterrupted run (on the CPU); a checkpoint of other settings is not
// gone on from; the transfer monitor's curve is recorded.
TEST(Pretrain, StoppedRunGoesOnToTheSameWeights) {
  test::TempDir out("pretrain-resume");
  const std::string cfg = out.file("fractals.toml");
  write_file_atomic(cfg, "[data]\nsize = 16\n[[data.tasks]]\nkind = \"fractals\"\nclasses = 4\ntrain_per_class = 8\n"
                         "val_per_class = 2\nsize = 16\n");
  const std::string mon = out.file("monitor.toml");
  write_file_atomic(mon, "[data]\nsize = 16\n[[data.tasks]]\nname = \"leaves\"\nkind = \"dead-leaves\"\n"
                         "train_per_class = 6\nval_per_class = 0\ntest_per_class = 4\nsize = 16\n");
  const std::string base = "pretrain " + cfg + " --small-stem --epochs 3 --batch 8 --monitor " + mon + " --out ";
  Result r = clr_cmd(base + out.file("full.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto full = nlohmann::json::parse(r.out.substr(r.out.find("{\n")));
  EXPECT_EQ(full["resumed_from_epoch"], 0);
  EXPECT_GE(full["best_monitor_accuracy"].get<double>(), 0.0);
  const Metadata md = read_safetensors_metadata(out.file("full.safetensors"));
  EXPECT_NE(md.at("monitor").find("leaves"), std::string::npos);
  const auto curve = nlohmann::json::parse(md.at("curve"));
  ASSERT_EQ(curve.size(), 3u);
  EXPECT_TRUE(curve[2].contains("monitor") && curve[2].contains("val") && curve[2].contains("loss")) << curve;

  const std::string part = out.file("part.safetensors");
  r = clr_cmd(base + part + " --time-limit 0.001");
  EXPECT_EQ(r.code, 130) << r.out;  // stopped, as after Ctrl-C
  EXPECT_NE(r.out.find("after epoch 1 of 3"), std::string::npos) << r.out;
  EXPECT_FALSE(file_exists(part));
  ASSERT_TRUE(file_exists(part + ".checkpoint.safetensors"));
  r = clr_cmd(base + part + " --lr 0.2");  // other settings: not gone on from
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("config.lr"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--restart"), std::string::npos) << r.out;
  r = clr_cmd(base + part);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto resumed = nlohmann::json::parse(r.out.substr(r.out.find("{\n")));
  EXPECT_EQ(resumed["resumed_from_epoch"], 1);
  EXPECT_EQ(resumed["fingerprint"], full["fingerprint"]);
  EXPECT_EQ(read_safetensors_metadata(part).at("curve"), md.at("curve"));
  EXPECT_FALSE(file_exists(part + ".checkpoint.safetensors"));  // removed once the file is written
  r = clr_cmd("pretrain " + cfg + " --select monitor --out " + out.file("x.safetensors"));
  EXPECT_EQ(r.code, 2) << r.out;
}

// BYOL's moving-average target is part of the checkpoint: a stopped run goes on exactly.
TEST(Pretrain, StoppedByolRunGoesOnToTheSameWeights) {
  test::TempDir out("pretrain-byol-resume");
  const std::string cfg = out.file("leaves.toml");
  write_file_atomic(cfg, "[data]\nsize = 16\n[[data.tasks]]\nkind = \"dead-leaves\"\ntrain_per_class = 6\n"
                         "val_per_class = 2\nsize = 16\n");
  const std::string base = "pretrain " + cfg + " --mode byol --small-stem --epochs 3 --batch 8 --out ";
  Result r = clr_cmd(base + out.file("full.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto full = nlohmann::json::parse(r.out.substr(r.out.find("{\n")));
  r = clr_cmd(base + out.file("part.safetensors") + " --time-limit 0.001");
  ASSERT_EQ(r.code, 130) << r.out;
  r = clr_cmd(base + out.file("part.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto resumed = nlohmann::json::parse(r.out.substr(r.out.find("{\n")));
  EXPECT_EQ(resumed["resumed_from_epoch"], 1);
  EXPECT_EQ(resumed["fingerprint"], full["fingerprint"]);
}

}  // namespace
}  // namespace clr
