// Several tasks of a ReprogrammedNet trained in one pass (issue 14: many tasks at once).
//
// Under CLR the backbone is frozen and tasks are independent, so K tasks can share
// every backbone convolution: a batch holds each task's own samples one after another
// (sizes[k] of task k), the backbone's convs run once over all of them, and at every
// adapted site each task's slice goes through its own CLR kernel (or residual 1x1),
// its own BatchNorm — batch statistics of its own samples in training, its own running
// statistics, updated with the module's momentum — and its own head. A task's slice
// therefore computes what the task alone would: the same kernels, statistics and
// logits, up to the floating-point order of the shared convolutions.
//
// The states are kept apart from the network's single live state: the network's
// modules are read (backbone weights, BatchNorm eps and momentum), never written.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "clr/adapters/reprogram.h"
#include "clr/core/tensor_map.h"

namespace clr::adapters {

class ParallelTasks : public models::ConvHook {
 public:
  // `net` gives the backbone, variant and norm mode; `states` are task states in
  // ReprogrammedNet::task_state()'s format (checked against net's keys). They are
  // copied to the net's device; the keys the net trains (trainable_keys()) require grad.
  ParallelTasks(ReprogrammedNet net, const std::vector<TensorMap>& states);
  ParallelTasks(const ParallelTasks&) = delete;
  ParallelTasks& operator=(const ParallelTasks&) = delete;

  // Logits of every task present in the batch: `x` holds sizes[k] samples of task
  // tasks[k], one task after another; result[k] is [sizes[k], classes of tasks[k]].
  std::vector<at::Tensor> forward(const at::Tensor& x, const std::vector<size_t>& tasks,
                                  const std::vector<int64_t>& sizes);
  // Train mode: BatchNorm uses batch statistics and updates the task's running ones
  // (norm mode task only, as the net does).
  void set_training(bool on) { training_ = on; }
  // The tensors task k's optimiser updates.
  std::vector<at::Tensor> trainable_parameters(size_t k) const;
  // A CPU copy of task k's state (ReprogrammedNet::task_state()'s keys).
  TensorMap task_state(size_t k) const;

  // ConvHook, during forward().
  at::Tensor after_conv(size_t site, const at::Tensor& input, const at::Tensor& output) override;
  at::Tensor norm(size_t site, torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) override;

 private:
  struct Task {
    TensorMap live;                        // every state key -> tensor on the device
    std::vector<at::Tensor> kernel;        // per site: CLR kernel or residual 1x1 (undefined: none)
    std::vector<std::vector<at::Tensor>> norm;  // per site: weight, bias, mean, var, count (undefined: the backbone's)
  };
  std::vector<at::Tensor> split(const at::Tensor& x) const;

  ReprogrammedNet net_;
  std::vector<Task> tasks_;
  bool training_ = true;
  // During forward(): the tasks present and their sample counts.
  std::vector<size_t> active_;
  std::vector<int64_t> sizes_;
};

}  // namespace clr::adapters
