// Crash-safe file writing and POSIX file helpers.
//
// Files: bytes go to a temporary name next to the target (PATH.tmp.<pid>), are
// fsync'ed, then renamed over it, so a killed process leaves the old file or the new
// one, never half of one. Every writer of clr that replaces a file goes through
// AtomicFile, write_file_atomic, write_gzip_atomic or (for a file another library
// writes, e.g. an SQLite database) temporary_path + commit_temporary.
//
// Directories: StagedDirectory builds a whole tree under a temporary name beside its
// target (OUT.partial-<pid>) and renames it into place when complete, so a stopped
// build leaves the old tree (or none), never half of a new one.
//
// Errors, the same for every writer here (one kind per failure):
//   - the target cannot be created or replaced: its directory is missing or not
//     writable, or renaming the finished temporary file or directory over it fails
//     (the target is a directory, a read-only file system, ...) -> NotFoundError naming
//     the path: the path the user named cannot be written, like a path that is not there;
//   - writing or flushing the bytes fails (disk full, I/O error) -> FormatError naming
//     the temporary file;
//   - reading: a missing or unreadable file -> NotFoundError, bytes that are not what
//     the reader expects (corrupt gzip data) -> FormatError.
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
  // Flushes, fsyncs, renames over the target and fsyncs the directory. Not `durable`:
  // no fsync, so a killed process still leaves the old file or the new one, but a
  // crash of the machine may leave a damaged one (for files a reader can do without).
  void commit(bool durable = true);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

// The temporary name a writer of `path` uses: PATH.tmp.<pid> (Store::verify and the
// runner recognise leftovers by ".tmp.").
std::string temporary_path(const std::string& path);
// Moves a complete temporary file (written by someone else, e.g. SQLite) over `path`:
// fsyncs it, renames it and fsyncs the directory. The caller removes `tmp` on failure.
void commit_temporary(const std::string& tmp, const std::string& path);

// A directory tree built in place of `target`:
//
//   StagedDirectory staged(out);        // removes stale OUT.partial-*/OUT.old-* of dead builders
//   write files under staged.path();   // OUT.partial-<pid>
//   staged.commit();                   // OUT.partial-<pid> -> OUT (an old OUT replaced)
//
// The destructor removes the partial tree unless commit() succeeded. commit() moves an
// existing target aside (OUT.old-<pid>), renames the new tree into place and only then
// removes the old one; when the rename fails the old target is put back.
class StagedDirectory {
 public:
  explicit StagedDirectory(std::string target);
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  const std::string& path() const { return partial_; }
  const std::string& target() const { return target_; }
  void commit();

 private:
  std::string target_, partial_;
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
// The same without fsync (AtomicFile::commit(false)): for large files written often
// that a reader can do without (the checkpoint of the epoch in flight).
void write_file_replacing(const std::string& path, const std::string& contents);
// A plain write (create or truncate, no temporary, no fsync), for the many files of a
// tree that a StagedDirectory moves into place as a whole; same error kinds.
void write_file(const std::string& path, const std::string& contents);
bool file_exists(const std::string& path);
// True when both paths exist and name the same file or directory (device and inode).
bool same_file(const std::string& a, const std::string& b);
// NotFoundError unless `path` is a regular file, saying what it is instead: "<what>
// 'PATH' does not exist", "... is a directory, not a file", "... is not a regular file".
void require_file(const std::string& path, const std::string& what = "file");
// The same for a directory ("... is a file, not a directory").
void require_directory(const std::string& path, const std::string& what = "directory");

// gzip: a file's bytes, decompressed when it is gzipped (plain files are read as they
// are); NotFoundError for a missing file, FormatError for corrupt gzip data.
std::string read_maybe_gzipped(const std::string& path);
// `contents` gzipped (zlib, at `level` 0..9) and written as write_file_atomic does.
void write_gzip_atomic(const std::string& path, const std::string& contents, int level = 9);

}  // namespace clr
