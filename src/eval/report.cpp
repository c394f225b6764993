#include "clr/eval/report.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/json_numbers.h"
#include "clr/eval/plot.h"
#include "clr/eval/results.h"

namespace clr::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string pct(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f%%", 100 * v);
  return b;
}

struct Page {
  std::string dir;
  std::ostringstream body;
  ReportFiles files;
  void figure(const std::string& name, const std::string& svg, const std::string& caption) {
    const std::string path = dir + "/figures/" + name + ".svg";
    write_file_atomic(path, svg + "\n");
    files.figures.push_back(path);
    body << "<figure>" << svg << "<figcaption>" << xml_escape(caption) << " (<a href=\"figures/" << name
         << ".svg\">" << name << ".svg</a>)</figcaption></figure>\n";
  }
};

std::string html_page(const std::string& title, const std::string& body) {
  return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>" + xml_escape(title) +
         "</title><style>body{font-family:DejaVu Sans,Arial,sans-serif;margin:2em;max-width:1100px}"
         "table{border-collapse:collapse}td,th{padding:3px 9px;border-bottom:1px solid #ddd;text-align:right}"
         "td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}figcaption{color:#444;font-size:90%}"
         "</style></head><body><h1>" +
         xml_escape(title) + "</h1>\n" + body + "</body></html>\n";
}

std::vector<double> last_row(const AccuracyMatrix& r, size_t tasks) {
  std::vector<double> out(tasks, kNaN);
  if (r.empty()) return out;
  for (size_t j = 0; j < r.back().size() && j < tasks; ++j) out[j] = r.back()[j].value_or(kNaN);
  return out;
}

ReportFiles compare_report(const std::string& dir) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(dir + "/compare.json"));
    (void)j.at("methods");
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::concat("'", dir, "/compare.json' is not a clr comparison: ", e.what()));
  }
  CLR_CHECK(json_string_is(j, "schema", "clr.compare/1"), FormatError, "'", dir, "/compare.json' is not a clr comparison");
  Page page;
  page.dir = dir;
  make_directories(dir + "/figures");
  std::vector<std::string> methods, task_names;
  std::vector<Series> first;
  std::vector<double> avg, params, time;
  std::vector<std::vector<double>> finals;
  // CLR first, so its line is drawn first and thickest.
  std::vector<nlohmann::json> rows(j.at("methods").begin(), j.at("methods").end());
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.at("method") == "clr" && b.at("method") != "clr";
  });
  for (const auto& m : rows) {
    const std::string name = m.at("method");
    const Results r = read_results(dir + "/" + m.at("run_dir").get<std::string>() + "/results.json");
    if (task_names.empty()) {
      for (const auto& t : r.tasks) task_names.push_back(t.name);
    }
    methods.push_back(name);
    first.push_back({name, m.at("first_task_curve").get<std::vector<double>>()});
    avg.push_back(m.at("average_accuracy").get<double>());
    params.push_back(100 * m.at("extra_params_fraction").get<double>());
    time.push_back(m.at("train_time_vs_sgd").is_null() ? kNaN : m.at("train_time_vs_sgd").get<double>());
    finals.push_back(last_row(r.accuracy, task_names.size()));
  }
  page.body << "<table><tr><th>method</th><th>avg acc</th><th>BWT</th><th>forgetting</th><th>task 1 after last</th>"
               "<th>extra params / task</th><th>stored bytes / task</th><th>time / sgd</th></tr>\n";
  for (const auto& m : rows) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f%%", 100 * m.at("extra_params_fraction").get<double>());
    std::string t = "-";
    if (!m.at("train_time_vs_sgd").is_null()) {
      char tb[32];
      std::snprintf(tb, sizeof tb, "%.2fx", m.at("train_time_vs_sgd").get<double>());
      t = tb;
    }
    page.body << "<tr><td>" << xml_escape(m.at("method")) << "</td><td>" << pct(m.at("average_accuracy")) << "</td><td>"
              << pct(m.at("bwt")) << "</td><td>" << pct(m.at("forgetting")) << "</td><td>"
              << pct(m.at("first_task_final")) << "</td><td>" << buf << "</td><td>"
              << static_cast<int64_t>(m.at("stored_bytes_per_task").get<double>()) << "</td><td>" << t << "</td></tr>\n";
  }
  page.body << "</table>\n";
  ChartOptions o;
  o.percent = true;
  o.title = "Accuracy on the first task after learning each task";
  o.y_label = "test accuracy on task 1";
  o.x_label = "after learning task";
  o.y_min = 0;
  page.figure("first_task", line_chart(first, task_names, o), "Experiment 1: accuracy on task 1 after each new task");
  ChartOptions b;
  b.percent = true;
  b.title = "Average accuracy over all tasks after the last one";
  b.y_min = 0;
  page.figure("average_accuracy", bar_chart(methods, avg, b, "clr"), "Experiment 2: average accuracy per method");
  ChartOptions s;
  s.percent = true;
  s.title = "Extra parameters per task against average accuracy";
  s.x_label = "extra parameters per task, % of the backbone (log scale)";
  s.y_label = "average accuracy";
  page.figure("params_vs_accuracy", scatter_chart(methods, params, avg, s, true),
              "Analysis 1: what each method adds per task and what it gets for it");
  bool have_time = false;
  for (double t : time) have_time = have_time || !std::isnan(t);
  if (have_time) {
    ChartOptions t;
    t.title = "Training time relative to sgd";
    t.x_label = "x sgd's training time";
    page.figure("train_time", bar_chart(methods, time, t, "clr"), "Analysis 1: training compute normalised to sgd");
  }
  // Without a task oracle: each method's average accuracy when the first task-inference
  // method its run measured finds the task (NaN for runs without task inference).
  std::string inference;
  std::vector<double> no_oracle;
  for (const auto& m : rows) {
    const auto it = m.find("task_inference");
    if (inference.empty() && it != m.end() && it->is_object() && !it->empty()) inference = it->begin().key();
  }
  for (const auto& m : rows) {
    const auto it = m.find("task_inference");
    const bool has = !inference.empty() && it != m.end() && it->is_object() && it->contains(inference);
    no_oracle.push_back(has ? it->at(inference).at("average_agnostic_accuracy").get<double>() : kNaN);
  }
  if (!inference.empty()) {
    ChartOptions n;
    n.percent = true;
    n.y_min = 0;
    n.title = "Average accuracy without a task oracle (" + inference + ")";
    page.figure("no_oracle_accuracy", bar_chart(methods, no_oracle, n, "clr"),
                "Average accuracy after the last task when " + inference +
                    " finds the task of each test image instead of being told it (task-agnostic)");
  }
  ChartOptions h;
  h.title = "Accuracy on each task after the last one";
  page.figure("final_accuracy", heatmap(finals, methods, task_names, h), "Final test accuracy per method and task (%)");
  page.files.html = dir + "/report.html";
  write_file_atomic(page.files.html, html_page("clr compare: " + dir, page.body.str()));
  return page.files;
}

ReportFiles run_report(const std::string& dir) {
  const Results r = read_results(dir + "/results.json");
  Page page;
  page.dir = dir;
  make_directories(dir + "/figures");
  std::vector<std::string> names;
  for (const auto& t : r.tasks) names.push_back(t.name);
  std::vector<std::vector<double>> m;
  std::vector<std::string> rows;
  for (size_t i = 0; i < r.accuracy.size(); ++i) {
    std::vector<double> row;
    for (const auto& v : r.accuracy[i]) row.push_back(v.value_or(kNaN));
    m.push_back(row);
    rows.push_back("after " + (i < names.size() ? names[i] : std::to_string(i + 1)));
  }
  page.body << "<p>method <b>" << xml_escape(r.method) << "</b>, backbone " << xml_escape(r.backbone_arch) << " ("
            << xml_escape(r.backbone_source) << "), device " << xml_escape(r.device) << "</p>\n";
  if (!r.accuracy.empty()) {
    page.body << "<p>average accuracy " << pct(average_accuracy(r.accuracy)) << ", BWT " << pct(backward_transfer(r.accuracy))
              << ", forgetting " << pct(forgetting(r.accuracy)) << "</p>\n";
    ChartOptions h;
    h.title = "Test accuracy on each task (columns) after each task (rows)";
    page.figure("accuracy_matrix", heatmap(m, rows, names, h), "The accuracy matrix (%)");
    ChartOptions o;
    o.percent = true;
    o.y_min = 0;
    o.title = "Accuracy on the first task after each task";
    page.figure("first_task", line_chart({{r.method, first_task_curve(r.accuracy)}}, names, o),
                "Accuracy on task 1 after each new task");
    if (!r.task_inference.empty()) {
      // The average over the tasks learned so far, after each task: the oracle's, and
      // each task-inference method's task-agnostic and task-ID accuracy.
      auto averages = [](const AccuracyMatrix& a) {
        std::vector<double> out;
        for (size_t i = 0; i < a.size(); ++i) {
          double sum = 0;
          for (size_t j = 0; j <= i; ++j) sum += a[i][j].value_or(kNaN);
          out.push_back(sum / static_cast<double>(i + 1));
        }
        return out;
      };
      std::vector<Series> series{{"oracle (task given)", averages(r.accuracy)}};
      page.body << "<p>without a task oracle:";
      for (const auto& ti : r.task_inference) {
        series.push_back({ti.method + ": task-agnostic", averages(ti.agnostic_accuracy)});
        series.push_back({ti.method + ": task-ID", averages(ti.task_accuracy)});
        page.body << " " << xml_escape(ti.method) << " average accuracy " << pct(average_accuracy(ti.agnostic_accuracy))
                  << " (task-ID " << pct(average_accuracy(ti.task_accuracy)) << ");";
      }
      page.body << "</p>\n";
      ChartOptions t;
      t.percent = true;
      t.y_min = 0;
      t.title = "Average accuracy over the tasks learned so far, without a task oracle";
      page.figure("task_inference", line_chart(series, names, t),
                  "Average accuracy with the task given (oracle) and found by each task-inference method (task-agnostic), "
                  "and how often the task was found (task-ID)");
    }
  }
  page.files.html = dir + "/report.html";
  write_file_atomic(page.files.html, html_page("clr run: " + dir, page.body.str()));
  return page.files;
}

}  // namespace

ReportFiles write_report(const std::string& dir) {
  if (file_exists(dir + "/compare.json")) return compare_report(dir);
  CLR_CHECK(file_exists(dir + "/results.json"), NotFoundError, "'", dir,
            "' holds neither compare.json (clr compare) nor results.json (clr run)");
  return run_report(dir);
}

}  // namespace clr::eval
