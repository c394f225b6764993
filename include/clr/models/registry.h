// The registry of backbone architectures, by name.
#pragma once

#include <string>
#include <vector>

#include "clr/core/tensor_map.h"
#include "clr/models/resnet.h"

namespace clr::models {

struct ArchSpec {
  std::string name;         // "resnet18"
  std::vector<int64_t> layers;
  BlockType block;
  std::string description;  // one line for --help
};

// All architectures, in a stable order.
const std::vector<ArchSpec>& architectures();
std::vector<std::string> architecture_names();

// Throws NotFoundError listing the known names.
const ArchSpec& find_architecture(const std::string& name);

// Builds an architecture with random (torchvision-style) initialisation.
// num_classes = 0 builds the feature extractor without fc.
ResNet make_resnet(const std::string& arch, int64_t num_classes = 1000, bool small_stem = false);

// The number of parameter values of `module` and its submodules (trainable or not),
// leaving out parameters whose name starts with `except_prefix` when it is not empty.
// Every parameter count of clr is this one (cost accounting, methods' extra
// parameters, torchvision_param_count).
int64_t parameter_count(const torch::nn::Module& module, const std::string& except_prefix = "");

// Parameters of `net` counted as torchvision counts the whole model: its parameters
// without fc plus a 1000-class ImageNet fc (the denominator of the paper's per-task
// fractions), whatever fc `net` itself has.
int64_t torchvision_param_count(const ResNetImpl& net);

// Options for loading a state dict into a module.
struct LoadOptions {
  // Missing or unexpected keys and shape mismatches are errors (listing the first
  // offending keys). Non-strict loading copies what matches and ignores the rest.
  bool strict = true;
  // Keys of the file that start with one of these are skipped (e.g. "fc." when
  // loading a classifier checkpoint into a feature extractor).
  std::vector<std::string> ignore_prefixes;
  // Named in error messages ("resnet18").
  std::string model_name = "model";
};

// Copies `tensors` into the module's parameters and buffers by name (converting
// dtype, keeping each module tensor's device). Throws IncompatibleError naming
// `source` and listing missing keys, unexpected keys and shape mismatches.
void load_state_dict(torch::nn::Module& module, const TensorMap& tensors, const LoadOptions& options,
                     const std::string& source = "state dict");

// The module's parameters and buffers by name (shallow: the tensors are shared).
TensorMap state_dict(const torch::nn::Module& module);

// A checkpoint's tensors under torchvision's names, for `target` (a network's
// state_dict): a prefix that wraps every key is dropped ("module." of DDP, "_orig_mod."
// of torch.compile, "model.", "backbone.", "encoder."; only when it makes more keys
// match), timm's "head.fc.*" becomes "fc.*", and BatchNorm's num_batches_tracked, which
// timm's and older checkpoints lack, is 0 as PyTorch would load it.
TensorMap as_torchvision_names(TensorMap tensors, const TensorMap& target);

// Reads a weight file (safetensors or PyTorch zip) into a new network of `arch`,
// strictly, its names mapped by as_torchvision_names. The file's fc is loaded when num_classes > 0 and skipped otherwise.
ResNet load_resnet(const std::string& arch, const std::string& path, int64_t num_classes = 0,
                   bool small_stem = false);

}  // namespace clr::models
