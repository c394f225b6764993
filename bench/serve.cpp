// clr_bench_serve: what serving many tasks from one backbone costs.
//   - a batch of one task, against batches mixing 8 and 64 distinct tasks (one forward
//     through the engine each);
//   - the alternatives without mixed batches: per-task sub-batches (swap the task
//     state into the network, forward the task's samples, next task) and swapping per
//     request (one sample per forward);
//   - serving without a task (task inference: gaussian, energy) against the same
//     decoded images with their task given;
//   - the time of one adapter switch (load_task_state) and of loading a task from the
//     store (read, verify checksums, prepare);
//   - bytes stored per task against the backbone.
// Prints a table and one JSON object per figure (median and p10..p90 over timed
// repetitions after warm-up, machine, build). The tasks are random (non-identity) CLR
// states on a randomly initialised backbone: the arithmetic is that of trained ones.
//
//   clr_bench_serve --arch resnet18 --small-stem --size 32 --batch 64
//   clr_bench_serve --device cuda --size 64 --steps 30
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/adapters/reprogram.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/runtime.h"
#include "clr/core/safetensors.h"
#include "clr/core/torch_compat.h"
#include "clr/data/image.h"
#include "clr/models/registry.h"
#include "clr/serve/engine.h"
#include "clr/store/store.h"
#include "clr/train/task_inference.h"
#include "clr/train/trainer.h"
#include "bench_util.h"

namespace {

using clr::bench::rates;
using clr::bench::seconds;
using clr::bench::Stats;
using clr::bench::summarise;

// Milliseconds of a Stats of seconds.
Stats in_ms(const Stats& s) { return {s.median * 1e3, s.min * 1e3, s.max * 1e3, s.p10 * 1e3, s.p90 * 1e3}; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Mixed-task serving throughput, adapter switch time and bytes per task"};
  std::string arch = "resnet18", device_name = "cpu", variant = "clr", dir;
  int64_t size = 32, batch = 64, tasks = 64, classes = 10;
  int warmup = 2, steps = 10, threads = 0;
  bool small_stem = false, keep = false;
  app.add_option("--arch", arch)->capture_default_str();
  app.add_option("--variant", variant, "clr, clr-full or residual")->capture_default_str();
  app.add_flag("--small-stem", small_stem, "3x3 stride-1 stem without max-pool");
  app.add_option("--size", size, "Input size in pixels")->capture_default_str();
  app.add_option("--batch", batch, "Requests per batch")->capture_default_str();
  app.add_option("--tasks", tasks, "Tasks in the store (>= 64 for the 64-task mix)")->capture_default_str();
  app.add_option("--classes", classes, "Classes per task")->capture_default_str();
  app.add_option("--device", device_name, "cpu, cuda, cuda:N")->capture_default_str();
  std::string precision = "auto", memory_format = "auto";
  app.add_option("--precision", precision, "The engine's (and the network alone's): auto, fp32, bf16, fp16")
      ->capture_default_str();
  app.add_option("--memory-format", memory_format, "auto, channels-last or contiguous")->capture_default_str();
  app.add_option("--warmup", warmup)->capture_default_str();
  app.add_option("--steps", steps, "Timed repetitions")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (default: hardware)");
  app.add_option("--dir", dir, "Scratch directory for the store (default: /tmp/clr-bench-serve-PID)");
  std::string identify = "gaussian";
  app.add_option("--identify", identify,
                 "Also time serving without a task: gaussian, energy (one forward per task and image), all or none")
      ->check(CLI::IsMember({"gaussian", "energy", "all", "none"}))
      ->capture_default_str();
  app.add_flag("--keep", keep, "Keep the directory (DIR/store, DIR/backbone.safetensors) for clr serve");
  CLI11_PARSE(app, argc, argv);

  try {
    const auto threads_cfg = clr::runtime::configure_threads(threads);
    const c10::Device dev = clr::runtime::parse_device(device_name);
    if (dev.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
    if (dir.empty()) dir = "/tmp/clr-bench-serve-" + std::to_string(::getpid());
    clr::remove_tree(dir);
    clr::make_directories(dir);

    // A backbone file and a store of `tasks` random task states.
    torch::manual_seed(0);
    clr::models::ResNet backbone = clr::models::make_resnet(arch, 0, small_stem);
    const std::string backbone_file = dir + "/backbone.safetensors";
    clr::write_safetensors(backbone_file, clr::models::state_dict(*backbone));
    clr::adapters::ReprogrammedNet net(
        clr::models::load_resnet(arch, backbone_file, 0, small_stem),
        clr::adapters::ReprogramOptions().variant(clr::adapters::parse_variant(variant)), classes);
    clr::store::BackboneRef ref{arch, small_stem, net->backbone_fingerprint(), clr::models::torchvision_param_count(*backbone),
                                backbone_file};
    clr::store::Store store = clr::store::Store::create(dir + "/store", ref);
    std::vector<clr::TensorMap> states;
    std::vector<std::string> names;
    for (int64_t t = 0; t < tasks; ++t) {
      clr::TensorMap s = net->new_task_state(classes);
      for (auto& [k, v] : s) {
        if (k.rfind("clr.", 0) == 0 || k.rfind("residual.", 0) == 0) v = v + 0.05 * torch::randn_like(v);
      }
      clr::store::Adapter a;
      a.task = "task" + std::to_string(t);
      a.variant = variant;
      for (int64_t c = 0; c < classes; ++c) a.classes.push_back(std::to_string(c));
      a.preprocess.resize = size;
      a.backbone = ref;
      a.tensors = s;
      // Task-mapper statistics of the backbone's feature size (random: the arithmetic
      // of fitted ones), so that the store serves without a task too.
      clr::train::TaskStatistics stats;
      stats.class_mean = torch::rand({classes, backbone->feature_dim()});
      stats.variance = torch::rand({backbone->feature_dim()}) + 0.1;
      stats.class_count = torch::full({classes}, 10, torch::kLong);
      a.mapper = stats.to_tensors();
      store.put(a);
      states.push_back(s);
      names.push_back(a.task);
    }
    const int64_t task_file_bytes = store.tasks().front().bytes;
    const int64_t task_tensor_bytes = store.tasks().front().tensor_bytes;
    const int64_t backbone_bytes = clr::total_bytes(clr::models::state_dict(*backbone));

    clr::serve::EngineOptions eo;
    eo.store_dir = dir + "/store";
    eo.device = device_name;
    eo.precision = precision;
    eo.memory_format = memory_format;
    clr::serve::Engine engine(eo);
    net->to(dev);
    net->eval();
    // The network alone runs with the engine's numerics too (weights NCHW, as the engine's).
    const clr::train::Numerics numerics = clr::train::inference_numerics(precision, memory_format, dev, "bench");

    torch::manual_seed(1);
    const at::Tensor images = torch::randint(0, 256, {batch, 3, size, size}, torch::kLong).to(torch::kByte);
    auto mix = [&](int64_t distinct) {
      std::vector<std::string> out;
      for (int64_t i = 0; i < batch; ++i) out.push_back(names[static_cast<size_t>(i % distinct)]);
      return out;
    };
    std::vector<nlohmann::ordered_json> figures;
    std::printf("%-44s %14s %22s\n", "configuration", "median", "p10..p90");
    auto report = [&](const std::string& what, const std::string& unit, const Stats& s, nlohmann::ordered_json extra) {
      std::printf("%-44s %10.1f %-5s %8.1f..%.1f\n", what.c_str(), s.median, unit.c_str(), s.p10, s.p90);
      nlohmann::ordered_json j = {{"figure", what}, {"unit", unit}, {"median", s.median}, {"p10", s.p10}, {"p90", s.p90}};
      for (auto& [k, v] : extra.items()) j[k] = v;
      figures.push_back(j);
    };

    // 1. The engine: one forward per batch, 1 / 8 / 64 distinct tasks.
    double single_rate = 0;
    for (int64_t distinct : {int64_t{1}, int64_t{8}, int64_t{64}}) {
      if (distinct > tasks || distinct > batch) continue;
      const auto assignment = mix(distinct);
      const Stats s = summarise(rates(seconds([&] { engine.logits(assignment, images); }, warmup, steps, dev),
                                      static_cast<double>(batch)));
      if (distinct == 1) single_rate = s.median;
      report("engine, batch of " + std::to_string(batch) + " over " + std::to_string(distinct) + " task(s)", "img/s", s,
             {{"distinct_tasks", distinct},
              {"relative_to_single_task", single_rate > 0 ? s.median / single_rate : 1.0}});
    }
    const at::Tensor x = clr::train::in_layout(clr::data::normalize(images.to(dev)), numerics);
    {
      const Stats s = summarise(rates(seconds(
                                          [&] {
                                            torch::NoGradGuard g;
                                            const clr::compat::AutocastGuard autocast(dev.type(), numerics.autocast);
                                            net->forward(x);
                                          },
                                          warmup, steps, dev),
                                      static_cast<double>(batch)));
      report("network alone (no engine), batch of " + std::to_string(batch) + ", one task", "img/s", s,
             {{"relative_to_single_task", s.median / single_rate}});
    }
    // 2. Without mixed batches: per-task sub-batches with a swap each, and one
    //    sample per forward with a swap per request.
    for (int64_t distinct : {int64_t{8}, int64_t{64}}) {
      if (distinct > tasks || distinct > batch) continue;
      const Stats s = summarise(rates(seconds(
                                          [&] {
                                            torch::NoGradGuard g;
                                            for (int64_t t = 0; t < distinct; ++t) {
                                              net->load_task_state(states[static_cast<size_t>(t)]);
                                              const at::Tensor idx = torch::arange(t, batch, distinct).to(dev);
                                              net->forward(x.index_select(0, idx));
                                            }
                                          },
                                          warmup, steps, dev),
                                      static_cast<double>(batch)));
      report("swap per task, " + std::to_string(distinct) + " sub-batches of " + std::to_string(batch / distinct), "img/s",
             s, {{"distinct_tasks", distinct}, {"relative_to_single_task", s.median / single_rate}});
    }
    {
      const int64_t n = std::min<int64_t>(batch, 16);
      const Stats s = summarise(rates(seconds(
                                          [&] {
                                            torch::NoGradGuard g;
                                            for (int64_t i = 0; i < n; ++i) {
                                              net->load_task_state(states[static_cast<size_t>(i % tasks)]);
                                              net->forward(x.slice(0, i, i + 1));
                                            }
                                          },
                                          warmup, steps, dev),
                                      static_cast<double>(n)));
      report("swap per request, batch 1", "img/s", s, {{"relative_to_single_task", s.median / single_rate}});
    }
    // 2b. Without a task (task inference): decoded images in, the task found and the
    //     classes out, against the same images with their task given (each image
    //     preprocessed for its task, then one mixed forward over `tasks` tasks).
    if (identify != "none") {
      std::vector<at::Tensor> hwc;
      for (int64_t i = 0; i < batch; ++i) hwc.push_back(images[i].permute({1, 2, 0}).contiguous());
      const auto assignment = mix(std::min(tasks, batch));
      const Stats given = summarise(rates(seconds(
                                              [&] {
                                                std::vector<at::Tensor> x;
                                                for (int64_t i = 0; i < batch; ++i) {
                                                  x.push_back(engine.preprocess(assignment[static_cast<size_t>(i)],
                                                                                hwc[static_cast<size_t>(i)]));
                                                }
                                                engine.predict(assignment, torch::stack(x), 5);
                                              },
                                              warmup, steps, dev),
                                          static_cast<double>(batch)));
      report("task given, decoded images, batch of " + std::to_string(batch) + " over " +
                 std::to_string(assignment.size() < 64 ? assignment.size() : 64) + " tasks",
             "img/s", given, {{"relative_to_single_task", given.median / single_rate}});
      for (const std::string& m : {std::string("gaussian"), std::string("energy")}) {
        if (identify != "all" && identify != m) continue;
        clr::serve::IdentifyOptions io;
        io.method = m;
        const Stats s = summarise(rates(seconds([&] { engine.identify(hwc, io); }, warmup, steps, dev),
                                        static_cast<double>(batch)));
        report("task found (" + m + ") among " + std::to_string(tasks) + " tasks, batch of " + std::to_string(batch),
               "img/s", s,
               {{"method", m}, {"tasks", tasks}, {"relative_to_task_given", s.median / given.median}});
      }
    }
    // 3. Switching: install a task's state in the live network; load one from the store.
    {
      size_t t = 0;
      const Stats s = summarise(seconds([&] { net->load_task_state(states[t++ % states.size()]); }, warmup,
                                        std::max(steps, 50), dev));
      report("adapter switch (load_task_state)", "ms", in_ms(s), {});
      clr::serve::EngineOptions cold = eo;
      cold.cache_bytes = 1;  // nothing stays: every use loads from the store
      clr::serve::Engine fresh(cold);
      const Stats load = summarise(seconds([&] { fresh.describe(names[t++ % names.size()]); }, 1, std::max(steps, 20), dev));
      report("task load from the store (read, verify, prepare)", "ms", in_ms(load), {});
    }
    std::printf("bytes per task: %ld in the store (%ld of tensors), backbone %ld (%.3f%%)\n",
                static_cast<long>(task_file_bytes), static_cast<long>(task_tensor_bytes), static_cast<long>(backbone_bytes),
                100.0 * static_cast<double>(task_file_bytes) / static_cast<double>(backbone_bytes));
    nlohmann::ordered_json j = {
        {"bench", "clr_bench_serve"},
        {"arch", arch},
        {"variant", variant},
        {"small_stem", small_stem},
        {"size", size},
        {"batch", batch},
        {"tasks", tasks},
        {"classes", classes},
        {"device", dev.str()},
        {"precision", clr::train::precision_name(numerics.autocast)},
        {"channels_last", numerics.channels_last},
        {"steps", steps},
        {"task_file_bytes", task_file_bytes},
        {"task_tensor_bytes", task_tensor_bytes},
        {"backbone_bytes", backbone_bytes},
        {"figures", figures},
    };
    clr::bench::add_environment(j, threads_cfg.intra_op);
    std::cout << j.dump() << std::endl;
    if (keep) {
      std::printf("store kept: %s/store\n", dir.c_str());
    } else {
      clr::remove_tree(dir);
    }
  } catch (const clr::Error& e) {
    std::fprintf(stderr, "clr_bench_serve: %s\n", e.what());
    return 2;
  }
  return 0;
}
