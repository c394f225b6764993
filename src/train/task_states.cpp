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

std::vector<TensorMap> split_task_keys(const TensorMap& state, int64_t tasks) {
  std::vector<TensorMap> out(static_cast<size_t>(tasks));
  for (const auto& [key, value] : state) {
    const size_t dot = key.find('.', 5);
    int64_t index = -1;
    if (key.rfind("task.", 0) == 0 && dot != std::string::npos && dot > 5 &&
        key.find_first_not_of("0123456789", 5) == dot && dot - 5 < 10) {
      index = std::stoll(key.substr(5, dot - 5));
    }
    CLR_CHECK(index >= 0 && index < tasks, ConfigError, "checkpoint tensor '", key, "' is not 'task.<0..", tasks - 1,
              ">.<name>'");
    out[static_cast<size_t>(index)].emplace(key.substr(dot + 1), value);
  }
  for (int64_t t = 0; t < tasks; ++t) {
    CLR_CHECK(!out[static_cast<size_t>(t)].empty(), ConfigError, "the checkpoint holds no state for task ", t + 1);
  }
  return out;
}

}  // namespace clr::train
