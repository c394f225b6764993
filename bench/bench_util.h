// What the benchmark programs share: timing a step after warm-up (synchronising the
// device, so GPU work is counted), order statistics of the timings, and the
// environment every printed figure is recorded with (machine, threads, LibTorch,
// compiler, build type). Header-only; only bench/ includes it.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

#include <nlohmann/json.hpp>
#include <c10/core/Device.h>
#include <torch/cuda.h>

#include "clr/core/runtime.h"
#include "clr/core/torch_compat.h"

namespace clr::bench {

// Order statistics of a set of timings or rates.
struct Stats {
  double median = 0, min = 0, max = 0, p10 = 0, p90 = 0;
};

// Stats of `v` (not empty); quantiles are the nearest ranks.
inline Stats summarise(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)]; };
  return {at(0.5), v.front(), v.back(), at(0.1), at(0.9)};
}

// Waits for the device's queued work (a no-op on the CPU).
inline void sync(const c10::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

// Seconds of each of `steps` timed calls of `f`, after `warmup` untimed ones.
template <typename F>
std::vector<double> seconds(F&& f, int warmup, int steps, const c10::Device& dev) {
  for (int i = 0; i < warmup; ++i) f();
  sync(dev);
  std::vector<double> out;
  for (int i = 0; i < steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    sync(dev);
    out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return out;
}

// `items` per second of each timing.
inline std::vector<double> rates(const std::vector<double>& secs, double items) {
  std::vector<double> r;
  for (double s : secs) r.push_back(items / s);
  return r;
}

inline nlohmann::ordered_json stats_json(const Stats& s) {
  return {{"median", s.median}, {"p10", s.p10}, {"p90", s.p90}, {"min", s.min}, {"max", s.max}};
}

// The machine and build a figure was measured on, appended to `j`.
inline void add_environment(nlohmann::ordered_json& j, int threads) {
  j["machine"] = runtime::machine_description();
  j["threads"] = threads;
  j["libtorch"] = compat::torch_version();
  j["compiler"] = __VERSION__;
#ifdef NDEBUG
  j["build"] = "release";
#else
  j["build"] = "debug";
#endif
}

}  // namespace clr::bench
