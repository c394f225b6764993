// `clr pretrain`: a whole backbone trained on the tasks of a sequence taken as one
// dataset (class c of task t is "t/c" when there are several), supervised (an fc over
// those classes) or self-supervised (SimCLR or BYOL: labels only feed the kNN validation
// monitor), written as a clr.backbone/1 file (models/backbone.h).
//
// Long jobs: after every epoch the state goes to OUT.checkpoint.safetensors (weights
// now and at the best epoch, optimiser, schedule position, curves), so a run stopped by
// a signal, by `time_limit` or by a crash goes on from there when the same command is
// given again; the checkpoint is removed once OUT is written. A transfer monitor on
// held-out labelled tasks (the `monitor` sequence: a kNN vote of the backbone's
// features, each task's train split against its test split) is measured after every
// epoch, recorded as a curve in OUT, and by default picks the epoch whose weights are
// kept.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "clr/core/settings.h"
#include "clr/data/dataset.h"
#include "clr/data/loader.h"
#include "clr/train/simclr.h"

namespace clr::train {

struct PretrainConfig {
  std::string arch = "resnet18";
  std::string mode = "supervised";  // supervised | simclr | byol
  bool small_stem = false;
  std::string out;                  // the weight file to write (.safetensors)
  int64_t epochs = 30;
  int64_t batch = 128;
  double lr = 0.1;
  double weight_decay = 5e-5;
  std::string optimizer = "sgd";
  std::string schedule = "cosine";
  int64_t patience = 1000000;
  double val_fraction = 0.05;       // of every task's training images, when it has no val split
  bool hflip = false;
  bool fp16 = false;                // store the weights in fp16
  std::string device = "cpu";
  uint64_t seed = 0;
  std::optional<int64_t> size;      // images are resized to size x size (unset: the data's size)
  SimclrOptions simclr;
  // Which score picks the kept epoch: val (the classifier's, or SimCLR's kNN, accuracy on
  // the held-out part of the pretraining data), monitor (the transfer monitor's mean
  // accuracy; needs monitor tasks) or auto (monitor when there are monitor tasks).
  std::string select = "auto";
  int64_t monitor_knn = 20;         // neighbours of the monitor's vote
  // Run control, not part of what a checkpoint must match:
  bool restart = false;             // start over, replacing the checkpoint of an interrupted run
  double time_limit = 0;            // seconds (0: none): stop, checkpointed, before an epoch that would end past it
  // Throws ConfigError naming the setting for values out of range.
  void validate() const;
};
void to_json(settings::Json& j, const PretrainConfig& c);
void from_json(const settings::Json& j, PretrainConfig& c);

struct PretrainReport {
  std::string out;
  int64_t classes = 0;
  int64_t epochs = 0;
  double best_val_accuracy = 0;
  double train_images_per_second = 0;
  double wall_seconds = 0;
  std::string fingerprint;  // of the tensors written
  double best_monitor_accuracy = -1;  // at the kept epoch (-1: no monitor)
  int64_t resumed_from_epoch = 0;     // 0: started afresh
};

// OUT.checkpoint.safetensors: where pretrain() keeps the state of an unfinished run.
std::string pretrain_checkpoint_path(const std::string& out);

// Trains on `sequence` (images prepared as `prepare` says, its size replaced by
// config.size when set) and writes config.out, going on from its checkpoint when there
// is one (ConfigError when that checkpoint was made with other settings or data, unless
// config.restart). `monitor`: held-out labelled tasks for the transfer monitor (each
// needs a train split and a test or val split), prepared at the same size.
// `command_line` goes into the file's metadata. StoppedError, with the checkpoint
// written, when a stop is asked for (clr/core/stop.h) or the time limit comes.
PretrainReport pretrain(data::Sequence sequence, const PretrainConfig& config, data::PrepareOptions prepare,
                        const std::string& command_line, data::Sequence monitor = {});

}  // namespace clr::train
