// The one place where LibTorch version differences live. clr builds against
// Debian's LibTorch 1.13 (CPU) and the CUDA LibTorch 2.x shipped inside PyTorch
// wheels; everything version-specific goes through these helpers.
#pragma once

#include <string>

#include <torch/version.h>

#define CLR_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace clr::compat {

// "1.13.1" / "2.11.0".
inline std::string torch_version() { return TORCH_VERSION; }

// Allow or forbid TF32 in cuDNN convolutions and cuBLAS matmuls (numerical tests
// compare fp32 CPU with fp32 CUDA and need it off). No-op without CUDA.
void set_allow_tf32(bool allow);

// True when the LibTorch in use was built with CUDA and a device is visible.
bool cuda_available();

}  // namespace clr::compat
