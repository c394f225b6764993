// clr_bench_throughput: forward and training-step throughput of a CLR-reprogrammed
// ResNet, or of any method's training step (--method). Prints a table and one JSON object per configuration (median and spread
// over timed steps after warm-up, with the machine and build they ran on).
//
//   clr_bench_throughput --arch resnet18 --size 64 --small-stem --batch 32
//   clr_bench_throughput --arch resnet50 --size 224 --batch 32,256 --device cuda
//   clr_bench_throughput --method supsup --size 32 --small-stem   # + the masks' share of a step
//
// The training step is timed twice, in one process: "train" is the trainer's step
// (train::Optimizer's multi-tensor Adam and the norm penalty's gradient added by hand,
// as train_task does) and "train-torch" the same step with torch::optim::Adam and the
// penalty through autograd (the trainer before), so their ratio is measured side by side.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/adapters/reprogram.h"
#include "clr/core/error.h"
#include "clr/core/runtime.h"
#include "clr/core/torch_compat.h"
#include "clr/models/registry.h"
#include "clr/train/methods/registry.h"
#include "clr/train/optimizer.h"
#include "bench_util.h"

namespace {

using clr::bench::Stats;
using clr::bench::summarise;

// Images per second of each timed call of `step`.
template <typename F>
std::vector<double> time_steps(F&& step, int warmup, int steps, int64_t batch, const c10::Device& dev) {
  return clr::bench::rates(clr::bench::seconds(step, warmup, steps, dev), static_cast<double>(batch));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Forward and training-step throughput (images/s) of a CLR-reprogrammed ResNet"};
  std::string arch = "resnet18", variant = "clr", method_name, device_name = "cpu", batches = "32", json_path;
  std::string precision = "fp32";
  int64_t size = 64, classes = 10;
  double penalty = 1e-5;
  int warmup = 3, steps = 20, threads = 0;
  bool small_stem = false, channels_last = false;
  app.add_option("--arch", arch)->capture_default_str();
  app.add_option("--variant", variant)->capture_default_str();
  app.add_option("--method", method_name,
                 "Time this method's training step (train::make_method) instead of the variant's; for supsup also "
                 "the share of a step its masks take");
  app.add_option("--size", size, "Input size in pixels")->capture_default_str();
  app.add_option("--batch", batches, "Comma-separated batch sizes")->capture_default_str();
  app.add_option("--classes", classes)->capture_default_str();
  app.add_option("--device", device_name, "cpu, cuda, cuda:N")->capture_default_str();
  app.add_option("--warmup", warmup, "Untimed steps first")->capture_default_str();
  app.add_option("--steps", steps, "Timed steps (>= 20 for the recorded figures)")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (default: hardware)");
  app.add_flag("--small-stem", small_stem, "3x3 stride-1 stem without max-pool");
  app.add_flag("--channels-last", channels_last, "Run in channels-last memory format");
  app.add_option("--precision", precision, "Forward passes in fp32 or under bf16 autocast (as `clr run --precision`)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--penalty", penalty, "The recipe's norm penalty in both timed steps (0: none)")->capture_default_str();
  app.add_option("--json", json_path, "Also append the JSON lines to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    const auto threads_cfg = clr::runtime::configure_threads(threads);
    const c10::Device dev = clr::runtime::parse_device(device_name);
    std::vector<int64_t> batch_list;
    std::stringstream ss(batches);
    for (std::string b; std::getline(ss, b, ',');) batch_list.push_back(std::stoll(b));
    if (dev.is_cuda()) {
      at::globalContext().setBenchmarkCuDNN(true);
    }

    torch::manual_seed(0);
    clr::models::ResNet backbone = clr::models::make_resnet(arch, 0, small_stem);
    backbone->to(dev);
    // What is timed: a reprogrammed network (--variant) or a method's step (--method).
    clr::adapters::ReprogrammedNet net{nullptr};
    std::unique_ptr<clr::train::Method> method;
    std::vector<at::Tensor> params;
    if (method_name.empty()) {
      net = clr::adapters::ReprogrammedNet(
          backbone, clr::adapters::ReprogramOptions().variant(clr::adapters::parse_variant(variant)), classes);
      params = net->trainable_parameters();
    } else {
      clr::train::MethodOptions mo;
      mo.max_classes = classes;
      method = clr::train::make_method(method_name, backbone, clr::models::parameter_count(*backbone), mo);
      method->begin_task({0, "bench", classes});
      params = method->trainable_parameters();
      variant = method_name;
    }
    if (channels_last) {
      for (auto& p : backbone->parameters()) {
        if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
      }
      for (auto& p : params) {
        if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
      }
    }
    auto set_training = [&](bool on) { net ? net->train(on) : method->set_training(on); };
    const c10::ScalarType autocast = precision == "bf16" ? c10::ScalarType::BFloat16 : c10::ScalarType::Float;
    auto logits = [&](const at::Tensor& x) {
      const clr::compat::AutocastGuard guard(dev.type(), autocast);
      return net ? net->forward(x) : method->predict(0, x);
    };
    torch::optim::Adam torch_opt(params, torch::optim::AdamOptions(1e-3));
    clr::train::OptimizerOptions oo;
    oo.lr = 1e-3;
    clr::train::Optimizer opt(params, oo);
    auto* supsup = dynamic_cast<clr::train::SupsupMethod*>(method.get());

    std::printf("%-10s %-8s %5s %6s %-7s %12s %12s %12s\n", "arch", "variant", "size", "batch", "device", "mode",
                "img/s median", "p10..p90");
    std::printf("(train: the trainer's step; train-torch: torch::optim::Adam, penalty through autograd)\n");
    for (int64_t batch : batch_list) {
      at::Tensor x = torch::randn({batch, 3, size, size}).to(dev);
      if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      at::Tensor y = torch::randint(0, classes, {batch}).to(dev);
      set_training(false);
      const Stats fwd = summarise(time_steps(
          [&] {
            torch::NoGradGuard ng;
            logits(x);
          },
          warmup, steps, batch, dev));
      set_training(true);
      auto loss_of = [&] {
        const clr::compat::AutocastGuard guard(dev.type(), autocast);
        return net ? torch::nn::functional::cross_entropy(net->forward(x), y) : method->loss(x, y);
      };
      const Stats train = summarise(time_steps(
          [&] {
            opt.zero_grad();
            loss_of().backward();
            if (penalty > 0) clr::train::add_norm_penalty(params, penalty);
            opt.step();
            if (method) method->after_step();
          },
          warmup, steps, batch, dev));
      const Stats train_torch = summarise(time_steps(
          [&] {
            torch_opt.zero_grad();
            at::Tensor loss = loss_of();
            if (penalty > 0) {
              std::vector<at::Tensor> norms;
              for (const auto& p : params) norms.push_back(p.norm());
              loss = loss + penalty * torch::stack(norms).sum();
            }
            loss.backward();
            torch_opt.step();
            if (method) method->after_step();
          },
          warmup, steps, batch, dev));
      // SupSup: the masks alone (top-k of every layer's scores), as a share of a step.
      double mask_share = -1;
      if (supsup != nullptr) {
        const Stats masks = summarise(clr::bench::seconds([&] { supsup->current_masks(); }, warmup, steps, dev));
        mask_share = masks.median / (static_cast<double>(batch) / train.median);
        std::printf("supsup masks: %.2f ms per step (median), %.1f%% of a training step\n", 1e3 * masks.median,
                    100 * mask_share);
      }
      for (const auto& [mode, s] :
           {std::pair<const char*, Stats>{"forward", fwd}, {"train", train}, {"train-torch", train_torch}}) {
        std::printf("%-10s %-8s %5ld %6ld %-7s %12s %12.1f %6.1f..%.1f\n", arch.c_str(), variant.c_str(),
                    static_cast<long>(size), static_cast<long>(batch), dev.str().c_str(), mode, s.median, s.p10,
                    s.p90);
      }
      nlohmann::ordered_json j = {
          {"bench", "clr_bench_throughput"},
          {"arch", arch},
          {"variant", variant},
          {"small_stem", small_stem},
          {"size", size},
          {"batch", batch},
          {"device", dev.str()},
          {"gpu", dev.is_cuda() ? "cuda" : ""},
          {"channels_last", channels_last},
          {"precision", precision},
          {"warmup", warmup},
          {"steps", steps},
          {"forward_images_per_s", clr::bench::stats_json(fwd)},
          {"penalty", penalty},
          {"train_step_images_per_s", clr::bench::stats_json(train)},
          {"train_step_torch_optim_images_per_s", clr::bench::stats_json(train_torch)},
          {"train_step_speedup_over_torch_optim", train.median / train_torch.median},
      };
      if (mask_share >= 0) j["supsup_mask_share_of_step"] = mask_share;
      clr::bench::add_environment(j, threads_cfg.intra_op);
      std::cout << j.dump() << std::endl;
      if (!json_path.empty()) {
        FILE* f = std::fopen(json_path.c_str(), "a");
        if (f != nullptr) {
          std::fprintf(f, "%s\n", j.dump().c_str());
          std::fclose(f);
        }
      }
    }
  } catch (const clr::Error& e) {
    std::fprintf(stderr, "clr_bench_throughput: %s\n", e.what());
    return 2;
  }
  return 0;
}
