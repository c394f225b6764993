#include "clr/data/formula.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "clr/core/error.h"
#include "clr/data/compose.h"
#include "detail/generate.h"

namespace clr::data {
namespace {

using gen::uniform;
using Rgb = std::array<float, 3>;

Rgb random_rgb(std::mt19937_64& rng, double lo = 0, double hi = 1) {
  return {static_cast<float>(uniform(rng, lo, hi)), static_cast<float>(uniform(rng, lo, hi)),
          static_cast<float>(uniform(rng, lo, hi))};
}

float distance(const Rgb& a, const Rgb& b) {
  return std::abs(a[0] - b[0]) + std::abs(a[1] - b[1]) + std::abs(a[2] - b[2]);
}

// A colour at least `apart` (sum of channel differences) from `avoid`, or the last tried.
Rgb rgb_apart(std::mt19937_64& rng, const Rgb& avoid, float apart) {
  Rgb c = random_rgb(rng);
  for (int tries = 0; tries < 20 && distance(c, avoid) < apart; ++tries) c = random_rgb(rng);
  return c;
}

// float [S, S, 3] in 0..1 (row-major) -> uint8 [S, S, 3].
at::Tensor to_image(const std::vector<float>& rgb, int64_t size) {
  at::Tensor t = at::from_blob(const_cast<float*>(rgb.data()), {size, size, 3}, at::kFloat);
  return (t.clamp(0, 1) * 255).round().to(at::kByte);
}

void check_size(int64_t size, const char* what) {
  CLR_CHECK(size >= 8 && size <= 4096, ConfigError, what, ": size must be in [8, 4096] pixels, got ", size);
}

void check_counts(int64_t train, int64_t val, int64_t test, const char* what) {
  CLR_CHECK(train >= 1 && val >= 0 && test >= 0, ConfigError, what,
            ": need >= 1 training image per class and no negative val/test count, got ", train, "/", val, "/", test);
}

// FractalDB's candidates: every parameter uniform in [-1, 1].
std::vector<IfsMap> uniform_maps(std::mt19937_64& rng, int64_t n) {
  std::vector<IfsMap> maps(static_cast<size_t>(n));
  for (auto& m : maps) {
    for (double* p : {&m.a, &m.b, &m.c, &m.d, &m.e, &m.f}) *p = uniform(rng, -1, 1);
  }
  return maps;
}

// Contractive maps whose singular values s1 >= s2 (in [0, 1]) sum, over the system, to
// a sigma factor sum(s1 + 2 s2) drawn in [(5 + n) / 2, (6 + n) / 2], the band in which
// Anderson and Farrell (WACV 2022) find well-formed attractors; each linear part is
// rotation(theta) diag(s1, +-s2) rotation(phi), translations uniform in [-1, 1].
std::vector<IfsMap> sigma_maps(std::mt19937_64& rng, int64_t n) {
  const double target = uniform(rng, 0.5 * static_cast<double>(5 + n), 0.5 * static_cast<double>(6 + n));
  std::vector<std::array<double, 2>> sv(static_cast<size_t>(n));
  for (int tries = 0;; ++tries) {
    double total = 0;
    for (auto& v : sv) {
      v[0] = uniform(rng, 0, 1);
      v[1] = uniform(rng, 0, v[0]);
      total += v[0] + 2 * v[1];
    }
    const double k = target / total;
    bool fits = true;
    for (auto& v : sv) {
      v[0] *= k;
      v[1] *= k;
      fits = fits && v[0] <= 1;
    }
    if (fits || tries > 1000) break;  // 1000 misses: keep the scaled draw (n so large no draw fits)
  }
  std::vector<IfsMap> maps(static_cast<size_t>(n));
  for (size_t i = 0; i < maps.size(); ++i) {
    const double t = uniform(rng, 0, 2 * kPi), p = uniform(rng, 0, 2 * kPi);
    const double s1 = std::min(sv[i][0], 1.0), s2 = std::min(sv[i][1], 1.0) * (rng() % 2 == 0 ? 1 : -1);
    const double ct = std::cos(t), st = std::sin(t), cp = std::cos(p), sp = std::sin(p);
    // [ct -st; st ct] * diag(s1, s2) * [cp -sp; sp cp]
    IfsMap& m = maps[i];
    m.a = ct * s1 * cp - st * s2 * sp;
    m.b = -ct * s1 * sp - st * s2 * cp;
    m.c = st * s1 * cp + ct * s2 * sp;
    m.d = -st * s1 * sp + ct * s2 * cp;
    m.e = uniform(rng, -1, 1);
    m.f = uniform(rng, -1, 1);
  }
  return maps;
}

IfsSystem random_system(std::mt19937_64& rng, const FractalSearchOptions& o) {
  const auto n = std::uniform_int_distribution<int64_t>(o.min_maps, o.max_maps)(rng);
  return make_ifs(o.sampling == "sigma" ? sigma_maps(rng, n) : uniform_maps(rng, n));
}

// The bounding box of the points: {min x, min y, width, height}.
std::array<double, 4> bounds(const IfsPoints& p) {
  double x0 = std::numeric_limits<double>::max(), y0 = x0, x1 = -x0, y1 = -x0;
  for (size_t i = 0; i < p.size(); ++i) {
    x0 = std::min(x0, p.xy[2 * i]);
    x1 = std::max(x1, p.xy[2 * i]);
    y0 = std::min(y0, p.xy[2 * i + 1]);
    y1 = std::max(y1, p.xy[2 * i + 1]);
  }
  return {x0, y0, x1 - x0, y1 - y0};
}

// The same box without the `tail` fraction of the points at each end of each axis.
std::array<double, 4> central_bounds(const IfsPoints& p, double tail) {
  if (p.size() < 2) return bounds(p);
  std::array<double, 4> box{};
  std::vector<double> v(p.size());
  for (size_t axis = 0; axis < 2; ++axis) {
    for (size_t i = 0; i < p.size(); ++i) v[i] = p.xy[2 * i + axis];
    const auto lo = static_cast<size_t>(tail * static_cast<double>(v.size()));
    const size_t hi = v.size() - 1 - lo;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
    const double a = v[lo];
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(hi), v.end());
    box[axis] = a;
    box[axis + 2] = v[hi] - a;
  }
  return box;
}

}  // namespace

IfsSystem make_ifs(std::vector<IfsMap> maps) {
  CLR_CHECK(!maps.empty() && maps.size() <= 255, ConfigError, "an iterated function system needs 1 to 255 maps, got ",
            maps.size());
  IfsSystem s;
  double total = 0;
  for (const auto& m : maps) {
    total += std::max(std::abs(m.a * m.d - m.b * m.c), 1e-3);
    s.chances.push_back(total);
  }
  for (auto& c : s.chances) c /= total;
  s.chances.back() = 1.0;
  s.maps = std::move(maps);
  return s;
}

IfsPoints chaos_game(const IfsSystem& system, int64_t points, std::mt19937_64& rng) {
  IfsPoints out;
  out.xy.reserve(static_cast<size_t>(2 * points));
  out.map.reserve(static_cast<size_t>(points));
  std::uniform_real_distribution<double> u(0, 1);
  double x = 0, y = 0;
  constexpr int64_t kBurnIn = 20;
  for (int64_t i = 0; i < points + kBurnIn; ++i) {
    const double r = u(rng);
    size_t k = 0;
    while (k + 1 < system.chances.size() && r >= system.chances[k]) ++k;
    const IfsMap& m = system.maps[k];
    const double nx = m.a * x + m.b * y + m.e;
    const double ny = m.c * x + m.d * y + m.f;
    x = nx;
    y = ny;
    if (!(std::abs(x) < 1e6 && std::abs(y) < 1e6)) break;  // diverging (or NaN)
    if (i < kBurnIn) continue;
    out.xy.push_back(x);
    out.xy.push_back(y);
    out.map.push_back(static_cast<uint8_t>(k));
  }
  return out;
}

double filling_rate(const IfsPoints& points, int64_t canvas) {
  if (points.size() < 2 || canvas < 1) return 0;
  const auto [x0, y0, w, h] = bounds(points);
  if (!(w > 1e-9 && h > 1e-9)) return 0;
  std::vector<uint8_t> hit(static_cast<size_t>(canvas * canvas), 0);
  const double cells = static_cast<double>(canvas);
  int64_t filled = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    const auto cx = std::min<int64_t>(canvas - 1, static_cast<int64_t>((points.xy[2 * i] - x0) / w * cells));
    const auto cy = std::min<int64_t>(canvas - 1, static_cast<int64_t>((points.xy[2 * i + 1] - y0) / h * cells));
    uint8_t& cell = hit[static_cast<size_t>(cy * canvas + cx)];
    filled += cell == 0;
    cell = 1;
  }
  return static_cast<double>(filled) / (cells * cells);
}

void FractalSearchOptions::validate() const {
  CLR_CHECK(categories >= 1, ConfigError, "fractal search: categories must be >= 1, got ", categories);
  CLR_CHECK(min_maps >= 1 && min_maps <= max_maps && max_maps <= 255, ConfigError,
            "fractal search: maps per system must satisfy 1 <= min <= max <= 255, got ", min_maps, "..", max_maps);
  CLR_CHECK(min_fill > 0 && min_fill <= 1, ConfigError, "fractal search: the filling threshold must be in (0, 1], got ",
            min_fill);
  CLR_CHECK(sampling == "fractaldb" || sampling == "sigma", ConfigError,
            "fractal search: sampling must be fractaldb or sigma, got '", sampling, "'");
  CLR_CHECK(canvas >= 4 && points >= 100, ConfigError, "fractal search: need a canvas >= 4 and >= 100 points, got ",
            canvas, " and ", points);
}

std::vector<IfsSystem> search_fractals(const FractalSearchOptions& o) {
  o.validate();
  const int64_t limit = o.max_candidates > 0 ? o.max_candidates : 2000 * o.categories;
  std::vector<IfsSystem> found;
  found.reserve(static_cast<size_t>(o.categories));
  // Candidates are judged in chunks in parallel, then accepted in candidate order.
  const int64_t chunk = 256;
  for (int64_t start = 0; static_cast<int64_t>(found.size()) < o.categories; start += chunk) {
    CLR_CHECK(start < limit, ConfigError, "fractal search: only ", found.size(), " of ", o.categories, " systems among ",
              limit, " candidates fill ", o.min_fill, " of the canvas; lower the filling threshold");
    const int64_t n = std::min(chunk, limit - start);
    std::vector<IfsSystem> candidates(static_cast<size_t>(n));
    std::vector<uint8_t> good(static_cast<size_t>(n), 0);
    at::parallel_for(0, n, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        std::mt19937_64 rng = gen::class_stream(o.seed ^ 0x5EA4C4F2A67A15ull, 7, start + i);
        IfsSystem s = random_system(rng, o);
        const IfsPoints p = chaos_game(s, o.points, rng);
        good[static_cast<size_t>(i)] =
            static_cast<int64_t>(p.size()) == o.points && filling_rate(p, o.canvas) >= o.min_fill;
        candidates[static_cast<size_t>(i)] = std::move(s);
      }
    });
    for (int64_t i = 0; i < n && static_cast<int64_t>(found.size()) < o.categories; ++i) {
      if (good[static_cast<size_t>(i)]) found.push_back(std::move(candidates[static_cast<size_t>(i)]));
    }
  }
  return found;
}

at::Tensor render_fractal(const IfsSystem& system, const FractalRenderOptions& o, std::mt19937_64& rng) {
  check_size(o.size, "fractal");
  const int64_t s = o.size;
  const int64_t n_points = o.points > 0 ? o.points : std::max<int64_t>(10000, 3 * s * s);
  // The instance: one parameter of one map reweighted; back to the category's own
  // system when that makes the attractor degenerate.
  IfsSystem varied = system;
  {
    IfsMap& m = varied.maps[static_cast<size_t>(rng() % varied.maps.size())];
    double* params[] = {&m.a, &m.b, &m.c, &m.d, &m.e, &m.f};
    *params[rng() % 6] *= uniform(rng, 1 - o.reweight, 1 + o.reweight);
    varied = make_ifs(varied.maps);
  }
  IfsPoints pts = chaos_game(varied, n_points, rng);
  if (static_cast<int64_t>(pts.size()) < n_points || filling_rate(pts, 16) < 0.05) pts = chaos_game(system, n_points, rng);
  // The box of the central 99.6% of the points on each axis: a rare far excursion of a
  // barely contracting system would otherwise shrink the rest to a dot.
  auto [x0, y0, w, h] = central_bounds(pts, 0.002);
  w = std::max(w, 1e-9);
  h = std::max(h, 1e-9);

  // Placement: the attractor's box scaled (aspect kept) to 70-100% of the side, placed
  // at random, mirrored half the time.
  const double side = static_cast<double>(s);
  const double scale = uniform(rng, 0.7, 1.0) * (side - 1) / std::max(w, h);
  const double ox = uniform(rng, 0, side - 1 - w * scale), oy = uniform(rng, 0, side - 1 - h * scale);
  const bool mirror = rng() % 2 == 1;
  std::array<uint8_t, 9> stamp{};
  stamp[4] = 1;
  if (o.stamp) {
    for (int i = 0; i < 9; ++i) stamp[static_cast<size_t>(i)] |= static_cast<uint8_t>(rng() % 2);
  }
  const bool dark = rng() % 2 == 0;
  const Rgb bg = dark ? random_rgb(rng, 0, 0.3) : random_rgb(rng);
  std::vector<Rgb> colours;
  for (size_t k = 0; k < system.maps.size(); ++k) colours.push_back(rgb_apart(rng, bg, 0.9f));

  const auto pixels = static_cast<size_t>(s * s);
  std::vector<float> sum(3 * pixels, 0.0f);
  std::vector<float> count(pixels, 0.0f);
  for (size_t i = 0; i < pts.size(); ++i) {
    const double fx = ox + (pts.xy[2 * i] - x0) * scale, fy = oy + (pts.xy[2 * i + 1] - y0) * scale;
    if (!(fx > -2 && fy > -2 && fx < side + 2 && fy < side + 2)) continue;  // outside the central box
    auto px = static_cast<int64_t>(std::floor(fx));
    const auto py = static_cast<int64_t>(std::floor(fy));
    if (mirror) px = s - 1 - px;
    const Rgb& c = colours[pts.map[i]];
    for (int dy = -1; dy <= 1; ++dy) {
      for (int dx = -1; dx <= 1; ++dx) {
        if (stamp[static_cast<size_t>((dy + 1) * 3 + dx + 1)] == 0) continue;
        const int64_t x = px + dx, y = py + dy;
        if (x < 0 || y < 0 || x >= s || y >= s) continue;
        const auto at = static_cast<size_t>(y * s + x);
        count[at] += 1;
        for (size_t ch = 0; ch < 3; ++ch) sum[3 * at + ch] += c[ch];
      }
    }
  }
  // A pixel shows the mean colour of its points, brighter where they are dense.
  const float densest = std::log1p(*std::max_element(count.begin(), count.end()));
  std::normal_distribution<float> noise(0.0f, static_cast<float>(uniform(rng, 0, 0.04)));
  std::vector<float> rgb(3 * pixels);
  for (size_t i = 0; i < pixels; ++i) {
    const float n = count[i];
    const float shade = n > 0 ? 0.55f + 0.45f * std::log1p(n) / std::max(densest, 1e-6f) : 0.0f;
    for (size_t ch = 0; ch < 3; ++ch) {
      const float fg = n > 0 ? sum[3 * i + ch] / n : 0.0f;
      rgb[3 * i + ch] = (n > 0 ? bg[ch] + (fg - bg[ch]) * shade : bg[ch]) + noise(rng);
    }
  }
  return to_image(rgb, s);
}

TaskData make_fractal_task(const FractalOptions& o) {
  CLR_CHECK(o.classes >= 2, ConfigError, "fractals: need >= 2 classes, got ", o.classes);
  check_size(o.size, "fractals");
  check_counts(o.train_per_class, o.val_per_class, o.test_per_class, "fractals");
  FractalSearchOptions so;
  so.categories = o.classes;
  so.min_fill = o.min_fill;
  so.sampling = o.sampling;
  so.seed = o.seed;
  const std::vector<IfsSystem> systems = search_fractals(so);
  FractalRenderOptions ro;
  ro.size = o.size;
  TaskData t = gen::generate("fractals",
                             detail::concat("fractals of iterated function systems (", o.classes, " categories, seed ",
                                            o.seed, ")"),
                             o.classes, o.train_per_class, o.val_per_class, o.test_per_class, o.seed,
                             [&](int64_t c, std::mt19937_64& rng) {
                               return render_fractal(systems[static_cast<size_t>(c)], ro, rng);
                             });
  for (int64_t c = 0; c < o.classes; ++c) t.classes.push_back(detail::concat("fractal", c));
  return t;
}

const std::vector<std::string>& dead_leaves_families() {
  static const std::vector<std::string> families = {"disc", "square", "triangle", "mixed"};
  return families;
}

at::Tensor render_dead_leaves(int64_t family, const DeadLeavesOptions& o, std::mt19937_64& rng) {
  check_size(o.size, "dead leaves");
  CLR_CHECK(family >= 0 && family < static_cast<int64_t>(dead_leaves_families().size()), ConfigError,
            "dead leaves: family ", family, " is not one of the ", dead_leaves_families().size());
  CLR_CHECK(o.alpha > 0 && o.min_radius > 0 && o.min_radius < o.max_radius && o.max_radius <= 4, ConfigError,
            "dead leaves: need alpha > 0 and 0 < min_radius < max_radius <= 4 (fractions of the side), got alpha ",
            o.alpha, ", radii ", o.min_radius, "..", o.max_radius);
  CLR_CHECK(o.max_leaves >= 1 && o.textured >= 0 && o.textured <= 1, ConfigError,
            "dead leaves: need max_leaves >= 1 and textured in [0, 1]");
  const int64_t s = o.size;
  const double side = static_cast<double>(s);
  const auto pixels = static_cast<size_t>(s * s);
  std::vector<float> rgb(3 * pixels, 0.0f);
  std::vector<uint8_t> covered(pixels, 0);
  size_t left = pixels;
  // Radii by inverting the power law's distribution function over [min, max].
  const double e = 1 - o.alpha;
  const double lo = std::abs(e) < 1e-9 ? std::log(o.min_radius) : std::pow(o.min_radius, e);
  const double hi = std::abs(e) < 1e-9 ? std::log(o.max_radius) : std::pow(o.max_radius, e);
  const int64_t families = static_cast<int64_t>(dead_leaves_families().size()) - 1;
  // Front to back: a leaf paints only the pixels no earlier (nearer) leaf covers.
  for (int64_t leaf = 0; leaf < o.max_leaves && left > 0; ++leaf) {
    const double v = lo + uniform(rng, 0, 1) * (hi - lo);
    const double r = side * (std::abs(e) < 1e-9 ? std::exp(v) : std::pow(v, 1 / e));
    const int64_t shape = family == families ? static_cast<int64_t>(rng() % static_cast<uint64_t>(families)) : family;
    const double cx = uniform(rng, 0, side), cy = uniform(rng, 0, side);
    const double turn = uniform(rng, 0, 2 * kPi);
    const Rgb c1 = random_rgb(rng);
    const bool textured = uniform(rng, 0, 1) < o.textured;
    const Rgb c2 = textured ? random_rgb(rng) : c1;
    const double freq = uniform(rng, 0.05, 0.45) * 2 * kPi;  // radians per pixel
    const double wave = uniform(rng, 0, kPi), phase = uniform(rng, 0, 2 * kPi);
    const double cw = std::cos(wave), sw = std::sin(wave);
    std::array<double, 3> nx{}, ny{};
    for (size_t k = 0; k < 3; ++k) {
      nx[k] = std::cos(turn + 2 * kPi / 3 * static_cast<double>(k));
      ny[k] = std::sin(turn + 2 * kPi / 3 * static_cast<double>(k));
    }
    const auto x_lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(cx - r)));
    const auto x_hi = std::min<int64_t>(s - 1, static_cast<int64_t>(std::ceil(cx + r)));
    const auto y_lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(cy - r)));
    const auto y_hi = std::min<int64_t>(s - 1, static_cast<int64_t>(std::ceil(cy + r)));
    for (int64_t y = y_lo; y <= y_hi; ++y) {
      for (int64_t x = x_lo; x <= x_hi; ++x) {
        const auto at = static_cast<size_t>(y * s + x);
        if (covered[at] != 0) continue;
        const double dx = static_cast<double>(x) + 0.5 - cx, dy = static_cast<double>(y) + 0.5 - cy;
        bool inside = false;
        if (shape == 0) {
          inside = dx * dx + dy * dy <= r * r;
        } else if (shape == 1) {  // a square of half-side 0.8 r
          const double u = dx * nx[0] + dy * ny[0], w = -dx * ny[0] + dy * nx[0];
          inside = std::max(std::abs(u), std::abs(w)) <= 0.8 * r;
        } else {  // an equilateral triangle of circumradius r (inradius r / 2)
          inside = dx * nx[0] + dy * ny[0] <= r / 2 && dx * nx[1] + dy * ny[1] <= r / 2 &&
                   dx * nx[2] + dy * ny[2] <= r / 2;
        }
        if (!inside) continue;
        covered[at] = 1;
        --left;
        const float mix =
            textured ? static_cast<float>(0.5 + 0.5 * std::sin((dx * cw + dy * sw) * freq + phase)) : 0.0f;
        for (size_t ch = 0; ch < 3; ++ch) rgb[3 * at + ch] = c1[ch] + (c2[ch] - c1[ch]) * mix;
      }
    }
  }
  if (left > 0) {  // what max_leaves did not cover: the farthest leaf, flat
    const Rgb back = random_rgb(rng);
    for (size_t i = 0; i < pixels; ++i) {
      if (covered[i] == 0) {
        for (size_t ch = 0; ch < 3; ++ch) rgb[3 * i + ch] = back[ch];
      }
    }
  }
  return to_image(rgb, s);
}

TaskData make_dead_leaves_task(const DeadLeavesTaskOptions& o) {
  check_size(o.leaves.size, "dead-leaves");
  check_counts(o.train_per_class, o.val_per_class, o.test_per_class, "dead-leaves");
  const auto& families = dead_leaves_families();
  TaskData t = gen::generate(
      "dead-leaves",
      detail::concat("dead leaves (alpha ", o.leaves.alpha, ", radii ", o.leaves.min_radius, "..", o.leaves.max_radius,
                     " of the side, seed ", o.seed, ")"),
      static_cast<int64_t>(families.size()), o.train_per_class, o.val_per_class, o.test_per_class, o.seed,
      [&](int64_t c, std::mt19937_64& rng) { return render_dead_leaves(c, o.leaves, rng); });
  t.classes = families;
  return t;
}

}  // namespace clr::data
