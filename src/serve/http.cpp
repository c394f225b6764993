#include "clr/serve/http.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <regex>
#include <thread>
#include <utility>
#include <vector>

#include <sys/socket.h>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/log.h"
#include "clr/core/settings_io.h"
#include "clr/data/image.h"
#include "clr/serve/engine.h"

namespace clr::serve {

template <class V>
void fields(V& v, HttpOptions& o) {
  v("host", o.host);
  v("port", o.port);
  v("http_threads", o.http_threads);
  v("max_body_bytes", o.max_body_bytes);
  v("max_pixels", o.max_pixels);
  v("max_decode_pixels", o.max_decode_pixels);
  v("decode_wait_ms", o.decode_wait_ms);
  v("top_k", o.default_top_k);
  v("watch_seconds", o.watch_seconds);
  v("batcher", o.batcher);
}
CLR_SETTINGS_JSON(HttpOptions)
namespace {

using nlohmann::ordered_json;

constexpr const char* kJson = "application/json";

// JSON text of `j`; bytes that are not UTF-8 (a percent-decoded path, say) become U+FFFD
// instead of an exception.
std::string text_of(const ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void send_error(httplib::Response& res, int status, const std::string& type, const std::string& message) {
  res.status = status;
  res.set_content(text_of(ordered_json{{"error", {{"type", type}, {"message", message}}}}), kJson);
}

void send_json(httplib::Response& res, const ordered_json& j) {
  res.status = 200;
  res.set_content(text_of(j), kJson);
}

// The status and type of a clr error.
std::pair<int, std::string> status_of(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kConfig: return {400, "bad_request"};
    case ErrorKind::kNotFound: return {404, "not_found"};
    case ErrorKind::kFormat: return {500, "store_error"};
    case ErrorKind::kIncompatible: return {500, "incompatible"};
    case ErrorKind::kInternal: return {500, "internal"};
    case ErrorKind::kStopped: return {503, "stopped"};
  }
  return {500, "internal"};
}

// Every route of the server: what routes() registers and what methods_of() answers 405 from.
constexpr const char* kHealthz = "/healthz";
constexpr const char* kTasks = "/v1/tasks";
constexpr const char* kTask = R"(/v1/tasks/([^/]+))";
constexpr const char* kPredict = R"(/v1/tasks/([^/]+)/predict)";
constexpr const char* kReload = "/v1/admin/reload";
constexpr const char* kStats = "/v1/stats";
constexpr std::pair<const char*, const char*> kRoutes[] = {{"GET", kHealthz},  {"GET", kTasks},    {"GET", kTask},
                                                           {"POST", kPredict}, {"POST", kReload}, {"GET", kStats}};

// The methods a path of this server answers ("GET", "POST"; empty: no route).
std::string methods_of(const std::string& path) {
  static const std::vector<std::pair<std::string, std::regex>> routes = [] {
    std::vector<std::pair<std::string, std::regex>> r;
    for (const auto& [method, pattern] : kRoutes) r.emplace_back(method, std::regex(pattern));
    return r;
  }();
  std::string out;
  for (const auto& [method, pattern] : routes) {
    if (std::regex_match(path, pattern) && out.find(method) == std::string::npos) {
      out += (out.empty() ? "" : ", ") + method;
    }
  }
  return out;
}

ordered_json task_line(const store::TaskEntry& e) {
  return {{"name", e.name}, {"classes", e.classes}, {"variant", e.variant}, {"input_size", e.input_size},
          {"bytes", e.bytes}, {"created", e.created}};
}

// The pixels being decoded at once, bounded (HttpOptions::max_decode_pixels).
class DecodeBudget {
 public:
  explicit DecodeBudget(int64_t limit) : limit_(limit) {}
  // Takes `pixels` of the budget, waiting up to `wait` for it; false when it did not
  // come. Anything fits when nothing else is being decoded.
  bool take(int64_t pixels, std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mu_);
    const bool got = cv_.wait_for(lock, wait, [&] { return used_ == 0 || used_ + pixels <= limit_; });
    if (got) used_ += pixels;
    return got;
  }
  void give(int64_t pixels) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      used_ -= pixels;
    }
    cv_.notify_all();
  }

 private:
  const int64_t limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t used_ = 0;
};

}  // namespace

struct HttpServer::Impl {
  Engine& engine;
  HttpOptions options;
  std::unique_ptr<Batcher> batcher;
  httplib::Server http;  // after the batcher: destroyed first
  int port = -1;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::atomic<int64_t> http_errors{0}, reloads{0};
  // The manifest watcher.
  std::thread watcher;
  std::mutex watch_mu;
  std::condition_variable watch_cv;
  bool stopping = false;

  std::unique_ptr<DecodeBudget> decoding;

  Impl(Engine& e, HttpOptions o)
      : engine(e), options(std::move(o)), decoding(std::make_unique<DecodeBudget>(options.max_decode_pixels)) {}

  void routes();
  void predict(const httplib::Request& req, const std::string& body, httplib::Response& res);
  void watch();
};

void HttpServer::Impl::routes() {
  http.Get(kHealthz, [this](const httplib::Request&, httplib::Response& res) {
    const BatcherStats b = batcher->stats();
    const double up = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    send_json(res, {{"status", "ok"},
                    {"tasks", engine.tasks().size()},
                    {"backbone", {{"arch", engine.backbone().arch}, {"fingerprint", engine.backbone().fingerprint}}},
                    {"device", engine.device()},
                    {"queue", b.queued},
                    {"uptime_seconds", up}});
  });
  http.Get(kTasks, [this](const httplib::Request&, httplib::Response& res) {
    ordered_json tasks = ordered_json::array();
    for (const auto& e : engine.tasks()) tasks.push_back(task_line(e));
    send_json(res, {{"tasks", tasks}});
  });
  http.Get(kTask, [this](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    const auto entry = engine.task(name);
    if (!entry) return send_error(res, 404, "not_found", "no task '" + name + "'; GET /v1/tasks lists them");
    const store::Adapter a = engine.describe(name);
    send_json(res, ordered_json::parse(store::adapter_json(a, &*entry)));
  });
  // The body is read here rather than by httplib, which parses a form-urlencoded body
  // (curl --data-binary's default Content-Type) and caps it at 8 KB: an image is bytes
  // whatever the Content-Type says. From a multipart form (curl -F image=@x.png) the
  // first part is the image. The --max-body-bytes limit holds either way.
  http.Post(kPredict, [this](const httplib::Request& req, httplib::Response& res,
                                                   const httplib::ContentReader& read) {
    std::string body;
    if (req.is_multipart_form_data()) {
      int parts = 0;
      read(
          [&](const httplib::MultipartFormData&) {
            ++parts;
            return true;
          },
           [&](const char* data, size_t n) {
             if (parts == 1) body.append(data, n);
             return true;
           });
    } else {
      read([&](const char* data, size_t n) {
        body.append(data, n);
        return true;
      });
    }
    if (res.status == 413) return;  // over the limit: the error handler answers
    predict(req, body, res);
  });
  http.Post(kReload, [this](const httplib::Request& req, httplib::Response& res) {
    if (!options.admin_token.empty() && req.get_header_value("Authorization") != "Bearer " + options.admin_token) {
      return send_error(res, 401, "unauthorized", "POST /v1/admin/reload needs 'Authorization: Bearer TOKEN'");
    }
    const size_t n = engine.reload();
    ++reloads;
    send_json(res, {{"status", "reloaded"}, {"tasks", n}});
  });
  http.Get(kStats, [this](const httplib::Request&, httplib::Response& res) {
    const BatcherStats b = batcher->stats();
    const CacheStats c = engine.cache_stats();
    send_json(res, {{"requests", b.requests},
                    {"rejected", b.rejected},
                    {"served", b.served},
                    {"failed", b.failed},
                    {"batches", b.batches},
                    {"mean_batch", b.mean_batch()},
                    {"max_batch", b.max_batch_seen},
                    {"queued", b.queued},
                    {"http_errors", http_errors.load()},
                    {"reloads", reloads.load()},
                    {"cache",
                     {{"bytes", c.bytes},
                      {"budget", c.budget},
                      {"entries", c.entries},
                      {"hits", c.hits},
                      {"misses", c.misses},
                      {"evictions", c.evictions}}}});
  });
  // Errors httplib raises itself (no route, body too large, malformed request) get
  // the same JSON body as ours; a response that already has a body keeps it.
  // httplib calls this outside its own exception handling: nothing may escape it.
  const httplib::Server::HandlerWithResponse on_error = [this](const httplib::Request& req,
                                                               httplib::Response& res) noexcept {
    ++http_errors;
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    try {
      const std::string allowed = res.status == 404 || res.status == 400 ? methods_of(req.path) : "";
      if (!allowed.empty() && allowed.find(req.method) == std::string::npos) {
        res.set_header("Allow", allowed);
        send_error(res, 405, "method_not_allowed",
                   detail::concat(req.method, " ", req.path, ": this path answers ", allowed));
      } else if (res.status == 404) {
        send_error(res, 404, "not_found", "no route " + req.method + " " + req.path);
      } else if (res.status == 414) {
        send_error(res, 414, "uri_too_long",
                   detail::concat("the request line is longer than ", CPPHTTPLIB_REQUEST_URI_MAX_LENGTH,
                                  " bytes (", req.method.empty() ? "method unread" : req.method, " ",
                                  req.path.empty() ? "path unread" : req.path.substr(0, 64) + "...", ")"));
      } else if (res.status == 413) {
        send_error(res, 413, "payload_too_large",
                   detail::concat("the body is larger than the limit of ", options.max_body_bytes, " bytes"));
      } else {
        send_error(res, res.status, res.status < 500 ? "bad_request" : "internal",
                   detail::concat("HTTP ", res.status, " for ", req.method, " ", req.path));
      }
    } catch (...) {
      return httplib::Server::HandlerResponse::Unhandled;  // httplib's own empty error page
    }
    return httplib::Server::HandlerResponse::Handled;
  };
  http.set_error_handler(on_error);
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const Error& e) {
      const auto [status, type] = status_of(e.kind());
      send_error(res, status, type, e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, "internal", e.what());
    } catch (...) {
      send_error(res, 500, "internal", "unknown error");
    }
  });
}

void HttpServer::Impl::predict(const httplib::Request& req, const std::string& body, httplib::Response& res) {
  const std::string name = req.matches[1];
  if (!engine.task(name)) return send_error(res, 404, "not_found", "no task '" + name + "'; GET /v1/tasks lists them");
  int64_t top_k = options.default_top_k;
  if (req.has_param("top_k")) {
    const std::string v = req.get_param_value("top_k");
    char* end = nullptr;
    const long long k = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || k < 1 || k > 100000) {
      return send_error(res, 400, "bad_request", "top_k must be an integer in [1, 100000], got '" + v + "'");
    }
    top_k = k;
  }
  if (body.empty()) return send_error(res, 400, "bad_request", "empty body: POST the image's bytes");
  // The header's size first, before anything is allocated for what it claims.
  const auto wh = data::declared_size(body);
  if (options.max_pixels > 0 && wh && wh->first * wh->second > options.max_pixels) {
    return send_error(res, 413, "image_too_large",
                      detail::concat("image 'the request body' is ", wh->first, "x", wh->second,
                                     " pixels, more than the limit of ", options.max_pixels));
  }
  // What the header declares, or for a header that says nothing readable the bytes
  // themselves (the decoder will refuse it, or it is small).
  const int64_t pixels = wh ? wh->first * wh->second : static_cast<int64_t>(body.size());
  if (!decoding->take(pixels, std::chrono::milliseconds(options.decode_wait_ms))) {
    res.set_header("Retry-After", "1");
    return send_error(res, 503, "overloaded",
                      detail::concat("images of ", options.max_decode_pixels, " pixels are being decoded already; "
                                     "retry later"));
  }
  at::Tensor decoded;
  try {
    struct Give {
      DecodeBudget& b;
      int64_t n;
      ~Give() { b.give(n); }
    } give{*decoding, pixels};
    decoded = data::decode_image(body, "the request body");
  } catch (const FormatError& e) {
    return send_error(res, 400, "bad_image", e.what());
  }
  const at::Tensor image = engine.preprocess(name, decoded);  // a bad store file is a 500, not the client's fault
  auto future = batcher->submit(name, image, top_k);
  if (!future) {
    res.set_header("Retry-After", "1");
    return send_error(res, 503, "overloaded",
                      detail::concat("the request queue is full (", batcher->options().capacity,
                                     " waiting); retry later"));
  }
  const BatchResult r = future->get();
  if (!r.error.empty()) {
    const auto [status, type] = status_of(static_cast<ErrorKind>(r.error_kind));
    return send_error(res, status, type, r.error);
  }
  ordered_json top = ordered_json::array();
  for (const TopClass& c : r.top) top.push_back({{"class", c.name}, {"index", c.index}, {"prob", c.prob}});
  send_json(res, {{"task", name}, {"top", top}});
}

void HttpServer::Impl::watch() {
  std::string stamp = engine.manifest_stamp();
  const auto every = std::chrono::microseconds(static_cast<int64_t>(options.watch_seconds * 1e6));
  std::unique_lock<std::mutex> lock(watch_mu);
  while (!watch_cv.wait_for(lock, every, [&] { return stopping; })) {
    const std::string now = engine.manifest_stamp();
    if (now.empty() || now == stamp) continue;
    try {
      const size_t n = engine.reload();
      ++reloads;
      stamp = now;
      log::info("serve: the store's manifest changed; ", n, " tasks now");
    } catch (const std::exception& e) {
      log::warn("serve: the store's manifest changed but could not be read (", e.what(), "); still serving the old one");
      stamp = now;
    }
  }
}

HttpServer::HttpServer(Engine& engine, HttpOptions options) : impl_(std::make_unique<Impl>(engine, std::move(options))) {
  Impl& m = *impl_;
  CLR_CHECK(m.options.port >= 0 && m.options.port <= 65535, ConfigError, "--port must be in [0, 65535] (0: any free "
            "port), got ", m.options.port);
  CLR_CHECK(m.options.http_threads >= 1, ConfigError, "--http-threads must be at least 1, got ", m.options.http_threads);
  CLR_CHECK(m.options.max_body_bytes >= 1, ConfigError, "--max-body-bytes must be positive, got ",
            m.options.max_body_bytes);
  CLR_CHECK(m.options.default_top_k >= 1, ConfigError, "--top-k must be at least 1, got ", m.options.default_top_k);
  CLR_CHECK(m.options.watch_seconds >= 0, ConfigError, "--watch-seconds must be >= 0, got ", m.options.watch_seconds);
  CLR_CHECK(m.options.max_pixels >= 1, ConfigError, "--max-pixels must be positive, got ", m.options.max_pixels);
  CLR_CHECK(m.options.max_decode_pixels >= 1, ConfigError, "--max-decode-pixels must be positive, got ",
            m.options.max_decode_pixels);
  CLR_CHECK(m.options.decode_wait_ms >= 0, ConfigError, "--decode-wait-ms must be >= 0, got ",
            m.options.decode_wait_ms);
  m.batcher = std::make_unique<Batcher>(engine, m.options.batcher);
  const int threads = m.options.http_threads;
  m.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  m.http.set_payload_max_length(static_cast<size_t>(m.options.max_body_bytes));
  m.http.set_keep_alive_max_count(100000);
  m.http.set_read_timeout(10);
  m.http.set_write_timeout(10);
  // httplib's default adds SO_REUSEPORT, with which a second server binds the same port
  // and the two answer in turn; SO_REUSEADDR alone still allows a quick restart.
  m.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof yes);
  });
  m.routes();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  Impl& m = *impl_;
  if (m.options.port == 0) {
    m.port = m.http.bind_to_any_port(m.options.host);
    CLR_CHECK(m.port > 0, ConfigError, "cannot bind ", m.options.host, " to a free port");
  } else {
    CLR_CHECK(m.http.bind_to_port(m.options.host, m.options.port), ConfigError, "cannot bind ", m.options.host, ":",
              m.options.port, " (in use, or not an address of this machine); choose another --port or --host");
    m.port = m.options.port;
  }
  return m.port;
}

void HttpServer::serve() {
  Impl& m = *impl_;
  if (m.port < 0) bind();
  {
    std::lock_guard<std::mutex> lock(m.watch_mu);
    if (m.stopping) return;  // stop() came first
    if (m.options.watch_seconds > 0) m.watcher = std::thread([&m] { m.watch(); });
  }
  const bool ok = m.http.listen_after_bind();
  bool stopping = false;
  {
    std::lock_guard<std::mutex> lock(m.watch_mu);
    stopping = m.stopping;
  }
  CLR_CHECK(ok || stopping, InternalError, "the HTTP server on ", m.options.host, ":", m.port,
            " stopped accepting connections (accept failed: out of file descriptors or buffers?)");
}

void HttpServer::stop() {
  Impl& m = *impl_;
  std::thread watcher;
  {
    std::lock_guard<std::mutex> lock(m.watch_mu);
    m.stopping = true;
    watcher.swap(m.watcher);
  }
  m.watch_cv.notify_all();
  if (watcher.joinable()) watcher.join();
  m.http.stop();  // does nothing before listen starts: the caller retries (serve_command.cpp)
}

int HttpServer::port() const { return impl_->port; }

}  // namespace clr::serve
