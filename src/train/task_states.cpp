#include "clr/train/task_states.h"

#include <torch/torch.h>

#include "clr/core/error.h"

namespace clr::train {

void TaskStates::add(TensorMap state, int64_t trainable) {
  states_.push_back(std::move(state));
  trainable_.push_back(trainable);
}

void TaskStates::add_live(const TensorMap& live) {
  TensorMap state;
  int64_t trainable = 0;
  for (const auto& [k, v] : live) {
    state.emplace(k, v.detach().to(at::kCPU).clone());
    if (v.requires_grad()) trainable += v.numel();
    v.requires_grad_(false);
  }
  add(std::move(state), trainable);
}

void TaskStates::check(int64_t task) const {
  CLR_CHECK(task >= 0 && task < size(), ConfigError, "task ", task, " has not been learned (", size(), " tasks so far)");
}

const TensorMap& TaskStates::state(int64_t task) const {
  check(task);
  return states_[static_cast<size_t>(task)];
}

int64_t TaskStates::trainable(int64_t task) const {
  check(task);
  return trainable_[static_cast<size_t>(task)];
}

}  // namespace clr::train
