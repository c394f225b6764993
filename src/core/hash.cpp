#include "clr/core/hash.h"

#include <openssl/evp.h>

#include <ATen/ATen.h>

#include "clr/core/error.h"

namespace clr {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
  bool done = false;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  CLR_ASSERT(impl_->ctx != nullptr && EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) == 1,
             "OpenSSL SHA-256 initialisation failed");
}

Sha256::~Sha256() { EVP_MD_CTX_free(impl_->ctx); }

void Sha256::update(const void* data, size_t size) {
  CLR_ASSERT(!impl_->done, "Sha256::update after hex()");
  if (size > 0) CLR_ASSERT(EVP_DigestUpdate(impl_->ctx, data, size) == 1, "EVP_DigestUpdate failed");
}

std::string Sha256::hex() {
  CLR_ASSERT(!impl_->done, "Sha256::hex called twice");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  CLR_ASSERT(EVP_DigestFinal_ex(impl_->ctx, digest, &n) == 1, "EVP_DigestFinal_ex failed");
  impl_->done = true;
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

std::string sha256_hex(const std::string& bytes) {
  Sha256 h;
  h.update(bytes);
  return h.hex();
}

std::string fingerprint(const TensorMap& tensors) {
  Sha256 h;
  for (const auto& [name, t] : tensors) {
    const at::Tensor c = t.detach().to(at::kCPU).contiguous();
    h.update(name);
    h.update("\0", 1);
    h.update(describe(c));  // dtype and shape
    h.update("\0", 1);
    h.update(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
  }
  return "sha256:" + h.hex();
}

}  // namespace clr
