#include "clr/adapters/clr_layer.h"

#include <cmath>

#include <torch/torch.h>

#include "clr/core/error.h"

namespace clr::adapters {

at::Tensor identity_depthwise_kernel(int64_t channels, int64_t kernel_size) {
  at::Tensor w = torch::zeros({channels, 1, kernel_size, kernel_size});
  w.select(2, kernel_size / 2).select(2, kernel_size / 2).fill_(1.0);
  return w;
}

ClrLayerImpl::ClrLayerImpl(ClrLayerOptions options_) : options(std::move(options_)) { reset(); }

void ClrLayerImpl::reset() {
  CLR_CHECK(options.channels() > 0, ConfigError, "CLR layer needs > 0 channels, got ", options.channels());
  CLR_CHECK(options.kernel_size() > 0 && options.kernel_size() % 2 == 1, ConfigError,
            "CLR kernel size must be odd and positive (same padding), got ", options.kernel_size());
  weight = register_parameter("weight", identity_depthwise_kernel(options.channels(), options.kernel_size()));
}

void ClrLayerImpl::reset_to_identity() {
  torch::NoGradGuard no_grad;
  weight.copy_(identity_depthwise_kernel(options.channels(), options.kernel_size()));
}

at::Tensor ClrLayerImpl::forward(const at::Tensor& x) {
  return torch::conv2d(x, weight, /*bias=*/{}, /*stride=*/1, /*padding=*/options.kernel_size() / 2,
                       /*dilation=*/1, /*groups=*/options.channels());
}

void ClrLayerImpl::pretty_print(std::ostream& stream) const {
  stream << "clr::adapters::ClrLayer(channels=" << options.channels() << ", kernel_size=" << options.kernel_size()
         << ")";
}

ResidualAdapterImpl::ResidualAdapterImpl(ResidualAdapterOptions options_) : options(std::move(options_)) {
  reset();
}

void ResidualAdapterImpl::reset() {
  weight = register_parameter("weight", torch::empty({options.out_channels(), options.in_channels(), 1, 1}));
  // nn.Conv2d's default: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
}

at::Tensor ResidualAdapterImpl::forward(const at::Tensor& x) {
  return torch::conv2d(x, weight, {}, options.stride());
}

void ResidualAdapterImpl::pretty_print(std::ostream& stream) const {
  stream << "clr::adapters::ResidualAdapter(" << options.in_channels() << " -> " << options.out_channels()
         << ", stride=" << options.stride() << ")";
}

}  // namespace clr::adapters
