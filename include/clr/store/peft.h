// A task's adapter as a PEFT-style folder, for PyTorch users (docs/PYTHON.md):
//   adapter_config.json        peft_type "CLR", target_modules (the convs that carry a
//                              CLR layer, or a residual adapter), modules_to_save (the
//                              task's BatchNorms and the head, "fc"), the base model's
//                              name and the backbone's fingerprint, and under "clr"
//                              everything else the adapter file holds (classes,
//                              preprocessing, training, metrics, checksums)
//   adapter_model.safetensors  base_model.model.<conv>.clr.weight (the depthwise kernel
//                              [C, 1, k, k]; residual: <conv>.residual.weight, [out, in,
//                              1, 1]), base_model.model.<bn>.{weight, bias, running_mean,
//                              running_var, num_batches_tracked}, base_model.model.fc.*;
//                              metadata format "pt"
//   clr_mapper.safetensors     the task-mapper statistics, when the task has them
// python/clr_torch.py applies such a folder to a torchvision ResNet with PyTorch alone.
// The conversion is lossless: a folder read back gives the same tensors (the same
// tensors_sha256) and metadata.
#pragma once

#include <cstdint>
#include <string>

#include "clr/store/adapter_file.h"

namespace clr::store {

inline constexpr const char* kPeftFormat = "clr.peft/1";

// True when `path` is a folder holding adapter_config.json.
bool is_peft_folder(const std::string& path);
// Writes `adapter` into the folder `dir` (created; ConfigError when it exists and holds
// files other than a PEFT export's). Each file is written atomically. Returns the bytes
// written.
int64_t write_peft_folder(const Adapter& adapter, const std::string& dir);
// Reads a folder written by write_peft_folder (or by hand in its format): FormatError
// naming the file and what is wrong, including tensors whose checksum is not the one
// the config records.
Adapter read_peft_folder(const std::string& dir);

}  // namespace clr::store
