// `clr report DIR`: an HTML page with the figures of a comparison (DIR/compare.json:
// accuracy on the first task after every task, average accuracy, parameters against
// accuracy, training time, final accuracy per task) or of one run (DIR/results.json:
// the accuracy matrix), each figure also written as an SVG file under DIR/figures/.
#pragma once

#include <string>
#include <vector>

namespace clr::eval {

struct ReportFiles {
  std::string html;
  std::vector<std::string> figures;
};

// NotFoundError when DIR has neither compare.json nor results.json.
ReportFiles write_report(const std::string& dir);

}  // namespace clr::eval
