// The states of the tasks a method has learned (what Method::task_state returns) and
// the trainable values each holds (Method::extra_params), for the methods that keep
// one state per task beside a shared network: clr and its variants, efts, ccll.
#pragma once

#include <cstdint>
#include <vector>

#include "clr/core/tensor_map.h"

namespace clr::train {

class TaskStates {
 public:
  // Appends `state` (kept as given: callers pass CPU tensors) as the next task's.
  void add(TensorMap state, int64_t trainable);
  // Appends a CPU copy of the live tensors `live` as the next task's state; the tensors
  // that require grad are the task's trainable values, and stop requiring it.
  void add_live(const TensorMap& live);
  // ConfigError "task N has not been learned" for a task not learned yet.
  const TensorMap& state(int64_t task) const;
  int64_t trainable(int64_t task) const;
  int64_t size() const { return static_cast<int64_t>(states_.size()); }
  // Every task's state as `task.<i>.<key>` and the trainable counts as
  // `task_trainable` (int64 [tasks]): what resume() puts back.
  TensorMap checkpoint() const;
  // Appends the `tasks` task states of a checkpoint() and returns its other tensors.
  // ConfigError for a missing task or count.
  TensorMap resume(const TensorMap& checkpoint, int64_t tasks);

 private:
  void check(int64_t task) const;
  std::vector<TensorMap> states_;
  std::vector<int64_t> trainable_;
};

// A checkpoint's `task.<i>.<key>` tensors (i = 0..tasks-1) as one map per task, keys
// without the prefix. ConfigError for a key of another form or index, or a task with
// no tensors.
std::vector<TensorMap> split_task_keys(const TensorMap& state, int64_t tasks);

}  // namespace clr::train
