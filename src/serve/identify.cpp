// Engine's task inference: which stored task an image belongs to (docs/SERVING.md,
// "Without a task"), over the task mappers' statistics or every task's head.
#include <cmath>
#include <map>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/settings_io.h"
#include "clr/core/tensor_map.h"
#include "clr/core/torch_compat.h"
#include "clr/data/image.h"
#include "clr/serve/engine.h"
#include "clr/train/task_inference.h"
#include "detail/engine_impl.h"

namespace clr::serve {

using engine_detail::apply_preprocess;
using engine_detail::over_files;
using engine_detail::preprocess_key;

template <class V>
void fields(V& v, IdentifyOptions& o) {
  v("method", o.method);
  v("threshold", o.threshold);
  v("temperature", o.temperature);
  v("top_k", o.top_k);
  v("top_tasks", o.top_tasks);
}
CLR_SETTINGS_JSON(IdentifyOptions)

void to_json(settings::Json& j, const Identified& r) {
  settings::Json tasks = settings::Json::array(), top = settings::Json::array();
  for (const TaskGuess& g : r.tasks) tasks.push_back({{"task", g.task}, {"confidence", g.confidence}, {"score", g.score}});
  for (const TopClass& c : r.top) top.push_back({{"class", c.name}, {"index", c.index}, {"prob", c.prob}});
  j = settings::Json{{"task", r.task ? settings::Json(*r.task) : settings::Json(nullptr)},
                     {"confidence", r.confidence},
                     {"tasks", tasks},
                     {"top", top}};
}

std::shared_ptr<const MapperIndex> Engine::Impl::mapper() {
  std::shared_ptr<const MapperIndex>& cached = mapper_index;
  int64_t seen = 0;
  store::Store snapshot = [&] {
    std::lock_guard<std::mutex> lock(mu);
    seen = generation;
    return store;
  }();
  {
    std::lock_guard<std::mutex> lock(mu);
    if (cached && cached->generation == seen) return cached;
  }
  CLR_CHECK(!snapshot.tasks().empty(), NotFoundError, "store '", snapshot.dir(), "' has no task to choose from");
  auto index = std::make_shared<MapperIndex>();
  index->generation = seen;
  std::vector<train::TaskStatistics> stats;
  std::vector<std::string> missing;
  std::map<std::string, size_t> group_of;
  for (const store::TaskEntry& e : snapshot.tasks()) {
    const store::Adapter a = snapshot.load(e.name);
    if (a.mapper.empty()) {
      missing.push_back("'" + e.name + "'");
      continue;
    }
    stats.push_back(train::TaskStatistics::from_tensors(a.mapper, "task '" + e.name + "'"));
    CLR_CHECK(stats.back().feature_dim() == backbone->feature_dim(), IncompatibleError, "task '", e.name,
              "' has statistics of ", stats.back().feature_dim(), " features, the backbone gives ",
              backbone->feature_dim());
    const std::string key = preprocess_key(a.preprocess);
    if (!group_of.count(key)) {
      group_of[key] = index->groups.size();
      index->groups.push_back({a.preprocess, {}, {}, {}});
    }
    index->groups[group_of[key]].tasks.push_back(static_cast<int64_t>(index->names.size()));
    index->names.push_back(e.name);
  }
  CLR_CHECK(missing.empty(), IncompatibleError, "finding the task of an image with the gaussian mapper needs every task's "
            "statistics, and ", join_first(missing), missing.size() == 1 ? " has" : " have",
            " none (stored by a clr from before task inference, or imported without them): add them with `clr tasks "
            "fit-mapper ", snapshot.dir(), " DATA`, give the task, or use --task-inference energy");
  for (auto& g : index->groups) {
    std::vector<const train::TaskStatistics*> members;
    for (int64_t t : g.tasks) members.push_back(&stats[static_cast<size_t>(t)]);
    g.classes = train::TaskMapper(members, device, /*whole_task=*/false);
    g.whole = train::TaskMapper(members, device, /*whole_task=*/true);
  }
  std::lock_guard<std::mutex> lock(mu);
  if (generation == seen) cached = index;
  return index;
}

at::Tensor Engine::Impl::shared_features(const at::Tensor& images, const store::Preprocess& pre) {
  const float mean[3] = {pre.mean[0], pre.mean[1], pre.mean[2]};
  const float sd[3] = {pre.std[0], pre.std[1], pre.std[2]};
  at::Tensor x = data::normalize(images.to(device), mean, sd);
  if (numerics.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  torch::NoGradGuard no_grad;
  std::lock_guard<std::mutex> forward_lock(forward_mu);
  const compat::AutocastGuard autocast(device.type(), numerics.autocast);
  return backbone->features(x).to(torch::kFloat);
}

std::vector<Identified> Engine::identify(const std::vector<at::Tensor>& images, const IdentifyOptions& o) {
  const train::TaskInference method = train::parse_task_inference(o.method);
  CLR_CHECK(o.top_k >= 1 && o.top_tasks >= 1, ConfigError, "top_k and top_tasks must be at least 1, got ", o.top_k,
            " and ", o.top_tasks);
  CLR_CHECK(o.threshold >= 0 && o.threshold <= 1, ConfigError, "the confidence threshold must be in [0, 1], got ",
            o.threshold);
  CLR_CHECK(o.temperature >= 0 && std::isfinite(o.temperature), ConfigError,
            "the temperature must be positive (0: the method's default), got ", o.temperature);
  const double temperature = o.temperature > 0 ? o.temperature : train::default_temperature(method);
  const int64_t n = static_cast<int64_t>(images.size());
  std::vector<Identified> out(images.size());
  if (n == 0) return out;
  for (const at::Tensor& img : images) {
    CLR_CHECK(img.dim() == 3 && img.size(2) == 3 && img.scalar_type() == torch::kByte, ConfigError,
              "expected decoded images uint8 [H, W, 3], got ", clr::describe(img));
  }
  Impl& m = *impl_;
  std::vector<std::string> names;
  at::Tensor scores;                      // [N, T] on the CPU
  at::Tensor whole;                       // gaussian: task-gaussian's scores too, for the confidence
  std::vector<std::vector<at::Tensor>> pair_logits;  // energy, max-softmax: [N][T] logits
  if (!train::uses_heads(method)) {
    const std::shared_ptr<const MapperIndex> index = m.mapper();
    names = index->names;
    const auto t_count = static_cast<int64_t>(names.size());
    scores = torch::empty({n, t_count});
    whole = torch::empty({n, t_count});
    for (const auto& g : index->groups) {
      std::vector<at::Tensor> x;
      for (const at::Tensor& img : images) x.push_back(apply_preprocess(g.pre, img));
      const at::Tensor features = m.shared_features(torch::stack(x), g.pre);
      const at::Tensor index_of = torch::tensor(g.tasks);
      whole.index_copy_(1, index_of, g.whole.scores(features).to(torch::kCPU));
      if (method == train::TaskInference::kGaussian) {
        scores.index_copy_(1, index_of, g.classes.scores(features).to(torch::kCPU));
      }
    }
    if (method == train::TaskInference::kTaskGaussian) {
      scores = whole;
      whole = at::Tensor();
    }
  } else {
    for (const auto& e : tasks()) names.push_back(e.name);
    CLR_CHECK(!names.empty(), NotFoundError, "store '", m.options.store_dir, "' has no task to choose from");
    const int64_t t_count = static_cast<int64_t>(names.size());
    // Every (image, task) pair, in mixed batches of at most kPairs pairs of one input size.
    constexpr int64_t kPairs = 256;
    std::map<int64_t, std::vector<std::pair<int64_t, int64_t>>> by_size;  // input size -> (image, task)
    for (int64_t t = 0; t < t_count; ++t) {
      const int64_t size = m.get(names[static_cast<size_t>(t)])->meta.preprocess.input_size();
      for (int64_t i = 0; i < n; ++i) by_size[size].push_back({i, t});
    }
    pair_logits.assign(images.size(), std::vector<at::Tensor>(names.size()));
    scores = torch::empty({n, t_count});
    for (const auto& [size, pairs] : by_size) {
      for (size_t a = 0; a < pairs.size(); a += kPairs) {
        const size_t b = std::min(pairs.size(), a + kPairs);
        std::vector<std::string> batch_tasks;
        std::vector<at::Tensor> x;
        for (size_t p = a; p < b; ++p) {
          batch_tasks.push_back(names[static_cast<size_t>(pairs[p].second)]);
          x.push_back(preprocess(batch_tasks.back(), images[static_cast<size_t>(pairs[p].first)]));
        }
        const std::vector<at::Tensor> z = logits(batch_tasks, torch::stack(x));
        for (size_t p = a; p < b; ++p) {
          const auto [i, t] = pairs[p];
          pair_logits[static_cast<size_t>(i)][static_cast<size_t>(t)] = z[p - a];
          scores[i][t] = train::head_scores(method, z[p - a].unsqueeze(0))[0];
        }
      }
    }
  }
  // Tasks ranked by score; each with its confidence (for gaussian the smaller of its
  // class mixture's and task-gaussian's: train::mapper_confidences).
  const at::Tensor conf = whole.defined() ? train::mapper_confidences(scores, whole, temperature)
                                          : train::task_confidences(scores, temperature);
  const int64_t shown = std::min<int64_t>(o.top_tasks, conf.size(1));
  const at::Tensor best_task = std::get<1>(scores.topk(shown, 1));
  const at::Tensor best_conf = conf.gather(1, best_task);
  std::vector<int64_t> chosen;  // images with a task
  for (int64_t i = 0; i < n; ++i) {
    Identified& r = out[static_cast<size_t>(i)];
    for (int64_t k = 0; k < shown; ++k) {
      const int64_t t = best_task[i][k].item<int64_t>();
      r.tasks.push_back({names[static_cast<size_t>(t)], best_conf[i][k].item<float>(), scores[i][t].item<float>()});
    }
    r.confidence = r.tasks.front().confidence;
    if (r.confidence >= o.threshold) {
      r.task = r.tasks.front().task;
      chosen.push_back(i);
    }
  }
  if (train::uses_heads(method)) {  // the chosen task's logits are there already
    for (int64_t i : chosen) {
      Identified& r = out[static_cast<size_t>(i)];
      const int64_t t = best_task[i][0].item<int64_t>();
      const auto classes = m.get(*r.task)->meta.classes;
      const at::Tensor p = torch::softmax(pair_logits[static_cast<size_t>(i)][static_cast<size_t>(t)], 0);
      const auto top = p.topk(std::min<int64_t>(o.top_k, p.size(0)));
      for (int64_t j = 0; j < std::get<0>(top).size(0); ++j) {
        const int64_t c = std::get<1>(top)[j].item<int64_t>();
        r.top.push_back({c, classes.at(static_cast<size_t>(c)), std::get<0>(top)[j].item<float>()});
      }
    }
    return out;
  }
  // One mixed forward per input size under the chosen tasks.
  std::map<int64_t, std::vector<int64_t>> by_size;
  for (int64_t i : chosen) by_size[m.get(*out[static_cast<size_t>(i)].task)->meta.preprocess.input_size()].push_back(i);
  for (const auto& [size, members] : by_size) {
    std::vector<std::string> batch_tasks;
    std::vector<at::Tensor> x;
    for (int64_t i : members) {
      batch_tasks.push_back(*out[static_cast<size_t>(i)].task);
      x.push_back(preprocess(batch_tasks.back(), images[static_cast<size_t>(i)]));
    }
    std::vector<std::vector<TopClass>> top = predict(batch_tasks, torch::stack(x), o.top_k);
    for (size_t k = 0; k < members.size(); ++k) out[static_cast<size_t>(members[k])].top = std::move(top[k]);
  }
  return out;
}

void Engine::identify_files(const std::vector<std::string>& paths, const IdentifyOptions& options, int64_t batch,
                            const std::function<void(const std::string& path, const Identified& answer,
                                                     const std::string& error)>& each) {
  train::parse_task_inference(options.method);  // a bad name before any file is read
  over_files<Identified>(
      paths, batch, [](const std::string& path) { return data::read_image(path); },
      [&](const std::vector<at::Tensor>& images) { return identify(images, options); },
      [&](const std::string& path, const Identified* answer, const std::string& error) {
        each(path, answer ? *answer : Identified{}, error);
      });
}

}  // namespace clr::serve
