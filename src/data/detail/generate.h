// Private to src/data: how a generated task (synthetic.h, formula.h) is drawn. Every
// image comes from its own random stream, seeded by (seed, split, class), so a task is
// the same whatever the thread count.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "clr/data/dataset.h"

namespace clr::data::gen {

// The stream of (seed, split, class): independent of thread scheduling.
inline std::mt19937_64 class_stream(uint64_t seed, int split, int64_t cls) {
  return std::mt19937_64(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(split * 100003 + cls));
}

inline double uniform(std::mt19937_64& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

// A task of `classes` classes with n_train / n_val / n_test images per class, each
// made by make(class, rng) -> uint8 [S, S, C], classes drawn in parallel.
template <typename MakeImage>
TaskData generate(const std::string& name, const std::string& origin, int64_t classes, int64_t n_train, int64_t n_val,
                  int64_t n_test, uint64_t seed, MakeImage&& make) {
  TaskData t;
  t.name = name;
  t.origin = origin;
  const std::pair<Split*, int64_t> splits[] = {{&t.train, n_train}, {&t.val, n_val}, {&t.test, n_test}};
  for (int si = 0; si < 3; ++si) {
    Split* split = splits[si].first;
    const int64_t per_class = splits[si].second;  // not a structured binding: the lambda below uses it
    if (per_class <= 0) continue;
    std::vector<at::Tensor> images(static_cast<size_t>(classes * per_class));
    at::parallel_for(0, classes, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        std::mt19937_64 rng = class_stream(seed, si, c);
        for (int64_t i = 0; i < per_class; ++i) images[static_cast<size_t>(c * per_class + i)] = make(c, rng);
      }
    });
    split->images = at::stack(images);
    for (int64_t c = 0; c < classes; ++c) {
      for (int64_t i = 0; i < per_class; ++i) split->labels.push_back(c);
    }
  }
  return t;
}

}  // namespace clr::data::gen
