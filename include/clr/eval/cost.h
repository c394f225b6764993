// Parameter and compute accounting of a reprogrammed backbone.
#pragma once

#include <cstdint>
#include <string>

#include "clr/adapters/reprogram.h"

namespace clr::eval {

struct CostReport {
  std::string arch;
  std::string variant;
  int64_t classes = 0;
  int64_t input_size = 0;
  bool small_stem = false;

  int64_t backbone_params = 0;          // feature extractor (no fc)
  int64_t backbone_params_with_fc = 0;  // torchvision's whole model with its 1000-class ImageNet fc
  int64_t conv_sites = 0;
  int64_t adapted_sites = 0;

  adapters::TaskStateSize task;         // per-task parameter counts

  int64_t backbone_macs = 0;            // convs of the feature extractor at input_size
  int64_t adapter_macs = 0;             // CLR (or residual) layers
  int64_t head_macs = 0;                // the task's linear head
  int64_t task_state_bytes_fp32 = 0;    // what one task's state occupies as fp32
};

// Builds the network (random weights) and counts. Throws NotFoundError for an
// unknown arch and ConfigError for bad sizes.
CostReport measure_cost(const std::string& arch, const adapters::ReprogramOptions& options, int64_t classes,
                        int64_t input_size, bool small_stem);

// The report as pretty-printed JSON (what `clr params` prints).
std::string to_json(const CostReport& report);

}  // namespace clr::eval
