// One interface for a continual-learning method. The runner drives any method
// through it: begin a task, compute the loss of training batches, pick the best
// validation state, end the task, and predict for any task seen so far.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "clr/core/tensor_map.h"

namespace clr::data {
struct PreparedSplit;
}

namespace clr::train {

struct TaskInfo {
  int64_t index = 0;  // 0-based position in the sequence
  std::string name;
  int64_t num_classes = 0;
};

// What a method may use when it closes a task: the task's training images (for a
// Fisher estimate, a replay buffer, stored logits) and the evaluation transform.
struct TaskEnd {
  const data::PreparedSplit* train = nullptr;  // never null when the runner calls
  int64_t batch_size = 32;
  int64_t crop = 0;  // > 0: centred crop x crop windows, as in evaluation
};

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  // Prepares the model for a new task (new head, fresh task state, ...).
  virtual void begin_task(const TaskInfo& task) = 0;
  // Parameters the optimiser updates for the current task.
  virtual std::vector<at::Tensor> trainable_parameters() = 0;
  // Training loss for a batch of the current task (the model is in train mode).
  virtual at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) = 0;
  // Copy of / return to the current task's trainable state (for best-validation selection).
  virtual TensorMap snapshot() = 0;
  virtual void restore(const TensorMap& state) = 0;
  // Called after every optimiser step (path-integral importance, ...).
  virtual void after_step() {}
  // Called before each training epoch of the current task (0-based, of at most
  // `epochs`): methods that train in stages (ConFiT) choose what trains here.
  virtual void begin_epoch(int64_t epoch, int64_t epochs) {}
  // Called once the current task's final state is chosen.
  virtual void end_task(const TaskEnd& end) = 0;
  // Eval-mode logits of `images` for task `task` (any task seen so far).
  virtual at::Tensor predict(int64_t task, const at::Tensor& images) = 0;
  // What has to be stored for task `task` (saved with the run).
  virtual TensorMap task_state(int64_t task) const = 0;
  // True when learning a task may change the stored state of earlier tasks (old heads
  // trained by replay): the runner then saves every task's state again.
  virtual bool changes_old_task_states() const { return false; }
  // State kept across tasks beyond the per-task states (Fisher and anchors, path
  // integrals, the replay buffer): saved with the run and counted in stored bytes.
  virtual TensorMap method_state() const { return {}; }
  // Non-empty when every task's state runs on the unchanged shared backbone, so that
  // the adapter store can hold it and the engine serve it: the store variant ("clr",
  // "clr-full", "residual", "linear").
  virtual std::string store_variant() const { return ""; }
  // The CLR kernel size of the stored states (clr variants).
  virtual int64_t store_kernel_size() const { return 3; }
  // Resuming a stopped run (eval/checkpoint.h). A resumable method's checkpoint() is
  // everything it holds after its last finished task (every task's state as
  // `task.<i>.<key>`, and what it keeps across tasks), resume() puts one back into a
  // method built as the stopped run's was, with `done` the tasks it had finished; and
  // its snapshot() with its step_state() is all its training state within a task, so
  // that a task can go on from any epoch. The others learn a stopped run again from
  // task 1. The `task.<i>.` tensors of a task must not change after the task ends,
  // unless changes_old_task_states() (the runner then writes them once).
  virtual bool resumable() const { return false; }
  virtual TensorMap checkpoint() const { return {}; }
  virtual void resume(const std::vector<TaskInfo>& done, const TensorMap& state);
  // Training state within a task, beyond snapshot(), that steps change and that best-
  // epoch selection must not rewind (SI's path integral, the replay buffer's random
  // draws): kept with a task's epoch checkpoint and put back, after restore(), when a
  // stopped task goes on.
  virtual TensorMap step_state() const { return {}; }
  virtual void load_step_state(const TensorMap& /*state*/) {}
  // Extra parameters this method holds for task `task` (trainable values, as the paper counts).
  virtual int64_t extra_params(int64_t task) const = 0;
  // Parameters of the shared backbone (the denominator of extra-parameter fractions).
  virtual int64_t backbone_params() const = 0;
  virtual std::string backbone_fingerprint() const = 0;
  virtual void set_training(bool on) = 0;
  virtual c10::Device device() const = 0;
};

}  // namespace clr::train
