// Small SVG charts for reports (no dependency): lines over a shared x axis, horizontal
// bars, a scatter with a log or linear x axis, and a heatmap. Each returns a complete
// <svg> element that is valid on its own (a .svg file) and inside HTML.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace clr::eval {

struct Series {
  std::string name;
  std::vector<double> y;  // one value per x position (NaN: no point)
};

struct ChartOptions {
  std::string title, x_label, y_label;
  int width = 720, height = 420;
  std::optional<double> y_min, y_max;  // default: from the data
  bool percent = false;                // values are fractions shown as %
};

// Lines at x = 1..N (labels below each position, e.g. task names).
std::string line_chart(const std::vector<Series>& series, const std::vector<std::string>& x_labels,
                       const ChartOptions& options);
// One horizontal bar per label; `highlight` names a bar drawn in the accent colour.
std::string bar_chart(const std::vector<std::string>& labels, const std::vector<double>& values,
                      const ChartOptions& options, const std::string& highlight = "");
// Labelled points; log_x uses a base-10 axis (values must be > 0).
std::string scatter_chart(const std::vector<std::string>& labels, const std::vector<double>& x,
                          const std::vector<double>& y, const ChartOptions& options, bool log_x);
// A matrix of values in 0..1 (NaN cells blank), rows and columns labelled.
std::string heatmap(const std::vector<std::vector<double>>& values, const std::vector<std::string>& row_labels,
                    const std::vector<std::string>& col_labels, const ChartOptions& options);

// The i-th colour of the palette used for series.
std::string series_colour(size_t i);
// Text escaped for XML/HTML.
std::string xml_escape(const std::string& s);

}  // namespace clr::eval
