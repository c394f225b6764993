// TensorBoard event files (`clr run --tensorboard DIR`): scalars written as TensorBoard
// reads them — TFRecord framing (length, masked CRC-32C of the length, a serialized
// tensorflow.Event, masked CRC-32C of it) around Event{wall_time, step, summary{value
// {tag, simple_value}}}, the first record being file_version "brain.Event:2". The few
// protobuf fields are encoded here by hand (the format is fixed and small; Debian 12 has
// no CRC-32C library for C++), and python/tests check the files with Google's protobuf.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace clr::eval {

// CRC-32C (Castagnoli), as TFRecord uses it.
uint32_t crc32c(const void* data, size_t size);

class TensorBoardWriter {
 public:
  // Creates `dir` and a new file events.out.tfevents.<seconds>.<host>.<pid>.clr in it
  // (TensorBoard reads every events file of a directory, so a resumed run adds one).
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void scalar(const std::string& tag, double value, int64_t step);
  // Flushed after every call of scalar as well: a crash loses nothing written.
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

struct TensorBoardScalar {
  std::string tag;
  int64_t step = 0;
  float value = 0;
  double wall_time = 0;
};
// The scalars of an events file, checking its framing and checksums (FormatError
// naming the file and the record otherwise).
std::vector<TensorBoardScalar> read_tensorboard_scalars(const std::string& path);

}  // namespace clr::eval
