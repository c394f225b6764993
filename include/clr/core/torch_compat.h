// The one place where LibTorch version differences live. clr builds against
// Debian's LibTorch 1.13 (CPU) and the CUDA LibTorch 2.x shipped inside PyTorch
// wheels; everything version-specific goes through these helpers.
#pragma once

#include <string>

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
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

// Mixed precision for the scope of the guard: ops that autocast lists (convolutions,
// matrix products) run in `dtype` on `device`; the previous state comes back at the
// end. `dtype` kFloat: no autocast (the guard does nothing). LibTorch 1.13 names the
// CUDA and CPU switches apart; 2.4+ takes the device type.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device, c10::ScalarType dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_;
  bool active_ = false;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace clr::compat
