// `clr run` and `clr compare`: flags into an eval::RunOverrides over the config's
// eval::RunConfig, then one library call.
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "clr/core/error.h"
#include "clr/core/stop.h"
#include "clr/data/config.h"
#include "clr/eval/compare.h"
#include "clr/eval/run_config.h"
#include "clr/train/methods/registry.h"
#include "commands.h"

namespace clr::apps {
namespace {

struct RunArgs {
  std::string input;
  eval::RunOverrides flags;
  bool restart = false;
  std::string tensorboard;
};

// The configuration a run or comparison uses: the config (or ROOT), the flags over it.
eval::RunConfig config_of(const RunArgs& a) {
  eval::RunConfig c = eval::read_run_config(a.input);
  a.flags.apply(c);
  c.finalize();
  return c;
}

void add_run_options(CLI::App* sub, RunArgs* a) {
  eval::RunOverrides& f = a->flags;
  sub->add_option("input", a->input,
                  "A run config (TOML, docs/CONFIG.md) or an ImageFolder root: ROOT/<task>/{train,val,test}/<class>/<img> "
                  "(or one task: ROOT/{train,val,test}/<class>/<img>)")
      ->required();
  sub->add_option("--backbone", f.backbone,
                  "Backbone weights (safetensors or .pth), or an architecture name for a random backbone");
  sub->add_option("--arch", f.arch, "Architecture of the backbone file (default: from its metadata, else resnet18)");
  sub->add_flag("--small-stem", f.small_stem, "The backbone has the 3x3 stride-1 stem without max-pool");
  sub->add_option("--epochs", f.epochs, "Maximum epochs per task (default 60)");
  sub->add_option("--batch", f.batch, "Batch size (default 32)");
  sub->add_option("--lr", f.lr, "Learning rate (default 1e-3)");
  sub->add_option("--size", f.size, "Images are resized to SIZE x SIZE (default 224)");
  sub->add_option("--patience", f.patience, "Stop after more than N epochs without validation gain (default 21)");
  sub->add_option("--optimizer", f.optimizer, "adam (default) or sgd");
  sub->add_option("--schedule", f.schedule, "step (default: x0.1 every 20 epochs), cosine or none");
  sub->add_option("--val-fraction", f.val_fraction,
                  "Fraction of train carved out as val when a task has none (default 0.1)");
  sub->add_flag("--allow-missing-test", f.allow_missing_test, "Report accuracy on val for tasks without a test split");
  sub->add_flag("--skip-corrupt", f.skip_corrupt, "Skip (and count) undecodable images instead of failing");
  sub->add_flag("--hflip", f.hflip, "Random horizontal flips while training");
  sub->add_option("--crop", f.crop, "Random CROP x CROP crops of the resized images in training, centred ones in "
                                    "evaluation (default 0: none)");
  sub->add_option("--device", f.device, "cpu (default), cuda, cuda:N or auto");
  sub->add_option("--precision", f.precision,
                  "Arithmetic of the forward passes: auto (default: bf16 autocast on CUDA, fp32 elsewhere), fp32, bf16, "
                  "or fp16 (CUDA only, dynamic loss scaling); weights and optimiser state stay fp32")
      ->check(CLI::IsMember({"auto", "fp32", "bf16", "fp16"}));
  sub->add_option("--memory-format", f.memory_format,
                  "Layout of images and activations: auto (default: channels-last on CUDA, contiguous elsewhere), "
                  "channels-last or contiguous")
      ->check(CLI::IsMember({"auto", "channels-last", "contiguous"}));
  sub->add_option("--parallel-tasks", f.parallel_tasks,
                  "clr, clr-full, residual: learn K consecutive tasks at once, one forward and backward over all "
                  "their batches; each task still gets its own data order, optimiser, schedule and early stopping, "
                  "and ends as it would alone (default 1: one after another). For GPUs, where a step of one task leaves "
                  "the device mostly idle; on a CPU it is slower");
  sub->add_option_function<std::string>(
         "--task-inference",
         [&f](const std::string& v) {
           std::vector<std::string> names;
           if (v != "none") {
             size_t start = 0;
             for (size_t comma; (comma = v.find(',', start)) != std::string::npos; start = comma + 1) {
               names.push_back(v.substr(start, comma - start));
             }
             names.push_back(v.substr(start));
           }
           f.task_inference = names;
         },
         "Task inference measured beside the oracle after every task: a comma-separated list of gaussian (the "
         "task mapper: class Gaussians of the frozen backbone's features, stored with each task so that `clr "
         "predict` and `clr serve` work without --task), task-gaussian (the same statistics as one Gaussian per "
         "task), energy and max-softmax (every task's head on the image), or none (default gaussian; "
         "docs/METHODS.md)")
      ->type_name("METHODS");
  sub->add_option("--seed", f.seed, "Seed for initialisation, splits, shuffling, Fisher samples, buffers (default 0)");
  sub->add_option("--scale", f.scale,
                  "With a config that has [data.suite] (configs/default.toml): learn all 22 suite tasks at this scale, "
                  "small or full, built on first use beside the config's suite dir")
      ->check(CLI::IsMember({"small", "full"}));
  const train::MethodOptions d;
  const std::string g = "Method hyperparameters (docs/METHODS.md)";
  auto hyper = [&](const char* name, std::optional<double>& field, const std::string& help) {
    sub->add_option(name, field, help)->group(g);
  };
  hyper("--ewc-lambda", f.ewc_lambda, clr::detail::concat("ewc, online-ewc: penalty weight (default ", d.ewc.lambda, ")"));
  hyper("--ewc-gamma", f.ewc_gamma, clr::detail::concat("online-ewc: decay of the old Fisher (default ", d.ewc.gamma, ")"));
  sub->add_option("--fisher-samples", f.fisher_samples,
                  clr::detail::concat("ewc, online-ewc: training images per Fisher estimate, 0 = all (default ",
                                 d.ewc.fisher_samples, ")"))
      ->group(g);
  hyper("--si-c", f.si_c, clr::detail::concat("si: penalty weight c (default ", d.si.c, ")"));
  hyper("--si-xi", f.si_xi, clr::detail::concat("si: damping xi (default ", d.si.xi, ")"));
  hyper("--lwf-alpha", f.lwf_alpha, clr::detail::concat("lwf: distillation weight (default ", d.lwf.alpha, ")"));
  hyper("--lwf-temperature", f.lwf_temperature,
        clr::detail::concat("lwf: softmax temperature (default ", d.lwf.temperature, ")"));
  sub->add_option("--buffer", f.buffer,
                  clr::detail::concat("er, derpp: replay buffer size in images over all tasks (default ", d.replay.buffer,
                                 ")"))
      ->group(g);
  sub->add_option("--replay-batch", f.replay_batch, "er, derpp: replayed images per step (default: the batch size)")
      ->group(g);
  hyper("--derpp-alpha", f.derpp_alpha, clr::detail::concat("derpp: logit-matching weight (default ", d.replay.alpha, ")"));
  hyper("--derpp-beta", f.derpp_beta, clr::detail::concat("derpp: replayed cross-entropy weight (default ", d.replay.beta, ")"));
  sub->add_option("--kernel", f.kernel, "clr, clr-full: the CLR kernel size, odd (default 3; [backbone] kernel)")
      ->group(g);
  sub->add_option("--clr-norm", f.clr_norm,
                  clr::detail::concat("clr, clr-full: what a task keeps of BatchNorm: task (affine and statistics, the "
                                      "paper), affine, or frozen (the backbone's) (default ", d.clr_norm, ")"))
      ->group(g);
  sub->add_option("--psp-context", f.psp_context,
                  clr::detail::concat("psp: random (every task, the paper), first-ones (the first task sees the "
                                      "pretrained weights) or ones (= sgd) (default ", d.psp.context, ")"))
      ->group(g);
  sub->add_option("--supsup-weights", f.supsup_weights,
                  clr::detail::concat("supsup: the fixed network, random (signed constant, the paper) or pretrained "
                                      "(default ", d.supsup.weights, ")"))
      ->group(g);
  hyper("--supsup-density", f.supsup_density,
        "supsup: kept fraction of every layer's weights, in (0, 1] (default 0: the reference's ER budget)");
  hyper("--supsup-er-scale", f.supsup_er_scale,
        clr::detail::concat("supsup: scale s of the ER budget min(0.5, s (C_out + C_in) / numel) (default ",
                            d.supsup.er_scale, ")"));
  sub->add_option("--eft-base", f.eft_base,
                  clr::detail::concat("efts: first-task (learn the base on the first task, then freeze it: the paper) "
                                      "or pretrained (freeze the loaded backbone) (default ", d.eft.base, ")"))
      ->group(g);
  sub->add_option("--eft-spatial-group", f.eft_spatial_group,
                  clr::detail::concat("efts: channels per group of the 3x3 transformation (default ",
                                      d.eft.spatial_group, ")"))
      ->group(g);
  sub->add_option("--eft-depth-group", f.eft_depth_group,
                  clr::detail::concat("efts: channels per group of the 1x1 transformation (default ",
                                      d.eft.depth_group, ")"))
      ->group(g);
  sub->add_option("--ccll-base", f.ccll_base,
                  clr::detail::concat("ccll: first-task (learn the base on the first task, then freeze it: the paper) "
                                      "or pretrained (freeze the loaded backbone) (default ", d.ccll.base, ")"))
      ->group(g);
  sub->add_option("--ccll-kernel", f.ccll_kernel,
                  clr::detail::concat("ccll: kernel size of the spatial calibration's conv, odd (default ",
                                      d.ccll.kernel, ")"))
      ->group(g);
  sub->add_option("--ccll-init", f.ccll_init,
                  clr::detail::concat("ccll: identity (every module starts as the identity) or default (PyTorch's "
                                      "initialisation, a sigmoid gate) (default ", d.ccll.init, ")"))
      ->group(g);
  const CLI::Validator finite(
      [](std::string& v) -> std::string {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0') return "expected a number, got '" + v + "'";
        return std::isfinite(x) ? std::string() : "expected a finite number, got '" + v + "'";
      },
      "NUMBER");
  for (const char* name : {"--ewc-lambda", "--ewc-gamma", "--si-c", "--si-xi", "--lwf-alpha", "--lwf-temperature",
                           "--derpp-alpha", "--derpp-beta", "--lr", "--val-fraction",
                           "--supsup-density", "--supsup-er-scale"}) {
    sub->get_option(name)->check(finite);
  }
}

}  // namespace

void register_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* sub = app.add_subcommand(
      "run", "Learn a sequence of tasks one after another and report the accuracy matrix (the main job)");
  add_run_options(sub, a.get());
  sub->add_option("--method", a->flags.method, "clr (default) or a baseline (list below)");
  sub->add_option("--out", a->flags.out, "Output directory (default runs/clr)");
  sub->add_flag("--restart", a->restart,
                "Learn every task again even when OUT holds this run stopped part-way (by default it goes on from "
                "its last checkpoint)");
  sub->add_option("--tensorboard", a->tensorboard,
                  "Also write TensorBoard event files into this directory: per epoch each task's loss, val accuracy "
                  "and lr (loss/TASK, val_accuracy/TASK, lr/TASK), after each task the test accuracies and averages "
                  "(test_accuracy/TASK, average_accuracy, task_id_accuracy/METHOD, agnostic_accuracy/METHOD); "
                  "`tensorboard --logdir DIR` shows them");
  sub->footer("Methods:\n" + train::methods_help() +
              "Writes OUT/results.json, OUT/results.csv, OUT/log.txt; the tasks of clr, clr-full, residual and\n"
              "linear into the adapter store OUT/adapters (clr tasks, clr predict, clr serve), those of the\n"
              "other methods to OUT/task_states/ (and OUT/method_state.safetensors for methods with cross-task\n"
              "state: Fisher, path integrals, buffer).\n"
              "Resuming: every method writes OUT/checkpoint/ after every epoch and task; the same command again\n"
              "(same configuration and tasks) goes on from there, losing at most the epoch in flight, and ends\n"
              "with the results of a run never stopped. Ctrl-C or SIGTERM stops at the end of the epoch, its\n"
              "checkpoint written (exit 130); a second signal stops at once. A run of another\n"
              "configuration in OUT is an error unless --restart. Tasks already in OUT/adapters are never\n"
              "deleted: those of this run are replaced as they are learned again; one of the same name that\n"
              "another run wrote (or that was imported) is an error before any training.\n" +
              architectures_help());
  register_action(sub, [a] {
    const eval::RunConfig c = config_of(*a);
    install_stop_handlers();
    eval::RunHooks hooks;
    hooks.tensorboard_dir = a->tensorboard;
    const eval::Results r = eval::run(c, data::load_sequence(c.data), a->restart, hooks);
    std::cout << eval::format_matrix(r) << "results: " << c.run.out << "/results.json" << std::endl;
  });
}

void register_compare(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  auto methods = std::make_shared<std::string>();
  auto o = std::make_shared<eval::CompareOptions>();
  CLI::App* sub = app.add_subcommand(
      "compare", "Learn the same sequence with several methods (same backbone, seed, recipe) and compare them");
  add_run_options(sub, a.get());
  sub->add_option("--methods", *methods, "Comma-separated methods, or all")->required();
  sub->add_option("--out", o->out, "Output directory: OUT/<method>/ per run, OUT/compare.json, OUT/compare.csv")
      ->required();
  sub->add_flag("--reuse", o->reuse,
                "Keep the finished runs already in OUT/<method>/ that were made with the same configuration and "
                "tasks (a compare that was stopped resumes; runs made in parallel with `clr run --out OUT/<method>` "
                "are tabulated)");
  sub->add_flag("--restart", o->restart,
                "Start every method's run over instead of going on from a run stopped in OUT/<method>/");
  sub->footer("Methods:\n" + train::methods_help() +
              "Prints average accuracy, BWT, forgetting, task-1 accuracy after the last task, extra parameters\n"
              "per task (% of the backbone), stored bytes per task and training time relative to sgd.\n" +
              architectures_help());
  register_action(sub, [a, methods, o] {
    o->methods = train::parse_method_list(*methods);
    const eval::RunConfig base = config_of(*a);
    install_stop_handlers();
    const auto rows = eval::compare_methods(base, data::load_sequence(base.data), *o);
    std::cout << eval::format_compare(rows) << "results: " << o->out << "/compare.json" << std::endl;
  });
}

void register_tabulate(CLI::App& app) {
  auto o = std::make_shared<eval::TabulateOptions>();
  CLI::App* sub = app.add_subcommand(
      "tabulate", "Compare runs made separately (e.g. side by side in several processes) on the first tasks they all "
                  "finished");
  sub->add_option("runs", o->runs, "Run directories (each with a results.json, finished or not)")->required();
  sub->add_option("--out", o->out,
                  "Output directory: OUT/<run>/results.json (each run cut to the tabulated tasks), OUT/compare.json, "
                  "OUT/compare.csv; `clr report OUT` draws the figures")
      ->required();
  sub->add_option("--tasks", o->tasks, "Tabulate the first N tasks (default 0: the fewest any run finished)");
  sub->footer(
      "A run's figures after its first N tasks are what a run of those N tasks alone gives: each task is learned\n"
      "and evaluated, with its own seed, before the next one starts. Rows are named by run directory; time/sgd\n"
      "is against the run named sgd, and means something only for runs timed side by side.\n");
  register_action(sub, [o] {
    const auto rows = eval::tabulate_runs(*o);
    std::cout << eval::format_compare(rows) << "results: " << o->out << "/compare.json" << std::endl;
  });
}

}  // namespace clr::apps
