#include "clr/train/pretrain.h"

#include <chrono>
#include <memory>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/core/log.h"
#include "clr/core/runtime.h"
#include "clr/core/settings_io.h"
#include "clr/core/torch_compat.h"
#include "clr/models/backbone.h"
#include "clr/models/registry.h"
#include "clr/train/supervised.h"
#include "clr/train/trainer.h"

namespace clr::train {

template <class V>
void fields(V& v, PretrainConfig& c) {
  v("arch", c.arch);
  v("mode", c.mode);
  v("small_stem", c.small_stem);
  v("out", c.out);
  v("epochs", c.epochs);
  v("batch", c.batch);
  v("lr", c.lr);
  v("weight_decay", c.weight_decay);
  v("optimizer", c.optimizer);
  v("schedule", c.schedule);
  v("patience", c.patience);
  v("val_fraction", c.val_fraction);
  v("hflip", c.hflip);
  v("fp16", c.fp16);
  v("device", c.device);
  v("seed", c.seed);
  v("size", c.size);
  v("simclr", c.simclr);
}
CLR_SETTINGS_JSON(PretrainConfig)

void PretrainConfig::validate() const {
  CLR_CHECK(mode == "supervised" || mode == "simclr", ConfigError, "--mode must be supervised or simclr, got '", mode,
            "'");
  CLR_CHECK(!out.empty(), ConfigError, "--out FILE is required");
  models::find_architecture(arch);
  CLR_CHECK(!size || (*size >= 1 && *size <= 4096), ConfigError, "--size must be in [1, 4096] pixels, got ",
            size.value_or(0));
  if (mode == "simclr") {
    CLR_CHECK(batch >= 2, ConfigError, "--mode simclr needs --batch >= 2 (each image's partner view is found "
                                       "among the batch's other views), got ", batch);
    simclr.validate();
  }
}

namespace {

TrainConfig train_config(const PretrainConfig& a) {
  TrainConfig tc;
  tc.optimizer = a.optimizer;
  tc.schedule = a.schedule;
  tc.lr = a.lr;
  tc.weight_decay = a.weight_decay;
  tc.batch_size = a.batch;
  tc.epochs = a.epochs;
  tc.patience = a.patience;
  tc.penalty = 0;
  tc.hflip = a.hflip;
  tc.seed = a.seed;
  tc.drop_last = a.mode == "simclr";  // contrastive batches need pairs
  tc.validate();
  return tc;
}

}  // namespace

PretrainReport pretrain(data::Sequence seq, const PretrainConfig& a, data::PrepareOptions prepare,
                        const std::string& command_line) {
  a.validate();
  if (a.size) prepare.size = *a.size;
  data::SplitOptions so;
  so.val_fraction = a.val_fraction;
  so.allow_missing_test = true;
  so.seed = a.seed;
  for (auto& t : seq) data::complete_splits(t, so);
  data::validate_sequence(seq);
  // Several tasks are pretrained on as one dataset: class c of task t is "t/c".
  std::vector<std::string> classes;
  std::string origin;
  for (const auto& t : seq) {
    for (const auto& c : t.classes) classes.push_back(seq.size() == 1 ? c : t.name + "/" + c);
    origin += (origin.empty() ? "" : " + ") + t.origin;
  }
  const TrainConfig tc = train_config(a);

  const c10::Device device = runtime::parse_device(a.device);
  torch::manual_seed(a.seed);
  const auto k = static_cast<int64_t>(classes.size());
  const bool ssl = a.mode == "simclr";
  models::ResNet net = models::make_resnet(a.arch, ssl ? 0 : k, a.small_stem);
  net->to(device);
  std::unique_ptr<Method> model;
  std::unique_ptr<SimclrModel> simclr_model;
  if (ssl) {
    simclr_model = std::make_unique<SimclrModel>(net, a.simclr);
  } else {
    model = std::make_unique<SupervisedModel>(net);
  }
  Method& method = ssl ? static_cast<Method&>(*simclr_model) : *model;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<at::Tensor> train_images, train_labels, val_images, val_labels;
  int64_t offset = 0;
  for (const auto& t : seq) {
    data::PreparedSplit tr = data::prepare_split(t.train, t.origin + " (train)", prepare);
    data::PreparedSplit va = data::prepare_split(t.val, t.origin + " (val)", prepare);
    train_images.push_back(tr.images);
    train_labels.push_back(tr.labels + offset);
    val_images.push_back(va.images);
    val_labels.push_back(va.labels + offset);
    offset += static_cast<int64_t>(t.classes.size());
  }
  data::PreparedSplit train, val;
  train.images = torch::cat(train_images);
  train.labels = torch::cat(train_labels);
  val.images = torch::cat(val_images);
  val.labels = torch::cat(val_labels);
  const std::string task_name = seq.size() == 1 ? seq[0].name : "pretraining";
  log::info("pretrain ", a.arch, a.small_stem ? " (small stem)" : "", " (", a.mode, ") on ", origin, ": ", k,
            " classes, ", train.size(), " train / ", val.size(), " val images at ", prepare.size, " px, device ",
            device.str());
  CLR_CHECK(!ssl || train.size() >= a.batch, ConfigError, "--mode simclr: ", train.size(),
            " training images do not fill one batch of ", a.batch, "; lower --batch");
  if (ssl) simclr_model->set_probe(train.images, train.labels, k);
  TaskInfo info{0, task_name, k};
  method.begin_task(info);
  const TaskTrainReport rep = train_task(method, info, train, val, tc);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  TensorMap weights;
  for (const auto& [key, t] : models::state_dict(*net)) {
    at::Tensor c = t.detach().to(torch::kCPU);
    weights.emplace(key, a.fp16 && c.is_floating_point() ? c.to(torch::kHalf) : c);
  }
  models::BackboneFileInfo fi;
  fi.arch = a.arch;
  fi.small_stem = a.small_stem;
  fi.input_size = prepare.size;
  fi.classes = classes;
  fi.data = origin;
  fi.train_images = train.size();
  fi.command = command_line;
  fi.seed = a.seed;
  fi.epochs = rep.epochs_run;
  fi.best_epoch = rep.best_epoch;
  fi.val_accuracy = rep.best_val_accuracy;
  fi.mode = a.mode;
  fi.val_metric = ssl ? "knn" : "classifier";
  fi.device = device.str();
  fi.wall_seconds = wall;
  fi.libtorch = compat::torch_version();
  fi.dtype = a.fp16 ? "F16" : "F32";
  models::write_backbone_file(a.out, weights, fi);

  PretrainReport r;
  r.out = a.out;
  r.classes = k;
  r.epochs = rep.epochs_run;
  r.best_val_accuracy = rep.best_val_accuracy;
  r.train_images_per_second = rep.images_per_second;
  r.wall_seconds = wall;
  r.fingerprint = fingerprint(weights);
  return r;
}

}  // namespace clr::train
