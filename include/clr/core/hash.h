// SHA-256 (through OpenSSL's libcrypto) and tensor fingerprints.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "clr/core/tensor_map.h"

namespace clr {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size);
  void update(const std::string& s) { update(s.data(), s.size()); }
  // Lower-case hex digest; the object cannot be updated afterwards.
  std::string hex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(const std::string& bytes);

// "sha256:<hex>" over the tensors in key order. Each entry contributes its name, its
// dtype name, its shape and its contiguous little-endian bytes, so the fingerprint is
// the same for the same values whatever the device, memory layout or file format they
// came from.
std::string fingerprint(const TensorMap& tensors);

}  // namespace clr
