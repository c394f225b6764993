#include "clr/core/torch_compat.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>

namespace clr::compat {

void set_allow_tf32(bool allow) {
  // Both setters exist from 1.7 through 2.x (2.9+ also has setFloat32Precision,
  // which these forward to).
  at::globalContext().setAllowTF32CuDNN(allow);
  at::globalContext().setAllowTF32CuBLAS(allow);
}

bool cuda_available() { return torch::cuda::is_available(); }

namespace {

bool autocast_enabled(c10::DeviceType d) {
#if CLR_TORCH_VERSION_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(d);
#else
  return d == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(c10::DeviceType d, bool on) {
#if CLR_TORCH_VERSION_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(d, on);
#else
  if (d == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_cpu_enabled(on);
  }
#endif
}

c10::ScalarType autocast_dtype(c10::DeviceType d) {
#if CLR_TORCH_VERSION_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(d);
#else
  return d == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(c10::DeviceType d, c10::ScalarType t) {
#if CLR_TORCH_VERSION_AT_LEAST(2, 4)
  at::autocast::set_autocast_dtype(d, t);
#else
  if (d == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(t);
  } else {
    at::autocast::set_autocast_cpu_dtype(t);
  }
#endif
}

}  // namespace

AutocastGuard::AutocastGuard(c10::DeviceType device, c10::ScalarType dtype) : device_(device) {
  if (dtype == c10::ScalarType::Float) return;
  active_ = true;
  was_enabled_ = autocast_enabled(device);
  was_dtype_ = autocast_dtype(device);
  set_autocast_dtype(device, dtype);
  set_autocast_enabled(device, true);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // The cast weights are cached while autocast is on; the outermost guard drops them
  // (as torch.autocast's __exit__), so that a later step sees the updated weights.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device_, was_enabled_);
  set_autocast_dtype(device_, was_dtype_);
}

}  // namespace clr::compat
