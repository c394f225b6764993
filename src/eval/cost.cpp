#include "clr/eval/cost.h"

#include <nlohmann/json.hpp>

#include "clr/core/error.h"
#include "clr/models/registry.h"

namespace clr::eval {

CostReport measure_cost(const std::string& arch, const adapters::ReprogramOptions& options, int64_t classes,
                        int64_t input_size, bool small_stem) {
  CLR_CHECK(classes >= 1, ConfigError, "--classes must be >= 1, got ", classes);
  CLR_CHECK(input_size >= 8, ConfigError, "--size must be >= 8 pixels, got ", input_size);
  CostReport r;
  r.arch = arch;
  r.variant = adapters::variant_name(options.variant());
  r.classes = classes;
  r.input_size = input_size;
  r.small_stem = small_stem;

  models::ResNet backbone = models::make_resnet(arch, /*num_classes=*/0, small_stem);
  r.backbone_params = models::parameter_count(*backbone);
  const int64_t f = backbone->feature_dim();
  r.backbone_params_with_fc = models::torchvision_param_count(*backbone);

  const auto& sites = backbone->conv_sites();
  const auto shapes = backbone->site_shapes(input_size, input_size);
  for (size_t i = 0; i < sites.size(); ++i) {
    const auto& s = sites[i];
    r.backbone_macs += shapes[i].out_h * shapes[i].out_w * s.out_channels * s.in_channels * s.kernel * s.kernel;
  }
  r.conv_sites = static_cast<int64_t>(sites.size());

  adapters::ReprogrammedNet net(backbone, options, classes);
  r.adapted_sites = static_cast<int64_t>(net->adapted_sites().size());
  for (size_t i : net->adapted_sites()) {
    const auto& s = sites[i];
    const int64_t hw = shapes[i].out_h * shapes[i].out_w;
    if (options.variant() == adapters::Variant::kResidual) {
      r.adapter_macs += hw * s.out_channels * s.in_channels;
    } else {
      r.adapter_macs += hw * s.out_channels * options.kernel_size() * options.kernel_size();
    }
  }
  r.head_macs = f * classes;
  r.task = net->task_state_size();
  r.task_state_bytes_fp32 = 4 * (r.task.trainable() + r.task.norm_statistics);
  return r;
}

std::string to_json(const CostReport& r) {
  using json = nlohmann::ordered_json;
  const double full = static_cast<double>(r.backbone_params_with_fc);
  const double feat = static_cast<double>(r.backbone_params);
  auto part = [&](int64_t n) {
    return json{{"params", n}, {"fraction_of_backbone", n / full}, {"fraction_of_backbone_without_fc", n / feat}};
  };
  const int64_t extra = r.task.trainable();
  json j = {
      {"schema", "clr.params/1"},
      {"arch", r.arch},
      {"variant", r.variant},
      {"classes", r.classes},
      {"input_size", r.input_size},
      {"small_stem", r.small_stem},
      {"backbone",
       {{"params", r.backbone_params_with_fc},
        {"params_without_fc", r.backbone_params},
        {"conv_layers", r.conv_sites},
        {"note", "params counts torchvision's whole model with its 1000-class ImageNet fc; "
                 "params_without_fc is the frozen feature extractor clr keeps"}}},
      {"per_task",
       {{"adapted_conv_layers", r.adapted_sites},
        {"clr_kernels", part(r.task.adapter_params)},
        {"bn_affine", part(r.task.norm_affine)},
        {"head", part(r.task.head_params)},
        {"extra_params", extra},
        {"extra_fraction", extra / full},
        {"extra_fraction_without_fc", extra / feat},
        {"bn_running_stats", r.task.norm_statistics},
        {"stored_bytes_fp32", r.task_state_bytes_fp32}}},
      {"macs",
       {{"backbone", r.backbone_macs},
        {"adapters", r.adapter_macs},
        {"head", r.head_macs},
        {"overhead_fraction", static_cast<double>(r.adapter_macs + r.head_macs) / static_cast<double>(r.backbone_macs)},
        {"note", "multiply-accumulates of the conv and linear layers for one image at input_size x input_size"}}},
  };
  if (r.variant == "residual") {
    j["per_task"]["residual_kernels"] = j["per_task"]["clr_kernels"];
    j["per_task"].erase("clr_kernels");
  }
  return j.dump(2);
}

}  // namespace clr::eval
