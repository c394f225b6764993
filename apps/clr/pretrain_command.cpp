// `clr pretrain`: flags into a train::PretrainConfig, the data from a run config or an
// ImageFolder root, then one library call.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "clr/data/config.h"
#include "clr/eval/run_config.h"
#include "clr/train/pretrain.h"
#include "commands.h"

namespace clr::apps {

void register_pretrain(CLI::App& app, int argc, char** argv) {
  struct Args {
    std::string input, monitor, command_line;
    train::PretrainConfig config;
  };
  auto a = std::make_shared<Args>();
  for (int i = 0; i < argc; ++i) a->command_line += (i ? " " : "") + std::string(argv[i]);
  train::PretrainConfig& c = a->config;
  CLI::App* sub = app.add_subcommand(
      "pretrain", "Train a whole backbone on one dataset (supervised, or self-supervised with SimCLR or BYOL) and write "
                  "torchvision-named safetensors");
  sub->add_option("data", a->input,
                  "A config (TOML) whose tasks are pretrained on as one dataset, or an ImageFolder root")
      ->required();
  sub->add_option("--arch", c.arch, "Architecture")->capture_default_str();
  sub->add_option("--mode", c.mode,
                  "supervised (an fc over the dataset's classes), simclr or byol (self-supervised: contrastive, or "
                  "predicting a moving-average target's view; labels only feed the kNN validation monitor, and the "
                  "file holds no fc)")
      ->capture_default_str();
  sub->add_option("--temperature", c.simclr.temperature, "simclr: NT-Xent temperature")->capture_default_str();
  sub->add_option("--ema", c.simclr.ema, "byol: the target's momentum at the first epoch (rising to 1 at the last)")
      ->capture_default_str();
  sub->add_option("--supervised", c.simclr.supervised,
                  "simclr, byol: also learn the labels, adding this weight times the cross-entropy of an fc on the "
                  "backbone's features (0: self-supervised only); the file keeps that fc")
      ->capture_default_str();
  sub->add_option("--min-crop", c.simclr.min_scale, "simclr: smallest random crop, as a fraction of the image area")
      ->capture_default_str();
  sub->add_flag("--small-stem", c.small_stem, "3x3 stride-1 stem without max-pool (32-64 px inputs)");
  sub->add_option("--out", c.out, "Output weight file (.safetensors)")->required();
  sub->add_option("--epochs", c.epochs)->capture_default_str();
  sub->add_option("--batch", c.batch)->capture_default_str();
  sub->add_option("--lr", c.lr)->capture_default_str();
  sub->add_option("--weight-decay", c.weight_decay)->capture_default_str();
  sub->add_option("--optimizer", c.optimizer, "sgd or adam")->capture_default_str();
  sub->add_option("--schedule", c.schedule, "cosine, step or none")->capture_default_str();
  sub->add_option("--size", c.size, "Image size (default: the config's data.size)");
  sub->add_option("--val-fraction", c.val_fraction, "Fraction of train held out for model selection")
      ->capture_default_str();
  sub->add_flag("--hflip", c.hflip, "Random horizontal flips");
  sub->add_flag("--fp16", c.fp16, "Store the weights in fp16 (half the file size)");
  sub->add_option("--device", c.device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  sub->add_option("--seed", c.seed)->capture_default_str();
  sub->add_option("--monitor", a->monitor,
                  "A config (TOML) or ImageFolder root of held-out labelled tasks: after every epoch a kNN vote of the "
                  "backbone's features (each task's train split against its test split) measures how well it "
                  "transfers; the curve goes into the output file");
  sub->add_option("--select", c.select,
                  "Which score picks the epoch kept: val (accuracy on the held-out part of the pretraining data), "
                  "monitor (the transfer monitor's mean) or auto (monitor when --monitor is given)")
      ->capture_default_str();
  sub->add_option("--monitor-knn", c.monitor_knn, "Neighbours of the monitor's vote")->capture_default_str();
  sub->add_option("--time-limit", c.time_limit,
                  "Seconds (0: none): stop before an epoch that would end past this, with the state checkpointed; "
                  "the same command goes on from there")
      ->capture_default_str();
  sub->add_flag("--restart", c.restart,
                "Start over instead of going on from OUT.checkpoint.safetensors, the state of an interrupted run");
  sub->footer("A run stopped by Ctrl-C, SIGTERM, --time-limit or a crash keeps its state in OUT.checkpoint.safetensors "
              "(written after every epoch) and goes on from there when the same command is given again.\n\n" +
              architectures_help());
  register_action(sub, [a] {
    a->config.validate();  // before any data is read or built
    const eval::RunConfig data = eval::read_run_config(a->input);
    data::Sequence monitor;
    if (!a->monitor.empty()) monitor = data::load_sequence(eval::read_run_config(a->monitor).data);
    const train::PretrainReport r = train::pretrain(data::load_sequence(data.data), a->config,
                                                    data.data.prepare(), a->command_line, std::move(monitor));
    std::cout << nlohmann::ordered_json{{"out", r.out},
                                        {"arch", a->config.arch},
                                        {"classes", r.classes},
                                        {"epochs", r.epochs},
                                        {"mode", a->config.mode},
                                        {"best_val_accuracy", r.best_val_accuracy},
                                        {"best_monitor_accuracy", r.best_monitor_accuracy},
                                        {"resumed_from_epoch", r.resumed_from_epoch},
                                        {"train_images_per_second", r.train_images_per_second},
                                        {"wall_seconds", r.wall_seconds},
                                        {"fingerprint", r.fingerprint}}
                     .dump(2)
              << std::endl;
  });
}

}  // namespace clr::apps
