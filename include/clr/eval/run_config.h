// A run's whole configuration (a run config file, docs/CONFIG.md): [run], [backbone],
// [data], [train] and [method], each one settings struct of its layer, and what runs
// it. The flags of `clr run` and `clr compare` are a RunOverrides applied over it; the
// `config` stored in results.json is to_json of the finalized RunConfig.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "clr/core/settings.h"
#include "clr/data/config.h"
#include "clr/eval/results.h"
#include "clr/models/backbone.h"
#include "clr/train/methods/registry.h"
#include "clr/train/trainer.h"

namespace clr::eval {

struct RunSettings {
  std::string method = "clr";
  std::string out = "runs/clr";  // output directory
  uint64_t seed = 0;             // initialisation, splits, shuffling, Fisher samples, buffers
  std::string device = "cpu";    // cpu | cuda | cuda:N | auto
  // Task inference measured beside the oracle after every task (gaussian, energy,
  // max-softmax; empty: none). gaussian also stores each task's mapper statistics, so
  // that `clr predict` and `clr serve` can find the task of an image themselves.
  std::vector<std::string> task_inference = {"gaussian"};
};
void to_json(settings::Json& j, const RunSettings& s);
void from_json(const settings::Json& j, RunSettings& s);

struct RunConfig {
  RunSettings run;
  models::BackboneConfig backbone;
  data::DataConfig data;
  train::TrainConfig train;
  train::MethodOptions method;

  // After every override: copies the run's seed and the kernel into the component
  // structs, validates each (ConfigError naming the setting) and resolves the
  // backbone from its file's metadata. Idempotent.
  void finalize();
};
void to_json(settings::Json& j, const RunConfig& c);
void from_json(const settings::Json& j, RunConfig& c);

// A run config file (TOML; relative paths are relative to the file's folder), or an
// ImageFolder ROOT of tasks (every setting at its default). NotFoundError when
// `input` is neither.
RunConfig read_run_config(const std::string& input);

// The flags of `clr run` / `clr compare`: each one given replaces its setting (and is
// then validated by finalize(), so a bad value is an error, never ignored).
struct RunOverrides {
  std::optional<std::string> method, out, device, optimizer, schedule, precision, memory_format;
  std::optional<std::vector<std::string>> task_inference;  // --task-inference a,b (none: empty)
  std::optional<std::string> backbone;  // a weight file, or an architecture name (random backbone)
  std::optional<std::string> arch;
  std::optional<std::string> scale;     // the whole suite at this scale (DataConfig::whole_suite)
  std::optional<uint64_t> seed;
  std::optional<int64_t> epochs, batch, size, patience, crop, kernel, parallel_tasks;
  std::optional<double> lr, val_fraction;
  bool small_stem = false, allow_missing_test = false, skip_corrupt = false, hflip = false;
  std::optional<double> ewc_lambda, ewc_gamma, si_c, si_xi, lwf_alpha, lwf_temperature, derpp_alpha, derpp_beta;
  std::optional<int64_t> fisher_samples, buffer, replay_batch;
  std::optional<std::string> supsup_weights, eft_base, ccll_base, ccll_init, psp_context, clr_norm;
  std::optional<double> supsup_density, supsup_er_scale;
  std::optional<int64_t> eft_spatial_group, eft_depth_group, ccll_kernel;

  void apply(RunConfig& config) const;
};

// Learns `sequence` with config.run.method from a freshly loaded backbone, writing
// config.run.out (runner.h): a run of the same configuration stopped there is resumed,
// unless `restart`. `config` must be finalized.
struct RunHooks {
  std::function<void(const Results&)> on_task;  // after every task (RunOptions::on_task)
  std::function<bool()> stop;                   // RunOptions::stop; empty: stop_requested()
  std::string tensorboard_dir;                  // RunOptions::tensorboard_dir
};
Results run(const RunConfig& config, data::Sequence sequence, bool restart = false, const RunHooks& hooks = {});

}  // namespace clr::eval
