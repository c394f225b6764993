#include "clr/data/suite.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/log.h"
#include "clr/core/path.h"
#include "clr/core/progress.h"
#include "clr/data/assets.h"
#include "clr/data/image.h"
#include "clr/data/sources.h"
#include "detail/suite_build.h"

namespace clr::data {

using suite_internal::Bundle;
using suite_internal::SuiteAsset;
using suite_internal::SuiteContext;
using suite_internal::SuiteRecipe;
using suite_internal::TaskAssets;

namespace suite_internal {
namespace {

// The recipes of a set.
std::vector<SuiteRecipe> recipes_of(const std::string& set) {
  CLR_CHECK(set == "suite" || set == "pretrain", ConfigError, "--set must be suite or pretrain, got '", set, "'");
  return set == "suite" ? suite_internal::suite_recipes() : suite_internal::pretrain_recipes();
}

}  // namespace

// ---------------------------------------------------------------- shared with suite_bundle.cpp

std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/clr/assets";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/clr/assets";
  return "";
}

void check_replaceable(const std::string& out, const std::string& marker, const std::string& what) {
  if (!directory_exists(out)) return;
  CLR_CHECK(list_directory(out).empty() || file_exists(out + "/" + marker), ConfigError, "'", out,
            "' exists and is not a ", what, " (no ", marker, "); --overwrite only replaces a ", what,
            " or an empty directory");
}

std::vector<SuiteRecipe> chosen_recipes(const std::string& set, const std::vector<std::string>& names) {
  std::vector<SuiteRecipe> recipes = recipes_of(set);
  if (names.empty()) return recipes;
  std::vector<std::string> known;
  for (const auto& r : recipes) known.push_back(r.info.name);
  for (const auto& name : names) {
    CLR_CHECK(std::find(known.begin(), known.end(), name) != known.end(), ConfigError, "unknown suite task '", name,
              "'; the tasks are: ", join_first(known, 64));
  }
  std::vector<SuiteRecipe> chosen;
  for (const auto& r : recipes) {
    if (std::find(names.begin(), names.end(), r.info.name) != names.end()) chosen.push_back(r);
  }
  return chosen;
}

TaskAssets load_task_assets(const SuiteRecipe& recipe, SuiteContext& ctx) {
  TaskAssets out;
  std::vector<SuiteAsset> assets;
  recipe.collect(ctx, out.classes, assets);
  out.packages = ctx.take_used();
  CLR_CHECK(out.classes.size() >= 2 && !assets.empty(), NotFoundError, "task '", recipe.info.name, "' found ",
            assets.size(), " assets for ", out.classes.size(), " classes");
  // Load every asset (rendering SVGs, glyphs); drop those that draw nothing.
  std::vector<std::vector<at::Tensor>> payload(assets.size());
  std::atomic<int64_t> loaded{0};
  Progress progress("suite '" + recipe.info.name + "': loading assets", static_cast<int64_t>(assets.size()), "asset");
  std::vector<std::string> errors(assets.size());
  at::parallel_for(0, static_cast<int64_t>(assets.size()), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      try {
        payload[static_cast<size_t>(i)] = assets[static_cast<size_t>(i)].load();
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(i)] = assets[static_cast<size_t>(i)].key + ": " + e.what();
      }
      const int64_t n = ++loaded;
      if (at::get_thread_num() == 0) progress.update(n);
    }
  });
  progress.finish();
  int64_t failed = 0;
  for (size_t i = 0; i < assets.size(); ++i) {
    if (!errors[i].empty()) {
      if (failed++ < 3) log::warn("suite '", recipe.info.name, "': skipping asset: ", errors[i]);
      out.skipped.push_back(assets[i].key);
      continue;
    }
    if (payload[i].empty()) {
      out.skipped.push_back(assets[i].key);
      continue;
    }
    out.assets.push_back(assets[i]);
    out.payloads.push_back(std::move(payload[i]));
  }
  if (failed > 0) log::warn("suite '", recipe.info.name, "': ", failed, " of ", assets.size(), " assets could not be loaded");
  CLR_CHECK(static_cast<double>(out.assets.size()) >= 0.8 * static_cast<double>(assets.size()), FormatError, "task '",
            recipe.info.name, "': only ", out.assets.size(), " of ", assets.size(), " assets could be loaded");
  return out;
}

}  // namespace suite_internal

namespace {

const char* kSplitNames[3] = {"train", "val", "test"};

// A class or task name as a directory name: lower case, [a-z0-9._-] only.
std::string safe_name(const std::string& s) {
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c)) out += static_cast<char>(std::tolower(c));
    else if (ch == '-' || ch == '_' || ch == '.') out += ch;
    else if (!out.empty() && out.back() != '-') out += '-';
  }
  while (!out.empty() && (out.back() == '-' || out.back() == '.')) out.pop_back();
  while (!out.empty() && out.front() == '.') out.erase(out.begin());
  return out.empty() ? "x" : out;
}

// Images per class and split: "full" gives a task 1,000-3,000 training images, "small"
// a few hundred (the README's main command).
std::array<int64_t, 3> images_per_class(const std::string& scale, int64_t classes) {
  const bool full = scale == "full";
  const int64_t train_total = full ? std::clamp<int64_t>(300 * classes, 1000, 3000) : std::clamp<int64_t>(60 * classes, 240, 600);
  // At least 10 (small) or 20 (full) training images per class, and never fewer
  // training than test images.
  const int64_t train = std::max<int64_t>(full ? 20 : 10, (train_total + classes - 1) / classes);
  const int64_t val = std::min(train, std::max<int64_t>(full ? 10 : 5, (train * 15 + 99) / 100));
  const int64_t test = std::min(train, std::max<int64_t>(full ? 25 : 10, (train * 3 + 9) / 10));
  return {train, val, test};
}

struct SplitPlan {
  // For each split, per class, the indices of the assets it draws from.
  std::array<std::vector<std::vector<size_t>>, 3> pools;
  std::array<std::set<std::string>, 3> groups;
};

// Assigns whole groups to splits: per class when every group belongs to one class,
// for the whole task otherwise (a deck holds every suit; a font every letter).
SplitPlan split_assets(const SuiteRecipe& recipe, const std::vector<std::string>& classes,
                       const std::vector<SuiteAsset>& assets, uint64_t seed) {
  const std::string& task = recipe.info.name;
  const auto n_classes = static_cast<int64_t>(classes.size());
  std::map<std::string, std::set<int64_t>> classes_of;  // group -> classes
  std::map<std::string, int> fixed;                     // group -> split (or -2: train or val)
  for (const auto& a : assets) {
    classes_of[a.group].insert(a.cls);
    if (a.split != -1) fixed[a.group] = a.split;
  }
  bool per_class = true;
  for (const auto& [g, cs] : classes_of) per_class = per_class && cs.size() == 1 && *cs.begin() >= 0;

  std::map<std::string, int> split_of;
  auto assign = [&](std::vector<std::string> groups, uint64_t s, bool only_train_val) {
    std::sort(groups.begin(), groups.end());
    Rng rng(s);
    for (size_t i = groups.size(); i > 1; --i) std::swap(groups[i - 1], groups[static_cast<size_t>(rng.below(static_cast<int64_t>(i)))]);
    const auto n = static_cast<double>(groups.size());
    const int64_t n_test = only_train_val ? 0 : std::max<int64_t>(1, std::llround(n * recipe.test_fraction));
    const int64_t n_val = std::max<int64_t>(1, std::llround(n * recipe.val_fraction));
    CLR_CHECK(static_cast<int64_t>(groups.size()) >= n_test + n_val + 1, NotFoundError, "task '", task, "' has only ",
              groups.size(), " source assets (groups) to split", per_class ? " in a class" : "",
              "; it needs at least ", n_test + n_val + 1, " (is a package missing files?)");
    for (size_t i = 0; i < groups.size(); ++i) {
      const auto k = static_cast<int64_t>(i);
      split_of[groups[i]] = k < n_test ? 2 : k < n_test + n_val ? 1 : 0;
    }
  };
  // Groups with a fixed split keep it; "-2" groups are split between train and val.
  std::map<int64_t, std::vector<std::string>> free_groups, train_val_groups;  // class (or -1) -> groups
  for (const auto& [g, cs] : classes_of) {
    const int64_t key = per_class ? *cs.begin() : -1;
    auto f = fixed.find(g);
    if (f == fixed.end()) free_groups[key].push_back(g);
    else if (f->second == -2) train_val_groups[key].push_back(g);
    else split_of[g] = f->second;
  }
  for (auto& [k, gs] : free_groups) assign(gs, mix_seed(seed, 11, static_cast<uint64_t>(k + 1)), false);
  for (auto& [k, gs] : train_val_groups) assign(gs, mix_seed(seed, 13, static_cast<uint64_t>(k + 1)), true);

  SplitPlan plan;
  for (auto& p : plan.pools) p.assign(static_cast<size_t>(n_classes), {});
  for (size_t i = 0; i < assets.size(); ++i) {
    const int s = split_of.at(assets[i].group);
    plan.groups[static_cast<size_t>(s)].insert(assets[i].group);
    if (assets[i].cls >= 0) {
      plan.pools[static_cast<size_t>(s)][static_cast<size_t>(assets[i].cls)].push_back(i);
    } else {  // a shared pool: every class draws from it
      for (auto& per : plan.pools[static_cast<size_t>(s)]) per.push_back(i);
    }
  }
  for (int s = 0; s < 3; ++s) {
    for (int64_t c = 0; c < n_classes; ++c) {
      CLR_CHECK(!plan.pools[static_cast<size_t>(s)][static_cast<size_t>(c)].empty(), NotFoundError, "task '", task,
                "': class '", classes[static_cast<size_t>(c)], "' has no source asset in its ", kSplitNames[s],
                " split (too few assets, or a package is missing files)");
    }
  }
  return plan;
}

struct WrittenImage {
  int split;
  int64_t cls;
  std::string rel;   // path relative to the task directory: split/class/file
  std::string hash;  // sha256 of the PNG bytes
  std::string source;  // the assets it was drawn from (keys, ';'-separated)
  std::string group;   // their split groups
};

struct BuiltTask {
  SuiteTaskSummary summary;
  std::string description;
  std::vector<std::string> class_dirs;
  std::vector<std::string> packages;
  std::vector<std::string> skipped;
  std::vector<WrittenImage> images;
};

// The seed of a task's random streams (FNV-1a of its name: the same on every platform).
uint64_t task_seed_of(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return mix_seed(seed, h);
}

BuiltTask draw_task(const SuiteRecipe& recipe, const TaskAssets& ta, const std::string& task_dir, const SuiteOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  BuiltTask out;
  out.summary.name = recipe.info.name;
  out.summary.kind = recipe.info.kind;
  out.description = recipe.info.description;
  out.packages = ta.packages;
  out.skipped = ta.skipped;
  const std::vector<std::string>& classes = ta.classes;
  const std::vector<SuiteAsset>& kept = ta.assets;
  const std::vector<std::vector<at::Tensor>>& kept_payload = ta.payloads;
  const uint64_t task_seed = task_seed_of(o.seed, recipe.info.name);

  const SplitPlan plan = split_assets(recipe, classes, kept, task_seed);
  const auto counts = images_per_class(o.scale, static_cast<int64_t>(classes.size()));

  // Class directories (unique, filesystem-safe).
  std::set<std::string> used;
  for (const auto& c : classes) {
    std::string d = safe_name(c);
    for (int k = 2; used.count(d); ++k) d = safe_name(c) + "-" + std::to_string(k);
    used.insert(d);
    out.class_dirs.push_back(d);
  }
  for (int s = 0; s < 3; ++s) {
    for (const auto& d : out.class_dirs) make_directories(task_dir + "/" + kSplitNames[s] + "/" + d);
  }

  // Every image: (split, class, index) -> its own random stream; parallel and deterministic.
  struct Job {
    int split;
    int64_t cls, index;
  };
  std::vector<Job> jobs;
  for (int s = 0; s < 3; ++s) {
    for (int64_t c = 0; c < static_cast<int64_t>(classes.size()); ++c) {
      for (int64_t i = 0; i < counts[static_cast<size_t>(s)]; ++i) jobs.push_back({s, c, i});
    }
  }
  out.images.resize(jobs.size());
  Progress gen("suite '" + recipe.info.name + "': drawing", static_cast<int64_t>(jobs.size()));
  std::atomic<int64_t> done{0};
  at::parallel_for(0, static_cast<int64_t>(jobs.size()), 16, [&](int64_t lo, int64_t hi) {
    for (int64_t j = lo; j < hi; ++j) {
      const Job& job = jobs[static_cast<size_t>(j)];
      const auto& pool_idx = plan.pools[static_cast<size_t>(job.split)][static_cast<size_t>(job.cls)];
      std::vector<const std::vector<at::Tensor>*> pool;
      pool.reserve(pool_idx.size());
      for (size_t i : pool_idx) pool.push_back(&kept_payload[i]);
      // Cycle through the pool in a seeded order, so assets are used evenly.
      Rng order(mix_seed(task_seed, 17, static_cast<uint64_t>(job.split), static_cast<uint64_t>(job.cls)));
      const uint64_t offset = order.next() % pool.size();
      const size_t pick = static_cast<size_t>((offset + static_cast<uint64_t>(job.index)) % pool.size());
      Rng rng(mix_seed(task_seed, static_cast<uint64_t>(job.split) + 1, static_cast<uint64_t>(job.cls),
                       static_cast<uint64_t>(job.index)));
      std::vector<size_t> used;
      at::Tensor canvas = recipe.draw(job.cls, pool, pick, rng, o.size, used);
      if (used.empty()) used.push_back(pick);
      const std::string bytes = encode_png(to_uint8_image(canvas));
      WrittenImage& w = out.images[static_cast<size_t>(j)];
      w.split = job.split;
      w.cls = job.cls;
      w.rel = detail::concat(kSplitNames[job.split], "/", out.class_dirs[static_cast<size_t>(job.cls)], "/",
                             kSplitNames[job.split], "-", job.index, ".png");
      w.hash = sha256_hex(bytes);
      for (size_t u : used) {  // every asset the image shows
        w.source += (w.source.empty() ? "" : ";") + kept[pool_idx[u]].key;
        w.group += (w.group.empty() ? "" : ";") + kept[pool_idx[u]].group;
      }
      // A plain write: the whole tree is renamed into place when complete.
      write_file(task_dir + "/" + w.rel, bytes);
      const int64_t n = ++done;
      if (at::get_thread_num() == 0) gen.update(n);
    }
  });
  gen.finish();

  out.summary.classes = classes;
  for (int s = 0; s < 3; ++s) {
    out.summary.images[kSplitNames[s]] = counts[static_cast<size_t>(s)] * static_cast<int64_t>(classes.size());
    out.summary.assets[kSplitNames[s]] = static_cast<int64_t>(plan.groups[static_cast<size_t>(s)].size());
  }
  log::info("suite: task '", recipe.info.name, "' (", recipe.info.kind, "): ", classes.size(), " classes, ",
            out.summary.images["train"], "/", out.summary.images["val"], "/", out.summary.images["test"],
            " train/val/test images from ", plan.groups[0].size(), "/", plan.groups[1].size(), "/",
            plan.groups[2].size(), " source groups, ",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), " s");
  return out;
}

void link_or_copy(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0) return;
  write_file_atomic(to, read_file(from));
}

}  // namespace

std::vector<SuiteTaskInfo> suite_catalogue(const std::string& set) {
  std::vector<SuiteTaskInfo> out;
  for (const auto& r : suite_internal::recipes_of(set)) out.push_back(r.info);
  return out;
}

SuiteSummary build_suite(const SuiteOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  CLR_CHECK(!options.out.empty(), ConfigError, "the suite needs an output directory (--out DIR)");
  CLR_CHECK(options.scale == "small" || options.scale == "full", ConfigError, "--scale must be small or full, got '",
            options.scale, "'");
  CLR_CHECK(options.size >= 16 && options.size <= 512, ConfigError, "--size must be 16..512 pixels, got ", options.size);
  const std::string out = strip_trailing_slashes(options.out);
  CLR_CHECK(options.overwrite || !directory_exists(out), ConfigError, "'", out,
            "' exists; choose another --out or pass --overwrite to replace it");
  if (options.overwrite) suite_internal::check_replaceable(out, "manifest.json", "suite");

  const std::vector<SuiteRecipe> recipes = suite_internal::chosen_recipes(options.set, options.tasks);

  StagedDirectory staged(out);
  const std::string& partial = staged.path();
  make_directories(partial + "/imagefolder");

  const std::string cache = options.cache_dir.empty() ? suite_internal::default_cache_dir() : options.cache_dir;
  SuiteContext ctx(options, cache);
  std::optional<Bundle> bundle;
  if (!options.bundle.empty()) {
    bundle = suite_internal::read_bundle(options.bundle);
    const std::string set = bundle->index.value("set", "suite");
    CLR_CHECK(set == options.set, ConfigError, "the bundle '", options.bundle, "' holds the '", set,
              "' set; build it with --set ", set);
  }
  std::vector<BuiltTask> built;
  for (size_t t = 0; t < recipes.size(); ++t) {
    log::info("suite: task ", t + 1, "/", recipes.size(), " '", recipes[t].info.name, "'");
    const TaskAssets assets = bundle ? suite_internal::bundle_task(*bundle, recipes[t].info.name, options.bundle)
                                     : suite_internal::load_task_assets(recipes[t], ctx);
    built.push_back(draw_task(recipes[t], assets, partial + "/imagefolder/" + recipes[t].info.name, options));
  }

  // ImageFolder: task order.
  std::string order;
  for (const auto& b : built) order += b.summary.name + "\n";
  write_file_atomic(partial + "/imagefolder/order.txt", order);

  // SKILL: original_images/<dataset><path><filename> (hard links to the same files)
  // and the catalog, dataset ids in task order.
  SkillCatalog catalog;
  for (size_t t = 0; t < built.size(); ++t) {
    const BuiltTask& b = built[t];
    SkillDataset d;
    d.id = static_cast<int64_t>(t + 1);
    d.name = b.summary.name;
    d.classes = b.summary.classes;
    for (const auto& img : b.images) {
      SkillFile f;
      f.hash = img.hash;
      f.path = "/" + dir_name(img.rel) + "/";
      f.filename = base_name(img.rel);
      f.class_id = img.cls;
      f.set = img.split;
      d.files.push_back(f);
      const std::string dst_dir = partial + "/skill/original_images/" + b.summary.name + f.path;
      make_directories(dst_dir);
      link_or_copy(partial + "/imagefolder/" + b.summary.name + "/" + img.rel, dst_dir + f.filename);
    }
    catalog.datasets.push_back(std::move(d));
  }
  write_skill_catalog(partial + "/skill", catalog);

  // Provenance: which source assets (and split groups) each image was drawn from
  // (several, ';'-separated, for counting images).
  {
    auto quote = [](const std::string& v) {
      std::string q = "\"";
      for (char c : v) q += c == '"' ? std::string("\"\"") : std::string(1, c);
      return q + "\"";
    };
    std::string csv = "task,split,class,file,source,group\n";
    for (const auto& b : built) {
      for (const auto& img : b.images) {
        csv += b.summary.name + "," + kSplitNames[img.split] + "," + quote(b.summary.classes[static_cast<size_t>(img.cls)]) +
               "," + img.rel + "," + quote(img.source) + "," + quote(img.group) + "\n";
      }
    }
    write_file_atomic(partial + "/provenance.csv", csv);
  }

  // The manifest.
  using json = nlohmann::ordered_json;
  json tasks = json::array();
  std::set<std::string> all_packages;
  for (const auto& b : built) {
    json images = json::object(), assets = json::object();
    for (const char* s : kSplitNames) {
      images[s] = b.summary.images.at(s);
      assets[s] = b.summary.assets.at(s);
    }
    tasks.push_back({{"name", b.summary.name},
                     {"kind", b.summary.kind},
                     {"description", b.description},
                     {"classes", b.summary.classes},
                     {"class_dirs", b.class_dirs},
                     {"images", images},
                     {"source_groups", assets},
                     {"skipped_assets", b.skipped},
                     {"packages", b.packages}});
    all_packages.insert(b.packages.begin(), b.packages.end());
  }
  json packages = json::array();
  for (const auto& p : all_packages) {
    DebianPackage dp;
    if (bundle) {
      dp.name = p;
      dp.version = bundle->packages.at(p).version;
      dp.licenses = bundle->packages.at(p).licenses;
    } else {
      dp = ctx.package(p);
    }
    // librsvg2-bin renders; every other package supplies images, fonts or data.
    packages.push_back({{"name", dp.name},
                        {"version", dp.version},
                        {"licenses", dp.licenses},
                        {"role", dp.name == "librsvg2-bin" ? "renderer" : "assets"}});
  }
  json manifest = {{"schema", "clr.suite/1"},
                   {"set", options.set},
                   {"seed", options.seed},
                   {"scale", options.scale},
                   {"size", options.size},
                   {"layouts",
                    {{"imagefolder", "imagefolder"},
                     {"skill", "skill"},
                     {"skill_tasks_csv", "skill/tasks.csv"},
                     {"provenance", "provenance.csv"}}},
                   {"tasks", tasks},
                   {"packages", packages}};
  write_file_atomic(partial + "/manifest.json", manifest.dump(2) + "\n");

  // Done: move into place (the old suite, with --overwrite, goes last).
  staged.commit();

  SuiteSummary summary;
  summary.out = out;
  for (auto& b : built) summary.tasks.push_back(b.summary);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

}  // namespace clr::data
