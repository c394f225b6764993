// Every method `clr run --method` and `clr compare --methods` know, their
// hyperparameters (defaults documented in docs/METHODS.md), and one factory.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "clr/models/resnet.h"
#include "clr/train/method.h"
#include "clr/train/methods/regularized.h"
#include "clr/train/methods/replay.h"

namespace clr::train {

struct MethodOptions {
  int64_t kernel = 3;     // clr variants: the CLR kernel size
  EwcOptions ewc;         // ewc and online-ewc (online is set from the name)
  SiOptions si;
  LwfOptions lwf;
  ReplayOptions replay;   // er and derpp (derpp is set from the name)
  uint64_t seed = 0;      // Fisher sampling, the replay buffer
  int64_t crop = 0;       // the training crop (replayed images are centre-cropped to it)
  int64_t max_classes = 0;  // the widest task of the sequence (sgd-ll, derpp)
  // Checks every method's settings (so `clr compare` fails before training anything).
  void validate() const;
};

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
