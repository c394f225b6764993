#include "clr/core/tensor_map.h"

#include <sstream>

#include <ATen/ATen.h>

#include "clr/core/safetensors.h"

namespace clr {

std::string describe(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::ostringstream os;
  try {
    os << safetensors_dtype_name(t.scalar_type());
  } catch (const std::exception&) {
    os << c10::toString(t.scalar_type());
  }
  os << '[';
  for (int64_t i = 0; i < t.dim(); ++i) os << (i ? ", " : "") << t.size(i);
  os << ']';
  return os.str();
}

at::Tensor to_device_async(const at::Tensor& host, const c10::Device& device) {
  if (device.is_cpu()) return host.device().is_cpu() ? host : host.to(device);
  if (!host.device().is_cpu()) return host.to(device);
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

int64_t total_numel(const TensorMap& tensors) {
  int64_t n = 0;
  for (const auto& kv : tensors) n += kv.second.numel();
  return n;
}

int64_t total_bytes(const TensorMap& tensors) {
  int64_t n = 0;
  for (const auto& kv : tensors) n += kv.second.numel() * static_cast<int64_t>(kv.second.element_size());
  return n;
}

std::string join_first(const std::vector<std::string>& items, size_t limit) {
  std::ostringstream os;
  for (size_t i = 0; i < items.size() && i < limit; ++i) os << (i ? ", " : "") << items[i];
  if (items.size() > limit) os << " (and " << items.size() - limit << " more)";
  return os.str();
}

std::string KeyMismatch::summary() const {
  std::ostringstream os;
  if (!missing.empty()) os << ' ' << missing.size() << " missing keys (" << join_first(missing) << ");";
  if (!unexpected.empty()) os << ' ' << unexpected.size() << " unexpected keys (" << join_first(unexpected) << ");";
  if (!mismatched.empty()) os << ' ' << mismatched.size() << " shape mismatches (" << join_first(mismatched, 4) << ");";
  return os.str();
}

TensorMap clone_tensors(const TensorMap& tensors) {
  TensorMap out;
  for (const auto& [k, v] : tensors) out.emplace(k, v.detach().clone(at::MemoryFormat::Contiguous));
  return out;
}

TensorMap with_prefix(const TensorMap& from, const std::string& prefix) {
  TensorMap out;
  for (const auto& [k, v] : from) {
    if (k.size() > prefix.size() && k.compare(0, prefix.size() + 1, prefix + ".") == 0) {
      out.emplace(k.substr(prefix.size() + 1), v);
    }
  }
  return out;
}

void add_prefixed(TensorMap& to, const std::string& prefix, const TensorMap& from) {
  for (const auto& [k, v] : from) to.emplace(prefix + "." + k, v);
}

}  // namespace clr
