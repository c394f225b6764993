// How fast the formula-driven pretraining data is drawn (data/formula.h, and the
// procedural shapes of data/synthetic.h beside it): images per second of each
// generator on the CPU's intra-op threads, and the fractal category search. Compare the
// rates with clr_bench_throughput's training step at the same size, measured on the
// same machine: drawing must keep up with training (issue 17).
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/runtime.h"
#include "clr/data/formula.h"
#include "clr/data/synthetic.h"
#include "bench_util.h"

int main(int argc, char** argv) {
  CLI::App app{"Images per second of the formula-driven pretraining data generators"};
  int64_t size = 64, classes = 40, per_class = 25;
  int steps = 5, threads = 0;
  app.add_option("--size", size, "Image side in pixels")->capture_default_str();
  app.add_option("--classes", classes, "Classes (fractal categories) drawn per repetition")->capture_default_str();
  app.add_option("--per-class", per_class, "Images per class per repetition")->capture_default_str();
  app.add_option("--steps", steps, "Timed repetitions")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (default: hardware)");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto threads_cfg = clr::runtime::configure_threads(threads);
    const c10::Device cpu(c10::kCPU);
    const double images = static_cast<double>(classes * per_class);
    nlohmann::ordered_json out;
    out["bench"] = "clr_bench_formula";
    out["size"] = size;
    out["images_per_repetition"] = classes * per_class;
    nlohmann::ordered_json figures = nlohmann::ordered_json::array();
    auto report = [&](const std::string& name, const std::string& unit, const clr::bench::Stats& s) {
      nlohmann::ordered_json j = {{"figure", name}, {"unit", unit}};
      j.update(clr::bench::stats_json(s));
      figures.push_back(j);
      std::cout << name << ": " << s.median << " " << unit << " (p10 " << s.p10 << ", p90 " << s.p90 << ")\n";
    };
    for (const std::string sampling : {"sigma", "fractaldb"}) {
      clr::data::FractalSearchOptions so;
      so.categories = classes;
      so.sampling = sampling;
      std::vector<clr::data::IfsSystem> systems;
      uint64_t seed = 0;
      report("fractal category search (" + sampling + ")", "categories/s",
             clr::bench::summarise(clr::bench::rates(clr::bench::seconds([&] {
                                                       so.seed = seed++;
                                                       systems = clr::data::search_fractals(so);
                                                     }, 0, steps, cpu),
                                                     static_cast<double>(classes))));
      clr::data::FractalOptions fo;
      fo.classes = classes;
      fo.train_per_class = per_class;
      fo.val_per_class = 0;
      fo.size = size;
      fo.sampling = sampling;
      // The whole task: the search and the drawing (the search is the smaller part).
      report("fractals (" + sampling + "), search and drawing", "img/s",
             clr::bench::summarise(clr::bench::rates(
                 clr::bench::seconds([&] { clr::data::make_fractal_task(fo); }, 1, steps, cpu), images)));
    }
    clr::data::DeadLeavesTaskOptions lo;
    lo.leaves.size = size;
    lo.train_per_class = std::max<int64_t>(1, classes * per_class / 4);
    lo.val_per_class = 0;
    report("dead leaves", "img/s",
           clr::bench::summarise(clr::bench::rates(
               clr::bench::seconds([&] { clr::data::make_dead_leaves_task(lo); }, 1, steps, cpu),
               static_cast<double>(4 * lo.train_per_class))));
    clr::data::ShapesOptions sh;
    sh.classes = classes;
    sh.train_per_class = per_class;
    sh.val_per_class = 0;
    sh.size = size;
    report("procedural shapes", "img/s",
           clr::bench::summarise(clr::bench::rates(
               clr::bench::seconds([&] { clr::data::make_shapes_task(sh); }, 1, steps, cpu), images)));
    out["figures"] = figures;
    clr::bench::add_environment(out, threads_cfg.intra_op);
    std::cout << out.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "clr_bench_formula: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
