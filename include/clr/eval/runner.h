// The continual-learning protocol: learn the tasks of a sequence one after another,
// after each task evaluate every task seen so far on its test split, and write the
// results (results.json, results.csv, per-task state, log) as the run goes. Methods
// whose tasks run on the unchanged backbone (CLR, linear) write their tasks into an
// adapter store, OUT/adapters (clr/store/store.h), that `clr serve` serves; the
// others write each task's state to OUT/task_states/.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "clr/core/stop.h"
#include "clr/data/dataset.h"
#include "clr/data/loader.h"
#include "clr/eval/results.h"
#include "clr/train/method.h"
#include "clr/train/trainer.h"

namespace clr::eval {

struct RunOptions {
  train::TrainConfig train;
  data::PrepareOptions prepare;
  data::SplitOptions split;
  std::string out_dir;          // created if missing
  std::string backbone_arch;
  std::string backbone_source;  // weight file or "random"
  bool backbone_small_stem = false;
  std::string device;
  std::string config_json;      // the effective configuration, stored in results.json
  // A run of this configuration stopped in out_dir is resumed (eval/checkpoint.h) unless
  // this is set; with it, the run starts over there (and may replace what the earlier
  // run stored, task by task, as each new one is learned).
  bool restart = false;
  // Task inference evaluated after every task beside the oracle accuracy
  // (train/task_inference.h names: gaussian, energy, max-softmax); empty: none. With
  // gaussian, every task's mapper statistics are fitted from its training images when
  // it ends and stored with it (OUT/adapters) for `clr predict` / `clr serve` without
  // a task; it needs `shared_features`.
  std::vector<std::string> task_inference;
  // Pooled features [N, F] of the frozen pretrained backbone, as it was before any task,
  // of a batch of normalised images (eval mode): what the gaussian mapper is fitted on.
  std::function<at::Tensor(const at::Tensor&)> shared_features;
  // Asked after every epoch and every task, once their checkpoint is written (a stop
  // request, Ctrl-C or SIGTERM, by default): true stops the run there with a
  // StoppedError, and the same call goes on from that point.
  std::function<bool()> stop = stop_requested;
  // Called after every task once its results (and checkpoint) are written, with the
  // results so far; a resumed run calls it only for the tasks it learns. An exception
  // thrown here stops the run there, as a stop request would, and propagates.
  std::function<void(const Results&)> on_task;
  // TensorBoard event files go here when set (eval/tensorboard.h); not part of the
  // run's configuration, so a resumed run may add or drop it.
  std::string tensorboard_dir;
};

// Runs the whole sequence. The sequence is completed (missing val carved, test
// checked) and validated before any training: problems are reported all at once.
// results.json is rewritten after every task ("complete": false until the end), so
// a run that dies leaves the rows it finished; a resumable method also checkpoints
// after every epoch and task, and the same call on the same out_dir goes on from there.
// Tasks in OUT/adapters that another run wrote are never removed: one with the name
// of a task of this sequence is a ConfigError before any training.
Results run_sequence(train::Method& method, data::Sequence sequence, const RunOptions& options);

}  // namespace clr::eval
