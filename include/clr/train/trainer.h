// The per-task training loop: optimiser, schedule, the authors' parameter penalty,
// early stopping on validation accuracy, best-validation state restored.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

#include "clr/core/settings.h"
#include "clr/core/tensor_map.h"
#include "clr/data/loader.h"
#include "clr/train/method.h"
#include "clr/train/optimizer.h"

namespace clr::train {

// Defaults are the authors' recipe (PAPER.md).
struct TrainConfig {
  std::string optimizer = "adam";  // adam | sgd (sgd uses momentum)
  double lr = 1e-3;
  double momentum = 0.9;
  double weight_decay = 0.0;
  int64_t batch_size = 32;
  int64_t epochs = 60;
  std::string schedule = "step";   // step (x gamma every step_size epochs) | cosine | none
  int64_t step_size = 20;
  double gamma = 0.1;
  double penalty = 1e-5;           // times the (unsquared) L2 norm of each trainable tensor, added to the loss
  int64_t patience = 21;           // stop after more than this many epochs without a validation gain
  bool hflip = false;              // random horizontal flips (the authors use none)
  int64_t crop = 0;                // > 0: random crop x crop windows in training, centred crops in evaluation
  bool drop_last = false;          // skip a last training batch smaller than batch (contrastive pretraining)
  // Arithmetic of the forward passes, training and evaluation: auto (bf16 autocast on
  // CUDA, fp32 elsewhere) | fp32 | bf16 | fp16 (CUDA only, with dynamic loss scaling).
  // Weights, gradients and optimiser state stay fp32 in every case.
  std::string precision = "auto";
  // Layout of the images (and so of every activation): auto (channels-last on CUDA,
  // contiguous elsewhere) | channels-last | contiguous.
  std::string memory_format = "auto";
  // CLR variants: learn this many consecutive tasks at once (train_parallel), each as
  // it would be learned alone; 1 learns them one after another.
  int64_t parallel_tasks = 1;
  uint64_t seed = 0;

  // Throws ConfigError naming the field for values out of range.
  void validate() const;
};
// A run config's [train] table (keys as docs/CONFIG.md: "batch" is batch_size;
// drop_last and seed are set by the program, not the config).
void to_json(settings::Json& j, const TrainConfig& c);
void from_json(const settings::Json& j, TrainConfig& c);

// What `precision` and `memory_format` mean on one device.
struct Numerics {
  c10::ScalarType autocast = c10::ScalarType::Float;  // Float: no autocast
  bool channels_last = false;
  bool loss_scaling = false;                          // fp16: scale the loss, skip steps with inf/NaN gradients
};
// The loader of task `task_index`'s training split (shuffled, augmented, seeded by the
// run's seed and the task's index), and of an evaluation split (in order, centred crops).
data::LoaderOptions train_loader_options(const TrainConfig& config, int64_t task_index, c10::Device device);
data::LoaderOptions eval_loader_options(int64_t batch_size, int64_t crop, c10::Device device);
// The learning rate of (0-based) `epoch` under config's schedule.
double lr_at(const TrainConfig& config, int64_t epoch);
// The optimiser config.optimizer names, with config's learning rate and decay.
OptimizerOptions optimizer_options(const TrainConfig& config);

// ConfigError for fp16 on a device other than CUDA.
Numerics numerics_for(const TrainConfig& config, c10::Device device);
// What a `precision` (auto | fp32 | bf16 | fp16) and a `memory_format` (auto |
// channels-last | contiguous) mean on `device`, for inference (no loss scaling);
// `setting` names them in errors (e.g. "serve" gives "serve.precision").
Numerics inference_numerics(const std::string& precision, const std::string& memory_format, c10::Device device,
                            const std::string& setting);
// "fp32", "bf16", "fp16".
std::string precision_name(c10::ScalarType autocast);

struct TaskTrainReport {
  int64_t epochs_run = 0;
  int64_t best_epoch = 0;          // 1-based
  double best_val_accuracy = 0;
  double train_seconds = 0;        // training epochs only (no evaluation)
  double images_per_second = 0;    // training images / train_seconds
  std::vector<double> epoch_loss;  // mean training loss per epoch
  std::vector<double> epoch_seconds;  // training time of each epoch (no evaluation)
  std::vector<double> epoch_val_accuracy;
  int64_t skipped_steps = 0;       // fp16: steps skipped for inf/NaN gradients
};

void to_json(settings::Json& j, const TaskTrainReport& r);
void from_json(const settings::Json& j, TaskTrainReport& r);

// A task's training as it stands after an epoch: what a stopped run needs to go on
// from the next epoch exactly as if it had not stopped (a resumable method's state is
// its snapshot; the loader's batches depend only on the seed, task and epoch).
struct TaskProgress {
  int64_t next_epoch = 0;  // 0-based
  int64_t since_best = 0;  // epochs without a validation gain
  TaskTrainReport report;
  TensorMap current;       // Method::snapshot() now
  TensorMap best;          // Method::snapshot() at the best epoch so far
  TensorMap optimizer;     // Optimizer::state()
  TensorMap scaler;        // LossScaler::state() (fp16)
  TensorMap steps;         // Method::step_state() now
  at::Tensor rng;          // the default CPU generator's state
  bool finished = false;   // the task has stopped learning (tasks learned in parallel: train_parallel)
};

// Checkpointing hooks of train_task: `from` continues a task from its progress (the
// method's begin_task already called, as for a fresh start); `on_epoch_end` is called
// after every epoch that another follows, with the report so far and a function that
// copies the progress out (called only by a hook that keeps it).
struct TaskResume {
  const TaskProgress* from = nullptr;
  std::function<void(const TaskTrainReport& report, const std::function<TaskProgress()>& progress)> on_epoch_end;
  // When set, the score an epoch is selected and stopped early by, in place of the
  // method's accuracy on `val` (clr pretrain's transfer monitor); called after every
  // epoch with the 0-based epoch.
  std::function<double(int64_t epoch)> validate;
  std::string score_name = "val acc";  // what the progress line calls validate's score
};

// Learns the method's current task (begin_task already called) on `train`,
// selecting by accuracy on `val`; restores the best state. Progress on stderr.
TaskTrainReport train_task(Method& method, const TaskInfo& task, const data::PreparedSplit& train,
                           const data::PreparedSplit& val, const TrainConfig& config, const TaskResume& resume = {});

// `x` in the memory layout `numerics` asks for.
at::Tensor in_layout(const at::Tensor& x, const Numerics& numerics);

// Accuracy (0..1) of `logits` (eval-mode logits of a batch of images) over `split`,
// batched as evaluation is (centred `crop` x `crop` windows when crop > 0), in the
// precision and layout of `numerics`; the count of correct predictions stays on the
// device and is read once.
double accuracy(const data::PreparedSplit& split, int64_t batch_size, int64_t crop, const Numerics& numerics,
                c10::Device device, const std::function<at::Tensor(const at::Tensor&)>& logits);

// `fn` (eval-mode outputs [B, ...] of a batch of images) over every image of `split`,
// batched as evaluation is, in the precision and layout of `numerics`: the outputs
// concatenated in the split's order, float, on the CPU.
at::Tensor map_split(const data::PreparedSplit& split, int64_t batch_size, int64_t crop, const Numerics& numerics,
                     c10::Device device, const std::function<at::Tensor(const at::Tensor&)>& fn);

// After an epoch of `task_name` (0-based `epoch`) with validation accuracy `val_acc`:
// when it is the best so far, records it in `report` and calls `on_best` (which keeps
// the state); otherwise counts it in `since_best`. True when the task stops early:
// more than config.patience epochs without a gain.
bool record_validation(TaskTrainReport& report, int64_t& since_best, double val_acc, int64_t epoch,
                       const TrainConfig& config, const std::string& task_name, const std::function<void()>& on_best);

// Accuracy (0..1) of the method on task `task` over `split` (centred `crop` x `crop`
// windows when crop > 0), with the forward passes in `numerics`.
double evaluate(Method& method, int64_t task, const data::PreparedSplit& split, int64_t batch_size, int64_t crop = 0,
                const Numerics& numerics = {});

}  // namespace clr::train
