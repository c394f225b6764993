#include "clr/train/progress_file.h"

#include <nlohmann/json.hpp>

#include "clr/core/error.h"
#include "clr/core/safetensors.h"
#include "clr/core/settings.h"

namespace clr::train {
namespace {

std::string progress_origin(const std::string& file) { return "checkpoint '" + file + "'"; }

}  // namespace

void add_progress(TensorMap& tensors, Metadata& metadata, const std::string& prefix, const TaskProgress& p) {
  add_prefixed(tensors, prefix + "current", p.current);
  // Right after a gain the best state is the current one: stored once.
  const bool best_is_current = p.since_best == 0 && p.report.best_epoch == p.next_epoch;
  if (!best_is_current) add_prefixed(tensors, prefix + "best", p.best);
  add_prefixed(tensors, prefix + "optimizer", p.optimizer);
  add_prefixed(tensors, prefix + "scaler", p.scaler);
  add_prefixed(tensors, prefix + "steps", p.steps);
  if (p.rng.defined()) tensors.emplace(prefix + "rng", p.rng);
  metadata[prefix + "next_epoch"] = std::to_string(p.next_epoch);
  metadata[prefix + "since_best"] = std::to_string(p.since_best);
  metadata[prefix + "best_is_current"] = best_is_current ? "1" : "0";
  metadata[prefix + "finished"] = p.finished ? "1" : "0";
  metadata[prefix + "report"] = settings::Json(p.report).dump();
}

TaskProgress take_progress(const TensorMap& tensors, const Metadata& metadata, const std::string& prefix,
                           const std::string& file) {
  TaskProgress p;
  p.next_epoch = metadata_count(metadata, prefix + "next_epoch", progress_origin(file));
  p.since_best = metadata_count(metadata, prefix + "since_best", progress_origin(file));
  try {
    p.report = settings::Json::parse(metadata_value(metadata, prefix + "report", progress_origin(file)))
                   .get<TaskTrainReport>();
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::concat(progress_origin(file), ": its training report is damaged: ", e.what()));
  }
  p.current = with_prefix(tensors, prefix + "current");
  const auto flag = [&](const std::string& key) {
    const auto it = metadata.find(prefix + key);
    return it != metadata.end() && it->second == "1";
  };
  p.best = flag("best_is_current") ? p.current : with_prefix(tensors, prefix + "best");
  p.finished = flag("finished");
  p.optimizer = with_prefix(tensors, prefix + "optimizer");
  p.scaler = with_prefix(tensors, prefix + "scaler");
  p.steps = with_prefix(tensors, prefix + "steps");
  if (tensors.count(prefix + "rng")) p.rng = tensors.at(prefix + "rng");
  CLR_CHECK(!p.current.empty(), FormatError, progress_origin(file), " holds no training state",
            prefix.empty() ? "" : " for ", prefix);
  return p;
}

}  // namespace clr::train
