#include "clr/core/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include "clr/core/error.h"
#include "clr/core/log.h"
#include "clr/core/path.h"

namespace clr {
namespace {

void fsync_directory_of(const std::string& path) {
  const int dir = ::open(dir_name(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

// Renames `from` over `to`; NotFoundError (file_io.h) when that fails.
void rename_or_throw(const std::string& from, const std::string& to) {
  CLR_CHECK(std::rename(from.c_str(), to.c_str()) == 0, NotFoundError, "cannot rename '", from, "' to '", to,
            "': ", std::strerror(errno));
}

// Removes TARGET.partial-<pid> and TARGET.old-<pid> left by builders that were killed
// (their process is gone).
void remove_stale_stages(const std::string& target) {
  const std::string parent = dir_name(target), base = base_name(target);
  if (!directory_exists(parent)) return;
  for (const auto& e : list_directory(parent)) {
    for (const char* tag : {".partial-", ".old-"}) {
      const std::string prefix = base + tag;
      if (e.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string pid = e.substr(prefix.size());
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) {
        log::info("removing '", parent, "/", e, "', left by a build that was stopped");
        remove_tree(parent + "/" + e);
      }
    }
  }
}

}  // namespace

std::string temporary_path(const std::string& path) { return detail::concat(path, ".tmp.", ::getpid()); }

void commit_temporary(const std::string& tmp, const std::string& path) {
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  CLR_CHECK(fd >= 0, NotFoundError, "cannot open '", tmp, "' to write '", path, "': ", std::strerror(errno));
  const bool synced = ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  CLR_CHECK(synced, FormatError, "flushing '", tmp, "' failed: ", std::strerror(saved));
  rename_or_throw(tmp, path);
  fsync_directory_of(path);
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_path_ = temporary_path(path_);
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

void AtomicFile::commit(bool durable) {
  CLR_ASSERT(file_ != nullptr, "commit twice on '", path_, "'");
  const bool flushed = std::fflush(file_) == 0 && (!durable || ::fsync(::fileno(file_)) == 0);
  const int saved = errno;
  std::fclose(file_);
  file_ = nullptr;
  CLR_CHECK(flushed, FormatError, "flushing '", tmp_path_, "' failed: ", std::strerror(saved));
  rename_or_throw(tmp_path_, path_);
  committed_ = true;
  if (durable) fsync_directory_of(path_);
}

StagedDirectory::StagedDirectory(std::string target) : target_(std::move(target)) {
  remove_stale_stages(target_);
  partial_ = detail::concat(target_, ".partial-", ::getpid());
  remove_tree(partial_);
  make_directories(partial_);
}

StagedDirectory::~StagedDirectory() {
  if (!committed_) remove_tree(partial_);
}

void StagedDirectory::commit() {
  CLR_ASSERT(!committed_, "commit twice on '", target_, "'");
  if (!directory_exists(target_)) {
    rename_or_throw(partial_, target_);
    committed_ = true;
    return;
  }
  const std::string old = detail::concat(target_, ".old-", ::getpid());
  CLR_CHECK(std::rename(target_.c_str(), old.c_str()) == 0, NotFoundError, "cannot move the old '", target_,
            "' aside: ", std::strerror(errno));
  if (std::rename(partial_.c_str(), target_.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::rename(old.c_str(), target_.c_str());  // put the old one back
    throw NotFoundError(detail::concat("cannot rename '", partial_, "' to '", target_, "': ", why, "; '", target_,
                                       "' is unchanged"));
  }
  committed_ = true;
  remove_tree(old);
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

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

void require_file(const std::string& path, const std::string& what) {
  struct stat st {};
  CLR_CHECK(::stat(path.c_str(), &st) == 0, NotFoundError, what, " '", path, "' does not exist");
  CLR_CHECK(!S_ISDIR(st.st_mode), NotFoundError, what, " '", path, "' is a directory, not a file");
  CLR_CHECK(S_ISREG(st.st_mode), NotFoundError, what, " '", path, "' is not a regular file");
}

void require_directory(const std::string& path, const std::string& what) {
  struct stat st {};
  CLR_CHECK(::stat(path.c_str(), &st) == 0, NotFoundError, what, " '", path, "' does not exist");
  CLR_CHECK(S_ISDIR(st.st_mode), NotFoundError, what, " '", path, "' is a file, not a directory");
}

std::string read_file(const std::string& path) {
  require_file(path);
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

void write_file_replacing(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit(/*durable=*/false);
}

void write_file(const std::string& path, const std::string& contents) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  CLR_CHECK(f != nullptr, NotFoundError, "cannot write '", path, "': ", std::strerror(errno));
  const size_t n = std::fwrite(contents.data(), 1, contents.size(), f);
  const bool ok = std::fclose(f) == 0 && n == contents.size();
  CLR_CHECK(ok, FormatError, "writing '", path, "' failed (disk full?)");
}

std::string read_maybe_gzipped(const std::string& path) {
  require_file(path);
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files too
  CLR_CHECK(f != nullptr, NotFoundError, "cannot open '", path, "'");
  std::string out;
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int err = 0;
  const char* msg = gzerror(f, &err);
  const std::string why = msg ? msg : "";
  gzclose(f);
  CLR_CHECK(n == 0 && err == Z_OK, FormatError, "'", path, "': corrupt gzip data (", why, ")");
  return out;
}

void write_gzip_atomic(const std::string& path, const std::string& contents, int level) {
  // A gzip stream (window bits 15 + 16), as gzopen(path, "wb<level>") writes it.
  z_stream z{};
  CLR_CHECK(deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK, InternalError,
            "zlib cannot compress at level ", level);
  std::string out;
  char buf[1 << 16];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(contents.data()));
  size_t left = contents.size();
  int rc = Z_OK;
  do {
    if (z.avail_in == 0 && left > 0) {  // avail_in is 32 bits: feed large inputs in pieces
      z.avail_in = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
      left -= z.avail_in;
    }
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = deflate(&z, left == 0 ? Z_FINISH : Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  } while (rc == Z_OK);
  deflateEnd(&z);
  CLR_ASSERT(rc == Z_STREAM_END, "zlib failed to compress '", path, "' (", rc, ")");
  write_file_atomic(path, out);
}

}  // namespace clr
