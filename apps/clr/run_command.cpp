// `clr run CONFIG.toml | ROOT`: the main job.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstdio>
#include <optional>
#include <iostream>
#include <memory>
#include <set>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>
#include <torch/torch.h>

#include "clr/adapters/reprogram.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/log.h"
#include "clr/core/runtime.h"
#include "clr/core/safetensors.h"
#include "clr/core/tensor_io.h"
#include "clr/data/image.h"
#include "clr/data/sources.h"
#include "clr/data/suite.h"
#include "clr/data/synthetic.h"
#include "clr/eval/runner.h"
#include "clr/models/registry.h"
#include "clr/eval/compare.h"
#include "clr/train/methods/registry.h"
#include "clr/train/simclr.h"
#include "clr/train/supervised.h"
#include "clr/core/hash.h"
#include "clr/core/torch_compat.h"
#include "commands.h"

namespace clr::apps {
namespace {

// Everything a run needs; defaults are the documented ones (docs/CONFIG.md).
struct RunSpec {
  std::string method = "clr";
  std::string out = "runs/clr";
  uint64_t seed = 0;
  std::string device = "cpu";
  std::string weights;  // backbone file; empty: random init of arch
  std::string arch = "resnet18";
  bool arch_given = false;        // set explicitly (else the weight file's metadata decides)
  bool small_stem = false;
  bool small_stem_given = false;
  int64_t kernel = 3;
  std::string root;  // ImageFolder root
  std::vector<data::TaskData> tasks;  // from [[data.tasks]]
  data::PrepareOptions prepare;
  data::SplitOptions split;
  train::TrainConfig train;
  train::MethodOptions methods;  // hyperparameters of the baselines ([method] table)
};

struct RunArgs {
  std::string input;
  std::string method, backbone, arch, device, out, optimizer, schedule;
  int64_t epochs = -1, batch = -1, size = -1, patience = -1, crop = -1;
  double lr = -1, val_fraction = -1;
  int64_t seed = -1;
  bool small_stem = false, allow_missing_test = false, skip_corrupt = false, hflip = false;
  // Method hyperparameters (NaN / kUnset: the config's or the default; any value given
  // is applied and then validated, negative ones included).
  static constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
  static constexpr int64_t kUnset = std::numeric_limits<int64_t>::min();
  double ewc_lambda = kNan, ewc_gamma = kNan, si_c = kNan, si_xi = kNan, lwf_alpha = kNan, lwf_temperature = kNan,
         derpp_alpha = kNan, derpp_beta = kNan;
  int64_t fisher_samples = kUnset, buffer = kUnset, replay_batch = kUnset;
  std::string methods;  // clr compare
  std::string scale;    // --scale: the whole suite at this scale instead of [data.suite]'s tasks
};

std::string resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  return base_dir + "/" + p;
}

template <typename T>
T get(const toml::table& t, const std::string& key, const std::string& where, T fallback) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return fallback;
  if constexpr (std::is_same_v<T, bool>) {
    if (auto v = n->value<bool>()) return *v;
  } else if constexpr (std::is_integral_v<T>) {
    if (n->is_integer()) return static_cast<T>(*n->value<int64_t>());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (auto v = n->value<double>()) return static_cast<T>(*v);
  } else {
    if (auto v = n->value<std::string>()) return *v;
  }
  throw ConfigError(detail::concat(where, ".", key, " has the wrong type (", n->type(), "); see docs/CONFIG.md"));
}

void check_keys(const toml::table& t, const std::string& where, const std::set<std::string>& known) {
  for (const auto& [k, v] : t) {
    CLR_CHECK(known.count(std::string(k.str())), ConfigError, "unknown key '", where, ".", k.str(),
              "'; known keys: ", join_first(std::vector<std::string>(known.begin(), known.end()), 40));
  }
}

std::vector<std::string> strings(const toml::table& t, const std::string& key, const std::string& where,
                                 const std::string& base) {
  std::vector<std::string> out;
  const toml::node* n = t.get(key);
  if (n == nullptr) return out;
  if (auto s = n->value<std::string>()) return {resolve(base, *s)};
  const toml::array* a = n->as_array();
  CLR_CHECK(a != nullptr, ConfigError, where, ".", key, " must be a string or an array of strings");
  for (const auto& e : *a) {
    auto s = e.value<std::string>();
    CLR_CHECK(s.has_value(), ConfigError, where, ".", key, " must hold strings");
    out.push_back(resolve(base, *s));
  }
  return out;
}

// Keeps the images whose label is in `keep` (in that order: keep[i] becomes label i).
data::Split select_labels(const data::Split& s, const std::vector<int64_t>& keep) {
  std::vector<size_t> idx;
  std::vector<int64_t> new_labels;
  for (size_t i = 0; i < s.size(); ++i) {
    auto it = std::find(keep.begin(), keep.end(), s.labels[i]);
    if (it != keep.end()) {
      idx.push_back(i);
      new_labels.push_back(it - keep.begin());
    }
  }
  data::Split out = s.subset(idx);
  out.labels = new_labels;
  return out;
}

// [data.suite]: tasks of the offline suite (docs/SUITE.md), built into `dir` on first use
// and read from there afterwards. A suite already in `dir` must have been built with the
// same tasks, scale, seed and size; anything else is a ConfigError naming the difference.
// Returns the suite's ImageFolder root (its order.txt: the catalogue's order).
std::string suite_from_toml(const toml::table& t, const std::string& base, int64_t size,
                            const std::string& whole_suite_scale) {
  const std::string where = "data.suite";
  check_keys(t, where, {"tasks", "scale", "seed", "size", "dir"});
  data::SuiteOptions o;
  if (const toml::node* n = t.get("tasks")) {
    const toml::array* a = n->as_array();
    CLR_CHECK(a != nullptr, ConfigError, where, ".tasks must be an array of task names (clr data build --help lists them)");
    for (const auto& e : *a) {
      auto v = e.value<std::string>();
      CLR_CHECK(v.has_value(), ConfigError, where, ".tasks must hold strings");
      o.tasks.push_back(*v);
    }
  }
  o.scale = get(t, "scale", where, o.scale);
  o.seed = static_cast<uint64_t>(get<int64_t>(t, "seed", where, 0));
  o.size = get(t, "size", where, size);
  CLR_CHECK(t.contains("dir"), ConfigError, where,
            ".dir is required: the directory the suite is built in on first use and read from afterwards");
  o.out = resolve(base, get<std::string>(t, "dir", where, ""));
  if (!whole_suite_scale.empty()) {  // --scale: every task of the suite at that scale, in a folder of its own
    o.scale = whole_suite_scale;
    o.tasks.clear();
    o.out += "-all-" + whole_suite_scale;
  }
  CLR_CHECK(o.scale == "small" || o.scale == "full", ConfigError, where, ".scale is '", o.scale,
            "'; expected small or full");
  std::vector<std::string> wanted = o.tasks;
  if (wanted.empty()) {
    for (const auto& info : data::suite_catalogue("suite")) wanted.push_back(info.name);
  }
  std::sort(wanted.begin(), wanted.end());
  const std::string manifest_path = o.out + "/manifest.json";
  if (file_exists(manifest_path)) {
    nlohmann::json m;
    std::vector<std::string> have;
    std::string built;
    try {
      m = nlohmann::json::parse(read_file(manifest_path));
      for (const auto& x : m.at("tasks")) have.push_back(x.at("name").get<std::string>());
      built = detail::concat("scale ", m.at("scale").get<std::string>(), ", seed ", m.at("seed").get<uint64_t>(),
                             ", size ", m.at("size").get<int64_t>());
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(detail::concat("'", manifest_path, "' is not a suite manifest (", e.what(),
                                       "); remove '", o.out, "' to build it again"));
    }
    std::sort(have.begin(), have.end());
    const std::string asked = detail::concat("scale ", o.scale, ", seed ", o.seed, ", size ", o.size);
    CLR_CHECK(have == wanted && built == asked && m.value("set", "") == "suite", ConfigError, where, ".dir '", o.out,
              "' holds a suite built with other settings (", have.size(), " tasks, ", built, "; this config asks for ",
              wanted.size(), " tasks, ", asked, "): remove it, or give another dir");
    log::info("suite: reading the ", have.size(), " tasks built in ", o.out);
  } else {
    log::info("suite: building ", wanted.size(), " tasks into ", o.out, " (", o.scale, ", ", o.size,
              " px; once: later runs read them from there)");
    data::build_suite(o);
  }
  return o.out + "/imagefolder";
}

data::TaskData task_from_toml(const toml::table& t, size_t index, const std::string& base, uint64_t seed) {
  const std::string where = detail::concat("data.tasks[", index, "]");
  check_keys(t, where, {"name", "kind", "path", "train", "val", "test", "train_images", "train_labels", "test_images",
                        "test_labels", "labels", "classes", "max_train", "max_test", "fonts", "characters",
                        "classes_from", "train_per_class", "val_per_class", "test_per_class", "size", "seed"});
  const std::string kind = get<std::string>(t, "kind", where, "imagefolder");
  data::TaskData task;
  task.name = get<std::string>(t, "name", where, "");
  std::vector<int64_t> labels;
  if (const toml::array* a = t.get_as<toml::array>("labels")) {
    for (const auto& e : *a) {
      CLR_CHECK(e.is_integer(), ConfigError, where, ".labels must be integers");
      labels.push_back(*e.value<int64_t>());
    }
  }
  if (kind == "imagefolder") {
    const std::string path = resolve(base, get<std::string>(t, "path", where, ""));
    CLR_CHECK(!path.empty(), ConfigError, where, ": kind imagefolder needs path");
    if (task.name.empty()) task.name = path.substr(path.find_last_of('/') + 1);
    task = data::read_imagefolder_task(path, task.name);
  } else if (kind == "list") {
    const auto train = strings(t, "train", where, base);
    CLR_CHECK(train.size() == 1, ConfigError, where, ": kind list needs one train list file");
    task.train = data::read_list_file(train[0]);
    const auto val = strings(t, "val", where, base);
    const auto test = strings(t, "test", where, base);
    if (!val.empty()) task.val = data::read_list_file(val[0]);
    if (!test.empty()) task.test = data::read_list_file(test[0]);
    task.origin = "list '" + train[0] + "'";
  } else if (kind == "idx") {
    const std::string ti = resolve(base, get<std::string>(t, "train_images", where, ""));
    const std::string tl = resolve(base, get<std::string>(t, "train_labels", where, ""));
    CLR_CHECK(!ti.empty() && !tl.empty(), ConfigError, where, ": kind idx needs train_images and train_labels");
    task.train.images = data::read_idx_images(ti);
    task.train.labels = data::read_idx_labels(tl);
    CLR_CHECK(task.train.images.size(0) == static_cast<int64_t>(task.train.labels.size()), FormatError, "'", ti,
              "' has ", task.train.images.size(0), " images but '", tl, "' has ", task.train.labels.size(), " labels");
    const std::string xi = resolve(base, get<std::string>(t, "test_images", where, ""));
    const std::string xl = resolve(base, get<std::string>(t, "test_labels", where, ""));
    if (!xi.empty()) {
      task.test.images = data::read_idx_images(xi);
      task.test.labels = data::read_idx_labels(xl);
    }
    task.origin = "IDX '" + ti + "'";
  } else if (kind == "cifar10" || kind == "cifar100") {
    task.train = data::read_cifar_binary(strings(t, "train", where, base), kind == "cifar100");
    const auto test = strings(t, "test", where, base);
    if (!test.empty()) task.test = data::read_cifar_binary(test, kind == "cifar100");
    task.origin = kind + " '" + strings(t, "train", where, base).front() + "'";
  } else if (kind == "shapes") {
    data::ShapesOptions so;
    so.classes = get<int64_t>(t, "classes", where, so.classes);
    so.train_per_class = get<int64_t>(t, "train_per_class", where, so.train_per_class);
    so.val_per_class = get<int64_t>(t, "val_per_class", where, so.val_per_class);
    so.test_per_class = get<int64_t>(t, "test_per_class", where, so.test_per_class);
    so.size = get<int64_t>(t, "size", where, so.size);
    so.seed = get<uint64_t>(t, "seed", where, seed + index);
    const std::string name = task.name;
    task = data::make_shapes_task(so);
    if (!name.empty()) task.name = name;
  } else if (kind == "glyphs") {
    data::GlyphOptions go;
    const auto fonts = strings(t, "fonts", where, base);
    const std::string chars = get<std::string>(t, "characters", where, "");
    const std::string from = get<std::string>(t, "classes_from", where, "characters");
    CLR_CHECK(!fonts.empty() && !chars.empty(), ConfigError, where, ": kind glyphs needs fonts and characters");
    if (from == "characters") {
      for (char c : chars) go.classes.push_back({std::string(1, c), fonts, std::string(1, c)});
    } else if (from == "fonts") {
      for (const auto& f : fonts) {
        std::string stem = f.substr(f.find_last_of('/') + 1);
        go.classes.push_back({stem.substr(0, stem.rfind('.')), {f}, chars});
      }
    } else {
      throw ConfigError(detail::concat(where, ".classes_from '", from, "' is unknown; expected characters or fonts"));
    }
    go.task_name = task.name.empty() ? "glyphs" : task.name;
    go.train_per_class = get<int64_t>(t, "train_per_class", where, go.train_per_class);
    go.val_per_class = get<int64_t>(t, "val_per_class", where, go.val_per_class);
    go.test_per_class = get<int64_t>(t, "test_per_class", where, go.test_per_class);
    go.size = get<int64_t>(t, "size", where, go.size);
    go.seed = get<uint64_t>(t, "seed", where, seed + index);
    task = data::make_glyph_task(go);
  } else {
    throw ConfigError(detail::concat(where, ".kind '", kind,
                                     "' is unknown; expected imagefolder, list, idx, cifar10, cifar100, shapes or "
                                     "glyphs (SKILL catalogs go in [data.skill])"));
  }
  if (task.name.empty()) task.name = detail::concat("task", index + 1);
  if (!labels.empty()) {
    task.train = select_labels(task.train, labels);
    task.val = select_labels(task.val, labels);
    task.test = select_labels(task.test, labels);
  }
  if (task.classes.empty() || (!labels.empty() && kind != "imagefolder")) {
    task.classes.clear();
    std::vector<std::string> names;
    if (const toml::array* a = t.get_as<toml::array>("classes")) {
      for (const auto& e : *a) names.push_back(e.value<std::string>().value_or("?"));
    }
    int64_t k = 0;
    for (int64_t l : task.train.labels) k = std::max(k, l + 1);
    if (!labels.empty()) k = static_cast<int64_t>(labels.size());
    for (int64_t c = 0; c < k; ++c) {
      task.classes.push_back(static_cast<size_t>(c) < names.size() ? names[static_cast<size_t>(c)]
                             : labels.empty()                       ? std::to_string(c)
                                                                    : std::to_string(labels[static_cast<size_t>(c)]));
    }
  }
  const auto k = static_cast<int64_t>(task.classes.size());
  task.train = data::balanced_subset(task.train, k, get<int64_t>(t, "max_train", where, 0), seed + index);
  task.test = data::balanced_subset(task.test, k, get<int64_t>(t, "max_test", where, 0), seed + index + 7);
  return task;
}

RunSpec read_config(const std::string& path, const std::string& whole_suite_scale = "") {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(detail::concat("'", path, "' is not valid TOML: ", e.description(), " (line ",
                                     e.source().begin.line, ", column ", e.source().begin.column, ")"));
  }
  const std::string base = path.find('/') == std::string::npos ? "." : path.substr(0, path.find_last_of('/'));
  RunSpec s;
  check_keys(root, "(top level)", {"run", "backbone", "data", "train", "method"});
  if (const toml::table* r = root["run"].as_table()) {
    check_keys(*r, "run", {"method", "out", "seed", "device"});
    s.method = get(*r, "method", "run", s.method);
    s.out = resolve(base, get(*r, "out", "run", s.out));
    s.seed = get<uint64_t>(*r, "seed", "run", s.seed);
    s.device = get(*r, "device", "run", s.device);
  }
  if (const toml::table* b = root["backbone"].as_table()) {
    check_keys(*b, "backbone", {"weights", "arch", "small_stem", "kernel"});
    s.weights = resolve(base, get<std::string>(*b, "weights", "backbone", ""));
    s.arch_given = b->contains("arch");
    s.arch = get(*b, "arch", "backbone", s.arch);
    s.small_stem_given = b->contains("small_stem");
    s.small_stem = get(*b, "small_stem", "backbone", s.small_stem);
    s.kernel = get(*b, "kernel", "backbone", s.kernel);
  }
  CLR_CHECK(whole_suite_scale.empty() || root["data"]["suite"].as_table() != nullptr, ConfigError,
            "--scale needs a config with [data.suite] (configs/default.toml); '", path, "' has none");
  if (const toml::table* d = root["data"].as_table()) {
    check_keys(*d, "data",
               {"root", "size", "val_fraction", "allow_missing_test", "skip_corrupt", "tasks", "skill", "suite"});
    s.root = resolve(base, get<std::string>(*d, "root", "data", ""));
    s.prepare.size = get(*d, "size", "data", s.prepare.size);
    s.split.val_fraction = get(*d, "val_fraction", "data", s.split.val_fraction);
    s.split.allow_missing_test = get(*d, "allow_missing_test", "data", s.split.allow_missing_test);
    s.prepare.skip_corrupt = get(*d, "skip_corrupt", "data", s.prepare.skip_corrupt);
    if (const toml::array* tasks = d->get_as<toml::array>("tasks")) {
      size_t i = 0;
      for (const auto& e : *tasks) {
        const toml::table* t = e.as_table();
        CLR_CHECK(t != nullptr, ConfigError, "data.tasks[", i, "] must be a table ([[data.tasks]])");
        s.tasks.push_back(task_from_toml(*t, i++, base, s.seed));
      }
    }
    if (const toml::table* su = d->get_as<toml::table>("suite")) {
      const int64_t size = d->contains("size") ? s.prepare.size : 64;
      for (auto& t : data::read_imagefolder_tasks(suite_from_toml(*su, base, size, whole_suite_scale))) {
        s.tasks.push_back(std::move(t));
      }
    }
    if (const toml::table* sk = d->get_as<toml::table>("skill")) {
      check_keys(*sk, "data.skill", {"root", "tasks_csv", "cap_per_split"});
      data::SkillOptions so;
      so.task_csv = resolve(base, get<std::string>(*sk, "tasks_csv", "data.skill", ""));
      so.cap_per_split = get<int64_t>(*sk, "cap_per_split", "data.skill", 0);
      so.seed = s.seed;
      for (auto& t : data::read_skill(resolve(base, get<std::string>(*sk, "root", "data.skill", "")), so)) {
        s.tasks.push_back(std::move(t));
      }
    }
  }
  if (const toml::table* m = root["method"].as_table()) {
    check_keys(*m, "method", {"ewc_lambda", "ewc_gamma", "fisher_samples", "si_c", "si_xi", "lwf_alpha",
                              "lwf_temperature", "buffer", "replay_batch", "derpp_alpha", "derpp_beta"});
    auto& o = s.methods;
    o.ewc.lambda = get(*m, "ewc_lambda", "method", o.ewc.lambda);
    o.ewc.gamma = get(*m, "ewc_gamma", "method", o.ewc.gamma);
    o.ewc.fisher_samples = get(*m, "fisher_samples", "method", o.ewc.fisher_samples);
    o.si.c = get(*m, "si_c", "method", o.si.c);
    o.si.xi = get(*m, "si_xi", "method", o.si.xi);
    o.lwf.alpha = get(*m, "lwf_alpha", "method", o.lwf.alpha);
    o.lwf.temperature = get(*m, "lwf_temperature", "method", o.lwf.temperature);
    o.replay.buffer = get(*m, "buffer", "method", o.replay.buffer);
    o.replay.batch = get(*m, "replay_batch", "method", o.replay.batch);
    o.replay.alpha = get(*m, "derpp_alpha", "method", o.replay.alpha);
    o.replay.beta = get(*m, "derpp_beta", "method", o.replay.beta);
  }
  if (const toml::table* t = root["train"].as_table()) {
    check_keys(*t, "train", {"optimizer", "lr", "momentum", "weight_decay", "batch", "epochs", "schedule", "step_size",
                             "gamma", "penalty", "patience", "hflip", "crop"});
    auto& c = s.train;
    c.optimizer = get(*t, "optimizer", "train", c.optimizer);
    c.lr = get(*t, "lr", "train", c.lr);
    c.momentum = get(*t, "momentum", "train", c.momentum);
    c.weight_decay = get(*t, "weight_decay", "train", c.weight_decay);
    c.batch_size = get(*t, "batch", "train", c.batch_size);
    c.epochs = get(*t, "epochs", "train", c.epochs);
    c.schedule = get(*t, "schedule", "train", c.schedule);
    c.step_size = get(*t, "step_size", "train", c.step_size);
    c.gamma = get(*t, "gamma", "train", c.gamma);
    c.penalty = get(*t, "penalty", "train", c.penalty);
    c.patience = get(*t, "patience", "train", c.patience);
    c.hflip = get(*t, "hflip", "train", c.hflip);
    c.crop = get(*t, "crop", "train", c.crop);
  }
  return s;
}

nlohmann::ordered_json spec_json(const RunSpec& s) {
  return {{"run", {{"method", s.method}, {"out", s.out}, {"seed", s.seed}, {"device", s.device}}},
          {"backbone", {{"weights", s.weights}, {"arch", s.arch}, {"small_stem", s.small_stem}, {"kernel", s.kernel}}},
          {"data",
           {{"root", s.root},
            {"size", s.prepare.size},
            {"val_fraction", s.split.val_fraction},
            {"allow_missing_test", s.split.allow_missing_test},
            {"skip_corrupt", s.prepare.skip_corrupt}}},
          {"train",
           {{"optimizer", s.train.optimizer},
            {"lr", s.train.lr},
            {"momentum", s.train.momentum},
            {"weight_decay", s.train.weight_decay},
            {"batch", s.train.batch_size},
            {"epochs", s.train.epochs},
            {"schedule", s.train.schedule},
            {"step_size", s.train.step_size},
            {"gamma", s.train.gamma},
            {"penalty", s.train.penalty},
            {"patience", s.train.patience},
            {"hflip", s.train.hflip},
            {"crop", s.train.crop}}},
          {"method",
           {{"ewc_lambda", s.methods.ewc.lambda},
            {"ewc_gamma", s.methods.ewc.gamma},
            {"fisher_samples", s.methods.ewc.fisher_samples},
            {"si_c", s.methods.si.c},
            {"si_xi", s.methods.si.xi},
            {"lwf_alpha", s.methods.lwf.alpha},
            {"lwf_temperature", s.methods.lwf.temperature},
            {"buffer", s.methods.replay.buffer},
            {"replay_batch", s.methods.replay.batch},
            {"derpp_alpha", s.methods.replay.alpha},
            {"derpp_beta", s.methods.replay.beta}}}};
}

// whole_suite_scale (--scale): the config's [data.suite] becomes every suite task at that
// scale; empty: the config as written.
RunSpec read_input(const std::string& input, const std::string& whole_suite_scale = "") {
  CLR_CHECK(!input.empty(), ConfigError, "expected a CONFIG.toml or an ImageFolder ROOT");
  if (directory_exists(input)) {
    CLR_CHECK(whole_suite_scale.empty(), ConfigError, "--scale needs a config with [data.suite] "
              "(configs/default.toml), not the folder '", input, "'");
    RunSpec s;
    s.root = input;
    return s;
  }
  CLR_CHECK(file_exists(input), NotFoundError, "'", input, "' is neither a config file nor a data directory");
  return read_config(input, whole_suite_scale);
}

data::Sequence sequence_of(const RunSpec& s) {
  data::Sequence seq = s.tasks;
  if (!s.root.empty()) {
    for (auto& t : data::read_imagefolder_tasks(s.root)) seq.push_back(std::move(t));
  }
  CLR_CHECK(!seq.empty(), ConfigError, "no tasks: give an ImageFolder root (data.root or the ROOT argument) or "
                                       "[[data.tasks]] entries");
  return seq;
}

// `clr preview`: a PNG grid per task (rows: classes, columns: training images).
void preview(const std::string& input, const std::string& out_dir, int64_t per_class, int64_t size) {
  RunSpec s = read_input(input);
  if (size > 0) s.prepare.size = size;
  make_directories(out_dir);
  for (const data::TaskData& t : sequence_of(s)) {
    const int64_t k = static_cast<int64_t>(t.classes.size());
    const int64_t cell = s.prepare.size;
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
    data::PrepareOptions po = s.prepare;
    po.skip_corrupt = true;
    const data::PreparedSplit p = data::prepare_split(t.train.subset(picks), t.origin, po);
    std::vector<int64_t> col(static_cast<size_t>(k), 0);
    for (int64_t i = 0; i < p.size(); ++i) {
      const int64_t l = p.labels[i].item<int64_t>();
      const int64_t y = l * (cell + 2) + 1, x = col[static_cast<size_t>(l)]++ * (cell + 2) + 1;
      grid.slice(0, y, y + cell).slice(1, x, x + cell).copy_(p.images[i].permute({1, 2, 0}));
    }
    const std::string path = out_dir + "/" + t.name + ".png";
    data::write_png(path, grid);
    std::cout << path << ": " << k << " classes (" << join_first(t.classes, 12) << ")" << std::endl;
  }
}

// The effective run description: the config (or ROOT), then the flags over it.
RunSpec spec_of(const RunArgs& a) {
  RunSpec s = read_input(a.input, a.scale);
  if (!a.method.empty()) s.method = a.method;
  if (!a.out.empty()) s.out = a.out;
  if (a.seed >= 0) s.seed = static_cast<uint64_t>(a.seed);
  if (!a.device.empty()) s.device = a.device;
  if (!a.arch.empty()) {
    s.arch = a.arch;
    s.arch_given = true;
  }
  if (!a.backbone.empty()) {
    if (file_exists(a.backbone)) {
      s.weights = a.backbone;
    } else {
      const auto names = models::architecture_names();
      CLR_CHECK(std::find(names.begin(), names.end(), a.backbone) != names.end(), NotFoundError, "--backbone '",
                a.backbone, "' is neither an existing weight file nor an architecture (", join_first(names), ")");
      s.arch = a.backbone;
      s.arch_given = true;
      s.weights.clear();
    }
  }
  if (a.small_stem) {
    s.small_stem = true;
    s.small_stem_given = true;
  }
  if (a.epochs > 0) s.train.epochs = a.epochs;
  if (a.batch > 0) s.train.batch_size = a.batch;
  if (a.lr > 0) s.train.lr = a.lr;
  if (a.size > 0) s.prepare.size = a.size;
  if (a.patience >= 0) s.train.patience = a.patience;
  if (!a.optimizer.empty()) s.train.optimizer = a.optimizer;
  if (!a.schedule.empty()) s.train.schedule = a.schedule;
  if (a.val_fraction > 0) s.split.val_fraction = a.val_fraction;
  if (a.allow_missing_test) s.split.allow_missing_test = true;
  if (a.skip_corrupt) s.prepare.skip_corrupt = true;
  if (a.hflip) s.train.hflip = true;
  if (a.crop >= 0) s.train.crop = a.crop;
  auto set = [](double flag, double& value) {
    if (!std::isnan(flag)) value = flag;
  };
  auto set_int = [](int64_t flag, int64_t& value) {
    if (flag != RunArgs::kUnset) value = flag;
  };
  auto& m = s.methods;
  set(a.ewc_lambda, m.ewc.lambda);
  set(a.ewc_gamma, m.ewc.gamma);
  set_int(a.fisher_samples, m.ewc.fisher_samples);
  set(a.si_c, m.si.c);
  set(a.si_xi, m.si.xi);
  set(a.lwf_alpha, m.lwf.alpha);
  set(a.lwf_temperature, m.lwf.temperature);
  set_int(a.buffer, m.replay.buffer);
  set_int(a.replay_batch, m.replay.batch);
  set(a.derpp_alpha, m.replay.alpha);
  set(a.derpp_beta, m.replay.beta);
  s.train.seed = s.seed;
  s.split.seed = s.seed;
  s.train.validate();
  s.methods.kernel = s.kernel;
  s.methods.validate();
  CLR_CHECK(s.weights.empty() || file_exists(s.weights), NotFoundError, "backbone weight file '", s.weights,
            "' does not exist");
  // The file's metadata fills what was not set, so the spec (and the configuration
  // stored with a run) says what really runs.
  if (!s.weights.empty() && detect_weight_format(s.weights) == WeightFormat::kSafetensors) {
    const Metadata md = read_safetensors_metadata(s.weights);
    if (!s.arch_given && md.count("arch")) s.arch = md.at("arch");
    if (!s.small_stem_given && md.count("small_stem")) s.small_stem = md.at("small_stem") == "true";
  }
  return s;
}

// Learns `seq` with s.method from a freshly loaded backbone; writes s.out.
eval::Results run_spec(RunSpec s, data::Sequence seq) {
  const c10::Device device = runtime::parse_device(s.device);
  torch::manual_seed(s.seed);
  std::string source = "random";
  if (!s.weights.empty()) {
    source = s.weights;
  } else {
    log::warn("no backbone weights given: the ", s.arch, " backbone is randomly initialised, so accuracy measures "
              "random features; pass --backbone FILE");
  }
  models::ResNet backbone = s.weights.empty() ? models::make_resnet(s.arch, 0, s.small_stem)
                                              : models::load_resnet(s.arch, s.weights, 0, s.small_stem);
  backbone->to(device);
  const int64_t params = models::torchvision_param_count(*backbone);
  train::MethodOptions mo = s.methods;
  mo.kernel = s.kernel;
  mo.seed = s.seed;
  mo.crop = s.train.crop;
  for (const auto& t : seq) mo.max_classes = std::max<int64_t>(mo.max_classes, static_cast<int64_t>(t.classes.size()));
  std::unique_ptr<train::Method> method = train::make_method(s.method, backbone, params, mo);

  eval::RunOptions o;
  o.train = s.train;
  o.prepare = s.prepare;
  o.split = s.split;
  o.out_dir = s.out;
  o.backbone_arch = s.arch;
  o.backbone_source = source;
  o.backbone_small_stem = s.small_stem;
  o.device = device.str();
  o.config_json = spec_json(s).dump();
  return eval::run_sequence(*method, std::move(seq), o);
}

void run(const RunArgs& a) {
  const RunSpec s = spec_of(a);
  const eval::Results r = run_spec(s, sequence_of(s));
  std::cout << eval::format_matrix(r) << "results: " << s.out << "/results.json" << std::endl;
}

std::vector<std::string> split_methods(const std::string& list) {
  if (list == "all") return train::method_names();
  std::vector<std::string> out;
  std::string cur;
  for (char c : list + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  const auto known = train::method_names();
  for (const auto& m : out) {
    CLR_CHECK(std::find(known.begin(), known.end(), m) != known.end(), ConfigError, "--methods: unknown method '", m,
              "'; expected a comma-separated list of ", join_first(known, 20), " (or all)");
  }
  CLR_CHECK(!out.empty(), ConfigError, "--methods is empty; expected e.g. clr,sgd,ewc (or all)");
  for (size_t i = 0; i < out.size(); ++i) {
    CLR_CHECK(std::find(out.begin(), out.begin() + static_cast<long>(i), out[i]) == out.begin() + static_cast<long>(i),
              ConfigError, "--methods names '", out[i], "' twice");
  }
  return out;
}

// A finished run of `s` on `seq` already in s.out (for `clr compare --reuse`): complete,
// made with the same configuration (its method and output directory aside) and the
// same tasks. Anything else is run again, with a line saying why.
std::optional<eval::Results> reusable_run(const RunSpec& s, const data::Sequence& seq) {
  const std::string path = s.out + "/results.json";
  if (!file_exists(path)) return std::nullopt;
  eval::Results r;
  try {
    r = eval::read_results(path);
  } catch (const Error& e) {
    log::warn("compare: not reusing ", path, ": ", e.what());
    return std::nullopt;
  }
  auto comparable = [](const std::string& text) {  // key order does not matter
    nlohmann::json j = nlohmann::json::parse(text);
    if (j.contains("run")) {
      j["run"].erase("out");
      j["run"].erase("method");
    }
    return j;
  };
  std::string why;
  if (!r.complete) {
    why = "the run did not finish";
  } else if (r.method != s.method) {
    why = "it is a run of '" + r.method + "'";
  } else if (r.config_json.empty() ||
             comparable(r.config_json) != comparable(spec_json(s).dump())) {
    why = "it was made with another configuration";
  } else if (r.tasks.size() != seq.size()) {
    why = detail::concat("it has ", r.tasks.size(), " tasks, the sequence ", seq.size());
  } else {
    for (size_t i = 0; i < seq.size() && why.empty(); ++i) {
      if (r.tasks[i].name != seq[i].name || r.tasks[i].classes != static_cast<int64_t>(seq[i].classes.size())) {
        why = detail::concat("its task ", i + 1, " is '", r.tasks[i].name, "' with ", r.tasks[i].classes,
                             " classes, the sequence's '", seq[i].name, "' with ", seq[i].classes.size());
      }
    }
  }
  if (!why.empty()) {
    log::info("compare: running '", s.method, "' again (", path, ": ", why, ")");
    return std::nullopt;
  }
  log::info("compare: reusing the finished run in ", s.out);
  return r;
}

// `clr compare`: every method on the same sequence, backbone and seed.
void compare(RunArgs a, const std::string& out_dir, bool reuse) {
  const std::vector<std::string> methods = split_methods(a.methods);
  a.method.clear();
  a.out.clear();
  RunSpec base = spec_of(a);
  CLR_CHECK(!out_dir.empty(), ConfigError, "--out DIR is required");
  const data::Sequence seq = sequence_of(base);
  make_directories(out_dir);
  std::vector<eval::Results> runs;
  std::vector<std::string> dirs;
  for (size_t i = 0; i < methods.size(); ++i) {
    RunSpec s = base;
    s.method = methods[i];
    s.out = out_dir + "/" + methods[i];
    log::info("compare: method ", i + 1, "/", methods.size(), " '", s.method, "' -> ", s.out);
    std::optional<eval::Results> previous = reuse ? reusable_run(s, seq) : std::nullopt;
    runs.push_back(previous ? *previous : run_spec(s, seq));
    dirs.push_back(methods[i]);
    const auto rows = eval::compare_rows(runs, dirs);
    RunSpec shown = base;
    shown.method = a.methods;
    shown.out = out_dir;
    write_file_atomic(out_dir + "/compare.json", eval::compare_json(rows, spec_json(shown).dump()));
    write_file_atomic(out_dir + "/compare.csv", eval::compare_csv(rows));
  }
  std::cout << eval::format_compare(eval::compare_rows(runs, dirs)) << "results: " << out_dir << "/compare.json"
            << std::endl;
}

struct PretrainArgs {
  std::string input, arch = "resnet18", out, device = "cpu", optimizer = "sgd", schedule = "cosine", mode = "supervised";
  train::SimclrOptions simclr;
  bool small_stem = false, fp16 = false, hflip = false;
  int64_t epochs = 30, batch = 128, size = 0, patience = 1000000;
  double lr = 0.1, weight_decay = 5e-5, val_fraction = 0.05;
  uint64_t seed = 0;
  std::string command_line;
};

// `clr pretrain`: training of a whole backbone on one dataset, supervised (with an
// fc of the dataset's classes) or self-supervised (SimCLR; labels only for the kNN
// validation monitor).
void pretrain(const PretrainArgs& a) {
  CLR_CHECK(a.mode == "supervised" || a.mode == "simclr", ConfigError, "--mode must be supervised or simclr, got '",
            a.mode, "'");
  RunSpec s = read_input(a.input);
  if (a.size > 0) s.prepare.size = a.size;
  data::Sequence seq = sequence_of(s);
  data::SplitOptions so;
  so.val_fraction = a.val_fraction;
  so.allow_missing_test = true;
  so.seed = a.seed;
  for (auto& t : seq) data::complete_splits(t, so);
  data::validate_sequence(seq);
  CLR_CHECK(!a.out.empty(), ConfigError, "--out FILE is required");
  // Several tasks are pretrained on as one dataset: class c of task t is "t/c".
  std::vector<std::string> classes;
  std::string origin;
  for (const auto& t : seq) {
    for (const auto& c : t.classes) classes.push_back(seq.size() == 1 ? c : t.name + "/" + c);
    origin += (origin.empty() ? "" : " + ") + t.origin;
  }

  train::TrainConfig tc;
  tc.optimizer = a.optimizer;
  tc.schedule = a.schedule;
  tc.lr = a.lr;
  tc.weight_decay = a.weight_decay;
  tc.batch_size = a.batch;
  tc.epochs = a.epochs;
  tc.patience = a.patience;
  tc.penalty = 0;
  tc.hflip = a.hflip;
  tc.seed = a.seed;
  if (a.mode == "simclr") {
    CLR_CHECK(a.batch >= 2, ConfigError, "--mode simclr needs --batch >= 2 (each image's partner view is found "
                                         "among the batch's other views), got ", a.batch);
    tc.drop_last = true;
  }
  tc.validate();

  const c10::Device device = runtime::parse_device(a.device);
  torch::manual_seed(a.seed);
  const auto k = static_cast<int64_t>(classes.size());
  const bool ssl = a.mode == "simclr";
  models::ResNet net = models::make_resnet(a.arch, ssl ? 0 : k, a.small_stem);
  net->to(device);
  std::unique_ptr<train::Method> model;
  std::unique_ptr<train::SimclrModel> simclr_model;
  if (ssl) {
    simclr_model = std::make_unique<train::SimclrModel>(net, a.simclr);
  } else {
    model = std::make_unique<train::SupervisedModel>(net);
  }
  train::Method& method = ssl ? static_cast<train::Method&>(*simclr_model) : *model;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<at::Tensor> train_images, train_labels, val_images, val_labels;
  int64_t offset = 0;
  for (const auto& t : seq) {
    data::PreparedSplit tr = data::prepare_split(t.train, t.origin + " (train)", s.prepare);
    data::PreparedSplit va = data::prepare_split(t.val, t.origin + " (val)", s.prepare);
    train_images.push_back(tr.images);
    train_labels.push_back(tr.labels + offset);
    val_images.push_back(va.images);
    val_labels.push_back(va.labels + offset);
    offset += static_cast<int64_t>(t.classes.size());
  }
  data::PreparedSplit train, val;
  train.images = torch::cat(train_images);
  train.labels = torch::cat(train_labels);
  val.images = torch::cat(val_images);
  val.labels = torch::cat(val_labels);
  const std::string task_name = seq.size() == 1 ? seq[0].name : "pretraining";
  log::info("pretrain ", a.arch, a.small_stem ? " (small stem)" : "", " (", a.mode, ") on ", origin, ": ", k,
            " classes, ", train.size(), " train / ", val.size(), " val images at ", s.prepare.size, " px, device ",
            device.str());
  CLR_CHECK(!ssl || train.size() >= a.batch, ConfigError, "--mode simclr: ", train.size(),
            " training images do not fill one batch of ", a.batch, "; lower --batch");
  if (ssl) simclr_model->set_probe(train.images, train.labels, k);
  train::TaskInfo info{0, task_name, k};
  method.begin_task(info);
  const train::TaskTrainReport rep = train::train_task(method, info, train, val, tc);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  TensorMap weights;
  for (const auto& [key, t] : models::state_dict(*net)) {
    at::Tensor c = t.detach().to(torch::kCPU);
    weights.emplace(key, a.fp16 && c.is_floating_point() ? c.to(torch::kHalf) : c);
  }
  nlohmann::json class_names = classes;
  write_safetensors(a.out, weights,
                    {{"format", "clr.backbone/1"},
                     {"arch", a.arch},
                     {"small_stem", a.small_stem ? "true" : "false"},
                     {"input_size", std::to_string(s.prepare.size)},
                     {"classes", class_names.dump()},
                     {"data", origin},
                     {"train_images", std::to_string(train.size())},
                     {"command", a.command_line},
                     {"seed", std::to_string(a.seed)},
                     {"epochs", std::to_string(rep.epochs_run)},
                     {"best_epoch", std::to_string(rep.best_epoch)},
                     {"val_accuracy", std::to_string(rep.best_val_accuracy)},
                     {"mode", a.mode},
                     {"val_metric", ssl ? "knn" : "classifier"},
                     {"device", device.str()},
                     {"wall_seconds", std::to_string(wall)},
                     {"libtorch", compat::torch_version()},
                     {"dtype", a.fp16 ? "F16" : "F32"}});
  nlohmann::ordered_json j = {{"out", a.out},
                              {"arch", a.arch},
                              {"classes", k},
                              {"epochs", rep.epochs_run},
                              {"mode", a.mode},
                              {"best_val_accuracy", rep.best_val_accuracy},
                              {"train_images_per_second", rep.images_per_second},
                              {"wall_seconds", wall},
                              {"fingerprint", fingerprint(weights)}};
  std::cout << j.dump(2) << std::endl;
}

}  // namespace

void register_pretrain(CLI::App& app, int argc, char** argv) {
  auto a = std::make_shared<PretrainArgs>();
  for (int i = 0; i < argc; ++i) a->command_line += (i ? " " : "") + std::string(argv[i]);
  CLI::App* sub = app.add_subcommand(
      "pretrain", "Train a whole backbone on one dataset (supervised, or self-supervised with SimCLR) and write "
                  "torchvision-named safetensors");
  sub->add_option("data", a->input, "A config (TOML) with one [[data.tasks]] entry, or a single-task ImageFolder root")
      ->required();
  sub->add_option("--arch", a->arch, "Architecture")->capture_default_str();
  sub->add_option("--mode", a->mode,
                  "supervised (an fc over the dataset's classes) or simclr (self-supervised; labels only feed the kNN "
                  "validation monitor, and the file holds no fc)")
      ->capture_default_str();
  sub->add_option("--temperature", a->simclr.temperature, "simclr: NT-Xent temperature")->capture_default_str();
  sub->add_option("--min-crop", a->simclr.min_scale, "simclr: smallest random crop, as a fraction of the image area")
      ->capture_default_str();
  sub->add_flag("--small-stem", a->small_stem, "3x3 stride-1 stem without max-pool (32-64 px inputs)");
  sub->add_option("--out", a->out, "Output weight file (.safetensors)")->required();
  sub->add_option("--epochs", a->epochs)->capture_default_str();
  sub->add_option("--batch", a->batch)->capture_default_str();
  sub->add_option("--lr", a->lr)->capture_default_str();
  sub->add_option("--weight-decay", a->weight_decay)->capture_default_str();
  sub->add_option("--optimizer", a->optimizer, "sgd or adam")->capture_default_str();
  sub->add_option("--schedule", a->schedule, "cosine, step or none")->capture_default_str();
  sub->add_option("--size", a->size, "Image size (default: the config's data.size)");
  sub->add_option("--val-fraction", a->val_fraction, "Fraction of train held out for model selection")->capture_default_str();
  sub->add_flag("--hflip", a->hflip, "Random horizontal flips");
  sub->add_flag("--fp16", a->fp16, "Store the weights in fp16 (half the file size)");
  sub->add_option("--device", a->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  sub->add_option("--seed", a->seed)->capture_default_str();
  sub->footer(architectures_help());
  register_action(sub, [a] { pretrain(*a); });
}

void register_preview(CLI::App& app) {
  struct Args {
    std::string input, out = "preview";
    int64_t per_class = 8, size = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("preview", "Write a PNG grid of training images per task (rows are classes)");
  sub->add_option("input", a->input, "A run config (TOML) or an ImageFolder root")->required();
  sub->add_option("--out", a->out, "Output directory")->capture_default_str();
  sub->add_option("--per-class", a->per_class, "Images per class")->capture_default_str();
  sub->add_option("--size", a->size, "Cell size in pixels (default: the config's data.size)");
  register_action(sub, [a] { preview(a->input, a->out, a->per_class, a->size); });
}

void add_run_options(CLI::App* sub, RunArgs* a) {
  sub->add_option("input", a->input,
                  "A run config (TOML, docs/CONFIG.md) or an ImageFolder root: ROOT/<task>/{train,val,test}/<class>/<img> "
                  "(or one task: ROOT/{train,val,test}/<class>/<img>)")
      ->required();
  sub->add_option("--backbone", a->backbone,
                  "Backbone weights (safetensors or .pth), or an architecture name for a random backbone");
  sub->add_option("--arch", a->arch, "Architecture of the backbone file (default: from its metadata, else resnet18)");
  sub->add_flag("--small-stem", a->small_stem, "The backbone has the 3x3 stride-1 stem without max-pool");
  sub->add_option("--epochs", a->epochs, "Maximum epochs per task (default 60)");
  sub->add_option("--batch", a->batch, "Batch size (default 32)");
  sub->add_option("--lr", a->lr, "Learning rate (default 1e-3)");
  sub->add_option("--size", a->size, "Images are resized to SIZE x SIZE (default 224)");
  sub->add_option("--patience", a->patience, "Stop after more than N epochs without validation gain (default 21)");
  sub->add_option("--optimizer", a->optimizer, "adam (default) or sgd");
  sub->add_option("--schedule", a->schedule, "step (default: x0.1 every 20 epochs), cosine or none");
  sub->add_option("--val-fraction", a->val_fraction, "Fraction of train carved out as val when a task has none (0.1)");
  sub->add_flag("--allow-missing-test", a->allow_missing_test, "Report accuracy on val for tasks without a test split");
  sub->add_flag("--skip-corrupt", a->skip_corrupt, "Skip (and count) undecodable images instead of failing");
  sub->add_flag("--hflip", a->hflip, "Random horizontal flips while training");
  sub->add_option("--crop", a->crop, "Random CROP x CROP crops of the resized images in training, centred ones in "
                                     "evaluation (default 0: none)");
  sub->add_option("--device", a->device, "cpu (default), cuda, cuda:N or auto");
  sub->add_option("--seed", a->seed, "Seed for initialisation, splits, shuffling, Fisher samples, buffers (default 0)");
  sub->add_option("--scale", a->scale,
                  "With a config that has [data.suite] (configs/default.toml): learn all 22 suite tasks at this scale, "
                  "small or full, built on first use beside the config's suite dir")
      ->check(CLI::IsMember({"small", "full"}));
  const train::MethodOptions d;
  const std::string g = "Method hyperparameters (docs/METHODS.md)";
  sub->add_option("--ewc-lambda", a->ewc_lambda, detail::concat("ewc, online-ewc: penalty weight (default ", d.ewc.lambda, ")"))->group(g);
  sub->add_option("--ewc-gamma", a->ewc_gamma, detail::concat("online-ewc: decay of the old Fisher (default ", d.ewc.gamma, ")"))->group(g);
  sub->add_option("--fisher-samples", a->fisher_samples,
                  detail::concat("ewc, online-ewc: training images per Fisher estimate, 0 = all (default ",
                                 d.ewc.fisher_samples, ")"))->group(g);
  sub->add_option("--si-c", a->si_c, detail::concat("si: penalty weight c (default ", d.si.c, ")"))->group(g);
  sub->add_option("--si-xi", a->si_xi, detail::concat("si: damping xi (default ", d.si.xi, ")"))->group(g);
  sub->add_option("--lwf-alpha", a->lwf_alpha, detail::concat("lwf: distillation weight (default ", d.lwf.alpha, ")"))->group(g);
  sub->add_option("--lwf-temperature", a->lwf_temperature,
                  detail::concat("lwf: softmax temperature (default ", d.lwf.temperature, ")"))->group(g);
  sub->add_option("--buffer", a->buffer, detail::concat("er, derpp: replay buffer size in images over all tasks (default ",
                                                        d.replay.buffer, ")"))->group(g);
  sub->add_option("--replay-batch", a->replay_batch, "er, derpp: replayed images per step (default: the batch size)")
      ->group(g);
  sub->add_option("--derpp-alpha", a->derpp_alpha, detail::concat("derpp: logit-matching weight (default ", d.replay.alpha, ")"))->group(g);
  sub->add_option("--derpp-beta", a->derpp_beta, detail::concat("derpp: replayed cross-entropy weight (default ", d.replay.beta, ")"))->group(g);
  // NaN means "not given" inside RunArgs, so a literal nan (or inf) is refused here.
  const CLI::Validator finite(
      [](std::string& v) -> std::string {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0') return "expected a number, got '" + v + "'";
        return std::isfinite(x) ? std::string() : "expected a finite number, got '" + v + "'";
      },
      "NUMBER");
  for (const char* name : {"--ewc-lambda", "--ewc-gamma", "--si-c", "--si-xi", "--lwf-alpha", "--lwf-temperature",
                           "--derpp-alpha", "--derpp-beta", "--lr", "--val-fraction"}) {
    sub->get_option(name)->check(finite);
  }
}

void register_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* sub = app.add_subcommand(
      "run", "Learn a sequence of tasks one after another and report the accuracy matrix (the main job)");
  add_run_options(sub, a.get());
  sub->add_option("--method", a->method, "clr (default) or a baseline (list below)");
  sub->add_option("--out", a->out, "Output directory (default runs/clr)");
  sub->footer("Methods:\n" + train::methods_help() +
              "Writes OUT/results.json, OUT/results.csv, OUT/log.txt; the tasks of clr, clr-full, residual and\n"
              "linear into the adapter store OUT/adapters (clr tasks, clr predict, clr serve), those of the\n"
              "other methods to OUT/task_states/ (and OUT/method_state.safetensors for methods with cross-task\n"
              "state: Fisher, path integrals, buffer).\n" +
              architectures_help());
  register_action(sub, [a] { run(*a); });
}

void register_compare(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  auto out = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand(
      "compare", "Learn the same sequence with several methods (same backbone, seed, recipe) and compare them");
  add_run_options(sub, a.get());
  sub->add_option("--methods", a->methods, "Comma-separated methods, or all")->required();
  sub->add_option("--out", *out, "Output directory: OUT/<method>/ per run, OUT/compare.json, OUT/compare.csv")
      ->required();
  sub->footer("Methods:\n" + train::methods_help() +
              "Prints average accuracy, BWT, forgetting, task-1 accuracy after the last task, extra parameters\n"
              "per task (% of the backbone), stored bytes per task and training time relative to sgd.\n" +
              architectures_help());
  auto reuse = std::make_shared<bool>(false);
  sub->add_flag("--reuse", *reuse,
                "Keep the finished runs already in OUT/<method>/ that were made with the same configuration and "
                "tasks (a compare that was stopped resumes; runs made in parallel with `clr run --out OUT/<method>` "
                "are tabulated)");
  register_action(sub, [a, out, reuse] { compare(*a, *out, *reuse); });
}

}  // namespace clr::apps
