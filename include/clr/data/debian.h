// What an installed Debian package is: its version, the licences its copyright file
// names, and the files it installed. The benchmark suite (suite.h) draws its assets
// from packages and records this provenance in its manifest.
#pragma once

#include <string>
#include <vector>

namespace clr::data {

struct DebianPackage {
  std::string name;
  std::string version;
  std::vector<std::string> licenses;  // the distinct "License:" names of its copyright file, in file order
  std::vector<std::string> files;     // installed regular-file paths, sorted
};

// Reads package `name` from the dpkg database under `root` ("/" normally; tests pass a
// fake root): ROOT/var/lib/dpkg/status, ROOT/var/lib/dpkg/info/NAME[:ARCH].list and
// ROOT/usr/share/doc/NAME/copyright. File paths come back relative to "/" as dpkg
// lists them (prefix `root` to open them). NotFoundError when the package is not
// installed, with the apt command that installs it.
DebianPackage read_debian_package(const std::string& name, const std::string& root = "/");

// Files of `package` whose path starts with `prefix` and ends with one of `suffixes`
// (case-insensitive; empty = any), sorted.
std::vector<std::string> package_files(const DebianPackage& package, const std::string& prefix,
                                       const std::vector<std::string>& suffixes = {});

}  // namespace clr::data
