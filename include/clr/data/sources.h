// Readers that turn data on disk into tasks. Each throws NotFoundError for a missing
// path and FormatError/ConfigError naming the file and what was expected.
#pragma once

#include <string>
#include <vector>

#include "clr/data/dataset.h"

namespace clr::data {

// True for the file names the image decoder reads (.jpg .jpeg .png .bmp .gif .webp,
// any case).
bool is_image_file(const std::string& name);

// ImageFolder trees.
//   multi-task: ROOT/<task>/{train,val,test}/<class>/<image>; tasks in lexical order
//               unless ROOT/order.txt lists them (one per line, '#' comments).
//   single task: ROOT/{train,val,test}/<class>/<image>.
// Missing val/test splits are left empty (complete_splits fills or rejects them).
// Classes are the train split's sub-directories, sorted; an image of a val/test
// class that train lacks is a ConfigError.
bool is_single_task_folder(const std::string& root);
TaskData read_imagefolder_task(const std::string& dir, const std::string& name);
Sequence read_imagefolder_tasks(const std::string& root);

// A "path label" list file: one image path (relative to the list file's directory
// unless absolute) and an integer label per line; blank lines and '#' comments skipped.
Split read_list_file(const std::string& path);

// IDX files (as in MNIST / Fashion-MNIST), plain or gzipped: images uint8 [N, H, W]
// come back as [N, H, W, 1]; labels as int64.
at::Tensor read_idx_images(const std::string& path);
std::vector<int64_t> read_idx_labels(const std::string& path);

// CIFAR binary files: CIFAR-10 ("data_batch_1.bin": label byte + 3072 bytes per
// image) or CIFAR-100 ("train.bin": coarse byte, fine byte + 3072; the fine label is
// used). Images come back as uint8 [N, 32, 32, 3].
Split read_cifar_binary(const std::vector<std::string>& files, bool cifar100);

// The SKILL/DCT catalog (PAPER.md): ROOT/rolling_releases/database_2.sqlite with
// tables datasets(dataset_id, dataset_name, ...) and files(hash, path, filename,
// class_id, dataset_id, problem, "set"); set 0/1/2 = train/val/test, rows with
// problem != 0 skipped; images at ROOT/original_images/<dataset_name><path><filename>.
// `task_csv` (oldid,newid,name,class_num,train_num,test_num) selects and orders the
// tasks by newid (all datasets in id order when empty). `cap_per_split` > 0 applies the
// authors' capped class-balanced sampling to every split.
struct SkillOptions {
  std::string task_csv;
  int64_t cap_per_split = 0;
  uint64_t seed = 0;
};
Sequence read_skill(const std::string& root, const SkillOptions& options);

// Writing a catalog in that layout (the benchmark suite does): ROOT/rolling_releases/
// database_2.sqlite with datasets, files and a classes(dataset_id, class_id,
// class_name) table that read_skill uses for class names, and ROOT/tasks.csv listing
// every dataset in order (oldid,newid,name,class_num,train_num,test_num). The images
// themselves are the caller's (ROOT/original_images/<name><path><filename>).
struct SkillFile {
  std::string hash, path, filename;  // path starts and ends with '/'
  int64_t class_id = 0;
  int set = 0;                       // 0 train, 1 val, 2 test
};
struct SkillDataset {
  int64_t id = 0;
  std::string name;
  std::vector<std::string> classes;  // class_id -> name
  std::vector<SkillFile> files;
};
struct SkillCatalog {
  std::vector<SkillDataset> datasets;
};
// Written to a temporary file and renamed: the same catalog gives the same bytes.
void write_skill_catalog(const std::string& root, const SkillCatalog& catalog);

}  // namespace clr::data
