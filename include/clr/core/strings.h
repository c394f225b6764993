// Small string helpers shared by every layer: ASCII lower case, prefix / suffix
// tests, byte counts for people and big-endian integers in byte strings. Header-only; no locale is consulted (bytes outside ASCII are kept as they are).
#pragma once

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <string>

namespace clr {

// `s` with ASCII letters in lower case.
inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A byte count for people: "512 B", "1.5 KiB", "240.3 KiB", "21.5 MiB", "1.25 GiB".
inline std::string human_bytes(double b) {
  char buf[32];
  if (b < 1024) std::snprintf(buf, sizeof buf, "%.0f B", b);
  else if (b < 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024);
  else if (b < 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024 * 1024));
  else std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  return buf;
}

// The big-endian unsigned 32-bit integer at `at` of `bytes` (the caller checks the size).
inline uint32_t read_be32(const std::string& bytes, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(bytes[at + i]);
  return v;
}

}  // namespace clr
