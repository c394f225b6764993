// A task's training progress (trainer.h's TaskProgress) as the tensors and metadata of
// a safetensors file: what the checkpoints of `clr run` (eval/checkpoint.h) and of
// `clr pretrain` write after an epoch and read back to go on from the next.
#pragma once

#include <string>

#include "clr/core/tensor_map.h"
#include "clr/train/trainer.h"

namespace clr::train {

// Adds `progress` under `prefix` ("" for a file of one task, "lane.<k>." for one of
// several): its states as tensors, its counters and report as metadata.
void add_progress(TensorMap& tensors, Metadata& metadata, const std::string& prefix, const TaskProgress& progress);
// The progress added under `prefix`; FormatError naming `file` (the checkpoint's path)
// for a missing or damaged part.
TaskProgress take_progress(const TensorMap& tensors, const Metadata& metadata, const std::string& prefix,
                           const std::string& file);

}  // namespace clr::train
