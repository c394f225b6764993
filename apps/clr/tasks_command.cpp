// `clr tasks ...`: list, show, verify, remove, export and import the tasks of an adapter store.
#include <iomanip>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "clr/core/error.h"
#include "clr/core/strings.h"
#include "clr/data/config.h"
#include "clr/eval/run_config.h"
#include "clr/eval/task_mapper.h"
#include "clr/store/store.h"
#include "commands.h"

namespace clr::apps {
namespace {

void tasks_list(const std::string& dir, bool json) {
  const store::Store s = store::Store::open(dir);
  if (json) {
    std::cout << store::store_json(s, 2) << std::endl;
    return;
  }
  std::cout << "store " << dir << ": " << s.tasks().size() << " tasks on " << s.backbone().arch
            << (s.backbone().small_stem ? " (small stem)" : "") << " " << s.backbone().fingerprint.substr(0, 19)
            << "... (" << s.backbone().source << ")\n";
  size_t w = 4;
  for (const auto& e : s.tasks()) w = std::max(w, e.name.size());
  std::cout << std::left << std::setw(static_cast<int>(w)) << "task" << "  " << std::setw(9) << "variant"
            << std::right << std::setw(8) << "classes" << std::setw(7) << "size" << std::setw(12) << "stored"
            << "  created\n";
  int64_t total = 0;
  for (const auto& e : s.tasks()) {
    std::cout << std::left << std::setw(static_cast<int>(w)) << e.name << "  " << std::setw(9) << e.variant
              << std::right << std::setw(8) << e.classes << std::setw(7) << e.input_size << std::setw(12)
              << human_bytes(static_cast<double>(e.bytes)) << "  " << e.created << "\n";
    total += e.bytes;
  }
  std::cout << "total " << human_bytes(static_cast<double>(total)) << std::endl;
}

void tasks_show(const std::string& dir, const std::string& name) {
  const store::Store s = store::Store::open(dir);
  const store::Adapter a = s.load(name);
  std::cout << store::adapter_json(a, s.find(name), 2) << std::endl;
}

void tasks_verify(const std::string& dir) {
  const store::Store s = store::Store::open(dir);
  int bad = 0;
  for (const auto& c : s.verify()) {
    std::cout << (c.ok ? "ok    " : "FAIL  ") << c.task << (c.ok ? "" : ": " + c.problem) << "\n";
    bad += c.ok ? 0 : 1;
  }
  std::cout << s.tasks().size() << " tasks, " << bad << " problems" << std::endl;
  CLR_CHECK(bad == 0, FormatError, "store '", dir, "' has ", bad, " problem", bad == 1 ? "" : "s");
}

void tasks_rm(const std::string& dir, const std::vector<std::string>& names) {
  store::Store s = store::Store::open(dir);
  for (const auto& n : names) CLR_CHECK(s.find(n) != nullptr, NotFoundError, "store '", dir, "' has no task '", n, "'");
  for (const auto& n : names) {
    s.remove(n);
    std::cout << "removed " << n << "\n";
  }
}

void tasks_export(const std::string& dir, const std::string& name, const std::string& out, const std::string& format) {
  int64_t bytes = 0;
  const std::string file = store::export_adapter(store::Store::open(dir), name, out, &bytes, format);
  std::cout << file << ": task " << name << ", " << human_bytes(static_cast<double>(bytes)) << std::endl;
}

void tasks_import(const std::string& dir, const std::string& file, const std::string& rename, bool replace) {
  const store::TaskEntry e = store::import_adapter(dir, file, rename, replace);
  std::cout << "imported " << e.name << " (" << e.classes << " classes, " << human_bytes(static_cast<double>(e.bytes))
            << ") into " << dir << std::endl;
}

void tasks_fit_mapper(eval::FitMapperOptions o, const std::string& input) {
  eval::RunConfig config = eval::read_run_config(input);
  config.finalize();
  const eval::FitMapperReport r = eval::fit_task_mappers(o, data::load_sequence(config.data),
                                                         [](const std::string& task, int64_t images) {
                                                           std::cout << "fitted " << task << " (" << images
                                                                     << " training images)" << std::endl;
                                                         });
  if (!r.kept.empty()) {
    std::cout << "kept " << join_first(r.kept) << ": statistics there already (--replace fits them again)" << std::endl;
  }
  if (!r.no_data.empty()) std::cout << "not in the data: " << join_first(r.no_data) << std::endl;
  std::cout << r.fitted.size() << " task" << (r.fitted.size() == 1 ? "" : "s") << " fitted in " << o.store_dir
            << std::endl;
}

}  // namespace

void register_tasks(CLI::App& app) {
  CLI::App* tasks = app.add_subcommand("tasks", "List, show, verify, remove, export and import the tasks of an adapter store, or add their task-mapper statistics");
  tasks->require_subcommand(1);
  auto dir = std::make_shared<std::string>();
  auto add_store = [dir](CLI::App* sub) {
    sub->add_option("--store", *dir, "The store directory (clr run writes OUT/adapters)")->required();
  };
  {
    auto json = std::make_shared<bool>(false);
    CLI::App* sub = tasks->add_subcommand("list", "One line per task (name, variant, classes, input size, bytes)");
    add_store(sub);
    sub->add_flag("--json", *json, "Print JSON");
    register_action(sub, [dir, json] { tasks_list(*dir, *json); });
  }
  {
    auto name = std::make_shared<std::string>();
    CLI::App* sub = tasks->add_subcommand("show", "A task's metadata as JSON (verified: checksums, backbone)");
    add_store(sub);
    sub->add_option("task", *name, "Task name")->required();
    register_action(sub, [dir, name] { tasks_show(*dir, *name); });
  }
  {
    CLI::App* sub = tasks->add_subcommand(
        "verify", "Check every task's file against the manifest and its own checksum; exit 4 on any problem");
    add_store(sub);
    register_action(sub, [dir] { tasks_verify(*dir); });
  }
  {
    auto names = std::make_shared<std::vector<std::string>>();
    CLI::App* sub = tasks->add_subcommand("rm", "Remove tasks (the manifest first, then the files)");
    add_store(sub);
    sub->add_option("task", *names, "Task names")->required();
    register_action(sub, [dir, names] { tasks_rm(*dir, *names); });
  }
  {
    auto name = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto format = std::make_shared<std::string>("safetensors");
    CLI::App* sub = tasks->add_subcommand(
        "export", "Copy a task's self-contained adapter file out of the store, or write it as a PEFT-style folder");
    add_store(sub);
    sub->add_option("task", *name, "Task name")->required();
    sub->add_option("--out", *out,
                    "The adapter file to write (.safetensors), or a directory for <task>.safetensors; with --format "
                    "peft, the folder to write")
        ->required();
    sub->add_option("--format", *format,
                    "safetensors (default: clr's own adapter file) or peft (adapter_config.json and "
                    "adapter_model.safetensors with PEFT-style keys, for PyTorch: python/clr_torch.py, docs/PYTHON.md)")
        ->check(CLI::IsMember({"safetensors", "peft"}));
    register_action(sub, [dir, name, out, format] { tasks_export(*dir, *name, *out, *format); });
  }
  {
    auto file = std::make_shared<std::string>();
    auto rename = std::make_shared<std::string>();
    auto replace = std::make_shared<bool>(false);
    CLI::App* sub = tasks->add_subcommand(
        "import", "Add an adapter file (from export, or a run's adapters/tasks/) to a store; a new store starts with "
                  "the file's backbone");
    add_store(sub);
    sub->add_option("file", *file, "Adapter file, or a folder written by `tasks export --format peft`")->required();
    sub->add_option("--name", *rename, "Store it under this task name");
    sub->add_flag("--replace", *replace, "Replace a task of the same name");
    register_action(sub, [dir, file, rename, replace] { tasks_import(*dir, *file, *rename, *replace); });
  }
  {
    auto o = std::make_shared<eval::FitMapperOptions>();
    auto input = std::make_shared<std::string>();
    CLI::App* sub = tasks->add_subcommand(
        "fit-mapper",
        "Add the statistics task inference needs (clr predict / POST /v1/predict without a task) to tasks that lack "
        "them, from the data they were learned on");
    add_store(sub);
    sub->add_option("data", *input,
                    "The run config (TOML) or ImageFolder ROOT the tasks were learned from; each store task is matched "
                    "to the data's task of the same name and its training images")
        ->required();
    sub->add_option("--task", o->tasks, "Only these tasks (default: every store task the data has)");
    sub->add_flag("--replace", o->replace, "Fit tasks that have statistics again");
    sub->add_option("--backbone", o->backbone_file, "Backbone file (default: the one the store records)");
    sub->add_option("--device", o->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
    register_action(sub, [dir, o, input] {
      o->store_dir = *dir;
      tasks_fit_mapper(*o, *input);
    });
  }
  register_action(tasks, [tasks] {
    for (CLI::App* sub : tasks->get_subcommands()) run_selected(*sub);
  });
}

}  // namespace clr::apps
