// The accuracy matrix, the metrics derived from it, and the results.json / results.csv
// contract (DESIGN.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace clr::eval {

// R[i][j]: test accuracy on task j after learning tasks 0..i (nullopt for j > i).
using AccuracyMatrix = std::vector<std::vector<std::optional<double>>>;

// Mean of the last row.
double average_accuracy(const AccuracyMatrix& r);
// Mean over j < T-1 of R[T-1][j] - R[j][j] (0 for a single task).
double backward_transfer(const AccuracyMatrix& r);
// Mean over j < T-1 of max_{i < T-1} R[i][j] - R[T-1][j] (0 for a single task).
double forgetting(const AccuracyMatrix& r);
// R[i][0] for every i: accuracy on the first task after each task.
std::vector<double> first_task_curve(const AccuracyMatrix& r);

struct TaskRecord {
  std::string name;
  int64_t classes = 0;
  int64_t train_images = 0;
  int64_t val_images = 0;
  int64_t test_images = 0;
  int64_t skipped_images = 0;   // undecodable images skipped (--skip-corrupt)
  bool test_is_val = false;     // no test split: accuracy is on val
  int64_t extra_params = 0;
  // Bytes the method stores because it learned this task: the task's own state
  // (adapter, head, or a whole backbone) plus what its cross-task state (Fisher,
  // anchors, replay buffer) grew by. The shared backbone is not counted.
  int64_t stored_bytes = 0;
  double train_seconds = 0;
  double end_task_seconds = 0;      // closing the task (Fisher estimate, buffer logits, ...)
  double train_images_per_second = 0;
  double decode_seconds = 0;        // decoding + resizing all splits into the cache (before epoch 1)
  double train_decode_seconds = 0;  // the train split's share of it
  std::vector<double> epoch_seconds;
  int64_t epochs = 0;
  int64_t best_epoch = 0;
  double best_val_accuracy = 0;
  std::string adapter_file;     // relative to the run directory
};

// Task inference (train/task_inference.h) evaluated beside the oracle: after learning
// tasks 0..i, each test image of task j <= i is given to the method, which picks one of
// tasks 0..i. task_accuracy[i][j] is the share it picks j; agnostic_accuracy[i][j] the
// share it picks j and the class is right (the class of another task is never right).
struct TaskInferenceResult {
  std::string method;  // gaussian, energy, max-softmax
  AccuracyMatrix task_accuracy;
  AccuracyMatrix agnostic_accuracy;
};

struct Results {
  std::string method;
  std::string variant;
  std::string backbone_arch;
  std::string backbone_source;  // file, or "random"
  int64_t backbone_params = 0;
  std::string backbone_fingerprint;
  std::string device;
  std::string precision = "fp32";  // of the forward passes: fp32, bf16 or fp16 (train::Numerics)
  bool channels_last = false;
  uint64_t seed = 0;
  std::vector<TaskRecord> tasks;
  AccuracyMatrix accuracy;
  std::vector<TaskInferenceResult> task_inference;  // one per method asked for, rows as accuracy's
  std::string config_json;      // the effective configuration, as JSON text
  std::string run_id;           // the run's identity across resumes (eval/checkpoint.h)
  bool complete = false;        // false while the run is in progress
};

// results.json text (schema clr.results/1 plus extra fields).
std::string results_json(const Results& r);
// Reads a results.json written by results_json (FormatError naming the file and the
// field when it is not one; NotFoundError when it does not exist).
Results read_results(const std::string& path);
// The same from the text of one; `origin` names it in errors.
Results parse_results(const std::string& text, const std::string& origin);
// results.csv text: one row per (after_task, task) with accuracy.
std::string results_csv(const Results& r);
// The accuracy matrix as an aligned text table (for stdout).
std::string format_matrix(const Results& r);

}  // namespace clr::eval
