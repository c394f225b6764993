#include "clr/models/resnet.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/pooling.h>

#include "clr/core/error.h"

namespace clr::models {
namespace {

namespace nn = torch::nn;

nn::Conv2d make_conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding) {
  nn::Conv2d conv(nn::Conv2dOptions(in, out, k).stride(stride).padding(padding).bias(false));
  // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
  torch::NoGradGuard no_grad;
  nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
  return conv;
}

nn::BatchNorm2d make_bn(int64_t channels) { return nn::BatchNorm2d(nn::BatchNorm2dOptions(channels)); }

int64_t conv_out(int64_t size, int64_t k, int64_t stride, int64_t padding) {
  return (size + 2 * padding - k) / stride + 1;
}

ConvSite site(std::string name, std::string norm, int64_t in, int64_t out, int64_t k, int64_t stride,
              int64_t padding) {
  return ConvSite{std::move(name), std::move(norm), in, out, k, stride, padding};
}

template <typename Block>
at::Tensor run_stage(nn::ModuleList& stage, const at::Tensor& x, ConvHook* hook) {
  at::Tensor y = x;
  for (const auto& m : *stage) y = m->as<Block>()->forward(y, hook);
  return y;
}

}  // namespace

at::Tensor ConvHook::conv(size_t /*site*/, torch::nn::Conv2dImpl& conv, const at::Tensor& x) {
  return conv.forward(x);
}

at::Tensor ConvHook::after_conv(size_t /*site*/, const at::Tensor& /*input*/, const at::Tensor& output) {
  return output;
}

at::Tensor ConvHook::norm(size_t /*site*/, torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) {
  return bn.forward(x);
}

namespace detail {
at::Tensor conv_norm(ConvHook* hook, size_t site, torch::nn::Conv2d& conv, torch::nn::BatchNorm2d& bn,
                     const at::Tensor& x) {
  if (hook == nullptr) return bn->forward(conv->forward(x));
  const at::Tensor y = hook->after_conv(site, x, hook->conv(site, *conv, x));
  return hook->norm(site, *bn, y);
}
}  // namespace detail

// ---------------------------------------------------------------- BasicBlock

BasicBlockImpl::BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride, size_t first_site)
    : in_planes_(in_planes), planes_(planes), stride_(stride), first_site_(first_site) {
  reset();
}

void BasicBlockImpl::reset() {
  conv1 = register_module("conv1", make_conv(in_planes_, planes_, 3, stride_, 1));
  bn1 = register_module("bn1", make_bn(planes_));
  conv2 = register_module("conv2", make_conv(planes_, planes_, 3, 1, 1));
  bn2 = register_module("bn2", make_bn(planes_));
  downsample = nullptr;
  if (stride_ != 1 || in_planes_ != planes_ * kExpansion) {
    downsample = register_module(
        "downsample", nn::Sequential(make_conv(in_planes_, planes_ * kExpansion, 1, stride_, 0),
                                     make_bn(planes_ * kExpansion)));
  }
}

void BasicBlockImpl::append_sites(const std::string& p, std::vector<ConvSite>& sites) const {
  CLR_ASSERT(sites.size() == first_site_, "block sites out of order at ", p);
  sites.push_back(site(p + "conv1", p + "bn1", in_planes_, planes_, 3, stride_, 1));
  sites.push_back(site(p + "conv2", p + "bn2", planes_, planes_, 3, 1, 1));
  if (downsample) {
    sites.push_back(site(p + "downsample.0", p + "downsample.1", in_planes_, planes_ * kExpansion, 1, stride_, 0));
  }
}

at::Tensor BasicBlockImpl::forward(const at::Tensor& x, ConvHook* hook) {
  at::Tensor out = torch::relu(detail::conv_norm(hook, first_site_, conv1, bn1, x));
  out = detail::conv_norm(hook, first_site_ + 1, conv2, bn2, out);
  at::Tensor identity = x;
  if (downsample) {
    nn::Conv2d c(std::dynamic_pointer_cast<nn::Conv2dImpl>(downsample->ptr(0)));
    nn::BatchNorm2d b(std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(downsample->ptr(1)));
    identity = detail::conv_norm(hook, first_site_ + 2, c, b, x);
  }
  return torch::relu(out + identity);
}

// ---------------------------------------------------------------- Bottleneck

BottleneckImpl::BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride, size_t first_site)
    : in_planes_(in_planes), planes_(planes), stride_(stride), first_site_(first_site) {
  reset();
}

void BottleneckImpl::reset() {
  // torchvision's v1.5 Bottleneck: the stride sits on the 3x3 conv.
  conv1 = register_module("conv1", make_conv(in_planes_, planes_, 1, 1, 0));
  bn1 = register_module("bn1", make_bn(planes_));
  conv2 = register_module("conv2", make_conv(planes_, planes_, 3, stride_, 1));
  bn2 = register_module("bn2", make_bn(planes_));
  conv3 = register_module("conv3", make_conv(planes_, planes_ * kExpansion, 1, 1, 0));
  bn3 = register_module("bn3", make_bn(planes_ * kExpansion));
  downsample = nullptr;
  if (stride_ != 1 || in_planes_ != planes_ * kExpansion) {
    downsample = register_module(
        "downsample", nn::Sequential(make_conv(in_planes_, planes_ * kExpansion, 1, stride_, 0),
                                     make_bn(planes_ * kExpansion)));
  }
}

void BottleneckImpl::append_sites(const std::string& p, std::vector<ConvSite>& sites) const {
  CLR_ASSERT(sites.size() == first_site_, "block sites out of order at ", p);
  sites.push_back(site(p + "conv1", p + "bn1", in_planes_, planes_, 1, 1, 0));
  sites.push_back(site(p + "conv2", p + "bn2", planes_, planes_, 3, stride_, 1));
  sites.push_back(site(p + "conv3", p + "bn3", planes_, planes_ * kExpansion, 1, 1, 0));
  if (downsample) {
    sites.push_back(site(p + "downsample.0", p + "downsample.1", in_planes_, planes_ * kExpansion, 1, stride_, 0));
  }
}

at::Tensor BottleneckImpl::forward(const at::Tensor& x, ConvHook* hook) {
  at::Tensor out = torch::relu(detail::conv_norm(hook, first_site_, conv1, bn1, x));
  out = torch::relu(detail::conv_norm(hook, first_site_ + 1, conv2, bn2, out));
  out = detail::conv_norm(hook, first_site_ + 2, conv3, bn3, out);
  at::Tensor identity = x;
  if (downsample) {
    nn::Conv2d c(std::dynamic_pointer_cast<nn::Conv2dImpl>(downsample->ptr(0)));
    nn::BatchNorm2d b(std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(downsample->ptr(1)));
    identity = detail::conv_norm(hook, first_site_ + 3, c, b, x);
  }
  return torch::relu(out + identity);
}

// ---------------------------------------------------------------- ResNet

ResNetImpl::ResNetImpl(ResNetOptions options) : options_(std::move(options)) {
  CLR_CHECK(options_.layers().size() == 4, ConfigError, "a ResNet has 4 stages, got ",
            options_.layers().size(), " block counts");
  for (int64_t n : options_.layers()) CLR_CHECK(n >= 1, ConfigError, "every ResNet stage needs >= 1 block, got ", n);
  CLR_CHECK(options_.num_classes() >= 0, ConfigError, "num_classes must be >= 0 (0: no fc), got ",
            options_.num_classes());
  CLR_CHECK(options_.in_channels() >= 1, ConfigError, "in_channels must be >= 1, got ", options_.in_channels());
  reset();
}

void ResNetImpl::reset() {
  hook_ = nullptr;
  sites_.clear();
  const bool small = options_.small_stem();
  conv1 = register_module("conv1", small ? make_conv(options_.in_channels(), 64, 3, 1, 1)
                                         : make_conv(options_.in_channels(), 64, 7, 2, 3));
  bn1 = register_module("bn1", make_bn(64));
  sites_.push_back(site("conv1", "bn1", options_.in_channels(), 64, small ? 3 : 7, small ? 1 : 2, small ? 1 : 3));

  const bool bottleneck = options_.block() == BlockType::kBottleneck;
  const int64_t expansion = bottleneck ? BottleneckImpl::kExpansion : BasicBlockImpl::kExpansion;
  int64_t in_planes = 64;
  nn::ModuleList* stages[] = {&layer1, &layer2, &layer3, &layer4};
  for (int s = 0; s < 4; ++s) {
    const int64_t planes = int64_t{64} << s;
    nn::ModuleList stage;
    for (int64_t b = 0; b < options_.layers()[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      const std::string prefix = "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
      if (bottleneck) {
        Bottleneck block(in_planes, planes, stride, sites_.size());
        block->append_sites(prefix, sites_);
        stage->push_back(block);
      } else {
        BasicBlock block(in_planes, planes, stride, sites_.size());
        block->append_sites(prefix, sites_);
        stage->push_back(block);
      }
      in_planes = planes * expansion;
    }
    *stages[s] = register_module("layer" + std::to_string(s + 1), stage);
  }
  fc = nullptr;
  if (options_.num_classes() > 0) fc = register_module("fc", nn::Linear(feature_dim(), options_.num_classes()));
}

int64_t ResNetImpl::feature_dim() const {
  return 512 * (options_.block() == BlockType::kBottleneck ? BottleneckImpl::kExpansion : BasicBlockImpl::kExpansion);
}

at::Tensor ResNetImpl::features(const at::Tensor& x) {
  CLR_CHECK(x.dim() == 4 && x.size(1) == options_.in_channels(), ConfigError, "expected input [N, ",
            options_.in_channels(), ", H, W], got ", x.sizes());
  at::Tensor y = torch::relu(detail::conv_norm(hook_, 0, conv1, bn1, x));
  if (!options_.small_stem()) y = torch::max_pool2d(y, {3, 3}, {2, 2}, {1, 1});
  const bool bottleneck = options_.block() == BlockType::kBottleneck;
  for (nn::ModuleList* stage : {&layer1, &layer2, &layer3, &layer4}) {
    y = bottleneck ? run_stage<BottleneckImpl>(*stage, y, hook_) : run_stage<BasicBlockImpl>(*stage, y, hook_);
  }
  return torch::adaptive_avg_pool2d(y, {1, 1}).flatten(1);
}

at::Tensor ResNetImpl::forward(const at::Tensor& x) {
  at::Tensor f = features(x);
  return fc ? fc->forward(f) : f;
}

std::vector<SiteShape> ResNetImpl::site_shapes(int64_t h, int64_t w) const {
  // Sizes flow through the network in site order: every block's first conv and its
  // downsample see the block input; the others see the previous conv's output.
  std::vector<SiteShape> shapes(sites_.size());
  auto apply = [&](size_t i, int64_t ih, int64_t iw) {
    const ConvSite& s = sites_[i];
    shapes[i] = {ih, iw, conv_out(ih, s.kernel, s.stride, s.padding), conv_out(iw, s.kernel, s.stride, s.padding)};
  };
  apply(0, h, w);
  int64_t bh = shapes[0].out_h, bw = shapes[0].out_w;
  if (!options_.small_stem()) {
    bh = conv_out(bh, 3, 2, 1);
    bw = conv_out(bw, 3, 2, 1);
  }
  size_t i = 1;
  while (i < sites_.size()) {
    // One block: its sites share the prefix "layerX.Y.".
    const std::string& first = sites_[i].name;
    const std::string prefix = first.substr(0, first.rfind('.') + 1);
    int64_t ch = bh, cw = bw;
    int64_t oh = bh, ow = bw;
    for (; i < sites_.size() && sites_[i].name.rfind(prefix, 0) == 0; ++i) {
      const bool is_downsample = sites_[i].name.find("downsample") != std::string::npos;
      if (is_downsample) {
        apply(i, bh, bw);
      } else {
        apply(i, ch, cw);
        ch = oh = shapes[i].out_h;
        cw = ow = shapes[i].out_w;
      }
    }
    bh = oh;
    bw = ow;
  }
  return shapes;
}

void ResNetImpl::pretty_print(std::ostream& stream) const {
  stream << "clr::models::ResNet(layers=[";
  for (size_t i = 0; i < options_.layers().size(); ++i) stream << (i ? "," : "") << options_.layers()[i];
  stream << "], block=" << (options_.block() == BlockType::kBottleneck ? "bottleneck" : "basic")
         << ", num_classes=" << options_.num_classes() << ", small_stem=" << (options_.small_stem() ? "true" : "false")
         << ")";
}

}  // namespace clr::models
