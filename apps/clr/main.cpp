// The `clr` program: the only place that parses argv and turns errors into exit codes.
#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "clr/core/error.h"
#include "clr/core/log.h"
#include "clr/core/runtime.h"
#include "clr/core/torch_compat.h"
#include "commands.h"

namespace {

// Exit codes: 0 success, 2 bad usage or configuration, 3 something not found,
// 4 a malformed file, 5 incompatible inputs, 1 an internal error, 130 stopped by
// SIGINT or SIGTERM after a checkpoint (the same command goes on).
int exit_code(clr::ErrorKind kind) {
  switch (kind) {
    case clr::ErrorKind::kConfig: return 2;
    case clr::ErrorKind::kNotFound: return 3;
    case clr::ErrorKind::kFormat: return 4;
    case clr::ErrorKind::kIncompatible: return 5;
    case clr::ErrorKind::kInternal: return 1;
    case clr::ErrorKind::kStopped: return 130;  // as a shell reports Ctrl-C
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "clr: continual learning by Channel-wise Lightweight Reprogramming (CLR, ICCV 2023).\n"
      "One frozen pretrained CNN learns new image-classification tasks one after another; each task\n"
      "adds a depthwise 3x3 conv after every k>1 conv, its own BatchNorm and a head (~0.6% of a\n"
      "ResNet-50), and old tasks are never forgotten.",
      "clr"};
  app.require_subcommand(1);
  // What a bug report needs: the version, the build and the LibTorch it runs on.
  app.set_version_flag("--version", std::string("clr ") + CLR_VERSION + " (" + CLR_BUILD_TYPE + " build, compiler " +
                                         __VERSION__ + ", LibTorch " + clr::compat::torch_version() + ")");
  app.footer(clr::apps::architectures_help());

  int threads = 0;
  std::string log_level;
  app.add_option("--threads", threads,
                 "Intra-op CPU threads (default: $CLR_NUM_THREADS, then $OMP_NUM_THREADS, then all hardware threads)")
      ->check(CLI::Validator(
          [](const std::string& v) {
            return v.find_first_not_of("0123456789") == std::string::npos && v.size() <= 9 && std::stoi("0" + v) > 0
                       ? std::string()
                       : "must be a positive integer (capped at the hardware's threads), got '" + v + "'";
          },
          "N"));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off (default: $CLR_LOG_LEVEL or info)");

  clr::apps::register_params(app);
  clr::apps::register_inspect(app);
  clr::apps::register_run(app);
  clr::apps::register_compare(app);
  clr::apps::register_tabulate(app);
  clr::apps::register_preview(app);
  clr::apps::register_data(app);
  clr::apps::register_report(app);
  clr::apps::register_pretrain(app, argc, argv);
  clr::apps::register_tasks(app);
  clr::apps::register_predict(app);
  clr::apps::register_serve(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error is exit code 2, as documented.
    if (app.get_subcommands().empty() && argc > 1 && argv[1][0] != '-' && e.get_exit_code() != 0) {
      std::fprintf(stderr, "clr: unknown command '%s'; `clr --help` lists the commands\n", argv[1]);
      return 2;
    }
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (!log_level.empty()) clr::log::set_level(clr::log::parse_level(log_level));
    clr::runtime::configure_threads(threads);
    for (CLI::App* sub : app.get_subcommands()) clr::apps::run_selected(*sub);
    return 0;
  } catch (const clr::Error& e) {
    std::fprintf(stderr, "clr: %s: %s\n", clr::error_kind_name(e.kind()), e.what());
    return exit_code(e.kind());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "clr: internal error: %s\n", e.what());
    return 1;
  }
}
