#include "commands.h"

#include <functional>
#include <iostream>
#include <map>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "clr/adapters/reprogram.h"
#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/core/safetensors.h"
#include "clr/core/tensor_io.h"
#include "clr/eval/cost.h"
#include "clr/eval/report.h"
#include "clr/models/registry.h"

namespace clr::apps {
namespace {

// Actions by subcommand, filled by register_*.
std::map<const CLI::App*, std::function<void()>>& actions() {
  static std::map<const CLI::App*, std::function<void()>> a;
  return a;
}

struct ParamsArgs {
  std::string arch = "resnet50";
  std::string variant = "clr";
  int64_t classes = 30;
  int64_t size = 224;
  int64_t kernel = 3;
  bool small_stem = false;
};

struct InspectArgs {
  std::string path;
  std::string arch;
  bool small_stem = false;
};

void run_params(const ParamsArgs& a) {
  adapters::ReprogramOptions opts;
  opts.variant(adapters::parse_variant(a.variant)).kernel_size(a.kernel);
  std::cout << eval::to_json(eval::measure_cost(a.arch, opts, a.classes, a.size, a.small_stem)) << std::endl;
}

void run_inspect(const InspectArgs& a) {
  const WeightFormat format = detect_weight_format(a.path);
  const TensorMap tensors = load_tensor_file(a.path);
  nlohmann::json j;
  j["path"] = a.path;
  j["format"] = format == WeightFormat::kSafetensors ? "safetensors" : "pytorch-zip";
  j["tensors"] = tensors.size();
  j["values"] = total_numel(tensors);
  j["fingerprint_of_file_tensors"] = fingerprint(tensors);
  if (format == WeightFormat::kSafetensors) j["metadata"] = read_safetensors_metadata(a.path);
  if (!a.arch.empty()) {
    models::ResNet net = models::load_resnet(a.arch, a.path, 0, a.small_stem);
    j["arch"] = a.arch;
    j["backbone_fingerprint"] = fingerprint(models::state_dict(*net));
  }
  std::cout << j.dump(2) << std::endl;
}

}  // namespace

std::string architectures_help() {
  std::string s = "Architectures (--arch):\n";
  for (const auto& spec : models::architectures()) s += "  " + spec.name + std::string(12 - spec.name.size(), ' ') + spec.description + "\n";
  s += "Variants (--variant):\n"
       "  clr         depthwise 3x3 CLR layer after every conv with kernel > 1 (the paper's method)\n"
       "  clr-full    CLR layer after every conv, 1x1 included\n"
       "  residual    parallel 1x1 conv on every conv (the authors' li18/li50 ablation)\n"
       "Environment: CLR_NUM_THREADS (CPU threads), CLR_LOG_LEVEL (log level).";
  return s;
}

void register_params(CLI::App& app) {
  auto args = std::make_shared<ParamsArgs>();
  CLI::App* sub = app.add_subcommand(
      "params", "Print, as JSON, a backbone's parameters and the per-task extra parameters and MACs of CLR");
  sub->add_option("--arch", args->arch, "Backbone architecture")->capture_default_str();
  sub->add_option("--variant", args->variant, "clr, clr-full or residual")->capture_default_str();
  sub->add_option("--classes", args->classes, "Classes of the task's head")->capture_default_str();
  sub->add_option("--size", args->size, "Input image size in pixels (for MACs)")->capture_default_str();
  sub->add_option("--kernel", args->kernel, "CLR kernel size (odd)")->capture_default_str();
  sub->add_flag("--small-stem", args->small_stem, "3x3 stride-1 first conv and no max-pool (32-64 px inputs)");
  sub->footer(architectures_help());
  register_action(sub, [args] { run_params(*args); });
}

void register_inspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* sub = app.add_subcommand(
      "inspect", "Read a weight file (safetensors or PyTorch .pt/.pth) and print its contents and fingerprint");
  sub->add_option("file", args->path, "Weight file")->required();
  sub->add_option("--arch", args->arch,
                  "Also load the file strictly as this architecture's feature extractor and print the backbone "
                  "fingerprint");
  sub->add_flag("--small-stem", args->small_stem, "The architecture has the small-image stem");
  sub->footer(architectures_help());
  register_action(sub, [args] { run_inspect(*args); });
}

void register_report(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand(
      "report", "Write DIR/report.html and DIR/figures/*.svg for a clr compare or clr run output directory");
  sub->add_option("dir", *dir, "An output directory of clr compare (compare.json) or clr run (results.json)")->required();
  register_action(sub, [dir] {
    const eval::ReportFiles f = eval::write_report(*dir);
    for (const auto& fig : f.figures) std::cout << fig << "\n";
    std::cout << "report: " << f.html << std::endl;
  });
}

void register_action(const CLI::App* sub, std::function<void()> action) { actions()[sub] = std::move(action); }

void run_selected(CLI::App& sub) {
  auto it = actions().find(&sub);
  CLR_ASSERT(it != actions().end(), "no action for subcommand ", sub.get_name());
  it->second();
}

}  // namespace clr::apps
