#include "clr/core/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "clr/core/error.h"

namespace clr {
namespace {

std::string dir_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_path_ = detail::concat(path_, ".tmp.", ::getpid());
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  CLR_CHECK(file_ != nullptr, NotFoundError, "cannot create '", tmp_path_, "' to write '", path_,
            "': ", std::strerror(errno), "; check that the directory exists and is writable");
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  CLR_ASSERT(file_ != nullptr, "write after commit on '", path_, "'");
  if (size == 0) return;
  CLR_CHECK(std::fwrite(data, 1, size, file_) == size, FormatError, "writing '", tmp_path_,
            "' failed: ", std::strerror(errno), " (disk full?)");
}

void AtomicFile::commit() {
  CLR_ASSERT(file_ != nullptr, "commit twice on '", path_, "'");
  const bool flushed = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const int saved = errno;
  std::fclose(file_);
  file_ = nullptr;
  CLR_CHECK(flushed, FormatError, "flushing '", tmp_path_, "' failed: ", std::strerror(saved));
  CLR_CHECK(std::rename(tmp_path_.c_str(), path_.c_str()) == 0, FormatError, "renaming '", tmp_path_,
            "' to '", path_, "' failed: ", std::strerror(errno));
  committed_ = true;
  const int dir = ::open(dir_of(path_).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_file(const std::string& path) {
  struct stat st {};
  CLR_CHECK(::stat(path.c_str(), &st) == 0, NotFoundError, "file '", path, "' does not exist");
  CLR_CHECK(S_ISREG(st.st_mode), NotFoundError, "'", path, "' is not a regular file");
  std::ifstream in(path, std::ios::binary);
  CLR_CHECK(in.good(), NotFoundError, "cannot open '", path, "': ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace clr
