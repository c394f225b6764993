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
  for (const auto& [k, v] : checkpoint) (task_key_index(k) >= 0 ? own : rest).emplace(k, v);
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

int64_t task_key_index(const std::string& key, std::string* name) {
  const size_t dot = key.find('.', 5);
  if (key.rfind("task.", 0) != 0 || dot == std::string::npos || dot == 5 || dot - 5 >= 10 ||
      key.find_first_not_of("0123456789", 5) != dot) {
    return -1;
  }
  if (name != nullptr) *name = key.substr(dot + 1);
  return std::stoll(key.substr(5, dot - 5));
}

std::vector<TensorMap> split_task_keys(const TensorMap& state, int64_t tasks) {
  std::vector<TensorMap> out(static_cast<size_t>(tasks));
  for (const auto& [key, value] : state) {
    std::string name;
    const int64_t index = task_key_index(key, &name);
    CLR_CHECK(index >= 0 && index < tasks, ConfigError, "checkpoint tensor '", key, "' is not 'task.<0..", tasks - 1,
              ">.<name>'");
    out[static_cast<size_t>(index)].emplace(name, value);
  }
  for (int64_t t = 0; t < tasks; ++t) {
    CLR_CHECK(!out[static_cast<size_t>(t)].empty(), ConfigError, "the checkpoint holds no state for task ", t + 1);
  }
  return out;
}

at::Tensor take_tensor(TensorMap& from, const std::string& key, const at::Tensor& like) {
  const auto it = from.find(key);
  CLR_CHECK(it != from.end(), ConfigError, "the checkpoint has no '", key, "' ", describe(like));
  CLR_CHECK(it->second.sizes() == like.sizes(), ConfigError, "checkpoint tensor '", key, "' is ", describe(it->second),
            ", not of the shape of ", describe(like));
  at::Tensor t = std::move(it->second);
  from.erase(it);
  return t;
}

void check_task_state(int64_t task, const TensorMap& state, const TensorMap& like) {
  CLR_CHECK(state.size() == like.size(), ConfigError, "the checkpoint's state of task ", task + 1, " has ",
            state.size(), " tensors, not ", like.size());
  for (const auto& [k, v] : like) {
    const auto it = state.find(k);
    CLR_CHECK(it != state.end() && it->second.sizes() == v.sizes(), ConfigError, "the checkpoint's state of task ",
              task + 1, " has no '", k, "' ", describe(v));
  }
}

TensorMap resume_base(TensorMap& rest, const TensorMap& live) {
  torch::NoGradGuard ng;
  TensorMap base;
  for (const auto& [k, v] : live) {
    const at::Tensor b = take_tensor(rest, k, v);
    v.copy_(b);
    base.emplace(k, b.to(at::kCPU).clone());
  }
  return base;
}

void check_all_taken(const TensorMap& rest, const std::string& method) {
  CLR_CHECK(rest.empty(), ConfigError, "checkpoint tensor '", rest.empty() ? "" : rest.begin()->first,
            "' is not one of ", method, "'s");
}

}  // namespace clr::train
