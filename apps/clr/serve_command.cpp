// `clr predict` and `clr serve`: classifying images with the tasks of an adapter store.
#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <memory>
#include <pthread.h>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/log.h"
#include "clr/core/runtime.h"
#include "clr/serve/engine.h"
#include "clr/serve/http.h"
#include "commands.h"

namespace clr::apps {
namespace {

struct PredictArgs {
  std::string store, task, backbone, device = "cpu", precision = "auto", memory_format = "auto";
  std::vector<std::string> images;
  int64_t top_k = 5, batch = 64;
  serve::IdentifyOptions identify;
};

void predict(const PredictArgs& a) {
  serve::EngineOptions eo;
  eo.store_dir = a.store;
  eo.backbone_file = a.backbone;
  eo.device = a.device;
  eo.precision = a.precision;
  eo.memory_format = a.memory_format;
  CLR_CHECK(a.batch >= 1, ConfigError, "--batch must be at least 1, got ", a.batch);
  CLR_CHECK(a.top_k >= 1, ConfigError, "--top-k must be at least 1, got ", a.top_k);
  serve::Engine engine(eo);
  // A line for every image, in order: its top classes, or the error that kept it out.
  // A failure makes the exit code after the last line (predict_files throws then).
  struct Flush {
    ~Flush() { std::cout << std::flush; }
  } flush;
  if (a.task.empty()) {  // the task found for each image (task inference)
    serve::IdentifyOptions io = a.identify;
    io.top_k = a.top_k;
    engine.identify_files(a.images, io, a.batch,
                          [&](const std::string& path, const serve::Identified& answer, const std::string& error) {
                            nlohmann::ordered_json line{{"image", path}};
                            if (!error.empty()) {
                              line["error"] = error;
                            } else {
                              line.update(settings::Json(answer));
                            }
                            std::cout << line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
                                      << "\n";
                          });
    return;
  }
  engine.predict_files(
      a.task, a.images, a.top_k, a.batch,
      [&](const std::string& path, const std::vector<serve::TopClass>& top, const std::string& error) {
        nlohmann::ordered_json line{{"image", path}, {"task", a.task}};
        if (!error.empty()) {
          line["error"] = error;
        } else {
          nlohmann::ordered_json t = nlohmann::ordered_json::array();
          for (const auto& c : top) t.push_back({{"class", c.name}, {"index", c.index}, {"prob", c.prob}});
          line["top"] = t;
        }
        std::cout << line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
      });
}

struct ServeArgs {
  serve::EngineOptions engine;
  serve::HttpOptions http;
  std::string admin_token_file;
  std::string admin_token_in_argv;  // refused (see serve_forever)
  int threads = 0;
  double cache_mb = 256;
};

void serve_forever(ServeArgs a) {
  if (a.threads > 0) runtime::configure_threads(a.threads);
  CLR_CHECK(a.admin_token_in_argv.empty(), ConfigError, "--admin-token is not accepted: every user of this machine "
            "sees a flag's value in the process list; put the token in a file for --admin-token-file, or in "
            "$CLR_ADMIN_TOKEN");
  // The admin token never comes from argv (any user sees it there with ps): a file's
  // first line, or the environment.
  if (!a.admin_token_file.empty()) {
    std::string t = read_file(a.admin_token_file);
    t = t.substr(0, t.find('\n'));
    if (!t.empty() && t.back() == '\r') t.pop_back();
    CLR_CHECK(!t.empty(), ConfigError, "--admin-token-file '", a.admin_token_file, "' holds no token on its first line");
    a.http.admin_token = t;
  } else if (const char* t = std::getenv("CLR_ADMIN_TOKEN")) {
    a.http.admin_token = t;
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
                                      {"max_wait_ms", a.http.batcher.max_wait_ms},
                                      {"engine", a.engine},
                                      {"http", a.http}}
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

void register_predict(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* sub = app.add_subcommand(
      "predict",
      "Classify images with one task of an adapter store, or, without --task, find each image's task first; one JSON "
      "line per image");
  sub->add_option("--store", a->store, "The store directory")->required();
  sub->add_option("--task", a->task,
                  "Task name. Without it clr finds the task of each image (--task-inference) and prints it with its "
                  "confidence, the runner-up tasks and the classes");
  sub->add_option("--task-inference", a->identify.method,
                  "Without --task: gaussian (the tasks' stored class statistics, one backbone pass), task-gaussian "
                  "(the same statistics as one Gaussian per task: tasks of the same images come out as equally likely), "
                  "energy or max-softmax (every task's head on the image: one pass per task)")
      ->check(CLI::IsMember({"gaussian", "task-gaussian", "energy", "max-softmax"}))
      ->capture_default_str();
  sub->add_option("--unknown-below", a->identify.threshold,
                  "Without --task: a best task's confidence under this gives \"task\": null (unknown)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  sub->add_option("--top-tasks", a->identify.top_tasks, "Without --task: tasks listed per image, best first")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}))
      ->capture_default_str();
  sub->add_option("images", a->images, "Image files (JPEG, PNG, BMP, GIF, WebP)")->required();
  sub->add_option("--top-k", a->top_k, "Classes per image")->capture_default_str();
  sub->add_option("--batch", a->batch, "Images per forward pass")->capture_default_str();
  sub->add_option("--backbone", a->backbone, "Backbone file (default: the one the store records)");
  sub->add_option("--device", a->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  sub->add_option("--precision", a->precision,
                  "auto (bf16 on CUDA, fp32 on the CPU), fp32, bf16 or fp16 (CUDA)")->capture_default_str();
  sub->add_option("--memory-format", a->memory_format,
                  "auto (channels-last on CUDA, contiguous on the CPU), channels-last or contiguous")
      ->capture_default_str();
  register_action(sub, [a] { predict(*a); });
}

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* sub = app.add_subcommand(
      "serve", "Serve every task of an adapter store over HTTP, batching requests of different tasks into one forward");
  sub->add_option("--store", a->engine.store_dir, "The store directory")->required();
  sub->add_option("--backbone", a->engine.backbone_file, "Backbone file (default: the one the store records)");
  sub->add_option("--device", a->engine.device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  sub->add_option("--precision", a->engine.precision,
                  "auto (bf16 on CUDA, fp32 on the CPU), fp32, bf16 or fp16 (CUDA)")->capture_default_str();
  sub->add_option("--memory-format", a->engine.memory_format,
                  "auto (channels-last on CUDA, contiguous on the CPU), channels-last or contiguous")
      ->capture_default_str();
  sub->add_option("--host", a->http.host, "Address to bind (loopback by default)")->capture_default_str();
  sub->add_option("--port", a->http.port, "Port (0: any free one, printed at start)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  sub->add_option("--max-batch", a->http.batcher.max_batch, "Requests per forward pass, at most")->capture_default_str();
  sub->add_option("--max-wait-ms", a->http.batcher.max_wait_ms,
                  "How long the first request of a batch waits for others")->capture_default_str();
  sub->add_option("--queue", a->http.batcher.capacity, "Requests waiting, at most (more get 503)")->capture_default_str();
  sub->add_option("--threads", a->threads, "Intra-op threads of the forward pass (default: as clr --threads)");
  sub->add_option("--http-threads", a->http.http_threads,
                  "Requests handled at once (decoding, waiting for their batch); idle and slow connections hold none")
      ->capture_default_str();
  sub->add_option("--max-connections", a->http.max_connections, "Open connections at once; more are refused")
      ->capture_default_str();
  sub->add_option("--request-timeout", a->http.request_timeout_s,
                  "Seconds a client has to send a request's line and headers (from connecting or its last answer); "
                  "slower ones are cut off")
      ->capture_default_str();
  sub->add_option("--body-timeout", a->http.body_timeout_s,
                  "Seconds a client has to send a request's body once its headers are in; slower ones are cut off")
      ->capture_default_str();
  sub->add_option("--max-body-bytes", a->http.max_body_bytes, "Largest request body (more get 413)")->capture_default_str();
  sub->add_option("--max-pixels", a->http.max_pixels, "Largest image, by the pixels its header declares (more get 413)")
      ->capture_default_str();
  sub->add_option("--max-decode-pixels", a->http.max_decode_pixels,
                  "Pixels of all images decoded at once (by their headers); more wait, then get 503")
      ->capture_default_str();
  sub->add_option("--decode-wait-ms", a->http.decode_wait_ms,
                  "How long a request waits for --max-decode-pixels before 503")
      ->capture_default_str();
  sub->add_option("--top-k", a->http.default_top_k, "Classes per answer unless ?top_k= says")->capture_default_str();
  sub->add_option("--task-inference", a->http.identify.method,
                  "POST /v1/predict (no task given): gaussian (the tasks' stored class statistics, one backbone "
                  "pass), task-gaussian (the same as one Gaussian per task), energy or max-softmax (every task's head "
                  "on the image)")
      ->check(CLI::IsMember({"gaussian", "task-gaussian", "energy", "max-softmax"}))
      ->capture_default_str();
  sub->add_option("--unknown-below", a->http.identify.threshold,
                  "POST /v1/predict: a best task's confidence under this answers \"task\": null")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  sub->add_option("--top-tasks", a->http.identify.top_tasks, "POST /v1/predict: tasks listed per answer, best first")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}))
      ->capture_default_str();
  sub->add_option("--cache-mb", a->cache_mb, "Memory for prepared adapters (LRU)")->capture_default_str();
  sub->add_option("--admin-token-file", a->admin_token_file,
                  "File whose first line is the token POST /v1/admin/reload must bring (default: $CLR_ADMIN_TOKEN; "
                  "neither: open). Not a flag value: argv is visible to every user");
  sub->add_option("--admin-token", a->admin_token_in_argv)->group("");  // only to say why it is refused
  sub->add_option("--watch-seconds", a->http.watch_seconds,
                  "Poll the store's manifest this often and serve new tasks (0: only on /v1/admin/reload)")
      ->capture_default_str();
  sub->footer(
      "Endpoints: GET /healthz, GET /v1/tasks, GET /v1/tasks/{task}, POST /v1/tasks/{task}/predict[?top_k=K]\n"
      "(body: the image bytes), POST /v1/predict[?top_k=K] (the task found by --task-inference), POST\n"
      "/v1/admin/reload, GET /v1/stats. Errors are JSON {\"error\": {\"type\", "
      "\"message\"}}.");
  register_action(sub, [a] { serve_forever(*a); });
}

}  // namespace clr::apps
