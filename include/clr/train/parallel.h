// Several CLR tasks learned in one pass over the frozen backbone (issue 14). Each task
// keeps what train_task gives it alone — its own data order, optimiser, schedule,
// early stopping and best-validation restore — while every step runs one forward and
// one backward over a batch holding each active task's own mini-batch
// (adapters::ParallelTasks). A task's final state equals the one it reaches alone up
// to the floating-point order of the shared convolutions (tests/unit/parallel_test.cpp).
// Applies to CLR's variants only: methods that share trained weights across tasks
// cannot learn them independently.
#pragma once

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

// Learns `tasks` together on `net`'s backbone with `config` (validated; fp16 is not
// supported here). `net` is only read.
ParallelResult train_parallel(adapters::ReprogrammedNet net, const std::vector<ParallelTask>& tasks,
                              const TrainConfig& config);

}  // namespace clr::train
