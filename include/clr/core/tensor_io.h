// Reading weight files: safetensors and PyTorch `torch.save(state_dict)` archives.
#pragma once

#include <string>

#include "clr/core/tensor_map.h"

namespace clr {

// Reads a PyTorch zip-format checkpoint (.pt/.pth) written by
// `torch.save(model.state_dict())` (an OrderedDict with `_metadata`), a plain dict,
// or a dict that nests the state dict under "state_dict", "model", "model_state_dict"
// or "state_dict_ema" (timm's training checkpoints), tried in that order. Parameters and
// buffers come back as CPU tensors. Objects other than tensors, numbers, strings and
// containers are rejected with a FormatError naming the file and the object.
TensorMap read_pytorch_state_dict(const std::string& path);

enum class WeightFormat { kSafetensors, kPyTorchZip, kUnknown };

// Looks at the first bytes: safetensors (a plausible header length then '{'), a zip
// archive ("PK\3\4"), or unknown.
WeightFormat detect_weight_format(const std::string& path);

// Reads either format (by content, not extension). Throws NotFoundError for a
// missing file and FormatError for anything else it cannot read.
TensorMap load_tensor_file(const std::string& path);

}  // namespace clr
