#include "clr/data/dataset.h"

#include <algorithm>
#include <map>
#include <random>

#include <torch/torch.h>

#include "clr/core/error.h"

namespace clr::data {

std::string Split::describe(size_t i, const std::string& origin) const {
  if (!preloaded() && i < paths.size()) return "file '" + paths[i] + "'";
  return detail::concat("image ", i, " of ", origin);
}

Split Split::subset(const std::vector<size_t>& indices) const {
  Split out;
  for (size_t i : indices) {
    CLR_ASSERT(i < size(), "subset index ", i, " out of range ", size());
    out.labels.push_back(labels[i]);
    if (!preloaded()) out.paths.push_back(paths[i]);
  }
  if (preloaded()) {
    std::vector<int64_t> idx(indices.begin(), indices.end());
    out.images = images.index_select(0, torch::tensor(idx, torch::kLong));
  }
  return out;
}

void complete_splits(TaskData& task, const SplitOptions& options) {
  CLR_CHECK(task.train.size() > 0, ConfigError, "task '", task.name, "' (", task.origin, ") has no training images");
  if (task.val.size() == 0) {
    CLR_CHECK(options.val_fraction > 0 && options.val_fraction < 1, ConfigError, "task '", task.name,
              "' has no val split and val_fraction is ", options.val_fraction, "; expected a value in (0, 1)");
    // Stratified: the same fraction of every class, chosen by a seeded shuffle.
    std::map<int64_t, std::vector<size_t>> by_class;
    for (size_t i = 0; i < task.train.size(); ++i) by_class[task.train.labels[i]].push_back(i);
    std::mt19937_64 rng(options.seed ^ std::hash<std::string>{}(task.name));
    std::vector<size_t> train_idx, val_idx;
    for (auto& [label, idx] : by_class) {
      std::shuffle(idx.begin(), idx.end(), rng);
      size_t n_val = static_cast<size_t>(options.val_fraction * static_cast<double>(idx.size()) + 0.5);
      if (idx.size() >= 2) n_val = std::clamp<size_t>(n_val, 1, idx.size() - 1);
      else n_val = 0;
      val_idx.insert(val_idx.end(), idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(n_val));
      train_idx.insert(train_idx.end(), idx.begin() + static_cast<std::ptrdiff_t>(n_val), idx.end());
    }
    std::sort(train_idx.begin(), train_idx.end());
    std::sort(val_idx.begin(), val_idx.end());
    task.val = task.train.subset(val_idx);
    task.train = task.train.subset(train_idx);
  }
  if (task.test.size() == 0) {
    CLR_CHECK(options.allow_missing_test, ConfigError, "task '", task.name, "' (", task.origin,
              ") has no test split; add one, or allow it explicitly (--allow-missing-test / data.allow_missing_test) "
              "to report accuracy on the val split");
    task.test = task.val;
    task.test_is_val = true;
  }
}

Split balanced_subset(const Split& split, int64_t num_classes, int64_t cap, uint64_t seed) {
  if (cap <= 0 || static_cast<int64_t>(split.size()) <= cap) return split;
  std::vector<std::vector<size_t>> by_class(static_cast<size_t>(std::max<int64_t>(num_classes, 1)));
  for (size_t i = 0; i < split.size(); ++i) {
    const auto l = static_cast<size_t>(split.labels[i]);
    if (l >= by_class.size()) by_class.resize(l + 1);
    by_class[l].push_back(i);
  }
  std::mt19937_64 rng(seed);
  for (auto& idx : by_class) std::shuffle(idx.begin(), idx.end(), rng);
  // Round-robin over classes until the cap is reached: as balanced as the class sizes allow.
  std::vector<size_t> chosen;
  for (size_t round = 0; static_cast<int64_t>(chosen.size()) < cap; ++round) {
    bool any = false;
    for (auto& idx : by_class) {
      if (round < idx.size() && static_cast<int64_t>(chosen.size()) < cap) {
        chosen.push_back(idx[round]);
        any = true;
      }
    }
    if (!any) break;
  }
  std::sort(chosen.begin(), chosen.end());
  return split.subset(chosen);
}

}  // namespace clr::data
