#include "clr/core/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <algorithm>
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

void make_directories(const std::string& path) {
  CLR_CHECK(!path.empty(), ConfigError, "empty directory path");
  std::string prefix;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    prefix = path.substr(0, pos);
    if (prefix.empty() || directory_exists(prefix)) continue;
    CLR_CHECK(::mkdir(prefix.c_str(), 0777) == 0 || errno == EEXIST, NotFoundError, "cannot create directory '",
              prefix, "': ", std::strerror(errno));
  }
  CLR_CHECK(directory_exists(path), NotFoundError, "'", path, "' exists and is not a directory");
}

bool remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  auto remove_entry = [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); };
  return ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

std::vector<std::string> list_directory(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  CLR_CHECK(dir != nullptr, NotFoundError, "cannot list directory '", path, "': ", std::strerror(errno));
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

bool directory_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
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
