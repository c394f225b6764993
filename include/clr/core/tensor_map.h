// A named set of tensors in canonical (lexicographic) order: state dicts, per-task
// state, file contents.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace clr {

using TensorMap = std::map<std::string, at::Tensor>;
using Metadata = std::map<std::string, std::string>;

// "F32[64, 3, 7, 7]": dtype and shape, for error messages.
std::string describe(const at::Tensor& t);

// A host tensor on `device` without waiting for the device: on a GPU the copy goes
// through pinned memory and is queued behind the work already there (a plain .to()
// from pageable memory waits for all of it). On the CPU, `host` itself.
at::Tensor to_device_async(const at::Tensor& host, const c10::Device& device);

// Total number of elements over all tensors.
int64_t total_numel(const TensorMap& tensors);

// Total bytes of all tensors' elements (as stored: numel x element size).
int64_t total_bytes(const TensorMap& tensors);

// The first `limit` items joined with ", ", plus "(and N more)".
std::string join_first(const std::vector<std::string>& items, size_t limit = 8);

// Differences between the keys a consumer expects and the keys it was given, and a
// one-line summary for error messages ("2 missing keys (a, b); 1 unexpected keys (c);").
struct KeyMismatch {
  std::vector<std::string> missing, unexpected, mismatched;
  bool empty() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const;
};

// Deep copies (detached, contiguous), on the tensors' own devices.
TensorMap clone_tensors(const TensorMap& tensors);

// The tensors under `prefix.` of `from`, without it.
TensorMap with_prefix(const TensorMap& from, const std::string& prefix);
// Adds every tensor of `from` to `to` as `prefix.<key>`.
void add_prefixed(TensorMap& to, const std::string& prefix, const TensorMap& from);

}  // namespace clr
