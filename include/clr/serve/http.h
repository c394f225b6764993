// The HTTP layer of `clr serve` (GNU libmicrohttpd, from Debian): a thin JSON API over the
// engine and the batcher.
//
//   GET  /healthz                      {"status":"ok", "tasks":N, ...}
//   GET  /v1/tasks                     {"tasks":[{"name", "classes", "variant", "input_size"}, ...]}
//   GET  /v1/tasks/{task}              the task's metadata (class names, preprocessing, metrics, ...)
//   POST /v1/tasks/{task}/predict      body: image bytes (JPEG, PNG, BMP, GIF, WebP), whatever the
//                                      Content-Type, or the first part of a multipart form; ?top_k=K
//                                      -> {"task":..., "top":[{"class", "index", "prob"}, ...]}
//   POST /v1/admin/reload              re-reads the store's manifest (Authorization: Bearer TOKEN
//                                      when a token is configured)
//   GET  /v1/stats                     queue, batch, connection and adapter-cache counters
//
// Errors are {"error": {"type": ..., "message": ...}}: 400 bad request or undecodable
// image, 401 bad token, 404 unknown task or path, 405 wrong method (with Allow), 413 body or
// image over the limit, 414 request line too long, 503 queue full or decodes over budget
// (with Retry-After), 500 anything else. Malformed HTTP that never reaches a route (a broken
// request line, headers past the per-connection memory) gets libmicrohttpd's own short
// answer. No request can stop the server.
//
// Connections are multiplexed by a few event-loop threads (epoll), so an idle or slow
// connection holds no thread; a request is handled on one of `http_threads` workers once
// its body is complete. A client that has not sent a request's head within
// `request_timeout_s` of connecting (or of its previous answer), or its body within
// `body_timeout_s` of the head, is cut off; the others keep being served. Pipelined
// requests are answered in order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "clr/serve/batcher.h"

namespace clr::serve {

class Engine;

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                          // 0: any free port (see bind())
  int http_threads = 64;                    // requests handled at once (decode, wait for the batch)
  int max_connections = 1024;               // open connections at once; more are refused
  double request_timeout_s = 10;            // to send a request's head (request line and headers)
  double body_timeout_s = 60;               // to send its body, from the end of the head
  int64_t max_body_bytes = 16ll << 20;      // larger bodies get 413
  int64_t max_pixels = 40'000'000;          // larger images (by their header) get 413
  // Pixels (by their headers) of all the images being decoded at once: a request that
  // would pass it waits (up to decode_wait_ms, then 503), so a few small files that
  // declare huge images cannot take gigabytes together. One image alone always fits.
  int64_t max_decode_pixels = 40'000'000;
  int64_t decode_wait_ms = 10'000;
  int64_t default_top_k = 5;
  std::string admin_token;                  // empty: /v1/admin/reload needs no token
  double watch_seconds = 1.0;               // poll the manifest this often (0: never)
  BatcherOptions batcher;
  // POST /v1/predict (no task given): how the task is found (top_k: default_top_k).
  IdentifyOptions identify;
};
// Keys host, port, http_threads, max_connections, request_timeout_s, body_timeout_s,
// max_body_bytes, max_pixels, max_decode_pixels, decode_wait_ms, top_k, watch_seconds,
// batcher and identify. The admin token is a secret: it is
// never written, and `clr serve` reads it only from a file (--admin-token-file) or
// $CLR_ADMIN_TOKEN, so it can end up neither in a printed or stored configuration nor in
// the process list.
void to_json(settings::Json& j, const HttpOptions& o);
void from_json(const settings::Json& j, HttpOptions& o);

class HttpServer {
 public:
  HttpServer(Engine& engine, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the socket; returns the port. ConfigError when the address cannot be bound
  // (in use, not an address of this machine).
  int bind();
  // Serves until stop() (from another thread or a signal-watching thread); returns at
  // once if stop() came first. Requests being handled are answered before it returns.
  // InternalError if the server cannot start.
  void serve();
  // Makes serve() return; safe from any thread, before or during serve(), and more than once.
  void stop();
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace clr::serve
