// `clr compare`: the same sequence, backbone and seed learned by several methods, and
// one table of the paper's comparison figures (compare.json, compare.csv, stdout).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "clr/data/dataset.h"
#include "clr/eval/results.h"
#include "clr/eval/run_config.h"

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
  // Without a task oracle, per task-inference method of the run: the average task-ID
  // and task-agnostic accuracy after the last task.
  struct NoOracle {
    std::string method;
    double task_accuracy = 0, agnostic_accuracy = 0;
  };
  std::vector<NoOracle> no_oracle;
};

// One row per run, in the order given; the time ratio uses the run named "sgd".
std::vector<CompareRow> compare_rows(const std::vector<Results>& runs, const std::vector<std::string>& run_dirs);

std::string compare_json(const std::vector<CompareRow>& rows, const std::string& config_json);
std::string compare_csv(const std::vector<CompareRow>& rows);
// An aligned text table for stdout.
std::string format_compare(const std::vector<CompareRow>& rows);

struct CompareOptions {
  std::vector<std::string> methods;  // train::parse_method_list
  std::string out;                   // OUT/<method>/ per run, OUT/compare.json, OUT/compare.csv
  // Keep a finished run already in OUT/<method>/ (reusable_run) instead of running it again.
  bool reuse = false;
  // Start every run over instead of resuming one stopped in OUT/<method>/ (runner.h).
  bool restart = false;
};

// Learns `sequence` with every method in turn from the same configuration (`base`,
// finalized; its method and out are replaced per method), rewriting compare.json and
// compare.csv after each run, so a stopped comparison keeps what it finished.
std::vector<CompareRow> compare_methods(const RunConfig& base, const data::Sequence& sequence,
                                        const CompareOptions& options);

// The finished run of `config` on `sequence` in config.run.out, if there is one to keep:
// complete, of the same method, made with the same configuration (its method and
// output directory aside) and the same tasks (names and class counts). Anything else
// is nullopt, with a log line saying why it runs again.
std::optional<Results> reusable_run(const RunConfig& config, const data::Sequence& sequence);

// The run as it stood after its first `k` tasks, marked complete: what a run of those k
// tasks alone writes, since the runner learns and evaluates each task (with its own
// seed) before it looks at the next. ConfigError when the run finished fewer than k.
Results first_tasks(const Results& run, size_t k);

struct TabulateOptions {
  std::vector<std::string> runs;  // run directories (results.json, finished or not)
  std::string out;                // OUT/<run name>/results.json (cut), OUT/compare.json, compare.csv
  int64_t tasks = 0;              // how many tasks to tabulate; 0: the fewest any run finished
};

// Tabulates runs made separately (in other processes, calls or machines) on the first
// tasks they all finished: each run cut with first_tasks and written to OUT/<name>/
// (name: the run directory's name, which must be unique), then compare.json and
// compare.csv as `clr compare` writes them, so `clr report OUT` draws the figures.
// ConfigError when a run's tasks differ from the first run's (names and class counts)
// or a run has fewer tasks than asked for; a warning when backbones or seeds differ.
std::vector<CompareRow> tabulate_runs(const TabulateOptions& options);

}  // namespace clr::eval
