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
//
// When every task is in the batch with the same number of samples (the usual step), the
// batch is put sample-major (row b * K + k is task k's b-th sample), so that at an adapted
// site the activations [B * K, C, H, W] are [B, K * C, H, W]: all K tasks' CLR kernels run
// as one depthwise convolution over K * C channels and all their BatchNorms as one over
// K * C channels (each task's statistics from its own samples, its running statistics
// views into one stacked buffer), instead of K convolutions, K BatchNorms and a
// concatenation per site. Other batches (a task finished, a short last batch) go task
// by task.
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
  // [B * K, C, H, W] sample-major <-> [B, K * C, H, W], in the tensor's memory format.
  at::Tensor to_grouped(const at::Tensor& x) const;
  at::Tensor from_grouped(const at::Tensor& g) const;

  ReprogrammedNet net_;
  std::vector<Task> tasks_;
  bool training_ = true;
  // Per site, every task's running statistics in one buffer (K * C; the count K) whose
  // slices are the tasks' own tensors (undefined where the site has none).
  std::vector<at::Tensor> stacked_mean_, stacked_var_, stacked_count_;
  // During forward(): the tasks present and their sample counts, and whether the batch
  // is grouped (every task, equal counts, sample-major).
  std::vector<size_t> active_;
  std::vector<int64_t> sizes_;
  bool grouped_ = false;
};

}  // namespace clr::adapters
