// Formula-driven pretraining data: images drawn from formulas alone, no natural image
// and no file. Two families from the literature on pretraining without natural images:
//   - fractals of iterated function systems (FractalDB, Kataoka et al., ACCV 2020): a
//     category is a random system of 2-8 affine maps whose attractor fills enough of
//     its canvas (the search the paper describes; the maps drawn as FractalDB does or,
//     by default, contractive with the singular values of Anderson and Farrell, WACV
//     2022); an instance draws that attractor by
//     the chaos game with one parameter of one map reweighted, a random stamp per point,
//     colours by map, a random placement and flip;
//   - dead leaves (Baradad et al., "Learning to See by Looking at Noise", NeurIPS 2021):
//     occluding discs, squares and triangles with power-law radii and random colours
//     (optionally a grating each), painted front to back until the image is covered.
// Every image is a function of (seed, split, class, index): the same options draw the
// same images on any machine and with any number of threads.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "clr/data/dataset.h"

namespace clr::data {

// (x, y) -> (a x + b y + e, c x + d y + f)
struct IfsMap {
  double a = 0, b = 0, c = 0, d = 0, e = 0, f = 0;
};
// An iterated function system: its maps, each applied with a chance proportional to
// |det| of its linear part (FractalDB's rule; maps with |det| 0 get a small floor).
struct IfsSystem {
  std::vector<IfsMap> maps;
  std::vector<double> chances;  // cumulative, last == 1
};
// A system from its maps (chances from their determinants).
IfsSystem make_ifs(std::vector<IfsMap> maps);

// The chaos game: `points` points of the attractor ([n, 2] doubles: x, y) after a
// burn-in, with which map drew each ([n] int64). Points that run off to infinity stop the
// game early (fewer rows).
struct IfsPoints {
  std::vector<double> xy;        // 2 per point
  std::vector<uint8_t> map;      // the map that drew each point
  size_t size() const { return map.size(); }
};
IfsPoints chaos_game(const IfsSystem& system, int64_t points, std::mt19937_64& rng);

// The fraction of a canvas x canvas grid that the points hit when their bounding box
// is stretched over it (FractalDB's filling rate); 0 for a degenerate or diverging set.
double filling_rate(const IfsPoints& points, int64_t canvas);

struct FractalSearchOptions {
  int64_t categories = 1000;
  int64_t min_maps = 2, max_maps = 8;  // maps per system, drawn uniformly
  // How a candidate's maps are drawn: sigma (contractive maps with singular values in
  // the band of well-formed attractors found by Anderson and Farrell, "Improving Fractal
  // Pre-training", WACV 2022) or fractaldb (every parameter uniform in [-1, 1], as the
  // FractalDB paper; many of its categories are diffuse star-shaped clouds).
  std::string sampling = "sigma";
  double min_fill = 0.2;               // FractalDB's threshold
  int64_t canvas = 64;                 // the filling rate's grid
  int64_t points = 20000;              // chaos-game points per candidate
  uint64_t seed = 0;
  int64_t max_candidates = 0;          // 0: 2000 x categories; ConfigError when exhausted
  void validate() const;
};
// Draws candidate systems (as `sampling` says) until `categories` of
// them fill at least min_fill of the canvas; candidates are judged in order, so the
// result does not depend on the thread count.
std::vector<IfsSystem> search_fractals(const FractalSearchOptions& options);

struct FractalRenderOptions {
  int64_t size = 64;
  int64_t points = 0;          // 0: 3 x size^2, at least 10,000
  double reweight = 0.2;       // one parameter of one map times a factor in [1 - r, 1 + r]
  bool stamp = true;           // each point stamps a random 3x3 pattern (FractalDB's "patch")
};
// One instance of a category: uint8 [size, size, 3].
at::Tensor render_fractal(const IfsSystem& system, const FractalRenderOptions& options, std::mt19937_64& rng);

struct FractalOptions {
  int64_t classes = 100;
  int64_t train_per_class = 100;
  int64_t val_per_class = 10;
  int64_t test_per_class = 0;
  int64_t size = 64;
  uint64_t seed = 0;
  double min_fill = 0.2;
  std::string sampling = "sigma";  // FractalSearchOptions::sampling
};
// A task of `classes` fractal categories, found by search_fractals from the seed.
TaskData make_fractal_task(const FractalOptions& options);

struct DeadLeavesOptions {
  int64_t size = 64;
  double alpha = 3.0;         // radius density ~ r^-alpha
  double min_radius = 0.03;   // fraction of the image side
  double max_radius = 0.6;
  int64_t max_leaves = 5000;
  double textured = 0.5;      // chance that a leaf carries a grating instead of a flat colour
};
// The shape families, which are the classes of a dead-leaves task.
const std::vector<std::string>& dead_leaves_families();
// One image, uint8 [size, size, 3]: leaves of `family` (an index into
// dead_leaves_families(); the last, "mixed", draws each leaf's shape at random).
at::Tensor render_dead_leaves(int64_t family, const DeadLeavesOptions& options, std::mt19937_64& rng);

struct DeadLeavesTaskOptions {
  DeadLeavesOptions leaves;
  int64_t train_per_class = 500;
  int64_t val_per_class = 50;
  int64_t test_per_class = 0;
  uint64_t seed = 0;
};
// A task whose classes are the shape families (disc, square, triangle, mixed): labels a
// supervised run can learn, and what a self-supervised run's kNN monitor votes on.
TaskData make_dead_leaves_task(const DeadLeavesTaskOptions& options);

}  // namespace clr::data
