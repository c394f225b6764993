// Subcommands of the `clr` program. Each register_* adds a CLI11 subcommand whose
// callback is run by run_selected() after global options are applied.
#pragma once

#include <functional>
#include <string>

namespace CLI { class App; }

namespace clr::apps {

void register_params(CLI::App& app);
void register_inspect(CLI::App& app);
void register_run(CLI::App& app);
void register_compare(CLI::App& app);
void register_tabulate(CLI::App& app);
void register_preview(CLI::App& app);
void register_data(CLI::App& app);
void register_report(CLI::App& app);
void register_pretrain(CLI::App& app, int argc, char** argv);
void register_tasks(CLI::App& app);
void register_predict(CLI::App& app);
void register_serve(CLI::App& app);

// Records the action run_selected() runs for a parsed subcommand.
void register_action(const CLI::App* sub, std::function<void()> action);

// Runs the action of a parsed subcommand.
void run_selected(CLI::App& sub);

// "Architectures: resnet18 ..." for --help footers.
std::string architectures_help();

}  // namespace clr::apps
