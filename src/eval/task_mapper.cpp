#include "clr/eval/task_mapper.h"

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/runtime.h"
#include "clr/core/tensor_map.h"
#include "clr/data/loader.h"
#include "clr/models/resnet.h"
#include "clr/store/store.h"
#include "clr/train/task_inference.h"
#include "clr/train/trainer.h"

namespace clr::eval {

FitMapperReport fit_task_mappers(const FitMapperOptions& o, const data::Sequence& sequence,
                                 const std::function<void(const std::string&, int64_t)>& each) {
  CLR_CHECK(o.batch >= 1, ConfigError, "batch must be at least 1, got ", o.batch);
  store::Store st = store::Store::open(o.store_dir);
  std::map<std::string, const data::TaskData*> by_name;
  for (const auto& t : sequence) by_name[t.name] = &t;
  std::vector<std::string> names = o.tasks;
  if (names.empty()) {
    for (const auto& e : st.tasks()) names.push_back(e.name);
  }
  FitMapperReport report;
  std::vector<std::pair<store::Adapter, const data::TaskData*>> todo;
  for (const auto& name : names) {
    CLR_CHECK(st.find(name) != nullptr, NotFoundError, "store '", o.store_dir, "' has no task '", name, "'");
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      CLR_CHECK(o.tasks.empty(), ConfigError, "the data has no task '", name, "' (it has ", sequence.size(),
                " tasks); give the data the task was learned from");
      report.no_data.push_back(name);
      continue;
    }
    store::Adapter a = st.load(name);
    if (!a.mapper.empty() && !o.replace) {
      report.kept.push_back(name);
      continue;
    }
    CLR_CHECK(it->second->classes == a.classes, ConfigError, "task '", name, "' of the data has classes ",
              join_first(it->second->classes), ", the stored task ", join_first(a.classes),
              ": its statistics must come from the data it was learned on");
    todo.emplace_back(std::move(a), it->second);
  }
  if (todo.empty()) return report;
  const c10::Device device = runtime::parse_device(o.device);
  models::ResNet backbone = store::load_store_backbone(st, o.backbone_file);
  backbone->eval();
  backbone->to(device);
  for (auto& [a, task] : todo) {
    data::PrepareOptions prepare;
    prepare.size = a.preprocess.resize;
    const data::PreparedSplit train = data::prepare_split(task->train, task->origin + " (train)", prepare);
    const at::Tensor features = train::map_split(train, o.batch, a.preprocess.crop, train::Numerics{}, device,
                                                 [&](const at::Tensor& x) { return backbone->features(x); });
    train::StatisticsAccumulator acc(static_cast<int64_t>(a.classes.size()));
    acc.add(features, train.labels);
    const train::TaskStatistics stats = acc.finish();
    a.mapper = stats.to_tensors();
    a.mapper_json = nlohmann::json{{"kind", "gaussian"},
                                   {"features", "the frozen backbone's pooled features"},
                                   {"classes", stats.classes()},
                                   {"feature_dim", stats.feature_dim()},
                                   {"images", acc.count()},
                                   {"fitted_by", "clr tasks fit-mapper"}}
                        .dump();
    const std::string name = a.task;
    st.put(std::move(a), /*replace=*/true);
    report.fitted.push_back(name);
    if (each) each(name, acc.count());
  }
  return report;
}

}  // namespace clr::eval
