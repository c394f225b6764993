// Private to clr_http (src/serve/http.cpp, src/serve/http_endpoints.cpp): the server's
// state (HttpServer::Impl) and a request as libmicrohttpd hands it over. http.cpp holds
// the event loop, the callbacks and the server's life; http_endpoints.cpp answers routed
// requests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>

#include <microhttpd.h>

#include "clr/serve/batcher.h"
#include "clr/serve/engine.h"
#include "clr/serve/http.h"
#include "http_parts.h"

namespace clr::serve {
namespace http_detail {

using Clock = std::chrono::steady_clock;

// One request as libmicrohttpd hands it over in pieces: what the handler needs of its
// head, copied on the event-loop thread, and its body.
struct Request {
  std::string method, path;
  Routed routed;
  std::optional<Reply> early;  // an answer known from the head alone (no route, ...)
  std::optional<std::string> top_k;
  std::string authorization;
  std::string body;
  bool too_large = false;  // the body passed max_body_bytes: the rest is read and dropped
  // A multipart form: its first part is the body.
  MHD_PostProcessor* form = nullptr;
  std::optional<std::string> first_field;
  bool form_failed = false;
  // Set by the worker, read by the event loop after MHD_resume_connection.
  bool dispatched = false;
  std::atomic<bool> ready{false};
  Reply reply;
  ~Request() {
    if (form != nullptr) MHD_destroy_post_processor(form);
  }
};

// Where a connection is, for the deadlines of HttpOptions.
enum class Phase { kHead, kBody, kHandled, kCutOff };
struct Connection {
  MHD_socket fd;
  Phase phase;
  Clock::time_point since;
};

}  // namespace http_detail

struct HttpServer::Impl {
  using Request = http_detail::Request;
  using Phase = http_detail::Phase;
  using Connection = http_detail::Connection;
  using Clock = http_detail::Clock;
  using DecodeBudget = http_detail::DecodeBudget;
  using Reply = http_detail::Reply;
  using Workers = http_detail::Workers;

  Engine& engine;
  HttpOptions options;
  std::unique_ptr<Batcher> batcher;
  std::unique_ptr<DecodeBudget> decoding;
  std::unique_ptr<Workers> workers;  // while serve() runs
  int listen_fd = -1;
  int port = -1;
  Clock::time_point started = Clock::now();
  std::atomic<int64_t> http_errors{0}, reloads{0}, cut_off{0}, connections_opened{0};

  // serve()'s life: stop() sets `stopping`; the watcher and the reaper wait on `cv`.
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool closing = false;  // serve() is winding down: new requests get 503
  int in_flight = 0;     // requests posted to the workers and not yet resumed

  std::mutex conns_mu;
  std::unordered_map<MHD_Connection*, Connection> conns;

  std::mutex log_mu;
  std::string last_mhd_message;

  Impl(Engine& e, HttpOptions o)
      : engine(e), options(std::move(o)), decoding(std::make_unique<DecodeBudget>(options.max_decode_pixels)) {}

  Reply handle(const Request& r);
  Reply too_large() const {
    return http_detail::error_reply(413, "payload_too_large",
                       detail::concat("the body is larger than the limit of ", options.max_body_bytes, " bytes"));
  }
  Reply predict(const Request& r);
  Reply identify(const Request& r);
  // The image of a predict request's body, decoded within the decode budget, and its
  // top_k; or the error reply.
  std::variant<Reply, std::pair<at::Tensor, int64_t>> decoded_body(const Request& r);
  // The batch's answer to a queued request, or 503 when the queue refused it.
  std::variant<Reply, BatchResult> await(std::optional<std::future<BatchResult>> future);
  void watch();
  void reap();
  void set_phase(MHD_Connection* c, Phase p);
  MHD_Result send(MHD_Connection* c, const Reply& reply);

  // libmicrohttpd's callbacks (cls: the Impl).
  static MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method, const char* version,
                               const char* upload, size_t* upload_size, void** req_cls);
  static void on_completed(void* cls, MHD_Connection* c, void** req_cls, MHD_RequestTerminationCode why);
  static void on_connection(void* cls, MHD_Connection* c, void** socket_context, MHD_ConnectionNotificationCode what);
  static MHD_Result on_form(void* cls, MHD_ValueKind kind, const char* key, const char* filename,
                            const char* content_type, const char* encoding, const char* data, uint64_t off,
                            size_t size);
  static void on_log(void* cls, const char* fmt, va_list ap);
};

}  // namespace clr::serve
