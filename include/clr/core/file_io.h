// Crash-safe file writing: bytes go to a temporary name next to the target, are
// fsync'ed, then renamed over it, so a killed process leaves the old file or the new
// one, never half of one.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

namespace clr {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // removes the temporary file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(const std::string& s) { write(s.data(), s.size()); }
  // Flushes, fsyncs, renames over the target and fsyncs the directory.
  void commit();

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

// Directory helpers on POSIX calls. clr does not use std::filesystem: the CUDA
// LibTorch inside PyTorch wheels exports its own copies of std::filesystem symbols,
// which interpose on the program's and crash (seen with LibTorch 2.11).
// make_directories: mkdir -p, throws NotFoundError naming the path on failure.
void make_directories(const std::string& path);
// rm -rf; returns false (and leaves what it could not remove) on failure.
bool remove_tree(const std::string& path);
// Names of the entries of a directory (no "." or ".."), sorted; throws NotFoundError.
std::vector<std::string> list_directory(const std::string& path);
bool directory_exists(const std::string& path);

// Whole-file helpers. read_file throws NotFoundError / FormatError naming the path.
std::string read_file(const std::string& path);
void write_file_atomic(const std::string& path, const std::string& contents);
bool file_exists(const std::string& path);

}  // namespace clr
