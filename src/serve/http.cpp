#include "clr/serve/http.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <netdb.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/log.h"
#include "clr/core/settings_io.h"
#include "clr/data/image.h"
#include "clr/serve/engine.h"
#include "detail/http_impl.h"
#include "detail/http_parts.h"

namespace clr::serve {

template <class V>
void fields(V& v, HttpOptions& o) {
  v("host", o.host);
  v("port", o.port);
  v("http_threads", o.http_threads);
  v("max_connections", o.max_connections);
  v("request_timeout_s", o.request_timeout_s);
  v("body_timeout_s", o.body_timeout_s);
  v("max_body_bytes", o.max_body_bytes);
  v("max_pixels", o.max_pixels);
  v("max_decode_pixels", o.max_decode_pixels);
  v("decode_wait_ms", o.decode_wait_ms);
  v("top_k", o.default_top_k);
  v("watch_seconds", o.watch_seconds);
  v("batcher", o.batcher);
  v("identify", o.identify);
}
CLR_SETTINGS_JSON(HttpOptions)
namespace {


using nlohmann::ordered_json;

constexpr const char* kJson = "application/json";
// The longest request target (path and query) answered with a route; longer ones get 414.
constexpr size_t kMaxTarget = 8192;
// Memory of one connection for its request head (libmicrohttpd's pool): heads beyond it
// get libmicrohttpd's own 431 / 414.
constexpr size_t kConnectionMemory = 64 * 1024;

using namespace http_detail;
using Clock = http_detail::Clock;
using http_detail::Phase;
using http_detail::Request;

}  // namespace

void HttpServer::Impl::set_phase(MHD_Connection* c, Phase p) {
  std::lock_guard<std::mutex> lock(conns_mu);
  const auto it = conns.find(c);
  if (it == conns.end() || it->second.phase == Phase::kCutOff) return;
  it->second.phase = p;
  it->second.since = Clock::now();
}

MHD_Result HttpServer::Impl::send(MHD_Connection* c, const Reply& reply) {
  if (reply.status >= 400) ++http_errors;
  MHD_Response* res = MHD_create_response_from_buffer(reply.body.size(), const_cast<char*>(reply.body.data()),
                                                      MHD_RESPMEM_MUST_COPY);
  if (res == nullptr) return MHD_NO;
  MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, kJson);
  for (const auto& [k, v] : reply.headers) MHD_add_response_header(res, k.c_str(), v.c_str());
  const MHD_Result ok = MHD_queue_response(c, static_cast<unsigned int>(reply.status), res);
  MHD_destroy_response(res);
  return ok;
}

// The first field of a multipart form is the image; the others are ignored.
MHD_Result HttpServer::Impl::on_form(void* cls, MHD_ValueKind, const char* key, const char*, const char*, const char*,
                                     const char* data, uint64_t, size_t size) {
  Request& r = *static_cast<Request*>(cls);
  const std::string field = key != nullptr ? key : "";
  if (!r.first_field) r.first_field = field;
  if (field == *r.first_field) r.body.append(data, size);
  return MHD_YES;
}

MHD_Result HttpServer::Impl::on_request(void* cls, MHD_Connection* c, const char* url, const char* method,
                                        const char*, const char* upload, size_t* upload_size, void** req_cls) {
  Impl& m = *static_cast<Impl*>(cls);
  auto* r = static_cast<Request*>(*req_cls);
  if (r == nullptr) {  // the head is complete; the body (if any) comes in the next calls
    r = new Request;   // deleted by on_completed
    *req_cls = r;
    r->method = method;
    r->path = url;
    m.set_phase(c, Phase::kBody);
    // Answers known from the head are sent once the request is whole: sent now, they
    // would make libmicrohttpd close the connection, and the requests pipelined after
    // this one would be lost.
    {
      std::lock_guard<std::mutex> lock(m.mu);
      if (m.closing) {
        r->early = error_reply(503, "stopping", "the server is stopping");
        r->early->headers.emplace_back("Connection", "close");
        return MHD_YES;
      }
    }
    if (r->path.size() > kMaxTarget) {
      r->early = error_reply(414, "uri_too_long",
                             detail::concat("the request target is longer than ", kMaxTarget, " bytes (", r->method,
                                            " ", r->path.substr(0, 64), "...)"));
      return MHD_YES;
    }
    r->routed = route_of(r->method, r->path);
    if (!r->routed.id) {
      if (r->routed.allowed.empty()) {
        r->early = error_reply(404, "not_found", "no route " + r->method + " " + r->path);
      } else {
        r->early = error_reply(405, "method_not_allowed",
                               detail::concat(r->method, " ", r->path, ": this path answers ", r->routed.allowed));
        r->early->headers.emplace_back("Allow", r->routed.allowed);
      }
      return MHD_YES;
    }
    // A body declared too large is refused before it is read (the connection then closes).
    if (const char* length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(length, &end, 10);
      if (*end == '\0' && n > static_cast<unsigned long long>(m.options.max_body_bytes)) {
        return m.send(c, m.too_large());
      }
    }
    if (const char* k = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "top_k")) r->top_k = k;
    if (const char* a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION)) {
      r->authorization = a;
    }
    const char* type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (type != nullptr && strncasecmp(type, "multipart/form-data", 19) == 0) {
      r->form = MHD_create_post_processor(c, 64 * 1024, &Impl::on_form, r);
      if (r->form == nullptr) r->form_failed = true;
    }
    return MHD_YES;
  }
  if (*upload_size > 0) {  // a piece of the body
    if (!r->early && !r->too_large && !r->form_failed) {
      if (r->form != nullptr) {
        if (MHD_post_process(r->form, upload, *upload_size) != MHD_YES) r->form_failed = true;
      } else {
        r->body.append(upload, *upload_size);
      }
      if (static_cast<int64_t>(r->body.size()) > m.options.max_body_bytes) {
        r->too_large = true;
        std::string().swap(r->body);
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  // The request is whole.
  if (r->ready) return m.send(c, r->reply);  // handled: back from MHD_resume_connection
  if (r->dispatched) return MHD_YES;
  if (r->early) return m.send(c, *r->early);
  if (r->too_large) return m.send(c, m.too_large());
  if (r->form_failed) return m.send(c, error_reply(400, "bad_request", "the multipart form body cannot be read"));
  r->dispatched = true;
  m.set_phase(c, Phase::kHandled);
  {
    std::lock_guard<std::mutex> lock(m.mu);
    ++m.in_flight;
  }
  MHD_suspend_connection(c);
  m.workers->post([&m, r, c] {
    try {
      r->reply = m.handle(*r);
    } catch (const Error& e) {
      const auto [status, type] = status_of(e.kind());
      r->reply = error_reply(status, type, e.what());
    } catch (const std::exception& e) {
      r->reply = error_reply(500, "internal", e.what());
    } catch (...) {
      r->reply = error_reply(500, "internal", "unknown error");
    }
    r->ready = true;
    MHD_resume_connection(c);
    {
      std::lock_guard<std::mutex> lock(m.mu);
      --m.in_flight;
    }
    m.cv.notify_all();
  });
  return MHD_YES;
}

void HttpServer::Impl::on_completed(void* cls, MHD_Connection* c, void** req_cls, MHD_RequestTerminationCode) {
  delete static_cast<Request*>(*req_cls);
  *req_cls = nullptr;
  static_cast<Impl*>(cls)->set_phase(c, Phase::kHead);  // the next request's head is due
}

void HttpServer::Impl::on_connection(void* cls, MHD_Connection* c, void**, MHD_ConnectionNotificationCode what) {
  Impl& m = *static_cast<Impl*>(cls);
  std::lock_guard<std::mutex> lock(m.conns_mu);
  if (what == MHD_CONNECTION_NOTIFY_STARTED) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info != nullptr) m.conns[c] = Connection{info->connect_fd, Phase::kHead, Clock::now()};
    ++m.connections_opened;
  } else {
    m.conns.erase(c);  // libmicrohttpd closes the socket after this returns
  }
}

void HttpServer::Impl::on_log(void* cls, const char* fmt, va_list ap) {
  Impl& m = *static_cast<Impl*>(cls);
  char buf[512];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  std::string line = buf;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  log::debug("serve: libmicrohttpd: ", line);
  std::lock_guard<std::mutex> lock(m.log_mu);
  m.last_mhd_message = line;
}

// Cuts off connections past their deadline: shutting the socket down makes
// libmicrohttpd's event loop see it end and close it (the socket stays valid while it is
// in `conns`: libmicrohttpd closes it only after on_connection removed it).
void HttpServer::Impl::reap() {
  using std::chrono::duration;
  const auto head = duration<double>(options.request_timeout_s);
  const auto body = duration<double>(options.body_timeout_s);
  std::unique_lock<std::mutex> lock(mu);
  while (!cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping; })) {
    const auto now = Clock::now();
    std::lock_guard<std::mutex> conns_lock(conns_mu);
    for (auto& [c, conn] : conns) {
      const bool late = (conn.phase == Phase::kHead && now - conn.since > head) ||
                        (conn.phase == Phase::kBody && now - conn.since > body);
      if (!late) continue;
      ::shutdown(conn.fd, SHUT_RDWR);
      conn.phase = Phase::kCutOff;
      ++cut_off;
    }
  }
}

void HttpServer::Impl::watch() {
  std::string stamp = engine.manifest_stamp();
  const auto every = std::chrono::microseconds(static_cast<int64_t>(options.watch_seconds * 1e6));
  std::unique_lock<std::mutex> lock(mu);
  while (!cv.wait_for(lock, every, [&] { return stopping; })) {
    lock.unlock();
    const std::string now = engine.manifest_stamp();
    if (!now.empty() && now != stamp) {
      try {
        const size_t n = engine.reload();
        ++reloads;
        log::info("serve: the store's manifest changed; ", n, " tasks now");
      } catch (const std::exception& e) {
        log::warn("serve: the store's manifest changed but could not be read (", e.what(),
                  "); still serving the old one");
      }
      stamp = now;
    }
    lock.lock();
  }
}

HttpServer::HttpServer(Engine& engine, HttpOptions options) : impl_(std::make_unique<Impl>(engine, std::move(options))) {
  Impl& m = *impl_;
  const HttpOptions& o = m.options;
  CLR_CHECK(o.port >= 0 && o.port <= 65535, ConfigError, "--port must be in [0, 65535] (0: any free port), got ", o.port);
  CLR_CHECK(o.http_threads >= 1 && o.http_threads <= 4096, ConfigError, "--http-threads must be in [1, 4096], got ",
            o.http_threads);
  CLR_CHECK(o.max_connections >= 1 && o.max_connections <= 65536, ConfigError,
            "--max-connections must be in [1, 65536], got ", o.max_connections);
  CLR_CHECK(o.request_timeout_s > 0 && o.request_timeout_s <= 86400, ConfigError,
            "--request-timeout must be in (0, 86400] seconds, got ", o.request_timeout_s);
  CLR_CHECK(o.body_timeout_s > 0 && o.body_timeout_s <= 86400, ConfigError,
            "--body-timeout must be in (0, 86400] seconds, got ", o.body_timeout_s);
  CLR_CHECK(o.max_body_bytes >= 1, ConfigError, "--max-body-bytes must be positive, got ", o.max_body_bytes);
  CLR_CHECK(o.default_top_k >= 1, ConfigError, "--top-k must be at least 1, got ", o.default_top_k);
  CLR_CHECK(o.watch_seconds >= 0, ConfigError, "--watch-seconds must be >= 0, got ", o.watch_seconds);
  CLR_CHECK(o.max_pixels >= 1, ConfigError, "--max-pixels must be positive, got ", o.max_pixels);
  CLR_CHECK(o.max_decode_pixels >= 1, ConfigError, "--max-decode-pixels must be positive, got ", o.max_decode_pixels);
  CLR_CHECK(o.decode_wait_ms >= 0, ConfigError, "--decode-wait-ms must be >= 0, got ", o.decode_wait_ms);
  m.batcher = std::make_unique<Batcher>(engine, o.batcher);
}

HttpServer::~HttpServer() {
  stop();
  if (impl_->listen_fd >= 0) ::close(impl_->listen_fd);
}

int HttpServer::bind() {
  Impl& m = *impl_;
  if (m.listen_fd >= 0) return m.port;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(m.options.port);
  const int rc = ::getaddrinfo(m.options.host.c_str(), service.c_str(), &hints, &found);
  CLR_CHECK(rc == 0, ConfigError, "cannot bind --host '", m.options.host, "': ", ::gai_strerror(rc));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> owned(found, ::freeaddrinfo);
  int error = 0;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      error = errno;
      continue;
    }
    // SO_REUSEADDR allows a quick restart; no SO_REUSEPORT, with which a second server
    // would bind the same port and the two would answer in turn.
    const int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) {
      m.listen_fd = fd;
      break;
    }
    error = errno;
    ::close(fd);
  }
  CLR_CHECK(m.listen_fd >= 0, ConfigError, "cannot bind ", m.options.host, ":", m.options.port, ": ",
            std::strerror(error),
            error == EADDRINUSE ? " (the port is in use; choose another --port)"
                                : " (not an address of this machine?); choose another --host or --port");
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(m.listen_fd, reinterpret_cast<sockaddr*>(&bound), &len);
  m.port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return m.port;
}

void HttpServer::serve() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.stopping) return;  // stop() came first
  }
  if (m.listen_fd < 0) bind();
  m.workers = std::make_unique<Workers>(m.options.http_threads);
  const unsigned int loops = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  const unsigned int idle_s = static_cast<unsigned int>(std::ceil(std::max(m.options.request_timeout_s, 1.0)));
  MHD_Daemon* daemon = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, nullptr,
      nullptr, &Impl::on_request, &m,                                                       //
      MHD_OPTION_LISTEN_SOCKET, static_cast<MHD_socket>(m.listen_fd),                       //
      MHD_OPTION_THREAD_POOL_SIZE, loops,                                                   //
      MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned int>(m.options.max_connections),    //
      MHD_OPTION_CONNECTION_TIMEOUT, idle_s,                                                //
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory,                                //
      MHD_OPTION_NOTIFY_COMPLETED, &Impl::on_completed, &m,                                 //
      MHD_OPTION_NOTIFY_CONNECTION, &Impl::on_connection, &m,                               //
      MHD_OPTION_EXTERNAL_LOGGER, &Impl::on_log, &m,                                        //
      MHD_OPTION_END);
  if (daemon == nullptr) {
    m.workers.reset();
    std::lock_guard<std::mutex> lock(m.log_mu);
    throw InternalError(detail::concat("the HTTP server on ", m.options.host, ":", m.port, " cannot start: ",
                                       m.last_mhd_message.empty() ? "libmicrohttpd gave no reason"
                                                                  : m.last_mhd_message));
  }
  std::thread reaper([&m] { m.reap(); });
  std::thread watcher;
  if (m.options.watch_seconds > 0) watcher = std::thread([&m] { m.watch(); });
  {
    // Until stop(); then no new request is taken, and the ones being handled are answered.
    std::unique_lock<std::mutex> lock(m.mu);
    m.cv.wait(lock, [&] { return m.stopping; });
    m.closing = true;
    m.cv.wait(lock, [&] { return m.in_flight == 0; });
  }
  reaper.join();
  if (watcher.joinable()) watcher.join();
  MHD_stop_daemon(daemon);  // closes the listening socket too
  m.listen_fd = -1;
  m.workers.reset();
}

void HttpServer::stop() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.stopping = true;
  }
  m.cv.notify_all();
}

int HttpServer::port() const { return impl_->port; }

}  // namespace clr::serve
