// `clr compare`: the same sequence, backbone and seed learned by several methods, and
// one table of the paper's comparison figures (compare.json, compare.csv, stdout).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "clr/eval/results.h"

namespace clr::eval {

struct CompareRow {
  std::string method;
  std::string run_dir;                 // where the method's results.json is
  int64_t tasks = 0;
  double average_accuracy = 0;
  double bwt = 0;
  double forgetting = 0;
  double first_task_final = 0;         // accuracy on task 1 after the last task
  std::vector<double> first_task_curve;
  double extra_params_per_task = 0;    // mean over tasks
  double extra_params_fraction = 0;    // mean over tasks, of the backbone
  double stored_bytes_per_task = 0;    // mean over tasks
  int64_t stored_bytes_total = 0;
  double train_seconds = 0;            // all tasks: training epochs and closing each task
  std::optional<double> train_time_vs_sgd;  // train_seconds / sgd's (when sgd ran)
};

// One row per run, in the order given; the time ratio uses the run named "sgd".
std::vector<CompareRow> compare_rows(const std::vector<Results>& runs, const std::vector<std::string>& run_dirs);

std::string compare_json(const std::vector<CompareRow>& rows, const std::string& config_json);
std::string compare_csv(const std::vector<CompareRow>& rows);
// An aligned text table for stdout.
std::string format_compare(const std::vector<CompareRow>& rows);

}  // namespace clr::eval
