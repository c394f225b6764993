// A bounded request queue in front of the engine: requests of any tasks are collected
// for up to max_wait_ms (or until max_batch are waiting) and run as one mixed-task
// forward pass by a single worker thread; requests without a task (task inference) in
// the same batch go through one Engine::identify call. submit() never blocks: a full queue is
// refused at once so the caller can answer 503.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

#include "clr/serve/engine.h"

namespace clr::serve {

struct BatcherOptions {
  int64_t max_batch = 64;
  double max_wait_ms = 2;
  int64_t capacity = 1024;  // requests waiting, at most
};
// Keys max_batch, max_wait_ms, queue.
void to_json(settings::Json& j, const BatcherOptions& o);
void from_json(const settings::Json& j, BatcherOptions& o);

struct BatchResult {
  std::vector<TopClass> top;
  std::optional<Identified> identified;  // submit_identify's answer
  std::string error;       // non-empty when the batch failed for this request
  int error_kind = 0;      // ErrorKind of the failure
};

struct BatcherStats {
  int64_t requests = 0;  // submitted
  int64_t rejected = 0;  // refused: queue full
  int64_t served = 0;    // run through the engine (failed ones included)
  int64_t failed = 0;    // whose batch raised an error
  int64_t batches = 0, queued = 0, max_batch_seen = 0;
  double mean_batch() const { return batches ? static_cast<double>(served) / static_cast<double>(batches) : 0; }
};

class Batcher {
 public:
  Batcher(Engine& engine, BatcherOptions options);
  ~Batcher();  // finishes the requests already queued, then stops the worker
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues one preprocessed image (uint8 [3, S, S]) for `task`; nullopt when the
  // queue is full.
  std::optional<std::future<BatchResult>> submit(const std::string& task, at::Tensor image, int64_t top_k);
  // Queues one decoded image (uint8 [H, W, 3]) whose task the engine finds (`options`,
  // the same for every such request of a server: those of one batch run together with
  // the largest top_k); nullopt when the queue is full.
  std::optional<std::future<BatchResult>> submit_identify(at::Tensor image, const IdentifyOptions& options);
  BatcherStats stats() const;
  const BatcherOptions& options() const { return options_; }

 private:
  struct Request {
    std::string task;
    at::Tensor image;
    int64_t top_k = 1;
    std::optional<IdentifyOptions> identify;  // set: no task, find it
    std::promise<BatchResult> done;
  };
  std::optional<std::future<BatchResult>> enqueue(Request r);
  void work();
  void run_batch(std::vector<Request>& batch);

  Engine& engine_;
  BatcherOptions options_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Request> queue_;
  BatcherStats stats_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace clr::serve
