// Path names as strings, '/'-separated (POSIX): the parts of a path and joining, with
// no file system access (file_io.h reads and writes; clr does not use std::filesystem,
// see there).
//
//   base_name("a/b/c.png") == "c.png"    dir_name("a/b/c.png") == "a/b"
//   stem("a/b/c.tar.gz") == "c.tar"      dir_name("c.png") == "."   dir_name("/c") == "/"
#pragma once

#include <string>

namespace clr {

// What follows the last '/' (all of `path` when it has none; "" when it ends with '/').
std::string base_name(const std::string& path);
// What precedes the last '/': "." when there is none, "/" for a name in the root.
std::string dir_name(const std::string& path);
// The base name without its last extension ("c.tar.gz" -> "c.tar"); a name whose only
// '.' is its first character (".bashrc") is kept whole.
std::string stem(const std::string& path);
// `path` without trailing '/' (a lone "/" is kept).
std::string strip_trailing_slashes(std::string path);
// An absolute `path` under the root directory `root` ("" or "/": the path itself), as
// for a file of a Debian package under an unpacked system image.
std::string under_root(const std::string& root, const std::string& path);

}  // namespace clr
