#include "clr/serve/batcher.h"

#include <map>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/log.h"
#include "clr/core/settings_io.h"

namespace clr::serve {

template <class V>
void fields(V& v, BatcherOptions& o) {
  v("max_batch", o.max_batch);
  v("max_wait_ms", o.max_wait_ms);
  v("queue", o.capacity);
}
CLR_SETTINGS_JSON(BatcherOptions)

Batcher::Batcher(Engine& engine, BatcherOptions options) : engine_(engine), options_(options) {
  CLR_CHECK(options_.max_batch >= 1, ConfigError, "--max-batch must be at least 1, got ", options_.max_batch);
  CLR_CHECK(options_.max_wait_ms >= 0, ConfigError, "--max-wait-ms must be >= 0, got ", options_.max_wait_ms);
  CLR_CHECK(options_.capacity >= 1, ConfigError, "the queue capacity must be at least 1, got ", options_.capacity);
  worker_ = std::thread([this] { work(); });
}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

std::optional<std::future<BatchResult>> Batcher::submit(const std::string& task, at::Tensor image, int64_t top_k) {
  Request r;
  r.task = task;
  r.image = std::move(image);
  r.top_k = top_k;
  return enqueue(std::move(r));
}

std::optional<std::future<BatchResult>> Batcher::submit_identify(at::Tensor image, const IdentifyOptions& options) {
  Request r;
  r.image = std::move(image);
  r.top_k = options.top_k;
  r.identify = options;
  return enqueue(std::move(r));
}

std::optional<std::future<BatchResult>> Batcher::enqueue(Request r) {
  std::unique_lock<std::mutex> lock(mu_);
  ++stats_.requests;
  if (stopping_ || static_cast<int64_t>(queue_.size()) >= options_.capacity) {
    ++stats_.rejected;
    return std::nullopt;
  }
  std::future<BatchResult> f = r.done.get_future();
  queue_.push_back(std::move(r));
  stats_.queued = static_cast<int64_t>(queue_.size());
  const bool wake = queue_.size() == 1 || static_cast<int64_t>(queue_.size()) >= options_.max_batch;
  lock.unlock();
  if (wake) wake_.notify_one();
  return f;
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Batcher::work() {
  for (;;) {
    std::vector<Request> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      // The first request waits at most max_wait_ms for others to join it.
      const auto deadline = std::chrono::steady_clock::now() +
                            std::chrono::microseconds(static_cast<int64_t>(options_.max_wait_ms * 1000));
      wake_.wait_until(lock, deadline, [&] {
        return stopping_ || static_cast<int64_t>(queue_.size()) >= options_.max_batch;
      });
      const size_t n = std::min<size_t>(queue_.size(), static_cast<size_t>(options_.max_batch));
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queued = static_cast<int64_t>(queue_.size());
    }
    run_batch(batch);
  }
}

void Batcher::run_batch(std::vector<Request>& batch) {
  // Images of different sizes cannot share a tensor: one forward per size. Requests
  // without a task go to one identify call.
  std::map<int64_t, std::vector<size_t>> by_size;
  std::vector<size_t> unknown;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].identify) {
      unknown.push_back(i);
    } else {
      by_size[batch[i].image.size(1)].push_back(i);
    }
  }
  int64_t failed = 0;
  // Runs `attempt` (which answers its members, or throws and answers none) over all
  // `members`; when it throws, over each alone, so that one bad request (a task whose
  // file went bad, say) does not fail the others, and answers those that still fail
  // with their error.
  auto settle = [&](const std::vector<size_t>& members, const auto& attempt, bool warn) {
    auto tried = [&](const std::vector<size_t>& some, std::string* error, int* kind) {
      try {
        attempt(some);
        return true;
      } catch (const std::exception& e) {
        const auto* err = dynamic_cast<const Error*>(&e);
        *error = e.what();
        *kind = static_cast<int>(err ? err->kind() : ErrorKind::kInternal);
        return false;
      }
    };
    std::string error;
    int kind = 0;
    if (tried(members, &error, &kind)) return;
    if (warn) log::warn("serve: a batch of ", members.size(), " failed (", error, "); running its requests one by one");
    for (size_t i : members) {
      if (members.size() > 1 && tried({i}, &error, &kind)) continue;
      BatchResult r;
      r.error = error;
      r.error_kind = kind;
      batch[i].done.set_value(std::move(r));
      ++failed;
    }
  };
  // Finds the task of some requests' images in one identify call.
  auto find = [&](const std::vector<size_t>& members) {
    IdentifyOptions o = *batch[members.front()].identify;
    std::vector<at::Tensor> images;
    for (size_t i : members) {
      images.push_back(batch[i].image);
      o.top_k = std::max(o.top_k, batch[i].top_k);
    }
    std::vector<Identified> found = engine_.identify(images, o);
    for (size_t j = 0; j < members.size(); ++j) {
      BatchResult r;
      const auto want = static_cast<size_t>(batch[members[j]].top_k);
      if (found[j].top.size() > want) found[j].top.resize(want);
      r.identified = std::move(found[j]);
      batch[members[j]].done.set_value(std::move(r));
    }
  };
  // Runs some requests as one forward.
  auto run = [&](const std::vector<size_t>& members) {
    std::vector<std::string> tasks;
    std::vector<at::Tensor> images;
    int64_t k = 1;
    for (size_t i : members) {
      tasks.push_back(batch[i].task);
      images.push_back(batch[i].image);
      k = std::max(k, batch[i].top_k);
    }
    std::vector<std::vector<TopClass>> top = engine_.predict(tasks, torch::stack(images), k);
    // Answered only once the whole forward succeeded: each promise is set exactly once.
    for (size_t j = 0; j < members.size(); ++j) {
      BatchResult r;
      r.top = std::move(top[j]);
      const auto want = static_cast<size_t>(batch[members[j]].top_k);
      if (r.top.size() > want) r.top.resize(want);
      batch[members[j]].done.set_value(std::move(r));
    }
  };
  if (!unknown.empty()) settle(unknown, find, /*warn=*/false);
  for (const auto& [size, members] : by_size) settle(members, run, /*warn=*/true);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.batches;
  stats_.served += static_cast<int64_t>(batch.size());
  stats_.failed += failed;
  stats_.max_batch_seen = std::max<int64_t>(stats_.max_batch_seen, static_cast<int64_t>(batch.size()));
}

}  // namespace clr::serve
