// Running a helper program (e.g. rsvg-convert to render SVG assets) and capturing what
// it writes, without a shell: the arguments are passed as they are.
#pragma once

#include <string>
#include <vector>

namespace clr {

struct ProcessResult {
  int exit_code = -1;  // the program's exit status; 128 + N when killed by signal N
  std::string out;     // everything it wrote to stdout
  std::string err;     // everything it wrote to stderr
  bool timed_out = false;
};

// Runs argv[0] (looked up in PATH) with argv. Throws NotFoundError when the program
// cannot be started (the message names it and `hint`, e.g. the package to install).
// With timeout_seconds > 0 a program still running then is killed (exit code 128 + 9)
// and `timed_out` is set.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& hint = "",
                          double timeout_seconds = 0);

// True when `program` is an executable found in PATH.
bool program_in_path(const std::string& program);

}  // namespace clr
