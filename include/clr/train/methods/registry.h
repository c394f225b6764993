// Every method `clr run --method` and `clr compare --methods` know, their
// hyperparameters (defaults documented in docs/METHODS.md), and one factory.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "clr/core/settings.h"
#include "clr/models/resnet.h"
#include "clr/train/method.h"
#include "clr/train/methods/ccll.h"
#include "clr/train/methods/eft.h"
#include "clr/train/methods/psp.h"
#include "clr/train/methods/regularized.h"
#include "clr/train/methods/replay.h"
#include "clr/train/methods/supsup.h"

namespace clr::train {

struct MethodOptions {
  int64_t kernel = 3;     // clr variants: the CLR kernel size
  std::string clr_norm = "task";  // clr, clr-full: what a task keeps of BatchNorm (task, affine, frozen)
  EwcOptions ewc;         // ewc and online-ewc (online is set from the name)
  SiOptions si;
  LwfOptions lwf;
  ReplayOptions replay;   // er and derpp (derpp is set from the name)
  SupsupOptions supsup;
  EftOptions eft;
  CcllOptions ccll;
  PspOptions psp;
  uint64_t seed = 0;      // Fisher sampling, the replay buffer
  int64_t crop = 0;       // the training crop (replayed images are centre-cropped to it)
  int64_t max_classes = 0;  // the widest task of the sequence (sgd-ll, derpp)
  // Checks every method's settings (so `clr compare` fails before training anything).
  void validate() const;
};
// A run config's [method] table: flat keys ewc_lambda, ewc_gamma, fisher_samples, si_c,
// si_xi, lwf_alpha, lwf_temperature, buffer, replay_batch, derpp_alpha, derpp_beta,
// supsup_weights, supsup_density, supsup_er_scale, eft_base, eft_spatial_group,
// eft_depth_group, ccll_base, ccll_kernel, ccll_init, psp_context, clr_norm (kernel, seed, crop and max_classes
// come from the rest of the run).
void to_json(settings::Json& j, const MethodOptions& o);
void from_json(const settings::Json& j, MethodOptions& o);

// "clr,sgd,ewc" (spaces ignored) or "all" as method names; ConfigError for an unknown
// or repeated name or an empty list.
std::vector<std::string> parse_method_list(const std::string& list);

// Names in the order help and `clr compare --methods all` list them.
std::vector<std::string> method_names();
// One line per method: name and what it does.
std::string methods_help();

// Builds method `name` over `backbone` (a feature-mode ResNet on its device; the
// method may train it). `backbone_params_with_fc` is the paper's denominator.
// Throws ConfigError naming the known methods for an unknown name.
std::unique_ptr<Method> make_method(const std::string& name, models::ResNet backbone,
                                    int64_t backbone_params_with_fc, MethodOptions options);

}  // namespace clr::train
