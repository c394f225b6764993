#include "clr/train/simclr.h"

#include <cmath>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/core/settings_io.h"
#include "clr/data/image.h"
#include "clr/models/registry.h"

namespace clr::train {
namespace {

namespace F = torch::nn::functional;

at::Tensor channel_stats(const float v[3], const at::TensorOptions& o) { return torch::tensor({v[0], v[1], v[2]}, o).view({1, 3, 1, 1}); }

// BYOL's projector and predictor: Linear-BatchNorm-ReLU-Linear.
torch::nn::Sequential byol_mlp(int64_t in, int64_t hidden, int64_t out) {
  return torch::nn::Sequential(torch::nn::Linear(in, hidden), torch::nn::BatchNorm1d(hidden), torch::nn::ReLU(),
                               torch::nn::Linear(hidden, out));
}

// A module's parameters and buffers by name, under `prefix`.
void add_module_state(TensorMap& to, const std::string& prefix, const torch::nn::Module& m, bool clone) {
  for (const auto& item : m.named_parameters()) to.emplace(prefix + item.key(), clone ? item.value().detach().clone() : item.value());
  for (const auto& item : m.named_buffers()) to.emplace(prefix + item.key(), clone ? item.value().detach().clone() : item.value());
}

// Copies every tensor of `state` under `prefix` into `m`'s parameter or buffer of that name.
void load_module_state(torch::nn::Module& m, const std::string& prefix, const TensorMap& state) {
  torch::NoGradGuard ng;
  TensorMap live;
  add_module_state(live, "", m, false);
  for (auto& [k, v] : live) {
    const auto it = state.find(prefix + k);
    CLR_CHECK(it != state.end(), ConfigError, "BYOL state lacks '", prefix, k, "'");
    v.copy_(it->second);
  }
}

}  // namespace

template <class V>
void fields(V& v, SimclrOptions& o) {
  v("temperature", o.temperature);
  v("projection_dim", o.projection_dim);
  v("min_scale", o.min_scale);
  v("jitter", o.jitter);
  v("grey", o.grey);
  v("knn", o.knn);
  v("bank", o.bank);
  v("ema", o.ema);
  v("supervised", o.supervised);
}
CLR_SETTINGS_JSON(SimclrOptions)

void SimclrOptions::validate() const {
  CLR_CHECK(temperature > 0 && std::isfinite(temperature), ConfigError, "--temperature must be > 0, got ", temperature);
  CLR_CHECK(projection_dim >= 2, ConfigError, "the projection dimension must be >= 2, got ", projection_dim);
  CLR_CHECK(min_scale > 0 && min_scale <= 1, ConfigError, "the smallest crop scale must be in (0, 1], got ", min_scale);
  CLR_CHECK(jitter >= 0 && jitter < 1, ConfigError, "colour jitter must be in [0, 1), got ", jitter);
  CLR_CHECK(grey >= 0 && grey <= 1, ConfigError, "the greyscale probability must be in [0, 1], got ", grey);
  CLR_CHECK(knn >= 1 && bank >= 1, ConfigError, "the kNN monitor needs k >= 1 and a bank >= 1");
  CLR_CHECK(ema >= 0 && ema < 1, ConfigError, "--ema (BYOL's target momentum) must be in [0, 1), got ", ema);
  CLR_CHECK(supervised >= 0 && std::isfinite(supervised), ConfigError,
            "--supervised (the weight of the supervised term) must be >= 0, got ", supervised);
}

SimclrModel::SimclrModel(models::ResNet net, SimclrOptions options) : net_(std::move(net)), options_(options) {
  options_.validate();
  CLR_CHECK(net_->options().num_classes() == 0, ConfigError, "SimCLR trains a feature-mode ResNet (no fc)");
  const int64_t f = net_->feature_dim();
  head_ = torch::nn::Sequential(torch::nn::Linear(f, f), torch::nn::ReLU(), torch::nn::Linear(f, options_.projection_dim));
  head_->to(device());
}

void SimclrModel::set_probe(const at::Tensor& images_u8, const at::Tensor& labels, int64_t num_classes) {
  CLR_CHECK(images_u8.dim() == 4 && images_u8.size(0) == labels.size(0) && labels.size(0) > 0,
            ConfigError, "the SimCLR probe needs uint8 [N, 3, S, S] images with one label each");
  const int64_t n = images_u8.size(0), keep = std::min(n, options_.bank);
  at::Tensor idx = torch::linspace(0, static_cast<double>(n - 1), keep).round().to(torch::kLong);
  bank_images_ = images_u8.index_select(0, idx).contiguous();
  bank_labels_ = labels.to(torch::kCPU, torch::kLong).index_select(0, idx);
  num_classes_ = num_classes;
  bank_features_ = at::Tensor();
  if (options_.supervised > 0 && !classifier_) {
    classifier_ = torch::nn::Linear(net_->feature_dim(), num_classes);
    classifier_->to(device());
  }
}

TensorMap SimclrModel::classifier_state() const {
  if (!classifier_) return {};
  return {{"fc.weight", classifier_->weight.detach().clone()}, {"fc.bias", classifier_->bias.detach().clone()}};
}

at::Tensor SimclrModel::supervised_term(const at::Tensor& features, const at::Tensor& labels) const {
  if (!classifier_) return torch::zeros({}, features.options().dtype(torch::kFloat));
  const int64_t views = features.size(0) / labels.size(0);
  return options_.supervised * F::cross_entropy(F::linear(features, classifier_->weight, classifier_->bias),
                                                labels.repeat({views}));
}

void SimclrModel::begin_task(const TaskInfo& task) {
  CLR_CHECK(task.index == 0, ConfigError, "SimCLR pretraining learns one dataset");
  CLR_CHECK(bank_images_.defined(), ConfigError, "set_probe() before training (the validation monitor needs it)");
}

std::vector<at::Tensor> SimclrModel::trainable_parameters() {
  std::vector<at::Tensor> out;
  for (auto& p : net_->parameters()) out.push_back(p);
  for (auto& p : head_->parameters()) out.push_back(p);
  if (classifier_) {
    for (auto& p : classifier_->parameters()) out.push_back(p);
  }
  return out;
}

at::Tensor SimclrModel::augment(const at::Tensor& x) const {
  const auto o = x.options();
  const int64_t b = x.size(0);
  at::Tensor mean = channel_stats(data::kImageNetMean, o), std = channel_stats(data::kImageNetStd, o);
  at::Tensor rgb = x * std + mean;
  // Random resized crop and mirror: per sample, the output grid samples a window of
  // area `scale` and aspect ratio in [3/4, 4/3] of the input.
  at::Tensor scale = torch::rand({b}, o) * (1 - options_.min_scale) + options_.min_scale;
  // (min_scale 1 turns the crop off altogether: no aspect change either.)
  const double max_log_ratio = options_.min_scale < 1 ? std::log(4.0 / 3.0) : 0.0;
  at::Tensor log_ratio = (torch::rand({b}, o) * 2 - 1) * max_log_ratio;
  at::Tensor w = torch::sqrt(scale * torch::exp(log_ratio)).clamp_max(1);
  at::Tensor h = torch::sqrt(scale / torch::exp(log_ratio)).clamp_max(1);
  at::Tensor cx = (torch::rand({b}, o) * 2 - 1) * (1 - w);
  at::Tensor cy = (torch::rand({b}, o) * 2 - 1) * (1 - h);
  at::Tensor flip = torch::where(torch::rand({b}, o) < 0.5, torch::full({b}, -1.0, o), torch::ones({b}, o));
  at::Tensor zeros = torch::zeros({b}, o);
  at::Tensor theta = torch::stack({torch::stack({w * flip, zeros, cx}, 1), torch::stack({zeros, h, cy}, 1)}, 1);
  at::Tensor grid = F::affine_grid(theta, x.sizes(), false);
  rgb = F::grid_sample(rgb, grid, F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false));
  // Colour jitter (80% of views): brightness, contrast, saturation.
  const double j = options_.jitter;
  auto factor = [&](double strength) { return (torch::rand({b, 1, 1, 1}, o) * 2 - 1) * strength + 1; };
  at::Tensor apply = (torch::rand({b, 1, 1, 1}, o) < 0.8).to(o.dtype());
  at::Tensor jittered = rgb * factor(j);
  const at::Tensor luma_w = torch::tensor({0.299f, 0.587f, 0.114f}, o).view({1, 3, 1, 1});
  at::Tensor m = (jittered * luma_w).sum(1, true).mean(std::vector<int64_t>{2, 3}, true);
  jittered = (jittered - m) * factor(j) + m;
  at::Tensor grey = (jittered * luma_w).sum(1, true);
  jittered = grey + (jittered - grey) * factor(j);
  rgb = apply * jittered + (1 - apply) * rgb;
  // Greyscale.
  at::Tensor to_grey = (torch::rand({b, 1, 1, 1}, o) < options_.grey).to(o.dtype());
  rgb = to_grey * (rgb * luma_w).sum(1, true).expand_as(rgb) + (1 - to_grey) * rgb;
  return (rgb.clamp(0, 1) - mean) / std;
}

at::Tensor SimclrModel::nt_xent(const at::Tensor& z, double temperature) {
  CLR_ASSERT(z.dim() == 2 && z.size(0) % 2 == 0 && z.size(0) >= 4, "nt_xent needs [2B, D] with B >= 2");
  const int64_t n = z.size(0), b = n / 2;
  at::Tensor zn = F::normalize(z, F::NormalizeFuncOptions().dim(1));
  at::Tensor sim = torch::matmul(zn, zn.t()) / temperature;
  // A view is never its own candidate.
  sim = sim.masked_fill(torch::eye(n, torch::TensorOptions().dtype(torch::kBool).device(z.device())),
                        -std::numeric_limits<float>::infinity());
  at::Tensor targets = torch::cat({torch::arange(b, n), torch::arange(0, b)}).to(z.device());
  return F::cross_entropy(sim, targets);
}

at::Tensor SimclrModel::loss(const at::Tensor& images, const at::Tensor& labels) {
  CLR_CHECK(images.size(0) >= 2, ConfigError, "SimCLR needs batches of at least 2 images");
  const at::Tensor views = torch::cat({augment(images), augment(images)});
  const at::Tensor f = net_->features(views);
  return nt_xent(head_->forward(f), options_.temperature) + supervised_term(f, labels);
}

TensorMap SimclrModel::snapshot() {
  TensorMap s;
  for (const auto& [k, v] : models::state_dict(*net_)) s.emplace("net." + k, v.detach().clone());
  for (const auto& item : head_->named_parameters()) s.emplace("head." + item.key(), item.value().detach().clone());
  for (const auto& [k, v] : classifier_state()) s.emplace(k, v);
  return s;
}

void SimclrModel::restore(const TensorMap& state) {
  torch::NoGradGuard ng;
  const TensorMap net = models::state_dict(*net_);
  auto head = head_->named_parameters();
  for (const auto& [k, v] : state) {
    if (k.rfind("net.", 0) == 0) net.at(k.substr(4)).copy_(v);
    else if (k.rfind("fc.", 0) == 0 && classifier_) classifier_->named_parameters()[k.substr(3)].copy_(v);
    else head[k.substr(5)].copy_(v);
  }
  bank_features_ = at::Tensor();
}

void SimclrModel::set_training(bool on) {
  net_->train(on);
  head_->train(on);
  if (classifier_) classifier_->train(on);
  if (on) bank_features_ = at::Tensor();  // the backbone is about to change
}

at::Tensor SimclrModel::predict(int64_t, const at::Tensor& images) {
  torch::NoGradGuard ng;
  if (!bank_features_.defined()) {
    std::vector<at::Tensor> feats;
    for (int64_t i = 0; i < bank_images_.size(0); i += 256) {
      const at::Tensor x = data::normalize(bank_images_.narrow(0, i, std::min<int64_t>(256, bank_images_.size(0) - i)).to(device()));
      feats.push_back(F::normalize(net_->features(x), F::NormalizeFuncOptions().dim(1)));
    }
    bank_features_ = torch::cat(feats);
  }
  const at::Tensor f = F::normalize(net_->features(images), F::NormalizeFuncOptions().dim(1));
  return knn_scores(f, bank_features_, bank_labels_.to(device()), num_classes_, options_.knn, options_.temperature);
}

at::Tensor knn_scores(const at::Tensor& queries, const at::Tensor& bank, const at::Tensor& bank_labels,
                      int64_t classes, int64_t k, double temperature) {
  const at::Tensor sim = torch::matmul(queries, bank.t());
  auto [top, idx] = sim.topk(std::min(k, sim.size(1)), 1);
  const at::Tensor votes = torch::exp(top / temperature);
  const at::Tensor labels = bank_labels.index_select(0, idx.reshape({-1})).view(idx.sizes());
  return torch::zeros({queries.size(0), classes}, votes.options()).scatter_add_(1, labels, votes);
}

TensorMap SimclrModel::task_state(int64_t) const { return models::state_dict(*net_); }

int64_t SimclrModel::extra_params(int64_t) const { return backbone_params(); }

int64_t SimclrModel::backbone_params() const {
  return models::parameter_count(*net_);
}

std::string SimclrModel::backbone_fingerprint() const { return fingerprint(models::state_dict(*net_)); }

ByolModel::ByolModel(models::ResNet net, models::ResNet target, SimclrOptions options)
    : SimclrModel(std::move(net), options), target_(std::move(target)), momentum_(options.ema) {
  CLR_CHECK(target_->options().num_classes() == 0 && target_->feature_dim() == net_->feature_dim(), ConfigError,
            "BYOL's target must be a feature-mode ResNet like the online one");
  const int64_t f = net_->feature_dim(), d = options_.projection_dim;
  head_ = byol_mlp(f, 2 * f, d);  // the projector, in place of SimCLR's head
  predictor_ = byol_mlp(d, 2 * f, d);
  target_head_ = byol_mlp(f, 2 * f, d);
  head_->to(device());
  predictor_->to(device());
  target_->to(device());
  target_head_->to(device());
  TensorMap online;
  add_module_state(online, "net.", *net_, false);
  add_module_state(online, "head.", *head_, false);
  load_step_state(online);
  for (auto& p : target_->parameters()) p.set_requires_grad(false);
  for (auto& p : target_head_->parameters()) p.set_requires_grad(false);
}

std::vector<at::Tensor> ByolModel::trainable_parameters() {
  std::vector<at::Tensor> out = SimclrModel::trainable_parameters();  // backbone and projector
  for (auto& p : predictor_->parameters()) out.push_back(p);
  return out;
}

at::Tensor ByolModel::regression_loss(const at::Tensor& p, const at::Tensor& z) {
  const auto norm = F::NormalizeFuncOptions().dim(1);
  return (2 - 2 * (F::normalize(p, norm) * F::normalize(z.detach(), norm)).sum(1)).mean();
}

at::Tensor ByolModel::loss(const at::Tensor& images, const at::Tensor& labels) {
  CLR_CHECK(images.size(0) >= 2, ConfigError, "BYOL needs batches of at least 2 images (BatchNorm in its heads)");
  const int64_t b = images.size(0);
  const at::Tensor views = torch::cat({augment(images), augment(images)});
  const at::Tensor f = net_->features(views);
  const at::Tensor p = predictor_->forward(head_->forward(f));
  at::Tensor z;
  {
    torch::NoGradGuard ng;
    z = target_head_->forward(target_->features(views));
  }
  // Each view's prediction against the target's projection of the other view.
  return regression_loss(p.narrow(0, 0, b), z.narrow(0, b, b)) + regression_loss(p.narrow(0, b, b), z.narrow(0, 0, b)) +
         supervised_term(f, labels);
}

void ByolModel::begin_epoch(int64_t epoch, int64_t epochs) {
  const double progress = epochs > 1 ? static_cast<double>(epoch) / static_cast<double>(epochs - 1) : 1.0;
  momentum_ = 1 - (1 - options_.ema) * (std::cos(M_PI * progress) + 1) / 2;
}

void ByolModel::after_step() {
  torch::NoGradGuard ng;
  const auto follow = [&](torch::nn::Module& target, const torch::nn::Module& online) {
    const auto tp = target.parameters(), op = online.parameters();
    for (size_t i = 0; i < tp.size(); ++i) tp[i].mul_(momentum_).add_(op[i].detach(), 1 - momentum_);
    const auto tb = target.buffers(), ob = online.buffers();
    for (size_t i = 0; i < tb.size(); ++i) tb[i].copy_(ob[i]);
  };
  follow(*target_, *net_);
  follow(*target_head_, *head_);
}

TensorMap ByolModel::snapshot() {
  TensorMap s;
  for (const auto& [k, v] : models::state_dict(*net_)) s.emplace("net." + k, v.detach().clone());
  add_module_state(s, "head.", *head_, true);
  add_module_state(s, "predictor.", *predictor_, true);
  for (const auto& [k, v] : classifier_state()) s.emplace(k, v);
  return s;
}

void ByolModel::restore(const TensorMap& state) {
  torch::NoGradGuard ng;
  for (const auto& [k, v] : models::state_dict(*net_)) {
    const auto it = state.find("net." + k);
    CLR_CHECK(it != state.end(), ConfigError, "BYOL state lacks 'net.", k, "'");
    v.copy_(it->second);
  }
  load_module_state(*head_, "head.", state);
  load_module_state(*predictor_, "predictor.", state);
  if (classifier_) load_module_state(*classifier_, "fc.", state);
  bank_features_ = at::Tensor();
}

TensorMap ByolModel::step_state() const {
  TensorMap s;
  add_module_state(s, "net.", *target_, true);
  add_module_state(s, "head.", *target_head_, true);
  return s;
}

void ByolModel::load_step_state(const TensorMap& state) {
  if (state.empty()) return;  // a checkpoint from before the first step: the target as built
  load_module_state(*target_, "net.", state);
  load_module_state(*target_head_, "head.", state);
}

void ByolModel::set_training(bool on) {
  SimclrModel::set_training(on);
  predictor_->train(on);
  target_->train(on);
  target_head_->train(on);
}

}  // namespace clr::train
