// Task inference end to end: `clr run --task-inference` on tasks easy to tell apart and
// on two tasks of the same images with different labels; the engine's answers, the
// served ones, `clr predict` without a task and `clr tasks fit-mapper`.
#include <algorithm>
#include <future>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/data/image.h"
#include "clr/serve/batcher.h"
#include "clr/serve/engine.h"
#include "clr/serve/http.h"
#include "test_util.h"

namespace clr {
namespace {

using nlohmann::json;

constexpr int64_t kSide = 16;
// The shipped backbone (pretrained, 64 px, small stem): the store records it, so the
// engine can load it.
const std::string kRun = std::string(" --backbone ") + CLR_SOURCE_DIR +
                         "/models/resnet18-pretrain-64px.safetensors --size 16 --epochs 2 --patience 100 --batch 16 --seed 3";

// One image: a colour (0 red, 1 blue; -1 grey) and stripes (0 horizontal, 1 vertical;
// -1 none, a flat square instead), with noise from `seed`.
at::Tensor picture(int colour, int stripes, uint64_t seed) {
  torch::manual_seed(seed);
  at::Tensor img = torch::rand({kSide, kSide, 3}) * 0.25;
  const at::Tensor ramp = torch::arange(kSide).remainder(4).lt(2).to(torch::kFloat);
  at::Tensor mask = stripes == 0 ? ramp.unsqueeze(1).expand({kSide, kSide})
                                 : stripes == 1 ? ramp.unsqueeze(0).expand({kSide, kSide})
                                                : torch::zeros({kSide, kSide});
  if (stripes < 0) mask.slice(0, 4, 12).slice(1, 4, 12).fill_(1);
  const float rgb[3][3] = {{0.9f, 0.1f, 0.1f}, {0.1f, 0.2f, 0.9f}, {0.8f, 0.8f, 0.8f}};
  const float* c = rgb[colour < 0 ? 2 : colour];
  for (int ch = 0; ch < 3; ++ch) img.select(2, ch) += mask * c[ch];
  return (img.clamp(0, 1) * 255).to(torch::kByte);
}

struct Kind {
  std::string name;  // class folder
  int colour, stripes;
};

// ROOT/<task>/{train,val,test}/<class>/<n>.png, with ROOT/order.txt listing the tasks.
void write_task(const std::string& root, const std::string& task, const std::vector<std::pair<std::string, std::vector<Kind>>>& classes,
                uint64_t seed) {
  const std::pair<const char*, int> splits[] = {{"train", 24}, {"val", 8}, {"test", 12}};
  uint64_t n = seed * 100000;
  for (const auto& [split, count] : splits) {
    for (const auto& [label, kinds] : classes) {
      const std::string dir = root + "/" + task + "/" + split + "/" + label;
      make_directories(dir);
      for (int i = 0; i < count; ++i) {
        const Kind& k = kinds[static_cast<size_t>(i) % kinds.size()];
        data::write_png(dir + "/" + k.name + std::to_string(i) + ".png", picture(k.colour, k.stripes, ++n));
      }
    }
  }
}

// Tasks a colour-blind stripe reader and a shape-blind colour reader tell apart at once.
std::string easy_tasks(const test::TempDir& dir) {
  const std::string root = dir.file("easy");
  write_task(root, "colour", {{"red", {{"r", 0, -1}}}, {"blue", {{"b", 1, -1}}}}, 1);
  write_task(root, "stripes", {{"across", {{"h", -1, 0}}}, {"down", {{"v", -1, 1}}}}, 2);
  write_file(root + "/order.txt", "colour\nstripes\n");
  return root;
}

// The same images (the same seed), labelled by colour in one task, by stripes in the other.
std::string twin_tasks(const test::TempDir& dir) {
  const std::string root = dir.file("twins");
  const Kind rh{"rh", 0, 0}, rv{"rv", 0, 1}, bh{"bh", 1, 0}, bv{"bv", 1, 1};
  write_task(root, "by-colour", {{"a", {rh, rv}}, {"b", {bh, bv}}}, 7);
  write_task(root, "by-stripes", {{"a", {rh, bh}}, {"b", {rv, bv}}}, 7);
  write_file(root + "/order.txt", "by-colour\nby-stripes\n");
  return root;
}

std::vector<std::string> test_files(const std::string& root, const std::string& task) {
  std::vector<std::string> out;
  for (const auto& cls : list_directory(root + "/" + task + "/test")) {
    for (const auto& f : list_directory(root + "/" + task + "/test/" + cls)) out.push_back(root + "/" + task + "/test/" + cls + "/" + f);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The batcher's counters, from GET /v1/stats.
serve::BatcherStats server_stats(httplib::Client& client) {
  const auto res = client.Get("/v1/stats");
  serve::BatcherStats s;
  if (!res) return s;
  const json j = json::parse(res->body);
  s.served = j["served"].get<int64_t>();
  s.batches = j["batches"].get<int64_t>();
  return s;
}

const json& method_of(const json& results, const std::string& name) {
  for (const auto& m : results["task_inference"]) {
    if (m["method"] == name) return m;
  }
  ADD_FAILURE() << "no task_inference entry for " << name;
  static const json none;
  return none;
}

// Share of the images answered "unknown" at `threshold`, and of those answered with
// the task they come from.
std::pair<double, double> answer_shares(serve::Engine& engine, const std::string& root, double threshold,
                                        const std::string& method) {
  serve::IdentifyOptions o;
  o.threshold = threshold;
  o.method = method;
  int unknown = 0, right = 0, all = 0;
  for (const std::string task : {"colour", "stripes", "by-colour", "by-stripes"}) {
    if (!directory_exists(root + "/" + task)) continue;
    for (const auto& path : test_files(root, task)) {
      const serve::Identified r = engine.identify({data::read_image(path)}, o)[0];
      ++all;
      unknown += !r.task;
      right += r.task && *r.task == task;
    }
  }
  return {static_cast<double>(unknown) / all, static_cast<double>(right) / all};
}

TEST(TaskInference, DistinctTasksAreFoundAndTwinTasksAreUnknown) {
  test::TempDir dir("task-inference");
  const std::string easy = easy_tasks(dir), twins = twin_tasks(dir);
  const auto run = test::run_clr("run " + easy + kRun + " --task-inference gaussian,energy --out " + dir.file("easy-run"));
  ASSERT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("without a task oracle (gaussian)"), std::string::npos) << run.out;
  const json r = json::parse(read_file(dir.file("easy-run/results.json")));
  ASSERT_EQ(r["task_inference"].size(), 2u);
  const json& g = method_of(r, "gaussian");
  const json& last = g["task_accuracy_matrix"][1];
  EXPECT_GE(last[0].get<double>(), 0.95) << g.dump();
  EXPECT_GE(last[1].get<double>(), 0.95) << g.dump();
  for (const auto& m : r["task_inference"]) {  // the class is never right with the wrong task
    for (size_t i = 0; i < 2; ++i) {
      for (size_t j = 0; j <= i; ++j) {
        EXPECT_LE(m["agnostic_accuracy_matrix"][i][j].get<double>(), m["task_accuracy_matrix"][i][j].get<double>());
        EXPECT_LE(m["agnostic_accuracy_matrix"][i][j].get<double>(), r["accuracy_matrix"][i][j].get<double>());
      }
    }
    EXPECT_EQ(m["task_accuracy_matrix"][0][0].get<double>(), 1.0);  // one task: nothing to confuse
  }

  const auto twin_run =
      test::run_clr("run " + twins + kRun + " --task-inference gaussian,task-gaussian --out " + dir.file("twin-run"));
  ASSERT_EQ(twin_run.code, 0) << twin_run.out;
  const json t = json::parse(read_file(dir.file("twin-run/results.json")));
  // Both tasks' test images are the same files: whatever a mapper picks, it is right
  // for one task and wrong for the other, so the average is chance (task-gaussian's
  // two models are the same up to rounding, so its near-ties fall either way).
  EXPECT_NEAR(method_of(t, "gaussian")["average_task_accuracy"].get<double>(), 0.5, 1e-9);
  EXPECT_NEAR(method_of(t, "task-gaussian")["average_task_accuracy"].get<double>(), 0.5, 0.15);

  serve::EngineOptions eo;
  eo.store_dir = dir.file("easy-run/adapters");
  serve::Engine easy_engine(eo);
  eo.store_dir = dir.file("twin-run/adapters");
  serve::Engine twin_engine(eo);
  for (const std::string method : {"gaussian", "task-gaussian"}) {
    const auto [easy_unknown, easy_right] = answer_shares(easy_engine, easy, 0.9, method);
    EXPECT_GE(easy_right, 0.9) << method;  // confident and right
    EXPECT_LE(easy_unknown, 0.1) << method;
  }
  // Between the twins the confidence is near chance: most are unknown. (gaussian's class
  // mixture alone would pick one twin confidently; its confidence is also task-gaussian's.)
  for (const std::string method : {"gaussian", "task-gaussian"}) {
    EXPECT_GE(answer_shares(twin_engine, twins, 0.9, method).first, 0.5) << method;
    EXPECT_EQ(answer_shares(twin_engine, twins, 0, method).first, 0.0) << method;  // no threshold: always a task
  }
}

TEST(TaskInference, ServedAnswersAreTheEnginesAndOldStoresCanBeFitted) {
  test::TempDir dir("task-inference-serve");
  const std::string easy = easy_tasks(dir);
  auto run = test::run_clr("run " + easy + kRun + " --out " + dir.file("run"));
  ASSERT_EQ(run.code, 0) << run.out;
  const std::string store = dir.file("run/adapters");
  const std::vector<std::string> images = test_files(easy, "stripes");

  serve::EngineOptions eo;
  eo.store_dir = store;
  serve::Engine engine(eo);
  serve::HttpOptions ho;
  ho.host = "127.0.0.1";
  ho.port = 0;
  ho.identify.top_tasks = 2;
  ho.batcher.max_wait_ms = 300;  // requests sent at once surely meet in a batch
  serve::HttpServer server(engine, ho);
  const int port = server.bind();
  std::thread serving([&] { server.serve(); });
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(30);
  for (const std::string& path : {images.front(), images.back()}) {
    const auto res = client.Post("/v1/predict?top_k=1", read_file(path), "image/png");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    serve::IdentifyOptions o = ho.identify;
    o.top_k = 1;
    json want = settings::Json(engine.identify({data::read_image(path)}, o)[0]);
    want["method"] = "gaussian";
    EXPECT_EQ(json::parse(res->body), json::parse(want.dump())) << res->body;
    EXPECT_EQ(json::parse(res->body)["task"], "stripes");
    EXPECT_EQ(json::parse(res->body)["tasks"].size(), 2u);
  }
  // Requests at once share batches and get the answers they get alone (the task and the
  // classes; the last bits of a probability may depend on the batch's size).
  {
    const serve::BatcherStats before = server_stats(client);
    std::vector<std::future<httplib::Result>> answers;
    for (size_t i = 0; i < 12; ++i) {
      answers.push_back(std::async(std::launch::async, [&, i] {
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(30);
        return c.Post("/v1/predict?top_k=1", read_file(images[i % images.size()]), "image/png");
      }));
    }
    for (size_t i = 0; i < answers.size(); ++i) {
      const auto res = answers[i].get();
      ASSERT_TRUE(res);
      ASSERT_EQ(res->status, 200) << res->body;
      serve::IdentifyOptions o = ho.identify;
      o.top_k = 1;
      const serve::Identified alone = engine.identify({data::read_image(images[i % images.size()])}, o)[0];
      const json got = json::parse(res->body);
      EXPECT_EQ(got["task"], *alone.task);
      EXPECT_EQ(got["top"][0]["class"], alone.top[0].name);
    }
    const serve::BatcherStats after = server_stats(client);
    EXPECT_EQ(after.served - before.served, 12);
    EXPECT_LT(after.batches - before.batches, 12);  // some ran together
  }
  // A threshold no answer reaches: HTTP 200 with "task": null, the tasks still ranked.
  {
    serve::HttpOptions strict = ho;
    strict.identify.threshold = 1.0;
    strict.identify.temperature = 1000;  // confidences near 1/T: always under the threshold
    serve::HttpServer unsure(engine, strict);
    const int port2 = unsure.bind();
    std::thread t([&] { unsure.serve(); });
    httplib::Client c2("127.0.0.1", port2);
    c2.set_read_timeout(30);
    for (int i = 0; i < 100 && !c2.Get("/healthz"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto res = c2.Post("/v1/predict", read_file(images.front()), "image/png");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    const json j = json::parse(res->body);
    EXPECT_TRUE(j["task"].is_null()) << res->body;
    EXPECT_TRUE(j["top"].empty()) << res->body;
    EXPECT_EQ(j["tasks"].size(), 2u) << res->body;
    unsure.stop();
    t.join();
  }
  server.stop();
  serving.join();

  // `clr predict` without --task: a line per image, the bad one an error, exit 4.
  write_file(dir.file("bad.png"), "not an image");
  auto p = test::run_clr("predict --store " + store + " " + images.front() + " " + dir.file("bad.png") + " " +
                         images.back() + " --top-tasks 2");
  EXPECT_EQ(p.code, 4) << p.out;
  std::vector<json> lines;
  for (size_t a = 0, b; (b = p.out.find('\n', a)) != std::string::npos; a = b + 1) {
    if (p.out[a] == '{') lines.push_back(json::parse(p.out.substr(a, b - a)));
  }
  ASSERT_EQ(lines.size(), 3u) << p.out;
  EXPECT_EQ(lines[0]["task"], "stripes");
  EXPECT_TRUE(lines[1].contains("error"));
  EXPECT_EQ(lines[2]["task"], "stripes");

  // A store whose tasks have no statistics (as a clr before task inference wrote them):
  // still served with a task, refused without one with the way out named; fit-mapper
  // adds the same statistics the run would have stored.
  run = test::run_clr("run " + easy + kRun + " --task-inference none --out " + dir.file("old"));
  ASSERT_EQ(run.code, 0) << run.out;
  const std::string old = dir.file("old/adapters");
  EXPECT_EQ(test::run_clr("predict --store " + old + " --task colour " + images.front()).code, 0);
  p = test::run_clr("predict --store " + old + " " + images.front());
  EXPECT_NE(p.code, 0);
  EXPECT_NE(p.out.find("clr tasks fit-mapper"), std::string::npos) << p.out;
  const auto fit = test::run_clr("tasks fit-mapper --store " + old + " " + easy);
  ASSERT_EQ(fit.code, 0) << fit.out;
  EXPECT_NE(fit.out.find("2 tasks fitted"), std::string::npos) << fit.out;
  for (const std::string task : {"colour", "stripes"}) {
    const json a = json::parse(test::run_clr("tasks show --store " + store + " " + task).out);
    const json b = json::parse(test::run_clr("tasks show --store " + old + " " + task).out);
    EXPECT_EQ(a["task_mapper"]["sha256"], b["task_mapper"]["sha256"]) << task;
    EXPECT_EQ(a["tensors_sha256"], b["tensors_sha256"]) << task;  // task inference never changes what is learned
  }
  p = test::run_clr("predict --store " + old + " " + images.back());
  EXPECT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("\"task\":\"stripes\""), std::string::npos) << p.out;
  EXPECT_EQ(test::run_clr("tasks fit-mapper --store " + old + " " + easy + " --task nope").code, 3);
}

}  // namespace
}  // namespace clr
