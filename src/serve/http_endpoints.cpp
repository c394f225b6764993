// The answers of clr serve's routes (docs/SERVING.md): health, tasks, prediction with a
// task and without one (queued in the Batcher), reload and statistics.
#include <chrono>
#include <cstdlib>
#include <future>
#include <optional>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/data/image.h"
#include "clr/serve/engine.h"
#include "detail/http_impl.h"
#include "detail/http_parts.h"

namespace clr::serve {

using namespace http_detail;
using nlohmann::ordered_json;

Reply HttpServer::Impl::handle(const Request& r) {
  switch (*r.routed.id) {
    case RouteId::kHealthz: {
      const BatcherStats b = batcher->stats();
      const double up = std::chrono::duration<double>(Clock::now() - started).count();
      return json_reply({{"status", "ok"},
                         {"tasks", engine.tasks().size()},
                         {"backbone", {{"arch", engine.backbone().arch}, {"fingerprint", engine.backbone().fingerprint}}},
                         {"device", engine.device()},
                         {"queue", b.queued},
                         {"uptime_seconds", up}});
    }
    case RouteId::kTasks: {
      ordered_json tasks = ordered_json::array();
      for (const auto& e : engine.tasks()) tasks.push_back(task_line(e));
      return json_reply({{"tasks", tasks}});
    }
    case RouteId::kTask: {
      const auto entry = engine.task(r.routed.task);
      if (!entry) return error_reply(404, "not_found", "no task '" + r.routed.task + "'; GET /v1/tasks lists them");
      const store::Adapter a = engine.describe(r.routed.task);
      return {200, text_of(ordered_json::parse(store::adapter_json(a, &*entry))), {}};
    }
    case RouteId::kPredict: return predict(r);
    case RouteId::kIdentify: return identify(r);
    case RouteId::kReload: {
      if (!options.admin_token.empty() && r.authorization != "Bearer " + options.admin_token) {
        return error_reply(401, "unauthorized", "POST /v1/admin/reload needs 'Authorization: Bearer TOKEN'");
      }
      const size_t n = engine.reload();
      ++reloads;
      return json_reply({{"status", "reloaded"}, {"tasks", n}});
    }
    case RouteId::kStats: {
      const BatcherStats b = batcher->stats();
      const CacheStats c = engine.cache_stats();
      size_t open = 0;
      {
        std::lock_guard<std::mutex> lock(conns_mu);
        open = conns.size();
      }
      return json_reply({{"requests", b.requests},
                         {"rejected", b.rejected},
                         {"served", b.served},
                         {"failed", b.failed},
                         {"batches", b.batches},
                         {"mean_batch", b.mean_batch()},
                         {"max_batch", b.max_batch_seen},
                         {"queued", b.queued},
                         {"http_errors", http_errors.load()},
                         {"reloads", reloads.load()},
                         {"connections", {{"open", open}, {"opened", connections_opened.load()}, {"cut_off", cut_off.load()}}},
                         {"cache",
                          {{"bytes", c.bytes},
                           {"budget", c.budget},
                           {"entries", c.entries},
                           {"hits", c.hits},
                           {"misses", c.misses},
                           {"evictions", c.evictions}}}});
    }
  }
  return error_reply(500, "internal", "unrouted request");
}

std::variant<Reply, std::pair<at::Tensor, int64_t>> HttpServer::Impl::decoded_body(const Request& r) {
  int64_t top_k = options.default_top_k;
  if (r.top_k) {
    const std::string& v = *r.top_k;
    char* end = nullptr;
    const long long k = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || k < 1 || k > 100000) {
      return error_reply(400, "bad_request", "top_k must be an integer in [1, 100000], got '" + v + "'");
    }
    top_k = k;
  }
  const std::string& body = r.body;
  if (body.empty()) return error_reply(400, "bad_request", "empty body: POST the image's bytes");
  // The header's size first, before anything is allocated for what it claims.
  const auto wh = data::declared_size(body);
  if (options.max_pixels > 0 && wh && wh->first * wh->second > options.max_pixels) {
    return error_reply(413, "image_too_large",
                       detail::concat("image 'the request body' is ", wh->first, "x", wh->second,
                                      " pixels, more than the limit of ", options.max_pixels));
  }
  // What the header declares, or for a header that says nothing readable the bytes
  // themselves (the decoder will refuse it, or it is small).
  const int64_t pixels = wh ? wh->first * wh->second : static_cast<int64_t>(body.size());
  if (!decoding->take(pixels, std::chrono::milliseconds(options.decode_wait_ms))) {
    Reply busy = error_reply(503, "overloaded",
                             detail::concat("images of ", options.max_decode_pixels,
                                            " pixels are being decoded already; retry later"));
    busy.headers.emplace_back("Retry-After", "1");
    return busy;
  }
  try {
    struct Give {
      DecodeBudget& b;
      int64_t n;
      ~Give() { b.give(n); }
    } give{*decoding, pixels};
    return std::make_pair(data::decode_image(body, "the request body"), top_k);
  } catch (const FormatError& e) {
    return error_reply(400, "bad_image", e.what());
  }
}

std::variant<Reply, BatchResult> HttpServer::Impl::await(std::optional<std::future<BatchResult>> future) {
  if (!future) {
    Reply full = error_reply(503, "overloaded", detail::concat("the request queue is full (", batcher->options().capacity,
                                                               " waiting); retry later"));
    full.headers.emplace_back("Retry-After", "1");
    return full;
  }
  return future->get();
}

Reply HttpServer::Impl::predict(const Request& r) {
  const std::string& name = r.routed.task;
  if (!engine.task(name)) return error_reply(404, "not_found", "no task '" + name + "'; GET /v1/tasks lists them");
  auto got = decoded_body(r);
  if (auto* reply = std::get_if<Reply>(&got)) return std::move(*reply);
  const auto& [decoded, top_k] = std::get<1>(got);
  const at::Tensor image = engine.preprocess(name, decoded);  // a bad store file is a 500, not the client's fault
  auto waited = await(batcher->submit(name, image, top_k));
  if (auto* reply = std::get_if<Reply>(&waited)) return std::move(*reply);
  const BatchResult& result = std::get<BatchResult>(waited);
  if (!result.error.empty()) {
    const auto [status, type] = status_of(static_cast<ErrorKind>(result.error_kind));
    return error_reply(status, type, result.error);
  }
  ordered_json top = ordered_json::array();
  for (const TopClass& c : result.top) top.push_back({{"class", c.name}, {"index", c.index}, {"prob", c.prob}});
  return json_reply({{"task", name}, {"top", top}});
}

// POST /v1/predict: the task found by the engine (task inference), batched with the
// other requests of the moment; "task": null when no task is confident enough.
Reply HttpServer::Impl::identify(const Request& r) {
  auto got = decoded_body(r);
  if (auto* reply = std::get_if<Reply>(&got)) return std::move(*reply);
  IdentifyOptions io = options.identify;
  io.top_k = std::get<1>(got).second;
  auto waited = await(batcher->submit_identify(std::get<1>(got).first, io));
  if (auto* reply = std::get_if<Reply>(&waited)) return std::move(*reply);
  const BatchResult& result = std::get<BatchResult>(waited);
  if (!result.error.empty()) {
    const auto kind = static_cast<ErrorKind>(result.error_kind);
    // A task without statistics, or an empty store: the store's state, not the request's.
    if (kind == ErrorKind::kIncompatible || kind == ErrorKind::kNotFound) {
      return error_reply(409, "task_inference_unavailable", result.error);
    }
    const auto [status, type] = status_of(kind);
    return error_reply(status, type, result.error);
  }
  ordered_json j = *result.identified;
  j["method"] = io.method;
  return json_reply(j);
}

}  // namespace clr::serve
