// Private to clr_http (src/serve/http.cpp): the parts of the HTTP layer that know
// nothing of libmicrohttpd: answers and the error body, the route table, the decode
// budget and the worker pool.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "clr/core/error.h"
#include "clr/store/store.h"

namespace clr::serve::http_detail {

using nlohmann::ordered_json;

// JSON text of `j`; bytes that are not UTF-8 (a percent-decoded path, say) become U+FFFD
// instead of an exception.
inline std::string text_of(const ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// An answer, made on any thread and sent by libmicrohttpd's.
struct Reply {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

inline Reply error_reply(int status, const std::string& type, const std::string& message) {
  return {status, text_of(ordered_json{{"error", {{"type", type}, {"message", message}}}}), {}};
}

inline Reply json_reply(const ordered_json& j) { return {200, text_of(j), {}}; }

// The status and type of a clr error.
inline std::pair<int, std::string> status_of(ErrorKind kind) {
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

// Every route of the server.
enum class RouteId { kHealthz, kTasks, kTask, kPredict, kIdentify, kReload, kStats };
struct Route {
  const char* method;
  const char* pattern;
  RouteId id;
};
constexpr Route kRoutes[] = {{"GET", "/healthz", RouteId::kHealthz},
                             {"GET", "/v1/tasks", RouteId::kTasks},
                             {"GET", R"(/v1/tasks/([^/]+))", RouteId::kTask},
                             {"POST", R"(/v1/tasks/([^/]+)/predict)", RouteId::kPredict},
                             {"POST", "/v1/predict", RouteId::kIdentify},
                             {"POST", "/v1/admin/reload", RouteId::kReload},
                             {"GET", "/v1/stats", RouteId::kStats}};

inline const std::vector<std::regex>& route_patterns() {
  static const std::vector<std::regex> patterns = [] {
    std::vector<std::regex> r;
    for (const Route& route : kRoutes) r.emplace_back(route.pattern);
    return r;
  }();
  return patterns;
}

// What a request's method and path ask for: a route and its captured task name, or the
// methods the path answers (empty: no such path).
struct Routed {
  std::optional<RouteId> id;
  std::string task;
  std::string allowed;
};

inline Routed route_of(const std::string& method, const std::string& path) {
  Routed out;
  const std::string m = method == "HEAD" ? "GET" : method;  // HEAD: GET's answer without its body
  for (size_t i = 0; i < std::size(kRoutes); ++i) {
    std::smatch match;
    if (!std::regex_match(path, match, route_patterns()[i])) continue;
    if (m == kRoutes[i].method) {
      out.id = kRoutes[i].id;
      if (match.size() > 1) out.task = match[1];
      return out;
    }
    if (out.allowed.find(kRoutes[i].method) == std::string::npos) {
      out.allowed += (out.allowed.empty() ? "" : ", ") + std::string(kRoutes[i].method);
    }
  }
  return out;
}

inline ordered_json task_line(const store::TaskEntry& e) {
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

// A fixed set of threads running posted jobs in order; the destructor finishes the
// queue. Jobs must not throw.
class Workers {
 public:
  explicit Workers(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
  }
  ~Workers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;
  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return closing_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool closing_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace clr::serve::http_detail
