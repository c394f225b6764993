#include "clr/eval/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "clr/core/error.h"

namespace clr::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string num(double v, int decimals = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// "Nice" tick values covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int target = 6) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  }
  std::vector<double> out;
  const double first = std::ceil(lo / step - 1e-9) * step;
  for (int k = 0; k < 100; ++k) {  // bounded: a step below the spacing of doubles cannot loop forever
    const double v = first + step * k;
    if (v > hi + step * 1e-9) break;
    out.push_back(std::abs(v) < 1e-12 ? 0 : v);
  }
  return out;
}

// Widens [lo, hi] to the nice ticks around it.
void nice_range(double& lo, double& hi, bool fixed_lo, bool fixed_hi) {
  const std::vector<double> t = ticks(lo, hi);
  if (t.size() < 2) return;
  const double step = t[1] - t[0];
  if (!fixed_lo) lo = std::floor(lo / step + 1e-9) * step;
  if (!fixed_hi) hi = std::ceil(hi / step - 1e-9) * step;
}

std::string num_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string label_of(double v, bool percent) {
  if (percent) return num(100 * v, std::abs(100 * v - std::round(100 * v)) < 1e-9 ? 0 : 1) + "%";
  const double a = std::abs(v);
  return num(v, a >= 100 || a == std::round(a) ? 0 : a >= 10 ? 1 : 2);
}

struct Frame {
  double left = 70, right = 20, top = 40, bottom = 60;
  int width, height;
  double x0() const { return left; }
  double x1() const { return width - right; }
  double y0() const { return height - bottom; }
  double y1() const { return top; }
};

std::string open_svg(const Frame& f, const ChartOptions& o) {
  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << f.width << "\" height=\"" << f.height
     << "\" viewBox=\"0 0 " << f.width << " " << f.height << "\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">"
     << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>";
  if (!o.title.empty()) {
    os << "<text x=\"" << f.width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">"
       << xml_escape(o.title) << "</text>";
  }
  return os.str();
}

std::string y_axis(const Frame& f, double lo, double hi, const ChartOptions& o) {
  std::ostringstream os;
  for (double t : ticks(lo, hi)) {
    const double y = f.y0() - (t - lo) / (hi - lo) * (f.y0() - f.y1());
    os << "<line x1=\"" << f.x0() << "\" x2=\"" << f.x1() << "\" y1=\"" << y << "\" y2=\"" << y
       << "\" stroke=\"#e4e4e4\"/><text x=\"" << f.x0() - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">"
       << label_of(t, o.percent) << "</text>";
  }
  os << "<line x1=\"" << f.x0() << "\" x2=\"" << f.x0() << "\" y1=\"" << f.y0() << "\" y2=\"" << f.y1()
     << "\" stroke=\"#555\"/><line x1=\"" << f.x0() << "\" x2=\"" << f.x1() << "\" y1=\"" << f.y0() << "\" y2=\""
     << f.y0() << "\" stroke=\"#555\"/>";
  if (!o.y_label.empty()) {
    os << "<text transform=\"translate(16," << (f.y0() + f.y1()) / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
       << xml_escape(o.y_label) << "</text>";
  }
  if (!o.x_label.empty()) {
    os << "<text x=\"" << (f.x0() + f.x1()) / 2 << "\" y=\"" << f.height - 8 << "\" text-anchor=\"middle\">"
       << xml_escape(o.x_label) << "</text>";
  }
  return os.str();
}

void data_range(const std::vector<double>& v, double& lo, double& hi) {
  for (double x : v) {
    if (!std::isfinite(x)) continue;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string series_colour(size_t i) {
  static const char* palette[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                                  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39", "#7b4173"};
  return palette[i % (sizeof palette / sizeof palette[0])];
}

std::string line_chart(const std::vector<Series>& series, const std::vector<std::string>& x_labels,
                       const ChartOptions& o) {
  Frame f;
  f.width = o.width;
  f.height = o.height;
  // The legend: a swatch and the longest name (about 7 px a character at 12 px), the
  // figure widened by what the names need beyond the usual 150 px.
  size_t longest = 0;
  for (const auto& s : series) longest = std::max(longest, s.name.size());
  f.right = std::max(150, 46 + 7 * static_cast<int>(longest));
  f.width += f.right - 150;
  f.bottom = 90;  // rotated labels
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& s : series) data_range(s.y, lo, hi);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  lo = o.y_min.value_or(lo);
  hi = o.y_max.value_or(hi);
  if (!(hi > lo)) hi = lo + 1;
  nice_range(lo, hi, o.y_min.has_value(), o.y_max.has_value());
  const size_t n = std::max<size_t>(x_labels.size(), 1);
  auto px = [&](size_t i) { return n == 1 ? (f.x0() + f.x1()) / 2 : f.x0() + 20 + (f.x1() - f.x0() - 40) * i / (n - 1.0); };
  auto py = [&](double v) { return f.y0() - (v - lo) / (hi - lo) * (f.y0() - f.y1()); };
  std::ostringstream os;
  os << open_svg(f, o) << y_axis(f, lo, hi, o);
  for (size_t i = 0; i < x_labels.size(); ++i) {
    os << "<text transform=\"translate(" << px(i) << "," << f.y0() + 12 << ") rotate(35)\" font-size=\"10\">"
       << xml_escape(x_labels[i]) << "</text>";
  }
  for (size_t s = 0; s < series.size(); ++s) {
    const std::string c = series_colour(s);
    std::string path;
    for (size_t i = 0; i < series[s].y.size(); ++i) {
      const double v = series[s].y[i];
      if (!std::isfinite(v)) continue;
      path += (path.empty() ? "M" : " L") + num(px(i)) + "," + num(py(v));
      os << "<circle cx=\"" << num(px(i)) << "\" cy=\"" << num(py(v)) << "\" r=\"2.5\" fill=\"" << c << "\"/>";
    }
    os << "<path d=\"" << path << "\" fill=\"none\" stroke=\"" << c << "\" stroke-width=\"" << (s == 0 ? 3 : 1.6)
       << "\"/>";
    const double ly = f.y1() + 16.0 * static_cast<double>(s);
    os << "<line x1=\"" << f.x1() + 12 << "\" x2=\"" << f.x1() + 32 << "\" y1=\"" << ly << "\" y2=\"" << ly
       << "\" stroke=\"" << c << "\" stroke-width=\"3\"/><text x=\"" << f.x1() + 38 << "\" y=\"" << ly + 4 << "\">"
       << xml_escape(series[s].name) << "</text>";
  }
  os << "</svg>";
  return os.str();
}

std::string bar_chart(const std::vector<std::string>& labels, const std::vector<double>& values, const ChartOptions& o,
                      const std::string& highlight) {
  CLR_ASSERT(labels.size() == values.size(), "one value per bar");
  Frame f;
  f.width = o.width;
  f.left = 110;
  f.height = std::max<int>(o.height, static_cast<int>(70 + 24 * labels.size()));
  double lo = 0, hi = 0;
  data_range(values, lo, hi);
  lo = o.y_min.value_or(std::min(0.0, lo));
  hi = o.y_max.value_or(hi);
  if (!(hi > lo)) hi = lo + 1;
  nice_range(lo, hi, true, o.y_max.has_value());
  auto px = [&](double v) { return f.x0() + (v - lo) / (hi - lo) * (f.x1() - f.x0()); };
  std::ostringstream os;
  os << open_svg(f, o);
  for (double t : ticks(lo, hi)) {
    os << "<line x1=\"" << num(px(t)) << "\" x2=\"" << num(px(t)) << "\" y1=\"" << f.y1() << "\" y2=\"" << f.y0()
       << "\" stroke=\"#e4e4e4\"/><text x=\"" << num(px(t)) << "\" y=\"" << f.y0() + 16 << "\" text-anchor=\"middle\">"
       << label_of(t, o.percent) << "</text>";
  }
  const double band = (f.y0() - f.y1()) / std::max<size_t>(labels.size(), 1);
  for (size_t i = 0; i < labels.size(); ++i) {
    const double y = f.y1() + band * static_cast<double>(i);
    const double v = values[i];
    const std::string c = labels[i] == highlight ? "#d62728" : "#1f77b4";
    if (std::isfinite(v)) {
      os << "<rect x=\"" << num(std::min(px(0 > lo ? 0 : lo), px(v))) << "\" y=\"" << num(y + band * 0.15) << "\" width=\""
         << num(std::abs(px(v) - px(0 > lo ? 0 : lo))) << "\" height=\"" << num(band * 0.7) << "\" fill=\"" << c
         << "\"/><text x=\"" << num(px(v) + 4) << "\" y=\"" << num(y + band * 0.5 + 4) << "\" font-size=\"11\">"
         << label_of(v, o.percent) << "</text>";
    }
    os << "<text x=\"" << f.x0() - 6 << "\" y=\"" << num(y + band * 0.5 + 4) << "\" text-anchor=\"end\">"
       << xml_escape(labels[i]) << "</text>";
  }
  os << "<line x1=\"" << f.x0() << "\" x2=\"" << f.x0() << "\" y1=\"" << f.y0() << "\" y2=\"" << f.y1()
     << "\" stroke=\"#555\"/>";
  if (!o.x_label.empty()) {
    os << "<text x=\"" << (f.x0() + f.x1()) / 2 << "\" y=\"" << f.height - 8 << "\" text-anchor=\"middle\">"
       << xml_escape(o.x_label) << "</text>";
  }
  os << "</svg>";
  return os.str();
}

std::string scatter_chart(const std::vector<std::string>& labels, const std::vector<double>& x,
                          const std::vector<double>& y, const ChartOptions& o, bool log_x) {
  CLR_ASSERT(labels.size() == x.size() && x.size() == y.size(), "one x and y per point");
  Frame f;
  f.width = o.width;
  f.height = o.height;
  f.right = 90;  // room for the labels of the rightmost points
  std::vector<double> xs;
  // On a log axis a value <= 0 (a method that adds nothing) sits at the left edge,
  // labelled "(0)".
  double smallest = std::numeric_limits<double>::infinity();
  for (double v : x) {
    if (v > 0) smallest = std::min(smallest, v);
  }
  std::vector<bool> at_zero(x.size(), false);
  for (size_t i = 0; i < x.size(); ++i) {
    if (log_x && x[i] <= 0 && std::isfinite(smallest)) {
      at_zero[i] = true;
      xs.push_back(std::floor(std::log10(smallest)) - 0.5);
    } else {
      xs.push_back(log_x ? (x[i] > 0 ? std::log10(x[i]) : kNaN) : x[i]);
    }
  }
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  data_range(xs, xlo, xhi);
  data_range(y, ylo, yhi);
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1;
  if (!std::isfinite(ylo)) ylo = 0, yhi = 1;
  if (log_x) {
    xlo = std::floor(xlo);
    xhi = std::ceil(xhi);
  }
  if (!(xhi > xlo)) xhi = xlo + 1;
  ylo = o.y_min.value_or(ylo);
  yhi = o.y_max.value_or(yhi);
  if (!(yhi > ylo)) yhi = ylo + 1;
  nice_range(ylo, yhi, o.y_min.has_value(), o.y_max.has_value());
  auto px = [&](double v) { return f.x0() + 10 + (v - xlo) / (xhi - xlo) * (f.x1() - f.x0() - 20); };
  auto py = [&](double v) { return f.y0() - (v - ylo) / (yhi - ylo) * (f.y0() - f.y1()); };
  std::ostringstream os;
  os << open_svg(f, o) << y_axis(f, ylo, yhi, o);
  if (log_x) {
    for (double e = xlo; e <= xhi + 1e-9; e += 1) {
      os << "<line x1=\"" << num(px(e)) << "\" x2=\"" << num(px(e)) << "\" y1=\"" << f.y1() << "\" y2=\"" << f.y0()
         << "\" stroke=\"#e4e4e4\"/><text x=\"" << num(px(e)) << "\" y=\"" << f.y0() + 16
         << "\" text-anchor=\"middle\">" << num_g(std::pow(10.0, e)) << "</text>";
    }
  } else {
    for (double t : ticks(xlo, xhi)) {
      os << "<text x=\"" << num(px(t)) << "\" y=\"" << f.y0() + 16 << "\" text-anchor=\"middle\">" << label_of(t, false)
         << "</text>";
    }
  }
  std::vector<std::pair<double, double>> placed;  // label positions so far
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!std::isfinite(xs[i]) || !std::isfinite(y[i])) continue;
    const double cx = px(xs[i]), cy = py(y[i]);
    double lx = cx + 7, ly = cy - 6;
    // Move a label down until it clears the labels already placed.
    for (int tries = 0; tries < 8; ++tries) {
      bool clash = false;
      for (const auto& [qx, qy] : placed) clash = clash || (std::abs(qx - lx) < 70 && std::abs(qy - ly) < 12);
      if (!clash) break;
      ly += 13;
    }
    placed.emplace_back(lx, ly);
    os << "<circle cx=\"" << num(cx) << "\" cy=\"" << num(cy) << "\" r=\"5\" fill=\"" << series_colour(i)
       << "\"/><text x=\"" << num(lx) << "\" y=\"" << num(ly) << "\" font-size=\"11\">" << xml_escape(labels[i])
       << (at_zero[i] ? " (0)" : "") << "</text>";
  }
  os << "</svg>";
  return os.str();
}

std::string heatmap(const std::vector<std::vector<double>>& values, const std::vector<std::string>& row_labels,
                    const std::vector<std::string>& col_labels, const ChartOptions& o) {
  // Room for every label and the title (DejaVu Sans: about 0.6 em per character; the
  // bold 15 px title about 9.5 px): nothing is clipped however long the task names.
  auto longest = [](const std::vector<std::string>& v) {
    size_t n = 0;
    for (const auto& s : v) n = std::max(n, s.size());
    return static_cast<double>(n);
  };
  Frame f;
  f.left = static_cast<int>(std::max(130.0, 14 + 6.2 * longest(row_labels)));
  f.bottom = 20;
  // Column labels are rotated by 50 degrees: their height is about sin 50 of their length.
  f.top = static_cast<int>(std::max(110.0, 40 + 0.77 * 6.2 * longest(col_labels)));
  const double cell = std::clamp(560.0 / std::max<size_t>(col_labels.size(), 1), 18.0, 56.0);
  double right = f.left + cell * static_cast<double>(col_labels.size()) + 20;
  for (size_t j = 0; j < col_labels.size(); ++j) {  // and their width about cos 50 of it
    right = std::max(right, f.left + cell * (static_cast<double>(j) + 0.5) + 0.64 * 6.2 * col_labels[j].size() + 10);
  }
  f.width = static_cast<int>(std::max(right, 9.5 * static_cast<double>(o.title.size()) + 30));
  f.height = static_cast<int>(f.top + cell * row_labels.size() + f.bottom);
  std::ostringstream os;
  os << open_svg(f, o);
  for (size_t j = 0; j < col_labels.size(); ++j) {
    os << "<text transform=\"translate(" << num(f.left + cell * (j + 0.5)) << "," << f.top - 6
       << ") rotate(-50)\" font-size=\"10\">" << xml_escape(col_labels[j]) << "</text>";
  }
  for (size_t i = 0; i < values.size() && i < row_labels.size(); ++i) {
    const double y = f.top + cell * static_cast<double>(i);
    os << "<text x=\"" << f.left - 6 << "\" y=\"" << num(y + cell / 2 + 4) << "\" text-anchor=\"end\" font-size=\"10\">"
       << xml_escape(row_labels[i]) << "</text>";
    for (size_t j = 0; j < values[i].size() && j < col_labels.size(); ++j) {
      const double v = values[i][j];
      if (!std::isfinite(v)) continue;
      const int shade = static_cast<int>(std::round(255 * (1 - std::clamp(v, 0.0, 1.0))));
      char colour[16];
      std::snprintf(colour, sizeof colour, "#%02x%02xff", shade, shade);
      os << "<rect x=\"" << num(f.left + cell * j) << "\" y=\"" << num(y) << "\" width=\"" << num(cell - 1)
         << "\" height=\"" << num(cell - 1) << "\" fill=\"" << colour << "\"/>";
      if (cell >= 26) {
        os << "<text x=\"" << num(f.left + cell * (j + 0.5)) << "\" y=\"" << num(y + cell / 2 + 4)
           << "\" text-anchor=\"middle\" font-size=\"10\" fill=\"" << (v > 0.6 ? "white" : "black") << "\">"
           << num(100 * v, 0) << "</text>";
      }
    }
  }
  os << "</svg>";
  return os.str();
}

}  // namespace clr::eval
