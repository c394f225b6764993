// A run's checkpoint, OUT/checkpoint/: what `clr run` needs to go on after it stopped
// (killed, out of time, a crash), losing at most the epoch in flight.
//
//   OUT/checkpoint/run.safetensors   after every finished task: the run's identity (its
//                                    id, configuration and tasks), the results so far
//                                    and the method's checkpoint() (Method::resumable)
//   OUT/checkpoint/task-<i>.safetensors  task i's state in the method's checkpoint,
//                                    written once (RunCheckpoint::fixed_tasks)
//   OUT/checkpoint/task.safetensors  after every epoch of the task being learned: its
//                                    train::TaskProgress (state now and at the best
//                                    epoch, optimiser, schedule position, RNG)
//
// Each file is written atomically (temporary, fsync, rename). A task file names its
// run and task, and counts only for the task after the run file's last finished one;
// it is removed once that task is finished.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "clr/core/tensor_map.h"
#include "clr/data/dataset.h"
#include "clr/train/trainer.h"

namespace clr::eval {

inline constexpr const char* kCheckpointFormat = "clr.checkpoint/1";

struct RunCheckpoint {
  std::string run_id;
  std::string replaces;       // the runs this one was started over (--restart), ids separated by spaces: their stored tasks may be replaced
  std::string config_json;    // the run's stored configuration (results.json's "config")
  std::string sequence_json;  // sequence_identity() of its tasks
  int64_t tasks_done = 0;
  std::string results_json;   // results.json after those tasks
  TensorMap method;           // Method::checkpoint() after those tasks
  // The first tasks whose `task.<i>.` tensors never change again (all the learned ones
  // unless Method::changes_old_task_states): each is written once, to
  // OUT/checkpoint/task-<i>.safetensors, and the run file holds the rest, so that the
  // writes of a run grow with its tasks, not with their square.
  int64_t fixed_tasks = 0;
};

// Empty when two stored configurations (results.json's "config", as JSON text) give the
// same results: the output directory and train.parallel_tasks aside. Otherwise the
// first setting that differs, as a phrase ("was made with train.epochs = 4, not 5").
std::string configuration_difference(const std::string& was, const std::string& now);

// OUT/checkpoint
std::string checkpoint_dir(const std::string& out);
// A new random run id (16 hex digits).
std::string new_run_id();
// What a resumed run must find unchanged of its tasks: each task's name, class names
// and split sizes, as JSON text.
std::string sequence_identity(const data::Sequence& sequence);

void write_run_checkpoint(const std::string& out, const RunCheckpoint& checkpoint);
// nullopt when OUT holds none; FormatError naming the file for a damaged one.
std::optional<RunCheckpoint> read_run_checkpoint(const std::string& out);

void write_task_checkpoint(const std::string& out, const std::string& run_id, int64_t task,
                           const train::TaskProgress& progress);
// The progress of task `task` of run `run_id`, or nullopt when the file is absent or
// belongs to another run or task (a leftover); FormatError for a damaged one.
std::optional<train::TaskProgress> read_task_checkpoint(const std::string& out, const std::string& run_id,
                                                        int64_t task);
// Tasks learned in parallel (train_parallel) from `first_task` on: each one's progress
// at its latest epoch end, in OUT/checkpoint/parallel.safetensors. The reader gives an
// empty vector when the file is absent or belongs to another run or chunk.
void write_parallel_checkpoint(const std::string& out, const std::string& run_id, int64_t first_task,
                               const std::vector<std::optional<train::TaskProgress>>& progress);
std::vector<std::optional<train::TaskProgress>> read_parallel_checkpoint(const std::string& out,
                                                                        const std::string& run_id, int64_t first_task,
                                                                        size_t tasks);
// Removes the task and parallel checkpoints.
void remove_task_checkpoint(const std::string& out);

}  // namespace clr::eval
