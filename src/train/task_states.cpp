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

TensorMap TaskStates::checkpoint() const {
  TensorMap out;
  for (int64_t t = 0; t < size(); ++t) {
    for (const auto& [k, v] : state(t)) out.emplace(detail::concat("task.", t, ".", k), v);
  }
  out.emplace("task_trainable", torch::tensor(trainable_, torch::kLong));
  return out;
}

TensorMap TaskStates::resume(const TensorMap& checkpoint, int64_t tasks) {
  TensorMap own, rest;
  for (const auto& [k, v] : checkpoint) (k.rfind("task.", 0) == 0 ? own : rest).emplace(k, v);
  const auto it = rest.find("task_trainable");
  if (tasks == 0 && it == rest.end()) return rest;  // the run's first checkpoint: nothing learned yet
  CLR_CHECK(it != rest.end() && it->second.numel() == tasks, ConfigError,
            "the checkpoint has no trainable-value counts for its ", tasks, " tasks ('task_trainable')");
  const at::Tensor counts = it->second.to(torch::kCPU, torch::kLong).contiguous();
  rest.erase(it);
  std::vector<TensorMap> parts = split_task_keys(own, tasks);
  for (int64_t t = 0; t < tasks; ++t) add(std::move(parts[static_cast<size_t>(t)]), counts[t].item<int64_t>());
  return rest;
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
