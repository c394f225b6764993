// The torchvision ResNet family (ResNet-18/34/50/101/152) with module and parameter
// names identical to torchvision's, so a torchvision state_dict loads by name.
//
// Every convolution is a "site": the ResNet knows, for each conv, its torchvision
// name, the BatchNorm that follows it and its geometry. A ConvHook attached to the
// network sees every conv's input and output and every BatchNorm call; this is the
// seam through which the adapters layer reprograms a frozen backbone without
// changing any of its modules or names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace clr::models {

enum class BlockType { kBasic, kBottleneck };

struct ResNetOptions {
  explicit ResNetOptions(std::vector<int64_t> layers = {2, 2, 2, 2}, BlockType block = BlockType::kBasic)
      : layers_(std::move(layers)), block_(block) {}
  // Blocks per stage (torchvision: resnet18 = {2,2,2,2}, resnet50 = {3,4,6,3}).
  TORCH_ARG(std::vector<int64_t>, layers);
  TORCH_ARG(BlockType, block);
  // Classes of the `fc` layer; 0 builds the feature extractor alone (no fc).
  TORCH_ARG(int64_t, num_classes) = 1000;
  // A 3x3 stride-1 first conv and no max-pool, for 32-64 px inputs.
  TORCH_ARG(bool, small_stem) = false;
  TORCH_ARG(int64_t, in_channels) = 3;
};

// One convolution of the network, in torchvision's module order.
struct ConvSite {
  std::string name;  // "layer1.0.conv2", "layer2.0.downsample.0", "conv1"
  std::string norm;  // the BatchNorm fed by this conv: "layer1.0.bn2", "layer2.0.downsample.1", "bn1"
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel = 0;
  int64_t stride = 1;
  int64_t padding = 0;
};

// Spatial sizes at a site for a given input size.
struct SiteShape {
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
};

// The tensors of a BatchNorm module, by their torchvision names.
inline constexpr const char* kBatchNormTensors[] = {"weight", "bias", "running_mean", "running_var",
                                                    "num_batches_tracked"};

// Sees every conv and BatchNorm of a forward pass. Every default passes through.
class ConvHook {
 public:
  virtual ~ConvHook() = default;
  // Computes site `site`'s convolution of `x`; the default is the conv itself. A hook
  // that masks or rescales the weights (SupSup, PSP) computes it with its own.
  virtual at::Tensor conv(size_t site, torch::nn::Conv2dImpl& conv, const at::Tensor& x);
  // `input` went into site `site`'s conv and produced `output`; the return value is
  // what the site's BatchNorm receives (the default: `output`).
  virtual at::Tensor after_conv(size_t site, const at::Tensor& input, const at::Tensor& output);
  // Applies site `site`'s BatchNorm to `x`.
  virtual at::Tensor norm(size_t site, torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x);
};

namespace detail {
// Runs conv (and hook) then BN (through the hook) for one site.
at::Tensor conv_norm(ConvHook* hook, size_t site, torch::nn::Conv2d& conv, torch::nn::BatchNorm2d& bn,
                     const at::Tensor& x);
}  // namespace detail

class BasicBlockImpl : public torch::nn::Cloneable<BasicBlockImpl> {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride, size_t first_site);
  void reset() override;
  at::Tensor forward(const at::Tensor& x, ConvHook* hook);
  // Appends this block's conv sites (names relative to `prefix`, e.g. "layer1.0.").
  void append_sites(const std::string& prefix, std::vector<ConvSite>& sites) const;

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};

 private:
  int64_t in_planes_, planes_, stride_;
  size_t first_site_;
};
TORCH_MODULE(BasicBlock);

class BottleneckImpl : public torch::nn::Cloneable<BottleneckImpl> {
 public:
  static constexpr int64_t kExpansion = 4;
  BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride, size_t first_site);
  void reset() override;
  at::Tensor forward(const at::Tensor& x, ConvHook* hook);
  void append_sites(const std::string& prefix, std::vector<ConvSite>& sites) const;

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};

 private:
  int64_t in_planes_, planes_, stride_;
  size_t first_site_;
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public torch::nn::Cloneable<ResNetImpl> {
 public:
  explicit ResNetImpl(ResNetOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  // Logits [N, num_classes], or pooled features [N, feature_dim] in feature mode.
  at::Tensor forward(const at::Tensor& x);
  // Pooled features [N, feature_dim] (the input of fc).
  at::Tensor features(const at::Tensor& x);

  const ResNetOptions& options() const { return options_; }
  int64_t feature_dim() const;
  const std::vector<ConvSite>& conv_sites() const { return sites_; }
  // Spatial sizes at every site for an h x w input (analytic, no forward pass).
  std::vector<SiteShape> site_shapes(int64_t h, int64_t w) const;

  // Attaches a hook (not owned; nullptr detaches). A clone starts without one.
  void set_conv_hook(ConvHook* hook) { hook_ = hook; }
  ConvHook* conv_hook() const { return hook_; }

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::ModuleList layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};

 private:
  ResNetOptions options_;
  std::vector<ConvSite> sites_;
  ConvHook* hook_ = nullptr;
};
TORCH_MODULE(ResNet);

// Attaches `hook` to `net` for the lifetime of the object and puts back the hook that
// was there before, also when the forward pass throws.
class ScopedConvHook {
 public:
  ScopedConvHook(ResNetImpl& net, ConvHook* hook) : net_(net), previous_(net.conv_hook()) { net.set_conv_hook(hook); }
  ~ScopedConvHook() { net_.set_conv_hook(previous_); }
  ScopedConvHook(const ScopedConvHook&) = delete;
  ScopedConvHook& operator=(const ScopedConvHook&) = delete;

 private:
  ResNetImpl& net_;
  ConvHook* previous_;
};

}  // namespace clr::models
