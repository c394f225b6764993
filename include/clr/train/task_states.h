// The states of the tasks a method has learned (what Method::task_state returns) and
// the trainable values each holds (Method::extra_params), for the methods that keep
// one state per task beside a shared network: clr and its variants, efts, ccll.
#pragma once

#include <cstdint>
#include <string>
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

// Method::checkpoint() keys. The task index i of `task.<i>.<name>` (and `name` in
// *name), or -1 for a key of another form.
int64_t task_key_index(const std::string& key, std::string* name = nullptr);

// A checkpoint's `task.<i>.<key>` tensors (i = 0..tasks-1) as one map per task, keys
// without the prefix. ConfigError for a key of another form or index, or a task with
// no tensors.
std::vector<TensorMap> split_task_keys(const TensorMap& state, int64_t tasks);

// The tensor `key` of a checkpoint's `from`, taken out of it: ConfigError when it is
// missing or not of the shape of `like`.
at::Tensor take_tensor(TensorMap& from, const std::string& key, const at::Tensor& like);

// ConfigError unless `state`, a checkpoint's state of task `task` (0-based), holds
// exactly the tensors of `like` (the method's live tensors for it), each of its shape.
void check_task_state(int64_t task, const TensorMap& state, const TensorMap& like);

// Puts the base a checkpoint holds (EFTs', CCLL's: the network the first task learned)
// into `live`, the method's live base tensors by key, taking them out of `rest`; returns
// CPU copies (what the method keeps as its method_state). ConfigError as take_tensor.
TensorMap resume_base(TensorMap& rest, const TensorMap& live);

// ConfigError naming a tensor left in `rest`: one that `method`'s resume did not take.
void check_all_taken(const TensorMap& rest, const std::string& method);

}  // namespace clr::train
