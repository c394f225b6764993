#include "clr/eval/run_config.h"

#include <algorithm>
#include <mutex>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/log.h"
#include "clr/core/path.h"
#include "clr/core/runtime.h"
#include "clr/core/settings_io.h"
#include "clr/eval/runner.h"
#include "clr/models/registry.h"
#include "clr/train/task_inference.h"

namespace clr::eval {

template <class V>
void fields(V& v, RunSettings& s) {
  v("method", s.method);
  v("out", s.out);
  v("seed", s.seed);
  v("device", s.device);
  v("task_inference", s.task_inference);
}
CLR_SETTINGS_JSON(RunSettings)

template <class V>
void fields(V& v, RunConfig& c) {
  v("run", c.run);
  v("backbone", c.backbone);
  v("data", c.data);
  v("train", c.train);
  v("method", c.method);
}
CLR_SETTINGS_JSON(RunConfig)

void RunConfig::finalize() {
  train.seed = run.seed;
  method.seed = run.seed;
  method.kernel = backbone.kernel;
  method.crop = train.crop;
  for (size_t i = 0; i < run.task_inference.size(); ++i) {
    try {
      train::parse_task_inference(run.task_inference[i]);
    } catch (const ConfigError& e) {
      throw ConfigError(detail::concat("run.task_inference[", i, "]: ", e.what()));
    }
    for (size_t k = 0; k < i; ++k) {
      CLR_CHECK(run.task_inference[k] != run.task_inference[i], ConfigError, "run.task_inference names '",
                run.task_inference[i], "' twice");
    }
  }
  data.validate();
  train.validate();
  method.validate();
  backbone.resolve();
}

RunConfig read_run_config(const std::string& input) {
  CLR_CHECK(!input.empty(), ConfigError, "expected a CONFIG.toml or an ImageFolder ROOT");
  RunConfig c;
  if (directory_exists(input)) {
    c.data.root = input;
    return c;
  }
  CLR_CHECK(file_exists(input), NotFoundError, "'", input, "' is neither a config file nor a data directory");
  const settings::Json j = settings::read_toml(input);
  from_json(j, c);
  const std::string base = dir_name(input);
  if (j.contains("run") && j.at("run").contains("out")) c.run.out = settings::resolve_path(base, c.run.out);
  c.backbone.weights = settings::resolve_path(base, c.backbone.weights);
  c.data.resolve_paths(base);
  if (!c.data.seed) c.data.seed = c.run.seed;  // the file's seed, whatever --seed says later
  return c;
}

void RunOverrides::apply(RunConfig& c) const {
  if (method) c.run.method = *method;
  if (out) c.run.out = *out;
  if (seed) c.run.seed = *seed;
  if (device) c.run.device = *device;
  if (task_inference) c.run.task_inference = *task_inference;
  if (arch) c.backbone.arch = *arch;
  if (backbone) c.backbone.set_source(*backbone);
  if (small_stem) c.backbone.small_stem = true;
  if (kernel) c.backbone.kernel = *kernel;
  if (scale) c.data.whole_suite(*scale);
  if (size) c.data.size = *size;
  if (val_fraction) c.data.val_fraction = *val_fraction;
  if (allow_missing_test) c.data.allow_missing_test = true;
  if (skip_corrupt) c.data.skip_corrupt = true;
  train::TrainConfig& t = c.train;
  if (epochs) t.epochs = *epochs;
  if (batch) t.batch_size = *batch;
  if (lr) t.lr = *lr;
  if (patience) t.patience = *patience;
  if (optimizer) t.optimizer = *optimizer;
  if (schedule) t.schedule = *schedule;
  if (hflip) t.hflip = true;
  if (crop) t.crop = *crop;
  if (precision) t.precision = *precision;
  if (memory_format) t.memory_format = *memory_format;
  if (parallel_tasks) t.parallel_tasks = *parallel_tasks;
  train::MethodOptions& m = c.method;
  if (ewc_lambda) m.ewc.lambda = *ewc_lambda;
  if (ewc_gamma) m.ewc.gamma = *ewc_gamma;
  if (fisher_samples) m.ewc.fisher_samples = *fisher_samples;
  if (si_c) m.si.c = *si_c;
  if (si_xi) m.si.xi = *si_xi;
  if (lwf_alpha) m.lwf.alpha = *lwf_alpha;
  if (lwf_temperature) m.lwf.temperature = *lwf_temperature;
  if (buffer) m.replay.buffer = *buffer;
  if (replay_batch) m.replay.batch = *replay_batch;
  if (derpp_alpha) m.replay.alpha = *derpp_alpha;
  if (derpp_beta) m.replay.beta = *derpp_beta;
  if (supsup_weights) m.supsup.weights = *supsup_weights;
  if (supsup_density) m.supsup.density = *supsup_density;
  if (supsup_er_scale) m.supsup.er_scale = *supsup_er_scale;
  if (eft_base) m.eft.base = *eft_base;
  if (psp_context) m.psp.context = *psp_context;
  if (clr_norm) m.clr_norm = *clr_norm;
  if (eft_spatial_group) m.eft.spatial_group = *eft_spatial_group;
  if (eft_depth_group) m.eft.depth_group = *eft_depth_group;
  if (ccll_base) m.ccll.base = *ccll_base;
  if (ccll_kernel) m.ccll.kernel = *ccll_kernel;
  if (ccll_init) m.ccll.init = *ccll_init;
}

Results run(const RunConfig& c, data::Sequence seq, bool restart, const RunHooks& hooks) {
  const c10::Device device = runtime::parse_device(c.run.device);
  torch::manual_seed(c.run.seed);
  if (c.backbone.weights.empty()) {
    log::warn("no backbone weights given: the ", c.backbone.arch_name(), " backbone is randomly initialised, so "
              "accuracy measures random features; pass --backbone FILE");
  }
  models::ResNet backbone = models::load_backbone(c.backbone);
  backbone->to(device);
  const int64_t params = models::torchvision_param_count(*backbone);
  // The gaussian task mapper reads the backbone as it is now, before any task: a copy
  // of its own, since methods that train the backbone change theirs.
  models::ResNet frozen{nullptr};
  if (std::any_of(c.run.task_inference.begin(), c.run.task_inference.end(),
                  [](const std::string& m) { return !train::uses_heads(train::parse_task_inference(m)); })) {
    // Made without drawing from the global generator (its weights are overwritten):
    // a run draws the same random numbers with task inference as without.
    at::Generator rng = at::detail::getDefaultCPUGenerator();
    at::Tensor rng_state;
    {
      std::lock_guard<std::mutex> lock(rng.mutex());
      rng_state = rng.get_state();
    }
    frozen = models::make_resnet(c.backbone.arch_name(), 0, c.backbone.has_small_stem());
    {
      std::lock_guard<std::mutex> lock(rng.mutex());
      rng.set_state(rng_state);
    }
    models::LoadOptions lo;
    lo.model_name = c.backbone.arch_name();
    models::load_state_dict(*frozen, models::state_dict(*backbone), lo, "the run's backbone");
    frozen->to(device);
    frozen->eval();
    for (auto& p : frozen->parameters()) p.requires_grad_(false);
  }
  train::MethodOptions mo = c.method;
  for (const auto& t : seq) mo.max_classes = std::max<int64_t>(mo.max_classes, static_cast<int64_t>(t.classes.size()));
  std::unique_ptr<train::Method> method = train::make_method(c.run.method, backbone, params, mo);

  RunOptions o;
  o.train = c.train;
  o.prepare = c.data.prepare();
  o.split = c.data.split(c.run.seed);
  o.out_dir = c.run.out;
  o.backbone_arch = c.backbone.arch_name();
  o.backbone_source = c.backbone.weights.empty() ? "random" : c.backbone.weights;
  o.backbone_small_stem = c.backbone.has_small_stem();
  o.device = device.str();
  o.config_json = settings::Json(c).dump();
  o.restart = restart;
  o.task_inference = c.run.task_inference;
  o.on_task = hooks.on_task;
  if (hooks.stop) o.stop = hooks.stop;
  o.tensorboard_dir = hooks.tensorboard_dir;
  if (frozen) o.shared_features = [frozen](const at::Tensor& x) mutable { return frozen->features(x); };
  return run_sequence(*method, std::move(seq), o);
}

}  // namespace clr::eval
