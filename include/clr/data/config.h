// Where a run's tasks come from and how their images are prepared: a run config's
// [data] table (docs/CONFIG.md) as one struct, and what turns it into a Sequence —
// reading ImageFolder trees, list files, IDX, CIFAR and SKILL catalogs, generating
// shapes and glyph tasks, and opening (or building, on first use) a suite folder.
// Also the preview grid of `clr preview`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "clr/core/settings.h"
#include "clr/data/dataset.h"
#include "clr/data/loader.h"
#include "clr/data/suite.h"

namespace clr::data {

// A task's "classes": their number (kind shapes) or their names (other kinds).
struct ClassesSetting {
  std::optional<int64_t> count;
  std::vector<std::string> names;
};
void to_json(settings::Json& j, const ClassesSetting& c);
void from_json(const settings::Json& j, ClassesSetting& c);

// One [[data.tasks]] entry. `kind` says which keys apply:
//   imagefolder: path | list: train, val, test (list files) | idx: train_images,
//   train_labels, test_images, test_labels | cifar10, cifar100: train, test (binary
//   batch files) | shapes: classes, *_per_class, size, seed | fractals: classes,
//   *_per_class, size, seed, sampling | dead-leaves: *_per_class, size, seed | glyphs:
//   fonts, characters, classes_from (characters | fonts), *_per_class, size, seed.
// Every kind: name, labels (keep these labels, in this order), classes (names),
// max_train / max_test (class-balanced caps, 0: all).
struct TaskSpec {
  std::string name;
  std::string kind = "imagefolder";
  std::string path;
  std::vector<std::string> train, val, test;
  std::string train_images, train_labels, test_images, test_labels;
  std::vector<int64_t> labels;
  ClassesSetting classes;
  int64_t max_train = 0, max_test = 0;
  std::vector<std::string> fonts;
  std::string characters;
  std::string classes_from = "characters";
  std::optional<int64_t> train_per_class, val_per_class, test_per_class, size;
  std::optional<uint64_t> seed;          // generated kinds: default the run's seed + the task's index
  std::optional<std::string> sampling;   // fractals: fractaldb | sigma (data/formula.h)
};
void to_json(settings::Json& j, const TaskSpec& t);
void from_json(const settings::Json& j, TaskSpec& t);

// [data.skill]: a SKILL SQLite catalog and its tasks CSV (sources.h, read_skill).
struct SkillSpec {
  std::string root;
  std::string tasks_csv;
  int64_t cap_per_split = 0;
};
void to_json(settings::Json& j, const SkillSpec& s);
void from_json(const settings::Json& j, SkillSpec& s);

// [data.suite] is a SuiteOptions (suite.h) with the keys dir (its `out`), tasks, scale,
// seed and size.
void to_json(settings::Json& j, const SuiteOptions& s);
void from_json(const settings::Json& j, SuiteOptions& s);

struct DataConfig {
  std::string root;                  // an ImageFolder root of tasks (ROOT/<task>/{train,val,test}/<class>/<img>)
  int64_t size = 224;                // images are resized to size x size
  double val_fraction = 0.1;         // carved from train when a task has no val split
  bool allow_missing_test = false;   // report on val for tasks without a test split
  bool skip_corrupt = false;         // skip (and count) undecodable images
  // Seeds generated tasks, max_train / max_test sampling and SKILL caps: part of the
  // data's definition, so a run's --seed does not change the tasks. A run config file
  // sets it from its [run] seed unless [data] gives one.
  std::optional<uint64_t> seed;
  std::vector<TaskSpec> tasks;
  std::optional<SuiteOptions> suite; // a suite's size defaults to data.size when that is given, else 64
  std::optional<SkillSpec> skill;

  // ConfigError naming the setting for a size below 1 or a val_fraction outside [0, 1).
  void validate() const;
  PrepareOptions prepare() const;
  SplitOptions split(uint64_t seed) const;
  // Makes every relative path (task files, roots, the suite dir) relative to base_dir.
  void resolve_paths(const std::string& base_dir);
  // --scale: the suite becomes every suite task at `scale`, in `dir`-all-<scale>.
  // ConfigError when there is no suite.
  void whole_suite(const std::string& scale);
};
void to_json(settings::Json& j, const DataConfig& c);
void from_json(const settings::Json& j, DataConfig& c);

// Reads or makes one [[data.tasks]] entry; `index` is its position (names default to
// "task<index+1>", generated tasks are seeded with seed + index).
TaskData load_task(const TaskSpec& spec, size_t index, uint64_t seed);

// Every task of the config, in this order: [[data.tasks]], the suite's, the SKILL
// catalog's, the root's. ConfigError when there are none.
Sequence load_sequence(const DataConfig& config);

// A suite folder (docs/SUITE.md) read as the options ask: built into options.out on
// first use; afterwards the suite there must have been built with the same tasks,
// scale, seed and size (ConfigError naming the difference otherwise). Returns the
// suite's ImageFolder root.
std::string open_suite(const SuiteOptions& options);

// Keeps the images whose label is in `keep`; keep[i] becomes label i.
Split select_labels(const Split& split, const std::vector<int64_t>& keep);

// A PNG grid of a task's training images (rows: classes, `per_class` columns, cells of
// prepare.size pixels), written to out_dir/<task>.png; returns the file's path.
std::string write_preview(const TaskData& task, const std::string& out_dir, int64_t per_class,
                          const PrepareOptions& prepare);

}  // namespace clr::data
