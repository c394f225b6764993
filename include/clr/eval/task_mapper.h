// Adding the gaussian task mapper's statistics (train/task_inference.h) to tasks of an
// adapter store that lack them (`clr tasks fit-mapper`): stored by a clr from before
// task inference, imported without them, or learned with run.task_inference = [].
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "clr/data/dataset.h"

namespace clr::eval {

struct FitMapperOptions {
  std::string store_dir;
  std::string backbone_file;       // empty: the file the store records
  std::string device = "cpu";
  std::vector<std::string> tasks;  // empty: every task of the store that the data has
  bool replace = false;            // fit tasks that have statistics again
  int64_t batch = 64;
};

struct FitMapperReport {
  std::vector<std::string> fitted;   // statistics written
  std::vector<std::string> kept;     // had statistics already (without replace)
  std::vector<std::string> no_data;  // store tasks the data does not have
};

// Fits each chosen store task's statistics from the training split of the task of the
// same name in `sequence` (its images taken as the task was trained: the stored
// resize and centred crop), and writes the task again with them. ConfigError when a
// named task is in the store but not in the data, or the data's classes are not the
// task's (names and order); NotFoundError for a named task the store lacks. `each` is
// told every task as it is written.
FitMapperReport fit_task_mappers(const FitMapperOptions& options, const data::Sequence& sequence,
                                 const std::function<void(const std::string& task, int64_t images)>& each = {});

}  // namespace clr::eval
