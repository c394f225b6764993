// `clr tasks ...`: list, show, verify, remove, export and import the tasks of an adapter store.
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/store/store.h"
#include "commands.h"

namespace clr::apps {
namespace {

std::string human_bytes(int64_t b) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1);
  if (b >= (1 << 20)) {
    os << b / 1048576.0 << " MiB";
  } else if (b >= 1024) {
    os << b / 1024.0 << " KiB";
  } else {
    os << b << " B";
  }
  return os.str();
}

void tasks_list(const std::string& dir, bool json) {
  const store::Store s = store::Store::open(dir);
  if (json) {
    nlohmann::ordered_json tasks = nlohmann::ordered_json::array();
    for (const auto& e : s.tasks()) {
      tasks.push_back({{"name", e.name}, {"variant", e.variant}, {"classes", e.classes}, {"input_size", e.input_size},
                       {"bytes", e.bytes}, {"sha256", e.sha256}, {"created", e.created}});
    }
    nlohmann::ordered_json j = {{"store", dir},
                                {"backbone",
                                 {{"arch", s.backbone().arch},
                                  {"small_stem", s.backbone().small_stem},
                                  {"fingerprint", s.backbone().fingerprint},
                                  {"source", s.backbone().source}}},
                                {"tasks", tasks}};
    std::cout << j.dump(2) << std::endl;
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
              << human_bytes(e.bytes) << "  " << e.created << "\n";
    total += e.bytes;
  }
  std::cout << "total " << human_bytes(total) << std::endl;
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

void tasks_export(const std::string& dir, const std::string& name, const std::string& out) {
  const store::Store s = store::Store::open(dir);
  CLR_CHECK(!out.empty(), ConfigError, "--out FILE is required");
  const std::string bytes = s.load_bytes(name);  // verified
  store::decode_adapter(bytes, s.dir() + "/" + s.find(name)->file);
  write_file_atomic(out, bytes);
  std::cout << out << ": task " << name << ", " << human_bytes(static_cast<int64_t>(bytes.size())) << std::endl;
}

void tasks_import(const std::string& dir, const std::string& file, const std::string& rename, bool replace) {
  store::Adapter a = store::read_adapter_file(file);
  if (!rename.empty()) a.task = rename;
  store::check_task_name(a.task);
  store::Store s = [&] {
    if (store::Store::exists(dir)) return store::Store::open(dir);
    store::BackboneRef ref = a.backbone;  // a new store for the adapter's backbone
    return store::Store::create(dir, ref);
  }();
  CLR_CHECK(a.backbone.fingerprint == s.backbone().fingerprint, IncompatibleError, "'", file,
            "' was trained on backbone ", a.backbone.fingerprint, " (", a.backbone.arch, "); store '", dir,
            "' serves ", s.backbone().fingerprint, " (", s.backbone().arch, ")");
  const store::TaskEntry e = s.put(a, replace);
  std::cout << "imported " << e.name << " (" << e.classes << " classes, " << human_bytes(e.bytes) << ") into " << dir
            << std::endl;
}

}  // namespace

void register_tasks(CLI::App& app) {
  CLI::App* tasks = app.add_subcommand("tasks", "List, show, verify, remove, export and import the tasks of an adapter store");
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
    CLI::App* sub = tasks->add_subcommand("export", "Copy a task's self-contained adapter file out of the store");
    add_store(sub);
    sub->add_option("task", *name, "Task name")->required();
    sub->add_option("--out", *out, "The adapter file to write (.safetensors)")->required();
    register_action(sub, [dir, name, out] { tasks_export(*dir, *name, *out); });
  }
  {
    auto file = std::make_shared<std::string>();
    auto rename = std::make_shared<std::string>();
    auto replace = std::make_shared<bool>(false);
    CLI::App* sub = tasks->add_subcommand(
        "import", "Add an adapter file (from export, or a run's adapters/tasks/) to a store; a new store starts with "
                  "the file's backbone");
    add_store(sub);
    sub->add_option("file", *file, "Adapter file")->required();
    sub->add_option("--name", *rename, "Store it under this task name");
    sub->add_flag("--replace", *replace, "Replace a task of the same name");
    register_action(sub, [dir, file, rename, replace] { tasks_import(*dir, *file, *rename, *replace); });
  }
  register_action(tasks, [tasks] {
    for (CLI::App* sub : tasks->get_subcommands()) run_selected(*sub);
  });
}

}  // namespace clr::apps
