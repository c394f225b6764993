// Progress on stderr for long work: a bar with rate and ETA redrawn in place when
// stderr is a terminal, plain lines (at most one every few seconds, and the last)
// when it is not (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace clr {

class Progress {
 public:
  // `total` units of work called `unit` ("img", "batch").
  Progress(std::string label, int64_t total, std::string unit = "img");
  ~Progress();
  // Sets the units done so far and a short status ("loss 0.53").
  void update(int64_t done, const std::string& status = "");
  // True when the next update() would draw: compute an expensive status (one that
  // waits for the GPU) only then.
  bool due() const;
  // Prints the final state and a newline.
  void finish(const std::string& status = "");
  // Silences all Progress output (tests, --quiet).
  static void set_enabled(bool on);

 private:
  void draw(bool final_line);
  double interval() const { return tty_ ? 0.1 : 10.0; }

  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool tty_, finished_ = false;
};

}  // namespace clr
