// Several CLR tasks learned in one pass over the frozen backbone (issue 14). Each task
// keeps what train_task gives it alone — its own data order, optimiser, schedule,
// early stopping and best-validation restore — while every step runs one forward and
// one backward over a batch holding each active task's own mini-batch
// (adapters::ParallelTasks). A task's final state equals the one it reaches alone up
// to the floating-point order of the shared convolutions (tests/unit/parallel_test.cpp).
// Applies to CLR's variants only: methods that share trained weights across tasks
// cannot learn them independently.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "clr/adapters/reprogram.h"
#include "clr/core/tensor_map.h"
#include "clr/data/loader.h"
#include "clr/train/method.h"
#include "clr/train/trainer.h"

namespace clr::train {

struct ParallelTask {
  TaskInfo info;
  const data::PreparedSplit* train = nullptr;
  const data::PreparedSplit* val = nullptr;
  TensorMap initial_state;  // where the task starts (ReprogrammedNet::new_task_state)
};

struct ParallelResult {
  std::vector<TaskTrainReport> reports;  // per task, as train_task's; train_seconds: the steps it took part in
  std::vector<TensorMap> states;         // per task, the best-validation state (CPU)
};

// Checkpointing hooks of train_parallel. A task's progress is kept at its own epoch
// ends (the tasks' epochs end at different steps); going on from such a progress, each
// task repeats at most the part of an epoch it was in, and ends as it would have
// uninterrupted, up to the floating-point order of the shared convolutions (batches are
// put together from other tasks' mini-batches than before).
struct ParallelResume {
  // Per task (empty: every task from its start): where it goes on from, as train_task's
  // TaskProgress (`finished`: it had stopped); nullopt: from its start.
  std::vector<std::optional<TaskProgress>> from;
  // Called after an epoch of any task while another epoch is to follow, with every
  // task's progress at its latest epoch end (nullopt for a task without one yet) and the
  // seconds of training so far.
  std::function<void(const std::vector<std::optional<TaskProgress>>& progress, double train_seconds)> on_epoch_end;
};

// Learns `tasks` together on `net`'s backbone with `config` (validated; fp16 is not
// supported here). `net` is only read.
ParallelResult train_parallel(adapters::ReprogrammedNet net, const std::vector<ParallelTask>& tasks,
                              const TrainConfig& config, const ParallelResume& resume = {});

}  // namespace clr::train
