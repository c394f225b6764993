// The reprogrammer: a frozen backbone plus swappable per-task state.
//
// ReprogrammedNet attaches itself to a feature-mode ResNet as its ConvHook and adds,
// per the variant:
//   clr       a CLR layer after every conv with kernel > 1 (the paper's method; the
//             authors' `reduced_v1`), between the conv and its BatchNorm;
//   clr-full  a CLR layer after every conv, 1x1 included (the authors' `Ghost`);
//   residual  a parallel 1x1 conv added to every conv's output (the authors'
//             li18/li50 ablation; BatchNorm stays frozen in eval mode there).
// Per-task state is a TensorMap with these keys (no backbone key ever changes):
//   clr.<conv>.weight        [C, 1, k, k]   (clr, clr-full)
//   residual.<conv>.weight   [out, in, 1, 1] (residual)
//   bn.<norm>.{weight,bias,running_mean,running_var,num_batches_tracked} (clr, clr-full;
//                                  weight and bias only with NormMode::kAffine, none with kFrozen)
//   head.weight [K, F], head.bias [K]
// where <conv> / <norm> are torchvision module names ("layer1.0.conv2", "layer1.0.bn2").
#pragma once

#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "clr/core/tensor_map.h"
#include "clr/models/resnet.h"

namespace clr::adapters {

class ClrLayerImpl;
class ResidualAdapterImpl;

enum class Variant { kClr, kClrFull, kResidual };

// "clr", "clr-full", "residual"; parse throws ConfigError listing the names.
Variant parse_variant(const std::string& name);
std::string variant_name(Variant variant);
std::vector<std::string> variant_names();

// What a task keeps of BatchNorm (clr, clr-full; the ablation of the paper's choice):
//   task    affine parameters and running statistics per task (the paper, the default)
//   affine  affine parameters per task; statistics the backbone's, BatchNorm in eval mode
//   frozen  nothing: the backbone's BatchNorm, in eval mode
enum class NormMode { kTask, kAffine, kFrozen };
// "task", "affine", "frozen"; parse throws ConfigError naming them.
NormMode parse_norm_mode(const std::string& name);
std::string norm_mode_name(NormMode mode);

struct ReprogramOptions {
  TORCH_ARG(Variant, variant) = Variant::kClr;
  TORCH_ARG(NormMode, norm) = NormMode::kTask;
  // Kernel size of the CLR layers (the authors use 3, also after the 7x7 stem).
  TORCH_ARG(int64_t, kernel_size) = 3;
};

// The numbers of values in one task's state.
struct TaskStateSize {
  int64_t adapter_params = 0;   // CLR kernels, or the residual 1x1 kernels
  int64_t norm_affine = 0;      // BatchNorm weight + bias (trained)
  int64_t norm_statistics = 0;  // BatchNorm running mean + var (stored, not trained)
  int64_t head_params = 0;      // linear head weight + bias
  int64_t trainable() const { return adapter_params + norm_affine + head_params; }
};

class ReprogrammedNetImpl : public torch::nn::Module, public models::ConvHook {
 public:
  // `backbone` must be a feature extractor (num_classes 0). Its tensors are frozen
  // (requires_grad false) and from now on only read. The network starts on a new
  // task with `num_classes` classes.
  ReprogrammedNetImpl(models::ResNet backbone, ReprogramOptions options, int64_t num_classes);
  ~ReprogrammedNetImpl() override;

  // Logits of the current task, [N, num_classes].
  at::Tensor forward(const at::Tensor& x);
  // Train mode trains BatchNorm (clr, clr-full with NormMode::kTask); the residual
  // variant and the other norm modes keep BatchNorm in eval mode whatever the mode.
  void train(bool on = true) override;

  // ---- per-task state
  // A deep copy of the current task's state, on the CPU, keys as documented above.
  TensorMap task_state() const;
  // Installs a task's state. Strict: every key must be present, none may be extra,
  // shapes must match (the head's class count may differ from the current one).
  // Throws IncompatibleError listing the offending keys.
  void load_task_state(const TensorMap& state);
  // A fresh task: identity CLR kernels (or default-initialised residual kernels),
  // the backbone's own BatchNorm values, and a new head (PyTorch's default Linear
  // initialisation, drawn from the global RNG).
  TensorMap new_task_state(int64_t num_classes) const;
  void begin_task(int64_t num_classes) { load_task_state(new_task_state(num_classes)); }
  int64_t num_classes() const;
  TaskStateSize task_state_size() const;
  // The keys of task_state(), in order.
  std::vector<std::string> task_state_keys() const;

  // The keys of task_state() whose tensors the optimiser updates (they require grad).
  std::vector<std::string> trainable_keys() const;
  // Parameters the optimiser should see (requires_grad true): the task's.
  std::vector<at::Tensor> trainable_parameters() const;

  // ---- the shared backbone
  // The frozen backbone's tensors under torchvision names, BatchNorm entries with
  // the values the backbone was loaded with (not the current task's).
  TensorMap backbone_state() const;
  // fingerprint(backbone_state()).
  std::string backbone_fingerprint() const;
  models::ResNet backbone() const { return backbone_; }
  const ReprogramOptions& options() const { return options_; }
  // Indices (into backbone()->conv_sites()) of the sites that carry an adapter.
  const std::vector<size_t>& adapted_sites() const { return adapted_sites_; }
  c10::Device device() const;

  // ConvHook.
  at::Tensor after_conv(size_t site, const at::Tensor& input, const at::Tensor& output) override;

 private:
  void make_head(int64_t num_classes);

  ReprogramOptions options_;
  models::ResNet backbone_{nullptr};
  torch::nn::ModuleList adapters_{nullptr};
  torch::nn::Linear head_{nullptr};
  std::vector<size_t> adapted_sites_;
  std::vector<int> site_adapter_;  // site -> index into adapters_, -1 for none
  std::vector<ClrLayerImpl*> clr_;
  std::vector<ResidualAdapterImpl*> residual_;
  TensorMap live_;       // task-state keys (without head) -> the live module tensors
  TensorMap norm_base_;  // "bn.<norm>.<field>" -> the backbone's own BatchNorm values (CPU)
};
TORCH_MODULE(ReprogrammedNet);

}  // namespace clr::adapters
