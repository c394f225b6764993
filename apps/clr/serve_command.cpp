// `clr tasks ...`, `clr predict` and `clr serve`: the adapter store and serving.
#include <atomic>
#include <chrono>
#include <csignal>
#include <iomanip>
#include <iostream>
#include <memory>
#include <pthread.h>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/log.h"
#include "clr/core/runtime.h"
#include "clr/data/image.h"
#include "clr/serve/engine.h"
#include "clr/serve/http.h"
#include "clr/store/store.h"
#include "commands.h"

namespace clr::apps {
namespace {

std::string human_bytes(int64_t b) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1);
  if (b >= (1 << 20)) {
    os << b / 1048576.0 << " MiB";
  } else if (b >= 1024) {
    os << b / 1024.0 << " KiB";
  } else {
    os << b << " B";
  }
  return os.str();
}

void tasks_list(const std::string& dir, bool json) {
  const store::Store s = store::Store::open(dir);
  if (json) {
    nlohmann::ordered_json tasks = nlohmann::ordered_json::array();
    for (const auto& e : s.tasks()) {
      tasks.push_back({{"name", e.name}, {"variant", e.variant}, {"classes", e.classes}, {"input_size", e.input_size},
                       {"bytes", e.bytes}, {"sha256", e.sha256}, {"created", e.created}});
    }
    nlohmann::ordered_json j = {{"store", dir},
                                {"backbone",
                                 {{"arch", s.backbone().arch},
                                  {"small_stem", s.backbone().small_stem},
                                  {"fingerprint", s.backbone().fingerprint},
                                  {"source", s.backbone().source}}},
                                {"tasks", tasks}};
    std::cout << j.dump(2) << std::endl;
    return;
  }
  std::cout << "store " << dir << ": " << s.tasks().size() << " tasks on " << s.backbone().arch
            << (s.backbone().small_stem ? " (small stem)" : "") << " " << s.backbone().fingerprint.substr(0, 19)
            << "... (" << s.backbone().source << ")\n";
  size_t w = 4;
  for (const auto& e : s.tasks()) w = std::max(w, e.name.size());
  std::cout << std::left << std::setw(static_cast<int>(w)) << "task" << "  " << std::setw(9) << "variant"
            << std::right << std::setw(8) << "classes" << std::setw(7) << "size" << std::setw(12) << "stored"
            << "  created\n";
  int64_t total = 0;
  for (const auto& e : s.tasks()) {
    std::cout << std::left << std::setw(static_cast<int>(w)) << e.name << "  " << std::setw(9) << e.variant
              << std::right << std::setw(8) << e.classes << std::setw(7) << e.input_size << std::setw(12)
              << human_bytes(e.bytes) << "  " << e.created << "\n";
    total += e.bytes;
  }
  std::cout << "total " << human_bytes(total) << std::endl;
}

void tasks_show(const std::string& dir, const std::string& name) {
  const store::Store s = store::Store::open(dir);
  const store::Adapter a = s.load(name);
  std::cout << store::adapter_json(a, s.find(name), 2) << std::endl;
}

void tasks_verify(const std::string& dir) {
  const store::Store s = store::Store::open(dir);
  int bad = 0;
  for (const auto& c : s.verify()) {
    std::cout << (c.ok ? "ok    " : "FAIL  ") << c.task << (c.ok ? "" : ": " + c.problem) << "\n";
    bad += c.ok ? 0 : 1;
  }
  std::cout << s.tasks().size() << " tasks, " << bad << " problems" << std::endl;
  CLR_CHECK(bad == 0, FormatError, "store '", dir, "' has ", bad, " problem", bad == 1 ? "" : "s");
}

void tasks_rm(const std::string& dir, const std::vector<std::string>& names) {
  store::Store s = store::Store::open(dir);
  for (const auto& n : names) CLR_CHECK(s.find(n) != nullptr, NotFoundError, "store '", dir, "' has no task '", n, "'");
  for (const auto& n : names) {
    s.remove(n);
    std::cout << "removed " << n << "\n";
  }
}

void tasks_export(const std::string& dir, const std::string& name, const std::string& out) {
  const store::Store s = store::Store::open(dir);
  CLR_CHECK(!out.empty(), ConfigError, "--out FILE is required");
  const std::string bytes = s.load_bytes(name);  // verified
  store::decode_adapter(bytes, s.dir() + "/" + s.find(name)->file);
  write_file_atomic(out, bytes);
  std::cout << out << ": task " << name << ", " << human_bytes(static_cast<int64_t>(bytes.size())) << std::endl;
}

void tasks_import(const std::string& dir, const std::string& file, const std::string& rename, bool replace) {
  store::Adapter a = store::read_adapter_file(file);
  if (!rename.empty()) a.task = rename;
  store::check_task_name(a.task);
  store::Store s = [&] {
    if (store::Store::exists(dir)) return store::Store::open(dir);
    store::BackboneRef ref = a.backbone;  // a new store for the adapter's backbone
    return store::Store::create(dir, ref);
  }();
  CLR_CHECK(a.backbone.fingerprint == s.backbone().fingerprint, IncompatibleError, "'", file,
            "' was trained on backbone ", a.backbone.fingerprint, " (", a.backbone.arch, "); store '", dir,
            "' serves ", s.backbone().fingerprint, " (", s.backbone().arch, ")");
  const store::TaskEntry e = s.put(a, replace);
  std::cout << "imported " << e.name << " (" << e.classes << " classes, " << human_bytes(e.bytes) << ") into " << dir
            << std::endl;
}

struct PredictArgs {
  std::string store, task, backbone, device = "cpu";
  std::vector<std::string> images;
  int64_t top_k = 5, batch = 64;
};

void predict(const PredictArgs& a) {
  serve::EngineOptions eo;
  eo.store_dir = a.store;
  eo.backbone_file = a.backbone;
  eo.device = a.device;
  serve::Engine engine(eo);
  CLR_CHECK(engine.task(a.task).has_value(), NotFoundError, "store '", a.store, "' has no task '", a.task,
            "' (clr tasks list --store ", a.store, ")");
  CLR_CHECK(a.batch >= 1, ConfigError, "--batch must be at least 1, got ", a.batch);
  for (size_t start = 0; start < a.images.size(); start += static_cast<size_t>(a.batch)) {
    const size_t end = std::min(a.images.size(), start + static_cast<size_t>(a.batch));
    std::vector<at::Tensor> images;
    for (size_t i = start; i < end; ++i) images.push_back(engine.preprocess(a.task, data::read_image(a.images[i])));
    const std::vector<std::string> tasks(end - start, a.task);
    const auto top = engine.predict(tasks, torch::stack(images), a.top_k);
    for (size_t i = start; i < end; ++i) {
      nlohmann::ordered_json t = nlohmann::ordered_json::array();
      for (const auto& c : top[i - start]) t.push_back({{"class", c.name}, {"index", c.index}, {"prob", c.prob}});
      std::cout << nlohmann::ordered_json{{"image", a.images[i]}, {"task", a.task}, {"top", t}}.dump() << "\n";
    }
  }
  std::cout << std::flush;
}

struct ServeArgs {
  serve::EngineOptions engine;
  serve::HttpOptions http;
  int threads = 0;
  double cache_mb = 256;
};

void serve_forever(ServeArgs a) {
  if (a.threads > 0) runtime::configure_threads(a.threads);
  if (a.http.admin_token.empty()) {
    if (const char* t = std::getenv("CLR_ADMIN_TOKEN")) a.http.admin_token = t;
  }
  CLR_CHECK(a.cache_mb > 0, ConfigError, "--cache-mb must be positive, got ", a.cache_mb);
  a.engine.cache_bytes = static_cast<int64_t>(a.cache_mb * 1048576.0);
  // SIGINT / SIGTERM stop the server from a thread of their own (no work in a handler).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  serve::Engine engine(a.engine);
  serve::HttpServer server(engine, a.http);
  const int port = server.bind();
  // The stopper waits for a signal, then stops the server until serve() has returned
  // (a stop before listening has begun would otherwise be lost).
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (done) return;
    log::info("serve: signal ", sig, ", stopping");
    while (!done) {
      server.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  auto finish = [&] {
    done = true;
    pthread_kill(stopper.native_handle(), SIGTERM);  // wakes sigwait when the stop came from elsewhere
    stopper.join();
  };
  std::cout << nlohmann::ordered_json{{"listening", a.http.host + ":" + std::to_string(port)},
                                      {"tasks", engine.tasks().size()},
                                      {"device", engine.device()},
                                      {"max_batch", a.http.batcher.max_batch},
                                      {"max_wait_ms", a.http.batcher.max_wait_ms}}
                   .dump()
            << std::endl;
  try {
    server.serve();
  } catch (...) {
    finish();
    throw;
  }
  finish();
}

}  // namespace

void register_tasks(CLI::App& app) {
  CLI::App* tasks = app.add_subcommand("tasks", "List, show, verify, remove, export and import the tasks of an adapter store");
  tasks->require_subcommand(1);
  auto dir = std::make_shared<std::string>();
  auto add_store = [dir](CLI::App* sub) {
    sub->add_option("--store", *dir, "The store directory (clr run writes OUT/adapters)")->required();
  };
  {
    auto json = std::make_shared<bool>(false);
    CLI::App* sub = tasks->add_subcommand("list", "One line per task (name, variant, classes, input size, bytes)");
    add_store(sub);
    sub->add_flag("--json", *json, "Print JSON");
    register_action(sub, [dir, json] { tasks_list(*dir, *json); });
  }
  {
    auto name = std::make_shared<std::string>();
    CLI::App* sub = tasks->add_subcommand("show", "A task's metadata as JSON (verified: checksums, backbone)");
    add_store(sub);
    sub->add_option("task", *name, "Task name")->required();
    register_action(sub, [dir, name] { tasks_show(*dir, *name); });
  }
  {
    CLI::App* sub = tasks->add_subcommand(
        "verify", "Check every task's file against the manifest and its own checksum; exit 4 on any problem");
    add_store(sub);
    register_action(sub, [dir] { tasks_verify(*dir); });
  }
  {
    auto names = std::make_shared<std::vector<std::string>>();
    CLI::App* sub = tasks->add_subcommand("rm", "Remove tasks (the manifest first, then the files)");
    add_store(sub);
    sub->add_option("task", *names, "Task names")->required();
    register_action(sub, [dir, names] { tasks_rm(*dir, *names); });
  }
  {
    auto name = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    CLI::App* sub = tasks->add_subcommand("export", "Copy a task's self-contained adapter file out of the store");
    add_store(sub);
    sub->add_option("task", *name, "Task name")->required();
    sub->add_option("--out", *out, "The adapter file to write (.safetensors)")->required();
    register_action(sub, [dir, name, out] { tasks_export(*dir, *name, *out); });
  }
  {
    auto file = std::make_shared<std::string>();
    auto rename = std::make_shared<std::string>();
    auto replace = std::make_shared<bool>(false);
    CLI::App* sub = tasks->add_subcommand(
        "import", "Add an adapter file (from export, or a run's adapters/tasks/) to a store; a new store starts with "
                  "the file's backbone");
    add_store(sub);
    sub->add_option("file", *file, "Adapter file")->required();
    sub->add_option("--name", *rename, "Store it under this task name");
    sub->add_flag("--replace", *replace, "Replace a task of the same name");
    register_action(sub, [dir, file, rename, replace] { tasks_import(*dir, *file, *rename, *replace); });
  }
  register_action(tasks, [tasks] {
    for (CLI::App* sub : tasks->get_subcommands()) run_selected(*sub);
  });
}

void register_predict(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* sub = app.add_subcommand(
      "predict", "Classify images with one task of an adapter store; one JSON line per image");
  sub->add_option("--store", a->store, "The store directory")->required();
  sub->add_option("--task", a->task, "Task name")->required();
  sub->add_option("images", a->images, "Image files (JPEG, PNG, BMP, GIF, WebP)")->required();
  sub->add_option("--top-k", a->top_k, "Classes per image")->capture_default_str();
  sub->add_option("--batch", a->batch, "Images per forward pass")->capture_default_str();
  sub->add_option("--backbone", a->backbone, "Backbone file (default: the one the store records)");
  sub->add_option("--device", a->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  register_action(sub, [a] { predict(*a); });
}

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* sub = app.add_subcommand(
      "serve", "Serve every task of an adapter store over HTTP, batching requests of different tasks into one forward");
  sub->add_option("--store", a->engine.store_dir, "The store directory")->required();
  sub->add_option("--backbone", a->engine.backbone_file, "Backbone file (default: the one the store records)");
  sub->add_option("--device", a->engine.device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  sub->add_option("--host", a->http.host, "Address to bind (loopback by default)")->capture_default_str();
  sub->add_option("--port", a->http.port, "Port (0: any free one, printed at start)")->capture_default_str();
  sub->add_option("--max-batch", a->http.batcher.max_batch, "Requests per forward pass, at most")->capture_default_str();
  sub->add_option("--max-wait-ms", a->http.batcher.max_wait_ms,
                  "How long the first request of a batch waits for others")->capture_default_str();
  sub->add_option("--queue", a->http.batcher.capacity, "Requests waiting, at most (more get 503)")->capture_default_str();
  sub->add_option("--threads", a->threads, "Intra-op threads of the forward pass (default: as clr --threads)");
  sub->add_option("--http-threads", a->http.http_threads, "Connections served at once")->capture_default_str();
  sub->add_option("--max-body-bytes", a->http.max_body_bytes, "Largest request body (more get 413)")->capture_default_str();
  sub->add_option("--max-pixels", a->http.max_pixels, "Largest image, by the pixels its header declares (more get 413)")
      ->capture_default_str();
  sub->add_option("--top-k", a->http.default_top_k, "Classes per answer unless ?top_k= says")->capture_default_str();
  sub->add_option("--cache-mb", a->cache_mb, "Memory for prepared adapters (LRU)")->capture_default_str();
  sub->add_option("--admin-token", a->http.admin_token,
                  "Token POST /v1/admin/reload must bring (default: $CLR_ADMIN_TOKEN; none: open)");
  sub->add_option("--watch-seconds", a->http.watch_seconds,
                  "Poll the store's manifest this often and serve new tasks (0: only on /v1/admin/reload)")
      ->capture_default_str();
  sub->footer(
      "Endpoints: GET /healthz, GET /v1/tasks, GET /v1/tasks/{task}, POST /v1/tasks/{task}/predict[?top_k=K]\n"
      "(body: the image bytes), POST /v1/admin/reload, GET /v1/stats. Errors are JSON {\"error\": {\"type\", "
      "\"message\"}}.");
  register_action(sub, [a] { serve_forever(*a); });
}

}  // namespace clr::apps
