#include "clr/data/debian.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <sstream>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/path.h"
#include "clr/core/strings.h"

namespace clr::data {
namespace {

bool is_regular(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

DebianPackage read_debian_package(const std::string& name, const std::string& root) {
  const std::string hint = detail::concat("install it with `sudo apt-get install ", name, "` (scripts/setup.sh does)");
  DebianPackage p;
  p.name = name;
  // Version (and installed state) from the status file.
  const std::string status_path = under_root(root, "/var/lib/dpkg/status");
  std::istringstream status(read_file(status_path));
  bool in_package = false, installed = false;
  for (std::string line; std::getline(status, line);) {
    if (line.empty()) {
      if (in_package) break;
      continue;
    }
    if (starts_with(line, "Package: ")) {
      in_package = line.substr(9) == name;
    } else if (in_package && starts_with(line, "Status: ")) {
      installed = ends_with(line, " installed") && line.find("not-installed") == std::string::npos;
    } else if (in_package && starts_with(line, "Version: ")) {
      p.version = line.substr(9);
    }
  }
  CLR_CHECK(installed && !p.version.empty(), NotFoundError, "Debian package '", name, "' is not installed; ", hint);

  // Installed files from the package's list (NAME.list, or NAME:ARCH.list for
  // architecture-dependent packages).
  const std::string info = under_root(root, "/var/lib/dpkg/info/");
  std::string list_path = info + name + ".list";
  if (!file_exists(list_path)) {
    for (const auto& entry : list_directory(info)) {
      if (starts_with(entry, name + ":") && ends_with(entry, ".list")) {
        list_path = info + entry;
        break;
      }
    }
  }
  CLR_CHECK(file_exists(list_path), NotFoundError, "no file list for Debian package '", name, "' in '", info, "'; ",
            hint);
  std::istringstream list(read_file(list_path));
  for (std::string line; std::getline(list, line);) {
    if (!line.empty() && is_regular(under_root(root, line))) p.files.push_back(line);
  }
  std::sort(p.files.begin(), p.files.end());

  // Licences: the "License:" short names of a machine-readable copyright file.
  const std::string copyright = under_root(root, "/usr/share/doc/" + name + "/copyright");
  if (file_exists(copyright)) {
    std::istringstream in(read_file(copyright));
    for (std::string line; std::getline(in, line);) {
      if (!starts_with(line, "License:")) continue;
      std::string l = line.substr(8);
      l.erase(0, l.find_first_not_of(" \t"));
      l.erase(l.find_last_not_of(" \t\r") + 1);
      // A licence name, not a sentence some copyright files put there.
      const bool sentence = l.size() > 100 || l.find(" is ") != std::string::npos || l.find(" the ") != std::string::npos;
      if (!l.empty() && !sentence && std::find(p.licenses.begin(), p.licenses.end(), l) == p.licenses.end()) {
        p.licenses.push_back(l);
      }
    }
  }
  if (p.licenses.empty()) p.licenses.push_back("see /usr/share/doc/" + name + "/copyright");
  return p;
}

std::vector<std::string> package_files(const DebianPackage& package, const std::string& prefix,
                                       const std::vector<std::string>& suffixes) {
  std::vector<std::string> out;
  for (const auto& f : package.files) {
    if (!starts_with(f, prefix)) continue;
    const std::string lf = lower(f);
    bool ok = suffixes.empty();
    for (const auto& s : suffixes) ok = ok || ends_with(lf, lower(s));
    if (ok) out.push_back(f);
  }
  return out;
}

}  // namespace clr::data
