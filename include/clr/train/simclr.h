// Self-supervised pretraining of a backbone (`clr pretrain --mode simclr` and `--mode
// byol`): SimCLR (Chen et al. 2020) and, sharing its views and monitor, BYOL (Grill et
// al. 2020, below). Two random views of every image (resized crop, mirror, colour
// jitter, greyscale, made on the device in one batched pass), a two-layer projection
// head, and the NT-Xent loss: each view must pick its partner out of the 2B - 1 other
// views. Labels are never used for training. Validation reports the accuracy of a
// k-nearest-neighbour vote against a bank of labelled training images (the usual SSL
// monitor), which picks the best epoch.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include "clr/core/settings.h"
#include "clr/models/resnet.h"
#include "clr/train/method.h"

namespace clr::train {

struct SimclrOptions {
  double temperature = 0.2;     // NT-Xent temperature
  int64_t projection_dim = 128; // output of the projection head
  double min_scale = 0.2;       // smallest crop area (fraction of the image); 1: no crop
  double jitter = 0.4;          // brightness / contrast / saturation jitter strength
  double grey = 0.2;            // probability of a greyscale view
  int64_t knn = 20;             // neighbours in the validation vote
  int64_t bank = 4096;          // labelled training images kept for the vote
  double ema = 0.996;           // byol: the target network's momentum at the first epoch (1 at the last)
  // > 0: supervised and self-supervised at once: a cross-entropy term of this weight on
  // the labels, through an fc on the backbone's features of both views (kept in the file).
  double supervised = 0;
  void validate() const;
};
void to_json(settings::Json& j, const SimclrOptions& o);
void from_json(const settings::Json& j, SimclrOptions& o);

// Scores per class [N, classes] of a k-nearest-neighbour vote: each query's k most
// cosine-similar bank rows vote for their labels with weight exp(similarity /
// temperature) (Wu et al. 2018). `queries` [N, D] and `bank` [M, D] L2-normalised,
// `bank_labels` int64 [M], all on one device.
at::Tensor knn_scores(const at::Tensor& queries, const at::Tensor& bank, const at::Tensor& bank_labels,
                      int64_t classes, int64_t k, double temperature);

class SimclrModel : public Method {
 public:
  // `net`: a feature-mode ResNet (num_classes 0) on its device.
  SimclrModel(models::ResNet net, SimclrOptions options);

  // The labelled images (uint8 [N, 3, S, S] with labels) the validation vote compares
  // against; up to options.bank of them, evenly spaced. With options.supervised > 0 it
  // also makes the fc over num_classes that the supervised term trains.
  void set_probe(const at::Tensor& images_u8, const at::Tensor& labels, int64_t num_classes);
  // "fc.weight" and "fc.bias" of the supervised term's classifier (empty without one).
  TensorMap classifier_state() const;

  std::string name() const override { return "simclr"; }
  void begin_task(const TaskInfo& task) override;
  std::vector<at::Tensor> trainable_parameters() override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  void end_task(const TaskEnd&) override {}
  // Scores per class from the k-nearest-neighbour vote (cosine similarity of backbone
  // features against the probe bank).
  at::Tensor predict(int64_t task, const at::Tensor& images) override;
  TensorMap task_state(int64_t task) const override;
  int64_t extra_params(int64_t task) const override;
  int64_t backbone_params() const override;
  std::string backbone_fingerprint() const override;
  void set_training(bool on) override;
  c10::Device device() const override { return net_->conv1->weight.device(); }

  // One random view of a batch of normalised images (ImageNet mean/std), same shape.
  at::Tensor augment(const at::Tensor& images) const;
  // NT-Xent of 2B projections [2B, D] where rows i and i + B are views of one image.
  static at::Tensor nt_xent(const at::Tensor& z, double temperature);

 protected:
  // options.supervised x cross-entropy of the classifier on `features` (both views'
  // rows, labels repeated); 0 without a classifier.
  at::Tensor supervised_term(const at::Tensor& features, const at::Tensor& labels) const;

  models::ResNet net_;
  torch::nn::Sequential head_{nullptr};
  torch::nn::Linear classifier_{nullptr};
  SimclrOptions options_;
  at::Tensor bank_images_;  // uint8, CPU
  at::Tensor bank_labels_;  // int64, CPU
  at::Tensor bank_features_;  // normalised features on the device; undefined when stale
  int64_t num_classes_ = 0;
};

// BYOL (Grill et al., NeurIPS 2020): no negatives. An online network (backbone,
// projector, predictor) learns to predict, from one view, a target network's projection
// of the other view; the target is not trained but follows the online weights as an
// exponential moving average whose momentum rises from options.ema to 1 over the epochs
// (cosine). Projector and predictor are Linear-BatchNorm-ReLU-Linear MLPs (hidden 2x the
// feature size, output options.projection_dim). Views, probe and kNN monitor as SimCLR.
class ByolModel : public SimclrModel {
 public:
  // `net` and `target`: feature-mode ResNets of one architecture on one device; the
  // target starts as a copy of net.
  ByolModel(models::ResNet net, models::ResNet target, SimclrOptions options);

  std::string name() const override { return "byol"; }
  std::vector<at::Tensor> trainable_parameters() override;
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels) override;
  void begin_epoch(int64_t epoch, int64_t epochs) override;
  void after_step() override;
  // The online network, projector and predictor; the target is step state.
  TensorMap snapshot() override;
  void restore(const TensorMap& state) override;
  TensorMap step_state() const override;
  void load_step_state(const TensorMap& state) override;
  void set_training(bool on) override;

  double momentum() const { return momentum_; }
  // The mean over rows of 2 - 2 cos(p_i, z_i) (p and z [B, D]; z not differentiated).
  static at::Tensor regression_loss(const at::Tensor& p, const at::Tensor& z);

 private:
  torch::nn::Sequential predictor_{nullptr}, target_head_{nullptr};
  models::ResNet target_;
  double momentum_ = 0.996;
};

}  // namespace clr::train
