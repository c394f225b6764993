#include "clr/data/config.h"

#include <algorithm>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/log.h"
#include "clr/core/path.h"
#include "clr/core/settings_io.h"
#include "clr/core/tensor_map.h"
#include "clr/data/formula.h"
#include "clr/data/image.h"
#include "clr/data/sources.h"
#include "clr/data/synthetic.h"

namespace clr::data {

void to_json(settings::Json& j, const ClassesSetting& c) {
  if (c.count) {
    j = *c.count;
  } else {
    j = c.names;
  }
}

void from_json(const settings::Json& j, ClassesSetting& c) {
  if (j.is_number_integer()) {
    settings::read_value(j, c.count);
    c.names.clear();
  } else {
    c.count.reset();
    try {
      settings::read_value(j, c.names);
    } catch (const settings::SettingError& e) {
      if (!e.path().empty()) throw;
      throw settings::SettingError(settings::SettingError::Kind::kBadValue, "",
                                   "must be a number of classes (shapes, fractals) or a list of class names");
    }
  }
}

template <class V>
void fields(V& v, TaskSpec& t) {
  v("name", t.name);
  v("kind", t.kind);
  v("path", t.path);
  v("train", t.train);
  v("val", t.val);
  v("test", t.test);
  v("train_images", t.train_images);
  v("train_labels", t.train_labels);
  v("test_images", t.test_images);
  v("test_labels", t.test_labels);
  v("labels", t.labels);
  v("classes", t.classes);
  v("max_train", t.max_train);
  v("max_test", t.max_test);
  v("fonts", t.fonts);
  v("characters", t.characters);
  v("classes_from", t.classes_from);
  v("train_per_class", t.train_per_class);
  v("val_per_class", t.val_per_class);
  v("test_per_class", t.test_per_class);
  v("size", t.size);
  v("seed", t.seed);
  v("sampling", t.sampling);
}
CLR_SETTINGS_JSON(TaskSpec)

template <class V>
void fields(V& v, SkillSpec& s) {
  v("root", s.root);
  v("tasks_csv", s.tasks_csv);
  v("cap_per_split", s.cap_per_split);
}
CLR_SETTINGS_JSON(SkillSpec)

template <class V>
void fields(V& v, SuiteOptions& s) {
  v("dir", s.out);
  v("tasks", s.tasks);
  v("scale", s.scale);
  v("seed", s.seed);
  v("size", s.size);
  v("set", s.set);
}
CLR_SETTINGS_JSON(SuiteOptions)

template <class V>
void fields(V& v, DataConfig& c) {
  v("root", c.root);
  v("size", c.size);
  v("val_fraction", c.val_fraction);
  v("allow_missing_test", c.allow_missing_test);
  v("skip_corrupt", c.skip_corrupt);
  v("seed", c.seed);
  v("tasks", c.tasks);
  v("suite", c.suite);
  v("skill", c.skill);
}

void to_json(settings::Json& j, const DataConfig& c) { settings::write(j, c); }

void from_json(const settings::Json& j, DataConfig& c) {
  settings::read(j, c);
  if (c.suite) {
    if (c.suite->out.empty()) {
      throw settings::SettingError(settings::SettingError::Kind::kBadValue, "suite.dir",
                                   "is required: the directory the suite is built in on first use and read from "
                                   "afterwards");
    }
    // The suite's images are made at the run's size unless it says otherwise.
    if (!j.at("suite").contains("size")) c.suite->size = j.contains("size") ? c.size : 64;
  }
}

void DataConfig::validate() const {
  // The decoded cache holds size x size x 3 bytes per image: a side past 4096 (48 MiB an
  // image) is a typo, and would overflow LibTorch's size arithmetic long before that.
  CLR_CHECK(size >= 1 && size <= 4096, ConfigError, "data.size must be in [1, 4096] pixels, got ", size);
  CLR_CHECK(val_fraction >= 0 && val_fraction < 1, ConfigError, "data.val_fraction must be in [0, 1), got ",
            val_fraction);
}

PrepareOptions DataConfig::prepare() const {
  PrepareOptions p;
  p.size = size;
  p.skip_corrupt = skip_corrupt;
  return p;
}

SplitOptions DataConfig::split(uint64_t seed) const {
  SplitOptions s;
  s.val_fraction = val_fraction;
  s.allow_missing_test = allow_missing_test;
  s.seed = seed;
  return s;
}

void DataConfig::resolve_paths(const std::string& base) {
  auto one = [&](std::string& p) { p = settings::resolve_path(base, p); };
  auto all = [&](std::vector<std::string>& ps) {
    for (auto& p : ps) one(p);
  };
  one(root);
  for (TaskSpec& t : tasks) {
    one(t.path);
    all(t.train);
    all(t.val);
    all(t.test);
    one(t.train_images);
    one(t.train_labels);
    one(t.test_images);
    one(t.test_labels);
    all(t.fonts);
  }
  if (suite) one(suite->out);
  if (skill) {
    one(skill->root);
    one(skill->tasks_csv);
  }
}

void DataConfig::whole_suite(const std::string& scale) {
  CLR_CHECK(suite.has_value(), ConfigError, "--scale needs a config with [data.suite] (configs/default.toml)");
  suite->scale = scale;
  suite->tasks.clear();
  suite->out += "-all-" + scale;
}

Split select_labels(const Split& s, const std::vector<int64_t>& keep) {
  std::vector<size_t> idx;
  std::vector<int64_t> new_labels;
  for (size_t i = 0; i < s.size(); ++i) {
    auto it = std::find(keep.begin(), keep.end(), s.labels[i]);
    if (it != keep.end()) {
      idx.push_back(i);
      new_labels.push_back(it - keep.begin());
    }
  }
  Split out = s.subset(idx);
  out.labels = new_labels;
  return out;
}

namespace {

// The task a spec's kind reads or makes, before labels, class names and caps.
// A generated kind's images per class and seed from its spec (the options' defaults
// where the spec is silent).
template <class Options>
const Options& generated_counts(const TaskSpec& t, uint64_t seed, Options& o) {
  o.train_per_class = t.train_per_class.value_or(o.train_per_class);
  o.val_per_class = t.val_per_class.value_or(o.val_per_class);
  o.test_per_class = t.test_per_class.value_or(o.test_per_class);
  o.seed = t.seed.value_or(seed);
  return o;
}

// The task under the spec's name, when it gives one.
TaskData named(const TaskSpec& t, TaskData task) {
  if (!t.name.empty()) task.name = t.name;
  return task;
}

TaskData read_kind(const TaskSpec& t, const std::string& where, uint64_t seed) {
  TaskData task;
  task.name = t.name;
  const std::string& kind = t.kind;
  if (kind == "imagefolder") {
    CLR_CHECK(!t.path.empty(), ConfigError, where, ": kind imagefolder needs path");
    const std::string name = t.name.empty() ? base_name(t.path) : t.name;
    return read_imagefolder_task(t.path, name);
  }
  if (kind == "list") {
    CLR_CHECK(t.train.size() == 1, ConfigError, where, ": kind list needs one train list file");
    task.train = read_list_file(t.train[0]);
    if (!t.val.empty()) task.val = read_list_file(t.val[0]);
    if (!t.test.empty()) task.test = read_list_file(t.test[0]);
    task.origin = "list '" + t.train[0] + "'";
    return task;
  }
  if (kind == "idx") {
    CLR_CHECK(!t.train_images.empty() && !t.train_labels.empty(), ConfigError, where,
              ": kind idx needs train_images and train_labels");
    task.train.images = read_idx_images(t.train_images);
    task.train.labels = read_idx_labels(t.train_labels);
    CLR_CHECK(task.train.images.size(0) == static_cast<int64_t>(task.train.labels.size()), FormatError, "'",
              t.train_images, "' has ", task.train.images.size(0), " images but '", t.train_labels, "' has ",
              task.train.labels.size(), " labels");
    if (!t.test_images.empty()) {
      task.test.images = read_idx_images(t.test_images);
      task.test.labels = read_idx_labels(t.test_labels);
    }
    task.origin = "IDX '" + t.train_images + "'";
    return task;
  }
  if (kind == "cifar10" || kind == "cifar100") {
    CLR_CHECK(!t.train.empty(), ConfigError, where, ": kind ", kind, " needs train (batch files)");
    task.train = read_cifar_binary(t.train, kind == "cifar100");
    if (!t.test.empty()) task.test = read_cifar_binary(t.test, kind == "cifar100");
    task.origin = kind + " '" + t.train.front() + "'";
    return task;
  }
  if (kind == "shapes") {
    CLR_CHECK(t.classes.names.empty(), ConfigError, where, ".classes is the number of classes for kind shapes");
    ShapesOptions so;
    so.classes = t.classes.count.value_or(so.classes);
    so.size = t.size.value_or(so.size);
    return named(t, make_shapes_task(generated_counts(t, seed, so)));
  }
  if (kind == "fractals") {
    CLR_CHECK(t.classes.names.empty(), ConfigError, where, ".classes is the number of categories for kind fractals");
    FractalOptions fo;
    fo.classes = t.classes.count.value_or(fo.classes);
    fo.size = t.size.value_or(fo.size);
    fo.sampling = t.sampling.value_or(fo.sampling);
    return named(t, make_fractal_task(generated_counts(t, seed, fo)));
  }
  if (kind == "dead-leaves") {
    CLR_CHECK(t.classes.names.empty() && !t.classes.count, ConfigError, where,
              ": kind dead-leaves has its own classes (the shape families disc, square, triangle, mixed); "
              "remove classes, or keep some of them with labels");
    DeadLeavesTaskOptions lo;
    lo.leaves.size = t.size.value_or(lo.leaves.size);
    return named(t, make_dead_leaves_task(generated_counts(t, seed, lo)));
  }
  if (kind == "glyphs") {
    GlyphOptions go;
    CLR_CHECK(!t.fonts.empty() && !t.characters.empty(), ConfigError, where,
              ": kind glyphs needs fonts and characters");
    if (t.classes_from == "characters") {
      for (char c : t.characters) go.classes.push_back({std::string(1, c), t.fonts, std::string(1, c)});
    } else if (t.classes_from == "fonts") {
      for (const auto& f : t.fonts) {
        go.classes.push_back({stem(f), {f}, t.characters});
      }
    } else {
      throw ConfigError(clr::detail::concat(where, ".classes_from '", t.classes_from,
                                       "' is unknown; expected characters or fonts"));
    }
    go.task_name = t.name.empty() ? "glyphs" : t.name;
    go.train_per_class = t.train_per_class.value_or(go.train_per_class);
    go.val_per_class = t.val_per_class.value_or(go.val_per_class);
    go.test_per_class = t.test_per_class.value_or(go.test_per_class);
    go.size = t.size.value_or(go.size);
    go.seed = t.seed.value_or(seed);
    return make_glyph_task(go);
  }
  throw ConfigError(clr::detail::concat(where, ".kind '", kind,
                                   "' is unknown; expected imagefolder, list, idx, cifar10, cifar100, shapes, "
                                   "fractals, dead-leaves or glyphs (SKILL catalogs go in [data.skill])"));
}

}  // namespace

TaskData load_task(const TaskSpec& t, size_t index, uint64_t seed) {
  const std::string where = clr::detail::concat("data.tasks[", index, "]");
  TaskData task = read_kind(t, where, seed + index);
  if (task.name.empty()) task.name = clr::detail::concat("task", index + 1);
  const std::vector<int64_t>& labels = t.labels;
  if (!labels.empty()) {
    task.train = select_labels(task.train, labels);
    task.val = select_labels(task.val, labels);
    task.test = select_labels(task.test, labels);
  }
  if (task.classes.empty() || (!labels.empty() && t.kind != "imagefolder")) {
    task.classes.clear();
    const std::vector<std::string>& names = t.classes.names;
    int64_t k = 0;
    for (int64_t l : task.train.labels) k = std::max(k, l + 1);
    if (!labels.empty()) k = static_cast<int64_t>(labels.size());
    for (int64_t c = 0; c < k; ++c) {
      const auto i = static_cast<size_t>(c);
      task.classes.push_back(i < names.size() ? names[i] : labels.empty() ? std::to_string(c) : std::to_string(labels[i]));
    }
  }
  const auto k = static_cast<int64_t>(task.classes.size());
  task.train = balanced_subset(task.train, k, t.max_train, seed + index);
  task.test = balanced_subset(task.test, k, t.max_test, seed + index + 7);
  return task;
}

std::string open_suite(const SuiteOptions& o) {
  const std::string where = "data.suite";
  CLR_CHECK(o.scale == "small" || o.scale == "full", ConfigError, where, ".scale is '", o.scale,
            "'; expected small or full");
  CLR_CHECK(o.set == "suite" || o.set == "pretrain", ConfigError, where, ".set is '", o.set,
            "'; expected suite (the benchmark) or pretrain (the assets no benchmark task uses)");
  std::vector<std::string> wanted = o.tasks;
  if (wanted.empty()) {
    for (const auto& info : suite_catalogue(o.set)) wanted.push_back(info.name);
  }
  std::sort(wanted.begin(), wanted.end());
  if (file_exists(o.out + "/manifest.json")) {
    const SuiteManifest m = read_suite_manifest(o.out);
    std::vector<std::string> have = m.tasks;
    std::sort(have.begin(), have.end());
    const std::string built =
        clr::detail::concat("set ", m.set, ", scale ", m.scale, ", seed ", m.seed, ", size ", m.size);
    const std::string asked =
        clr::detail::concat("set ", o.set, ", scale ", o.scale, ", seed ", o.seed, ", size ", o.size);
    CLR_CHECK(have == wanted && built == asked, ConfigError, where, ".dir '", o.out,
              "' holds a suite built with other settings (", have.size(), " tasks, ", built,
              "; this config asks for ", wanted.size(), " tasks, ", asked, "): remove it, or give another dir");
    log::info("suite: reading the ", have.size(), " tasks built in ", o.out);
  } else {
    log::info("suite: building ", wanted.size(), " tasks into ", o.out, " (", o.scale, ", ", o.size,
              " px; once: later runs read them from there)");
    build_suite(o);
  }
  return o.out + "/imagefolder";
}

Sequence load_sequence(const DataConfig& c) {
  const uint64_t seed = c.seed.value_or(0);
  Sequence seq;
  for (size_t i = 0; i < c.tasks.size(); ++i) seq.push_back(load_task(c.tasks[i], i, seed));
  if (c.suite) {
    for (auto& t : read_imagefolder_tasks(open_suite(*c.suite))) seq.push_back(std::move(t));
  }
  if (c.skill) {
    SkillOptions so;
    so.task_csv = c.skill->tasks_csv;
    so.cap_per_split = c.skill->cap_per_split;
    so.seed = seed;
    for (auto& t : read_skill(c.skill->root, so)) seq.push_back(std::move(t));
  }
  if (!c.root.empty()) {
    for (auto& t : read_imagefolder_tasks(c.root)) seq.push_back(std::move(t));
  }
  CLR_CHECK(!seq.empty(), ConfigError,
            "no tasks: give an ImageFolder root (data.root or the ROOT argument) or [[data.tasks]] entries");
  return seq;
}

std::string write_preview(const TaskData& t, const std::string& out_dir, int64_t per_class,
                          const PrepareOptions& prepare) {
  CLR_CHECK(per_class >= 1, ConfigError, "--per-class must be at least 1, got ", per_class);
  const int64_t k = static_cast<int64_t>(t.classes.size());
  const int64_t cell = prepare.size;
  at::Tensor grid = torch::full({k * (cell + 2), per_class * (cell + 2), 3}, 255, torch::kUInt8);
  std::vector<int64_t> filled(static_cast<size_t>(k), 0);
  std::vector<size_t> picks;
  for (size_t i = 0; i < t.train.size(); ++i) {
    const int64_t l = t.train.labels[i];
    if (l >= 0 && l < k && filled[static_cast<size_t>(l)] < per_class) {
      picks.push_back(i);
      ++filled[static_cast<size_t>(l)];
    }
  }
  PrepareOptions po = prepare;
  po.skip_corrupt = true;
  const PreparedSplit p = prepare_split(t.train.subset(picks), t.origin, po);
  std::vector<int64_t> col(static_cast<size_t>(k), 0);
  for (int64_t i = 0; i < p.size(); ++i) {
    const int64_t l = p.labels[i].item<int64_t>();
    const int64_t y = l * (cell + 2) + 1, x = col[static_cast<size_t>(l)]++ * (cell + 2) + 1;
    grid.slice(0, y, y + cell).slice(1, x, x + cell).copy_(p.images[i].permute({1, 2, 0}));
  }
  make_directories(out_dir);
  const std::string path = out_dir + "/" + t.name + ".png";
  write_png(path, grid);
  return path;
}

}  // namespace clr::data
