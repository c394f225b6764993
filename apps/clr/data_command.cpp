// `clr data`: the offline benchmark suite (build, bundle, list); `clr preview`: image grids of a config's tasks.
#include <iostream>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "clr/core/error.h"
#include "clr/data/config.h"
#include "clr/data/suite.h"
#include "clr/eval/run_config.h"
#include "clr/core/tensor_map.h"
#include "commands.h"

namespace clr::apps {
namespace {

std::string catalogue_text(const std::string& set = "suite") {
  std::ostringstream os;
  for (const auto& t : data::suite_catalogue(set)) {
    os << "  " << t.name << std::string(t.name.size() < 18 ? 18 - t.name.size() : 1, ' ') << "[" << t.kind << "] "
       << t.description << "\n";
  }
  return os.str();
}

void build(const data::SuiteOptions& o) {
  const data::SuiteSummary s = data::build_suite(o);
  std::printf("%-18s %-11s %7s %7s %7s %7s   %s\n", "task", "kind", "classes", "train", "val", "test",
              "source groups (train/val/test)");
  int64_t total = 0;
  for (const auto& t : s.tasks) {
    std::printf("%-18s %-11s %7zu %7lld %7lld %7lld   %lld/%lld/%lld\n", t.name.c_str(), t.kind.c_str(),
                t.classes.size(), static_cast<long long>(t.images.at("train")), static_cast<long long>(t.images.at("val")),
                static_cast<long long>(t.images.at("test")), static_cast<long long>(t.assets.at("train")),
                static_cast<long long>(t.assets.at("val")), static_cast<long long>(t.assets.at("test")));
    total += t.images.at("train") + t.images.at("val") + t.images.at("test");
  }
  std::printf("%zu tasks, %lld images, %.1f s\n", s.tasks.size(), static_cast<long long>(total), s.seconds);
  std::cout << "suite: " << s.out << "/manifest.json; run it with `clr run " << s.out
            << "/imagefolder --backbone FILE --size " << o.size << "`" << std::endl;
}

}  // namespace

void register_data(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("data", "The offline benchmark suite made from Debian-packaged images");
  sub->require_subcommand(1);

  auto o = std::make_shared<data::SuiteOptions>();
  CLI::App* b = sub->add_subcommand(
      "build", "Generate the suite: an ImageFolder tree, a SKILL SQLite catalog and a manifest (docs/SUITE.md)");
  b->add_option("--out", o->out, "Output directory (built beside it and renamed when complete)")->required();
  b->add_option("--seed", o->seed, "Seed: the same seed gives byte-identical files")->capture_default_str();
  b->add_option("--scale", o->scale, "small (a few hundred images a task) or full (1,000-3,000 training images a task)")
      ->capture_default_str();
  b->add_option("--size", o->size, "Image side in pixels")->capture_default_str();
  b->add_option("--tasks", o->tasks, "Only these tasks (comma-separated names; default: all)")->delimiter(',');
  b->add_option("--cache", o->cache_dir, "Cache of rendered SVG assets (default: $XDG_CACHE_HOME/clr/assets or ~/.cache/clr/assets)");
  b->add_option("--root", o->root, "Root of the installed Debian packages (default /)")->capture_default_str();
  b->add_flag("--overwrite", o->overwrite, "Replace an existing suite in --out");
  b->add_option("--bundle", o->bundle,
                "Draw from a bundle made by `clr data bundle` instead of the installed packages (same bytes)");
  b->add_option("--set", o->set, "suite (the benchmark) or pretrain (assets no benchmark task uses)")->capture_default_str();
  b->footer("Tasks:\n" + catalogue_text() + "Pretraining set (--set pretrain):\n" + catalogue_text("pretrain"));
  register_action(b, [o] { build(*o); });

  auto bo = std::make_shared<data::SuiteOptions>();
  CLI::App* bu = sub->add_subcommand(
      "bundle", "Write the suite's loaded assets to a directory, to build the same suite where the packages are not "
                "installed (clr data build --bundle DIR)");
  bu->add_option("--out", bo->out, "Output directory")->required();
  bu->add_option("--tasks", bo->tasks, "Only these tasks (comma-separated; default: all)")->delimiter(',');
  bu->add_option("--cache", bo->cache_dir, "Cache of rendered SVG assets");
  bu->add_option("--root", bo->root, "Root of the installed Debian packages (default /)")->capture_default_str();
  bu->add_flag("--overwrite", bo->overwrite, "Replace an existing bundle in --out");
  bu->add_option("--set", bo->set, "suite or pretrain")->capture_default_str();
  register_action(bu, [bo] { std::cout << "bundle: " << data::write_suite_bundle(*bo) << std::endl; });

  CLI::App* l = sub->add_subcommand("list", "List the suite's tasks with their kinds and source packages");
  auto as_json = std::make_shared<bool>(false);
  auto set = std::make_shared<std::string>("suite");
  l->add_flag("--json", *as_json, "Print JSON");
  l->add_option("--set", *set, "suite or pretrain")->capture_default_str();
  register_action(l, [as_json, set] {
    if (*as_json) {
      nlohmann::ordered_json j = nlohmann::ordered_json::array();
      for (const auto& t : data::suite_catalogue(*set)) {
        j.push_back({{"name", t.name}, {"kind", t.kind}, {"description", t.description}, {"packages", t.packages}});
      }
      std::cout << j.dump(2) << std::endl;
    } else {
      std::cout << catalogue_text(*set);
    }
  });

  register_action(sub, [sub] {
    for (CLI::App* child : sub->get_subcommands()) run_selected(*child);
  });
}

void register_preview(CLI::App& app) {
  struct Args {
    std::string input, out = "preview";
    int64_t per_class = 8;
    std::optional<int64_t> size;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("preview", "Write a PNG grid of training images per task (rows are classes)");
  sub->add_option("input", a->input, "A run config (TOML) or an ImageFolder root")->required();
  sub->add_option("--out", a->out, "Output directory")->capture_default_str();
  sub->add_option("--per-class", a->per_class, "Images per class")->capture_default_str();
  sub->add_option("--size", a->size, "Cell size in pixels (default: the config's data.size)");
  register_action(sub, [a] {
    eval::RunConfig c = eval::read_run_config(a->input);
    if (a->size) c.data.size = *a->size;
    c.data.validate();
    for (const data::TaskData& t : data::load_sequence(c.data)) {
      const std::string path = data::write_preview(t, a->out, a->per_class, c.data.prepare());
      std::cout << path << ": " << t.classes.size() << " classes (" << join_first(t.classes, 12) << ")" << std::endl;
    }
  });
}

}  // namespace clr::apps
