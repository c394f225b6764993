#include "clr/core/torch_compat.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

namespace clr::compat {

void set_allow_tf32(bool allow) {
  // Both setters exist from 1.7 through 2.x (2.9+ also has setFloat32Precision,
  // which these forward to).
  at::globalContext().setAllowTF32CuDNN(allow);
  at::globalContext().setAllowTF32CuBLAS(allow);
}

bool cuda_available() { return torch::cuda::is_available(); }

}  // namespace clr::compat
