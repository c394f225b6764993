// Builds a CLR-reprogrammed ResNet-18 from the installed library, runs it on a batch
// and prints what one task trains, as `clr params` counts it.
#include <iostream>

#include <torch/torch.h>

#include "clr/adapters/reprogram.h"
#include "clr/models/registry.h"

int main() {
  clr::models::ResNet backbone = clr::models::make_resnet("resnet18", 0, /*small_stem=*/true);
  clr::adapters::ReprogrammedNet net(backbone, clr::adapters::ReprogramOptions(), 10);
  net->eval();
  const at::Tensor logits = net->forward(torch::zeros({2, 3, 32, 32}));
  std::cout << "logits " << logits.size(0) << "x" << logits.size(1) << ", trainable " << net->trainable_parameters().size()
            << " tensors\n";
  return logits.size(1) == 10 ? 0 : 1;
}
