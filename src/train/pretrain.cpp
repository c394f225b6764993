#include "clr/train/pretrain.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/log.h"
#include "clr/core/runtime.h"
#include "clr/core/safetensors.h"
#include "clr/core/settings_io.h"
#include "clr/core/stop.h"
#include "clr/core/torch_compat.h"
#include "clr/models/backbone.h"
#include "clr/models/registry.h"
#include "clr/train/progress_file.h"
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
  v("select", c.select);
  v("monitor_knn", c.monitor_knn);
}
CLR_SETTINGS_JSON(PretrainConfig)

void PretrainConfig::validate() const {
  CLR_CHECK(mode == "supervised" || mode == "simclr" || mode == "byol", ConfigError,
            "--mode must be supervised, simclr or byol, got '", mode,
            "'");
  CLR_CHECK(!out.empty(), ConfigError, "--out FILE is required");
  models::find_architecture(arch);
  CLR_CHECK(!size || (*size >= 1 && *size <= 4096), ConfigError, "--size must be in [1, 4096] pixels, got ",
            size.value_or(0));
  CLR_CHECK(select == "auto" || select == "val" || select == "monitor", ConfigError,
            "--select must be auto, val or monitor, got '", select, "'");
  CLR_CHECK(monitor_knn >= 1, ConfigError, "--monitor-knn must be >= 1, got ", monitor_knn);
  CLR_CHECK(time_limit >= 0, ConfigError, "--time-limit must be >= 0 seconds, got ", time_limit);
  if (mode == "simclr" || mode == "byol") {
    CLR_CHECK(batch >= 2, ConfigError, "--mode ", mode, " needs --batch >= 2 (each image's partner view is found "
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
  tc.drop_last = a.mode != "supervised";  // contrastive batches need pairs, BYOL's BatchNorm heads more than one row
  tc.validate();
  return tc;
}

constexpr const char* kPretrainCheckpointFormat = "clr.pretrain-checkpoint/1";
constexpr double kMonitorTemperature = 0.07;  // of the monitor's kNN vote (Wu et al. 2018)
constexpr double kCheckpointShare = 0.05;     // of the training time, at most, spent writing checkpoints

// A held-out labelled task of the transfer monitor, decoded once.
struct MonitorTask {
  std::string name;
  int64_t classes = 0;
  data::PreparedSplit bank, queries;
};

// Mean kNN accuracy (0..1) of the backbone's pooled features over the monitor tasks
// (each query's k nearest bank images by cosine similarity vote), and each task's.
std::pair<double, std::vector<double>> monitor_accuracy(models::ResNet& net, const std::vector<MonitorTask>& tasks,
                                                        int64_t k, int64_t batch, const Numerics& numerics,
                                                        c10::Device device) {
  torch::NoGradGuard no_grad;
  const bool was_training = net->is_training();
  net->eval();
  auto features = [&](const at::Tensor& x) {
    return torch::nn::functional::normalize(net->features(x).to(torch::kFloat),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  };
  std::vector<double> each;
  double sum = 0;
  for (const auto& t : tasks) {
    const at::Tensor bank = map_split(t.bank, batch, 0, numerics, device, features).to(device);
    const at::Tensor queries = map_split(t.queries, batch, 0, numerics, device, features).to(device);
    const at::Tensor scores = knn_scores(queries, bank, t.bank.labels.to(device), t.classes, k, kMonitorTemperature);
    const double acc = scores.argmax(1).cpu().eq(t.queries.labels).to(torch::kDouble).mean().item<double>();
    each.push_back(acc);
    sum += acc;
  }
  net->train(was_training);
  return {tasks.empty() ? 0.0 : sum / static_cast<double>(tasks.size()), each};
}

// What a checkpoint must match to be gone on from: the settings that decide the result
// (not where it is written, the device or the run control) and the data.
settings::Json run_identity(const PretrainConfig& a, const std::vector<std::string>& classes, int64_t train_images,
                            int64_t val_images, int64_t size, const std::string& monitor) {
  settings::Json config = a;
  config.erase("out");
  config.erase("device");
  return {{"config", config},
          {"classes", classes},
          {"train_images", train_images},
          {"val_images", val_images},
          {"size", size},
          {"monitor", monitor}};
}

// The curves of the epochs run so far: per epoch, the val accuracy and the monitor's.
struct Curves {
  std::vector<double> val, monitor;
};

}  // namespace

std::string pretrain_checkpoint_path(const std::string& out) { return out + ".checkpoint.safetensors"; }

PretrainReport pretrain(data::Sequence seq, const PretrainConfig& a, data::PrepareOptions prepare,
                        const std::string& command_line, data::Sequence monitor_seq) {
  a.validate();
  const auto t0 = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  if (a.size) prepare.size = *a.size;
  data::SplitOptions so;
  so.val_fraction = a.val_fraction;
  so.allow_missing_test = true;
  so.seed = a.seed;
  for (auto& t : seq) data::complete_splits(t, so);
  data::validate_sequence(seq);
  const bool by_monitor = a.select == "monitor" || (a.select == "auto" && !monitor_seq.empty());
  CLR_CHECK(!(a.select == "monitor" && monitor_seq.empty()), ConfigError,
            "--select monitor needs monitor tasks (--monitor CONFIG)");
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
  const bool ssl = a.mode != "supervised";
  models::ResNet net = models::make_resnet(a.arch, ssl ? 0 : k, a.small_stem);
  net->to(device);
  std::unique_ptr<Method> model;
  std::unique_ptr<SimclrModel> simclr_model;
  if (ssl) {
    simclr_model = a.mode == "byol"
                       ? std::make_unique<ByolModel>(net, models::make_resnet(a.arch, 0, a.small_stem), a.simclr)
                       : std::make_unique<SimclrModel>(net, a.simclr);
  } else {
    model = std::make_unique<SupervisedModel>(net);
  }
  Method& method = ssl ? static_cast<Method&>(*simclr_model) : *model;
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
  // The monitor's tasks: each one's train split is the bank, its test split (else its
  // val split) the queries.
  std::vector<MonitorTask> monitor;
  std::string monitor_origin;
  for (auto& t : monitor_seq) {
    data::SplitOptions mo;
    mo.allow_missing_test = true;
    mo.seed = a.seed;
    data::complete_splits(t, mo);
    MonitorTask m;
    m.name = t.name;
    m.classes = static_cast<int64_t>(t.classes.size());
    m.bank = data::prepare_split(t.train, t.origin + " (monitor bank)", prepare);
    m.queries = data::prepare_split(t.test.size() > 0 ? t.test : t.val, t.origin + " (monitor queries)", prepare);
    CLR_CHECK(m.bank.size() > 0 && m.queries.size() > 0, ConfigError, "monitor task '", t.name,
              "' needs train images and test (or val) images");
    monitor_origin += (monitor_origin.empty() ? "" : " + ") + t.name + " (" + std::to_string(m.bank.size()) + "/" +
                      std::to_string(m.queries.size()) + ")";
    monitor.push_back(std::move(m));
  }
  const std::string task_name = seq.size() == 1 ? seq[0].name : "pretraining";
  log::info("pretrain ", a.arch, a.small_stem ? " (small stem)" : "", " (", a.mode, ") on ", origin, ": ", k,
            " classes, ", train.size(), " train / ", val.size(), " val images at ", prepare.size, " px, device ",
            device.str(), monitor.empty() ? "" : ", transfer monitor on " + monitor_origin);
  CLR_CHECK(!ssl || train.size() >= a.batch, ConfigError, "--mode ", a.mode, ": ", train.size(),
            " training images do not fill one batch of ", a.batch, "; lower --batch");
  if (ssl) simclr_model->set_probe(train.images, train.labels, k);
  TaskInfo info{0, task_name, k};
  method.begin_task(info);

  // Going on from the checkpoint of an interrupted run of the same settings and data.
  const std::string checkpoint = pretrain_checkpoint_path(a.out);
  const settings::Json identity = run_identity(a, classes, train.size(), val.size(), prepare.size, monitor_origin);
  std::optional<TaskProgress> progress;
  Curves curves;
  if (file_exists(checkpoint) && !a.restart) {
    SafetensorsFile f = read_safetensors(checkpoint);
    const std::string where = "checkpoint '" + checkpoint + "'";
    CLR_CHECK(metadata_value(f.metadata, "format", where) == kPretrainCheckpointFormat, FormatError, where, " is ",
              f.metadata.at("format"), ", not a ", kPretrainCheckpointFormat, " file");
    settings::Json was, stored_curves;
    try {
      was = settings::Json::parse(metadata_value(f.metadata, "identity", where));
      stored_curves = settings::Json::parse(metadata_value(f.metadata, "curves", where));
      curves.val = stored_curves.at("val").get<std::vector<double>>();
      curves.monitor = stored_curves.at("monitor").get<std::vector<double>>();
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(clr::detail::concat(where, ": its identity or curves are damaged: ", e.what()));
    }
    const std::string diff = settings::difference(was, identity);
    CLR_CHECK(diff.empty(), ConfigError, where, " is of an interrupted pretraining that ", diff,
              "; give the same settings and data to go on from it, or --restart to start over");
    progress = take_progress(f.tensors, f.metadata, "", checkpoint);
  }
  TaskResume hooks;
  hooks.from = progress ? &*progress : nullptr;
  const Numerics numerics = numerics_for(tc, device);
  if (by_monitor) hooks.score_name = "monitor";
  hooks.validate = [&](int64_t epoch) {
    method.set_training(false);
    const double v = evaluate(method, 0, val, a.batch * 2, 0, numerics);
    double m = -1;
    if (!monitor.empty()) {
      auto [mean, each] = monitor_accuracy(net, monitor, a.monitor_knn, a.batch * 2, numerics, device);
      m = mean;
      std::string line;
      for (size_t i = 0; i < each.size(); ++i) {
        char part[96];
        std::snprintf(part, sizeof part, "%s%s %.2f%%", i ? ", " : "", monitor[i].name.c_str(), 100 * each[i]);
        line += part;
      }
      log::info("epoch ", epoch + 1, ": transfer monitor ", 100 * m, "% (", line, ")");
    }
    curves.val.resize(static_cast<size_t>(epoch));  // an epoch run again after a resume replaces its entry
    curves.monitor.resize(static_cast<size_t>(epoch));
    curves.val.push_back(v);
    curves.monitor.push_back(m);
    return by_monitor ? m : v;
  };
  double write_seconds = 0, longest_epoch = 0, last_mark = elapsed();
  hooks.on_epoch_end = [&](const TaskTrainReport& so_far, const std::function<TaskProgress()>& take) {
    const double now = elapsed();
    longest_epoch = std::max(longest_epoch, now - last_mark);
    last_mark = now;
    const bool out_of_time = a.time_limit > 0 && now + longest_epoch + write_seconds / so_far.epochs_run > a.time_limit;
    const bool stop = stop_requested() || out_of_time;
    if (!stop && write_seconds > kCheckpointShare * so_far.train_seconds) return;
    const auto w0 = std::chrono::steady_clock::now();
    TensorMap tensors;
    Metadata metadata{{"format", kPretrainCheckpointFormat},
                      {"identity", identity.dump()},
                      {"curves", settings::Json{{"val", curves.val}, {"monitor", curves.monitor}}.dump()}};
    add_progress(tensors, metadata, "", take());
    write_file_replacing(checkpoint, encode_safetensors(tensors, metadata));
    write_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    CLR_CHECK(!stop, StoppedError, "pretraining stopped after epoch ", so_far.epochs_run, " of ", a.epochs,
              out_of_time ? clr::detail::concat(" (another epoch would pass the time limit of ", a.time_limit, " s)")
                          : std::string(),
              "; its state is in '", checkpoint, "', and the same command goes on from there");
  };
  const TaskTrainReport rep = train_task(method, info, train, val, tc, hooks);
  const double wall = elapsed();

  TensorMap weights;
  TensorMap state = models::state_dict(*net);
  if (ssl) state.merge(simclr_model->classifier_state());  // the supervised term's fc (--supervised)
  for (const auto& [key, t] : state) {
    at::Tensor c = t.detach().to(torch::kCPU);
    weights.emplace(key, a.fp16 && c.is_floating_point() ? c.to(torch::kHalf) : c);
  }
  settings::Json curve = settings::Json::array();
  for (size_t e = 0; e < rep.epoch_loss.size(); ++e) {
    settings::Json point = {{"epoch", e + 1}, {"loss", rep.epoch_loss[e]}};
    if (e < curves.val.size()) point["val"] = curves.val[e];
    if (e < curves.monitor.size() && curves.monitor[e] >= 0) point["monitor"] = curves.monitor[e];
    curve.push_back(point);
  }
  const size_t best = static_cast<size_t>(std::max<int64_t>(rep.best_epoch, 1) - 1);
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
  fi.val_accuracy = best < curves.val.size() ? curves.val[best] : rep.best_val_accuracy;
  fi.mode = ssl && a.simclr.supervised > 0 ? a.mode + "+supervised" : a.mode;
  fi.val_metric = ssl ? "knn" : "classifier";
  fi.device = device.str();
  fi.wall_seconds = wall;
  fi.libtorch = compat::torch_version();
  fi.dtype = a.fp16 ? "F16" : "F32";
  fi.monitor = monitor_origin.empty() ? "" : monitor_origin + (by_monitor ? ", picks the kept epoch" : "");
  fi.curve = curve.dump();
  models::write_backbone_file(a.out, weights, fi);
  std::remove(checkpoint.c_str());

  PretrainReport r;
  r.out = a.out;
  r.classes = k;
  r.epochs = rep.epochs_run;
  r.best_val_accuracy = fi.val_accuracy;
  r.best_monitor_accuracy = best < curves.monitor.size() ? curves.monitor[best] : -1;
  r.train_images_per_second = rep.images_per_second;
  r.wall_seconds = wall;
  r.fingerprint = fingerprint(weights);
  r.resumed_from_epoch = progress ? progress->next_epoch : 0;
  return r;
}

}  // namespace clr::train
