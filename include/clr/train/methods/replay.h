// Rehearsal baselines: a replay buffer of past training images under a memory budget,
// filled by reservoir sampling over the stream of every task's training images, and
//   er     mean cross-entropy over the current batch and a replayed batch together,
//          each replayed image through its own task's head (old heads keep training);
//   derpp  cross-entropy on the current batch + alpha * MSE between the logits of a
//          replayed batch and the logits stored with it + beta * cross-entropy on a
//          second, independent replayed batch (Buzzega et al. 2020).
// The buffer holds only earlier tasks while a task is learned: a task's images enter
// when it ends, with the logits of the task's final (best-validation) model.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "clr/train/methods/finetune.h"

namespace clr::train {

// Reservoir sampling (Vitter's algorithm R) over uint8 images with their labels, task
// ids and optionally logits (padded to a fixed width). Never holds more than its
// capacity; after n offered items each is in the buffer with probability capacity / n.
class ReplayBuffer {
 public:
  ReplayBuffer(int64_t capacity, int64_t logit_width, uint64_t seed);

  // Offers images (uint8 [N,3,S,S], CPU) one by one in order. Returns, for each slot
  // written by this call, the index into `images` now stored there (slot -> index).
  std::vector<std::pair<int64_t, int64_t>> offer(const at::Tensor& images, const at::Tensor& labels, int64_t task);
  // Stores logits [K, W<=width] for slots (padding with 0).
  void set_logits(const std::vector<int64_t>& slots, const at::Tensor& logits);

  int64_t capacity() const { return capacity_; }
  int64_t size() const { return images_.defined() ? filled_ : 0; }
  int64_t seen() const { return seen_; }
  bool empty() const { return size() == 0; }
  // `k` distinct slots drawn uniformly (all of them when k >= size), in draw order.
  std::vector<int64_t> sample(int64_t k);

  // Stored tensors (only the filled slots).
  at::Tensor images() const;   // uint8 [M,3,S,S]
  at::Tensor labels() const;   // int64 [M]
  at::Tensor tasks() const;    // int64 [M]
  at::Tensor logits() const;   // float [M,W] (undefined without logits)
  TensorMap state() const;
  // state() with the random generator's state ("buffer.rng"): what resume() puts back
  // into a buffer of the same capacity and logit width, taking its tensors out of `state`.
  TensorMap checkpoint() const;
  void resume(TensorMap& state);
  // The random generator's state alone ("buffer.rng": its text, uint8).
  TensorMap rng_state() const;
  void load_rng_state(const TensorMap& state);

 private:
  int64_t capacity_;
  int64_t logit_width_;
  int64_t filled_ = 0;
  int64_t seen_ = 0;
  std::mt19937_64 rng_;
  at::Tensor images_, labels_, tasks_, logits_;
};

struct ReplayOptions {
  int64_t buffer = 500;       // images kept over all tasks (0: no replay, which is sgd)
  int64_t batch = 0;          // replayed images per step (0: the training batch size)
  bool derpp = false;
  double alpha = 0.2;         // derpp: weight of the logit-matching term
  double beta = 0.5;          // derpp: weight of the replayed cross-entropy
  int64_t crop = 0;           // > 0: replayed images are centre-cropped to crop x crop
  uint64_t seed = 0;
  void validate() const;
};

class ReplayMethod : public FinetuneMethod {
 public:
  // `max_classes`: the widest task (the width of the stored logits).
  ReplayMethod(models::ResNet backbone, int64_t backbone_params_with_fc, int64_t max_classes, ReplayOptions options);

  std::string name() const override { return options_.derpp ? "derpp" : "er"; }
  std::vector<at::Tensor> trainable_parameters() override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  void end_task(const TaskEnd& end) override;
  bool changes_old_task_states() const override { return true; }
  TensorMap method_state() const override { return buffer_.state(); }
  // FinetuneMethod's checkpoint, the buffer (with its generator) and the replay batch
  // size; within a task, the generator and the batch size are its step state.
  bool resumable() const override { return true; }
  TensorMap checkpoint() const override;
  void resume(const std::vector<TaskInfo>& done, const TensorMap& state) override;
  TensorMap step_state() const override;
  void load_step_state(const TensorMap& state) override;

  const ReplayBuffer& buffer() const { return buffer_; }
  // Tasks with at least one image in the buffer (their heads train), ascending.
  std::vector<int64_t> replayed_tasks() const;

 private:
  // Normalised images, labels, tasks (and stored logits) of `slots`, on the device.
  at::Tensor replay_images(const std::vector<int64_t>& slots) const;
  // Mean (or summed) cross-entropy of replayed samples, each through its own head.
  at::Tensor replay_cross_entropy(const at::Tensor& features, const std::vector<int64_t>& slots, bool sum) const;

  // Copies the buffer's images (and stored logits) to the device.
  void upload_buffer();
  // The replay batch size a checkpoint holds ("replay.batch").
  static int64_t replay_batch(const TensorMap& state);
  // `slots` as an index tensor on the device.
  at::Tensor device_index(const std::vector<int64_t>& slots) const;
  // The replayed samples' logits under every head involved, in one product: logits
  // [R, sum of their class counts]; each sample's own head's columns start at `first`
  // and are `classes` wide, its label's column is `target` (all [R], on the device).
  // The buffer's bookkeeping stays on the host; what the device needs goes in one copy.
  struct OwnLogits {
    at::Tensor logits, first, classes, target;
    int64_t columns_used = 0;  // sum over samples of their class counts
  };
  OwnLogits own_task_logits(const at::Tensor& features, const std::vector<int64_t>& slots) const;

  ReplayOptions options_;
  ReplayBuffer buffer_;
  // The buffer's images and stored logits on the device, copied once per task (end_task)
  // so that a step gathers its replayed samples there without a copy and a wait.
  at::Tensor device_images_, device_logits_;
  int64_t batch_size_ = 0;  // the largest training batch so far when options_.batch == 0
};

}  // namespace clr::train
