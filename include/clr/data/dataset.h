// Task sequences: what a continual-learning run learns, one task after another.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace clr::data {

// One split of a task: images as files, or preloaded as uint8 [N, H, W, C]
// (C = 1 or 3) arrays (IDX, CIFAR). labels[i] indexes TaskData::classes.
struct Split {
  std::vector<std::string> paths;
  at::Tensor images;
  std::vector<int64_t> labels;

  size_t size() const { return labels.size(); }
  bool preloaded() const { return images.defined(); }
  // "file 'x.png'" or "image 17 of <origin>", for messages.
  std::string describe(size_t i, const std::string& origin) const;
  // The subset at `indices` (in that order).
  Split subset(const std::vector<size_t>& indices) const;
};

struct TaskData {
  std::string name;
  std::string origin;                // where it came from, for messages ("imagefolder 'ROOT/cats'")
  std::vector<std::string> classes;  // label i is classes[i]
  Split train, val, test;
  bool test_is_val = false;  // set by complete_splits when val stands in for a missing test split
};

using Sequence = std::vector<TaskData>;

// How missing splits are completed (see complete_splits).
struct SplitOptions {
  // A task without a val split gets this fraction of its train split (stratified,
  // deterministic for a seed).
  double val_fraction = 0.1;
  // Without this a task with no test split is an error; with it the val split is
  // also used as the test split (and results say so).
  bool allow_missing_test = false;
  uint64_t seed = 0;
};

// Carves a missing val split from train (per class, seeded) and checks the test
// split. Throws ConfigError naming the task.
void complete_splits(TaskData& task, const SplitOptions& options);

// Class-balanced, capped subsample (the authors' sampler): at most `cap` images,
// spread as evenly as the classes allow, chosen with a seeded shuffle. cap <= 0 keeps all.
Split balanced_subset(const Split& split, int64_t num_classes, int64_t cap, uint64_t seed);

}  // namespace clr::data
