// `clr pretrain`: a whole backbone trained on the tasks of a sequence taken as one
// dataset (class c of task t is "t/c" when there are several), supervised (an fc over
// those classes) or self-supervised (SimCLR: labels only feed the kNN validation
// monitor), written as a clr.backbone/1 file (models/backbone.h).
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
  std::string mode = "supervised";  // supervised | simclr
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
};

// Trains on `sequence` (images prepared as `prepare` says, its size replaced by
// config.size when set) and writes config.out. `command_line` goes into the file's
// metadata.
PretrainReport pretrain(data::Sequence sequence, const PretrainConfig& config, data::PrepareOptions prepare,
                        const std::string& command_line);

}  // namespace clr::train
