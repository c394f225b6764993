#include "clr/eval/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "clr/core/error.h"
#include "clr/core/file_io.h"

namespace clr::eval {
namespace {

// Protobuf wire format: varints, tags, length-delimited fields, little-endian fixed.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
template <class T>
void fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out.append(b, sizeof(T));
}
void field(std::string& out, int number, int wire_type) { varint(out, static_cast<uint64_t>(number << 3 | wire_type)); }
void bytes_field(std::string& out, int number, const std::string& bytes) {
  field(out, number, 2);
  varint(out, bytes.size());
  out += bytes;
}

uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected 0x1EDC6F41
      t[i] = c;
    }
    return t;
  }();
  return table;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Reads a varint at `p` (advancing it) within [p, end).
uint64_t read_varint(const char*& p, const char* end, const std::string& where) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    CLR_CHECK(p < end, FormatError, where, ": truncated varint");
    const auto b = static_cast<uint8_t>(*p++);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  throw FormatError(where + ": varint too long");
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto& t = crc_table();
  uint32_t c = 0xffffffffu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  make_directories(dir);
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  path_ = detail::concat(dir, "/events.out.tfevents.", static_cast<int64_t>(now_seconds()), ".", host, ".",
                         static_cast<int64_t>(::getpid()), ".clr");
  file_ = std::fopen(path_.c_str(), "wb");
  CLR_CHECK(file_ != nullptr, NotFoundError, "cannot write the TensorBoard file '", path_, "': ", std::strerror(errno));
  std::string event;
  field(event, 1, 1);
  fixed(event, now_seconds());
  bytes_field(event, 3, "brain.Event:2");
  record(event);
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void TensorBoardWriter::scalar(const std::string& tag, double value, int64_t step) {
  std::string v;  // Summary.Value{tag = 1, simple_value = 2}
  bytes_field(v, 1, tag);
  field(v, 2, 5);
  fixed(v, static_cast<float>(value));
  std::string summary;  // Summary{value = 1}
  bytes_field(summary, 1, v);
  std::string event;  // Event{wall_time = 1, step = 2, summary = 5}
  field(event, 1, 1);
  fixed(event, now_seconds());
  field(event, 2, 0);
  varint(event, static_cast<uint64_t>(step));
  bytes_field(event, 5, summary);
  record(event);
}

void TensorBoardWriter::record(const std::string& event) {
  std::string r;
  const uint64_t n = event.size();
  fixed(r, n);
  fixed(r, masked(crc32c(r.data(), 8)));
  r += event;
  fixed(r, masked(crc32c(event.data(), event.size())));
  CLR_CHECK(std::fwrite(r.data(), 1, r.size(), file_) == r.size() && std::fflush(file_) == 0, InternalError,
            "writing the TensorBoard file '", path_, "' failed: ", std::strerror(errno));
}

std::vector<TensorBoardScalar> read_tensorboard_scalars(const std::string& path) {
  const std::string data = read_file(path);
  std::vector<TensorBoardScalar> out;
  size_t at = 0;
  for (int64_t index = 0; at < data.size(); ++index) {
    const std::string where = detail::concat("'", path, "' record ", index);
    CLR_CHECK(data.size() - at >= 12, FormatError, where, ": truncated header");
    uint64_t n = 0;
    uint32_t crc_n = 0, crc_d = 0;
    std::memcpy(&n, data.data() + at, 8);
    std::memcpy(&crc_n, data.data() + at + 8, 4);
    CLR_CHECK(masked(crc32c(data.data() + at, 8)) == crc_n, FormatError, where, ": the length's checksum is wrong");
    CLR_CHECK(n <= data.size() - at - 12 && data.size() - at - 12 - n >= 4, FormatError, where, ": truncated event");
    const char* p = data.data() + at + 12;
    const char* end = p + n;
    std::memcpy(&crc_d, end, 4);
    CLR_CHECK(masked(crc32c(p, n)) == crc_d, FormatError, where, ": the event's checksum is wrong");
    at += 12 + n + 4;
    TensorBoardScalar s;
    bool is_scalar = false;
    while (p < end) {  // Event
      const uint64_t key = read_varint(p, end, where);
      const int number = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
      if (type == 1) {
        CLR_CHECK(end - p >= 8, FormatError, where, ": truncated field");
        if (number == 1) std::memcpy(&s.wall_time, p, 8);
        p += 8;
      } else if (type == 0) {
        const uint64_t v = read_varint(p, end, where);
        if (number == 2) s.step = static_cast<int64_t>(v);
      } else if (type == 2) {
        const uint64_t len = read_varint(p, end, where);
        CLR_CHECK(len <= static_cast<uint64_t>(end - p), FormatError, where, ": truncated field");
        if (number == 5) {  // Summary: its first value
          const char* q = p;
          const char* qend = p + len;
          while (q < qend) {
            const uint64_t k = read_varint(q, qend, where);
            const uint64_t vlen = read_varint(q, qend, where);
            CLR_CHECK((k & 7) == 2 && vlen <= static_cast<uint64_t>(qend - q), FormatError, where, ": bad summary");
            const char* v = q;
            const char* vend = q + vlen;
            while (v < vend) {  // Summary.Value
              const uint64_t vk = read_varint(v, vend, where);
              if ((vk & 7) == 2) {
                const uint64_t tl = read_varint(v, vend, where);
                CLR_CHECK(tl <= static_cast<uint64_t>(vend - v), FormatError, where, ": bad tag");
                if ((vk >> 3) == 1) s.tag.assign(v, tl);
                v += tl;
              } else if ((vk & 7) == 5) {
                CLR_CHECK(vend - v >= 4, FormatError, where, ": bad value");
                if ((vk >> 3) == 2) {
                  std::memcpy(&s.value, v, 4);
                  is_scalar = true;
                }
                v += 4;
              } else {
                throw FormatError(where + ": unexpected field in a summary value");
              }
            }
            q = vend;
          }
        }
        p += len;
      } else if (type == 5) {
        CLR_CHECK(end - p >= 4, FormatError, where, ": truncated field");
        p += 4;
      } else {
        throw FormatError(where + ": unexpected wire type");
      }
    }
    if (is_scalar) out.push_back(s);
  }
  return out;
}

}  // namespace clr::eval
