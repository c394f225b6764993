// The per-conv task modules: the CLR layer (depthwise k x k conv, identity at start)
// and the authors' 1x1 residual adapter (their li18/li50 ablation).
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

namespace clr::adapters {

struct ClrLayerOptions {
  explicit ClrLayerOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, kernel_size) = 3;
};

// Channel-wise lightweight reprogramming: y = depthwise_conv_kxk(x), stride 1, same
// padding, no bias. `weight` is [C, 1, k, k], initialised to the identity (centre
// tap 1, the rest 0).
class ClrLayerImpl : public torch::nn::Cloneable<ClrLayerImpl> {
 public:
  explicit ClrLayerImpl(ClrLayerOptions options);
  void reset() override;
  // Sets the kernel back to the identity.
  void reset_to_identity();
  at::Tensor forward(const at::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  ClrLayerOptions options;
  at::Tensor weight;
};
TORCH_MODULE(ClrLayer);

// The identity depthwise kernel [C, 1, k, k] (LibTorch's dirac_ has no groups).
at::Tensor identity_depthwise_kernel(int64_t channels, int64_t kernel_size);

struct ResidualAdapterOptions {
  ResidualAdapterOptions(int64_t in_channels, int64_t out_channels, int64_t stride)
      : in_channels_(in_channels), out_channels_(out_channels), stride_(stride) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(int64_t, stride);
};

// A parallel 1x1 conv on the frozen conv's input, added to its output (the
// authors' Residule_block): y = conv(x) + conv1x1_stride(x). `weight` is
// [out, in, 1, 1] with PyTorch's default Conv2d initialisation, as in their code.
class ResidualAdapterImpl : public torch::nn::Cloneable<ResidualAdapterImpl> {
 public:
  explicit ResidualAdapterImpl(ResidualAdapterOptions options);
  void reset() override;
  // The adapter's contribution for the frozen conv's input `x`.
  at::Tensor forward(const at::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  ResidualAdapterOptions options;
  at::Tensor weight;
};
TORCH_MODULE(ResidualAdapter);

}  // namespace clr::adapters
