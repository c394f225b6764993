#include "clr/serve/engine.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <array>
#include <list>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/log.h"
#include "clr/core/settings_io.h"
#include "clr/core/runtime.h"
#include "clr/core/torch_compat.h"
#include "clr/data/image.h"
#include "clr/models/registry.h"
#include "clr/models/resnet.h"
#include "clr/train/task_inference.h"
#include "clr/train/trainer.h"

namespace clr::serve {

template <class V>
void fields(V& v, EngineOptions& o) {
  v("store", o.store_dir);
  v("backbone", o.backbone_file);
  v("device", o.device);
  v("cache_bytes", o.cache_bytes);
  v("precision", o.precision);
  v("memory_format", o.memory_format);
}
CLR_SETTINGS_JSON(EngineOptions)

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
namespace {

// An image as a task with preprocessing `pre` takes it: uint8 [3, S, S].
at::Tensor apply_preprocess(const store::Preprocess& pre, const at::Tensor& hwc) {
  at::Tensor chw = data::resize_square(hwc, pre.resize);
  if (pre.crop > 0 && pre.crop < pre.resize) {
    const int64_t o = (pre.resize - pre.crop) / 2;
    chw = chw.slice(1, o, o + pre.crop).slice(2, o, o + pre.crop).contiguous();
  }
  return chw;
}

// What distinguishes two preprocessings (a map key).
std::string preprocess_key(const store::Preprocess& pre) {
  std::ostringstream key;
  key << pre.resize << "/" << pre.crop << std::hexfloat;
  for (int c = 0; c < 3; ++c) key << "/" << pre.mean[static_cast<size_t>(c)] << "," << pre.std[static_cast<size_t>(c)];
  return key.str();
}

// The gaussian task mapper over every task of the store as of one reload, its tasks
// grouped by preprocessing (each group's images go through the backbone once).
struct MapperIndex {
  int64_t generation = -1;
  std::vector<std::string> names;
  struct Group {
    store::Preprocess pre;
    std::vector<int64_t> tasks;  // indices into names
    train::TaskMapper classes;   // gaussian: the class mixtures
    train::TaskMapper whole;     // task-gaussian: one Gaussian per task
  };
  std::vector<Group> groups;
};

// Reads image files in batches: `load` turns a path into what `run` takes, `run` answers
// a batch, `each` reports every file in order (its answer, or the error's message).
// After the last file, when any failed, throws an error of the first failure's kind
// counting them.
template <class Answer>
void over_files(const std::vector<std::string>& paths, int64_t batch,
                const std::function<at::Tensor(const std::string&)>& load,
                const std::function<std::vector<Answer>(const std::vector<at::Tensor>&)>& run,
                const std::function<void(const std::string&, const Answer*, const std::string&)>& each) {
  CLR_CHECK(batch >= 1, ConfigError, "batch must be at least 1, got ", batch);
  const size_t step = static_cast<size_t>(batch);
  size_t failed = 0;
  std::exception_ptr first;
  for (size_t start = 0; start < paths.size(); start += step) {
    const size_t end = std::min(paths.size(), start + step);
    std::vector<at::Tensor> images;
    std::vector<std::string> errors(end - start);
    for (size_t i = start; i < end; ++i) {
      try {
        images.push_back(load(paths[i]));
        continue;
      } catch (const FormatError& e) {
        errors[i - start] = e.what();
        if (!first) first = std::current_exception();
      } catch (const NotFoundError& e) {
        errors[i - start] = e.what();
        if (!first) first = std::current_exception();
      }
      ++failed;
    }
    std::vector<Answer> answers;
    if (!images.empty()) answers = run(images);
    size_t k = 0;
    for (size_t i = start; i < end; ++i) {
      if (errors[i - start].empty()) {
        each(paths[i], &answers[k++], "");
      } else {
        each(paths[i], nullptr, errors[i - start]);
      }
    }
  }
  if (failed == 0) return;
  const std::string count = detail::concat(failed, " of ", paths.size(), " images could not be classified; the first: ");
  try {
    std::rethrow_exception(first);
  } catch (const NotFoundError& e) {
    throw NotFoundError(count + e.what());
  } catch (const FormatError& e) {
    throw FormatError(count + e.what());
  }
}

enum class Kind { kClr, kResidual, kLinear };

Kind kind_of(const std::string& variant) {
  if (variant == "clr" || variant == "clr-full") return Kind::kClr;
  if (variant == "residual") return Kind::kResidual;
  if (variant == "linear") return Kind::kLinear;
  throw IncompatibleError(detail::concat("variant '", variant, "' cannot be served"));
}

// One task, ready on the device. Per conv site (in the backbone's site order):
//   clr variants: `kernel` (the CLR kernel; undefined at sites without a CLR layer) and
//                 the task's BatchNorm `norm` = {weight, bias, running mean, running var};
//                 a mixed batch applies it as one eval-mode batch_norm over the folded
//                 [1, N*C, H, W] tensor with the per-sample vectors gathered to N*C,
//                 which computes each sample's per-channel scale and shift exactly as
//                 the sample alone would get them;
//   residual:     `kernel` is the 1x1 adapter [out, in, 1, 1]; BatchNorm is the backbone's;
//   linear:       nothing but the head.
struct Prepared {
  store::Adapter meta;  // tensors dropped
  std::string sha256;   // of the file, to notice replacements on reload
  Kind kind = Kind::kClr;
  std::vector<at::Tensor> kernel;
  std::vector<std::array<at::Tensor, 4>> norm;  // weight, bias, running_mean, running_var
  at::Tensor head_w, head_b;
  int64_t bytes = 0;
};

// The conv hook of a batch: which prepared task each sample uses.
class MixedHook : public models::ConvHook {
 public:
  MixedHook(const std::vector<const Prepared*>& tasks, const at::Tensor& sample_task, int64_t kernel_size,
            const std::vector<models::ConvSite>& sites)
      : tasks_(tasks), index_(sample_task), pad_(kernel_size / 2), sites_(sites), kind_(tasks.front()->kind) {}

  at::Tensor after_conv(size_t site, const at::Tensor& input, const at::Tensor& output) override {
    if (kind_ == Kind::kLinear) return output;
    const at::Tensor& k0 = tasks_.front()->kernel[site];
    if (!k0.defined()) return output;
    const int64_t n = output.size(0);
    if (kind_ == Kind::kClr) {
      const int64_t c = output.size(1);
      if (single()) return torch::conv2d(output, k0, {}, 1, pad_, 1, c);
      const at::Tensor k = gather(site, [](const Prepared& p, size_t s) { return p.kernel[s]; });  // [N, C, 1, k, k]
      // The batch folded into channels is a view of NCHW memory only: a channels-last
      // activation goes through NCHW for this convolution and comes back.
      const at::Tensor o = output.contiguous();
      const at::Tensor y = torch::conv2d(o.reshape({1, n * c, o.size(2), o.size(3)}),
                                         k.reshape({n * c, 1, k.size(3), k.size(4)}), {}, 1, pad_, 1, n * c)
                               .view_as(o);
      return y.contiguous(output.suggest_memory_format());
    }
    // Residual: the frozen conv's output plus a per-sample 1x1 conv of its input.
    const int64_t stride = sites_[site].stride;
    if (single()) return output + torch::conv2d(input, k0, {}, at::IntArrayRef{stride});
    const int64_t ci = input.size(1), co = output.size(1);
    const at::Tensor w = gather(site, [](const Prepared& p, size_t s) { return p.kernel[s]; });  // [N, out, in, 1, 1]
    const at::Tensor in = input.contiguous();  // folded: NCHW memory (a channels-last input is copied)
    at::Tensor r = torch::conv2d(in.reshape({1, n * ci, in.size(2), in.size(3)}), w.reshape({n * co, ci, 1, 1}), {},
                                 at::IntArrayRef{stride}, at::IntArrayRef{0}, at::IntArrayRef{1}, n);
    return output + r.view({n, co, output.size(2), output.size(3)});
  }

  at::Tensor norm(size_t site, torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) override {
    if (kind_ != Kind::kClr) return bn.forward(x);  // the backbone's own, eval mode
    const double eps = bn.options.eps();
    if (single()) {
      const auto& v = tasks_.front()->norm[site];
      return torch::batch_norm(x, v[0], v[1], v[2], v[3], false, 0.0, eps, true);
    }
    const int64_t n = x.size(0), c = x.size(1);
    std::array<at::Tensor, 4> g;
    for (size_t f = 0; f < 4; ++f) {
      g[f] = gather(site, [f](const Prepared& p, size_t s) { return p.norm[s][f]; }).reshape({n * c});
    }
    // One batch_norm over the batch folded into channels: a view of NCHW memory only (a
    // channels-last activation goes through NCHW and comes back).
    const at::Tensor o = x.contiguous();
    return torch::batch_norm(o.reshape({1, n * c, o.size(2), o.size(3)}), g[0], g[1], g[2], g[3], false, 0.0, eps, true)
        .view_as(o)
        .contiguous(x.suggest_memory_format());
  }

 private:
  bool single() const { return tasks_.size() == 1; }
  // The per-task tensors of a site stacked over the batch's tasks and gathered per sample.
  template <typename Get>
  at::Tensor gather(size_t site, Get get) const {
    std::vector<at::Tensor> parts;
    parts.reserve(tasks_.size());
    for (const Prepared* p : tasks_) parts.push_back(get(*p, site));
    return torch::stack(parts).index_select(0, index_);
  }

  const std::vector<const Prepared*>& tasks_;
  at::Tensor index_;
  int64_t pad_;
  const std::vector<models::ConvSite>& sites_;
  Kind kind_;
};

std::string stamp_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return detail::concat(st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, ":", st.st_size, ":", st.st_ino);
}

}  // namespace

struct Engine::Impl {
  EngineOptions options;
  c10::Device device{c10::kCPU};
  train::Numerics numerics;  // options.precision and memory_format on `device`
  mutable std::mutex mu;        // store, cache, generation and counters
  std::mutex forward_mu;        // one forward at a time
  std::mutex reload_mu;         // one reload at a time
  store::Store store;
  const store::BackboneRef backbone_ref;  // the store's, fixed for the engine's life
  int64_t generation = 0;                 // reloads so far
  models::ResNet backbone{nullptr};
  std::map<std::string, torch::nn::BatchNorm2dImpl*> norms;
  // LRU: most recently used at the front.
  std::list<std::string> lru;
  struct Entry {
    std::shared_ptr<const Prepared> task;
    std::list<std::string>::iterator pos;
  };
  std::map<std::string, Entry> cache;
  CacheStats stats;
  bool warned_budget = false;
  std::shared_ptr<const MapperIndex> mapper_index;  // under mu; rebuilt after a reload

  explicit Impl(const EngineOptions& o)
      : options(o), store(store::Store::open(o.store_dir)), backbone_ref(store.backbone()) {}

  std::shared_ptr<const Prepared> prepare(const store::Adapter& a, const std::string& sha) const;
  std::shared_ptr<const Prepared> get(const std::string& name);
  // One forward of a batch that may mix tasks (Engine::logits); `used`, when given,
  // receives the prepared task of each sample.
  std::vector<at::Tensor> forward(const std::vector<std::string>& tasks, const at::Tensor& images,
                                  std::vector<std::shared_ptr<const Prepared>>* used);
  void evict_to(int64_t budget);
  // The gaussian mappers over the store's tasks as of the last reload.
  std::shared_ptr<const MapperIndex> mapper();
  // Backbone features [N, F] (float, on the device) of uint8 images [N, 3, S, S] taken
  // as `pre` says, without any task's adapters.
  at::Tensor shared_features(const at::Tensor& images, const store::Preprocess& pre);
};

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

std::shared_ptr<const Prepared> Engine::Impl::prepare(const store::Adapter& a, const std::string& sha) const {
  auto p = std::make_shared<Prepared>();
  p->meta = a;
  p->meta.tensors.clear();
  p->sha256 = sha;
  p->kind = kind_of(a.variant);
  const std::string where = "task '" + a.task + "' (" + a.variant + ")";
  CLR_CHECK(a.backbone.arch == backbone_ref.arch, IncompatibleError, where, " was trained on ", a.backbone.arch,
            ", the engine's backbone is ", backbone_ref.arch);
  const auto& sites = backbone->conv_sites();
  const int64_t feature_dim = backbone->feature_dim();
  std::set<std::string> used = {"head.weight", "head.bias"};
  KeyMismatch diff;
  auto take = [&](const std::string& key, std::vector<int64_t> shape) -> at::Tensor {
    auto it = a.tensors.find(key);
    if (it == a.tensors.end()) {
      diff.missing.push_back(key);
      return {};
    }
    used.insert(key);
    if (it->second.sizes().vec() != shape) {
      diff.mismatched.push_back(detail::concat(key, " (got ", clr::describe(it->second), ")"));
      return {};
    }
    return it->second.to(torch::kFloat);
  };
  const size_t n = sites.size();
  p->kernel.assign(n, at::Tensor());
  p->norm.assign(n, {});
  for (size_t i = 0; i < n; ++i) {
    const models::ConvSite& s = sites[i];
    if (p->kind == Kind::kClr) {
      const bool adapted = a.variant == "clr-full" || s.kernel > 1;
      const int64_t c = s.out_channels;
      const std::string bn = "bn." + s.norm + ".";
      at::Tensor w = take(bn + "weight", {c}), b = take(bn + "bias", {c});
      at::Tensor mean = take(bn + "running_mean", {c}), var = take(bn + "running_var", {c});
      used.insert(bn + "num_batches_tracked");
      if (!w.defined() || !b.defined() || !mean.defined() || !var.defined()) continue;
      p->norm[i] = {w.to(device), b.to(device), mean.to(device), var.to(device)};
      if (adapted) {
        at::Tensor k = take("clr." + s.name + ".weight", {c, 1, a.kernel_size, a.kernel_size});
        if (k.defined()) p->kernel[i] = k.contiguous().to(device);
      }
    } else if (p->kind == Kind::kResidual) {
      at::Tensor k = take("residual." + s.name + ".weight", {s.out_channels, s.in_channels, 1, 1});
      if (k.defined()) p->kernel[i] = k.contiguous().to(device);
    }
  }
  for (const auto& kv : a.tensors) {
    if (!used.count(kv.first)) diff.unexpected.push_back(kv.first);
  }
  const at::Tensor& hw = a.tensors.at("head.weight");
  if (hw.size(1) != feature_dim) {
    diff.mismatched.push_back(detail::concat("head.weight (got ", clr::describe(hw), ", expected [K, ", feature_dim, "])"));
  }
  CLR_CHECK(diff.empty(), IncompatibleError, where, " does not fit the ", backbone_ref.arch, " backbone:",
            diff.summary());
  p->head_w = hw.to(torch::kFloat).contiguous().to(device);
  p->head_b = a.tensors.at("head.bias").to(torch::kFloat).to(device);
  int64_t bytes = p->head_w.nbytes() + p->head_b.nbytes();
  for (size_t i = 0; i < n; ++i) {
    if (p->kernel[i].defined()) bytes += static_cast<int64_t>(p->kernel[i].nbytes());
    for (const at::Tensor& t : p->norm[i]) {
      if (t.defined()) bytes += static_cast<int64_t>(t.nbytes());
    }
  }
  p->bytes = bytes;
  return p;
}

void Engine::Impl::evict_to(int64_t budget) {
  while (stats.bytes > budget && !lru.empty()) {
    const std::string victim = lru.back();
    lru.pop_back();
    auto it = cache.find(victim);
    stats.bytes -= it->second.task->bytes;
    cache.erase(it);
    ++stats.evictions;
  }
}

std::shared_ptr<const Prepared> Engine::Impl::get(const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(name);
    if (it != cache.end()) {
      lru.splice(lru.begin(), lru, it->second.pos);
      ++stats.hits;
      return it->second.task;
    }
    ++stats.misses;
  }
  // Load outside the lock (file reads and checksums), then insert.
  int64_t seen = 0;
  store::Store snapshot = [&] {
    std::lock_guard<std::mutex> lock(mu);
    seen = generation;
    return store;
  }();
  const store::TaskEntry* e = snapshot.find(name);
  CLR_CHECK(e != nullptr, NotFoundError, "no task '", name, "' in store '", snapshot.dir(), "'");
  std::shared_ptr<const Prepared> p = prepare(snapshot.load(name), e->sha256);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.task;  // another thread loaded it meanwhile
  if (generation != seen) {
    // A reload came in between: cache it only if the current manifest still has this
    // very file (else this request uses it, and the next one loads the new one).
    const store::TaskEntry* now = store.find(name);
    if (now == nullptr || now->sha256 != p->sha256) return p;
  }
  if (p->bytes > options.cache_bytes) {
    if (warned_budget) return p;
    warned_budget = true;
    log::warn("engine: task '", name, "' needs ", p->bytes, " bytes prepared, more than the whole cache budget of ",
              options.cache_bytes, "; such tasks are used without being cached (raise --cache-mb)");
    return p;
  }
  evict_to(options.cache_bytes - p->bytes);
  lru.push_front(name);
  cache.emplace(name, Entry{p, lru.begin()});
  stats.bytes += p->bytes;
  stats.entries = static_cast<int64_t>(cache.size());
  return p;
}

Engine::Engine(const EngineOptions& options) : impl_(std::make_unique<Impl>(options)) {
  Impl& m = *impl_;
  CLR_CHECK(options.cache_bytes > 0, ConfigError, "the adapter cache budget must be positive, got ",
            options.cache_bytes, " bytes");
  m.device = runtime::parse_device(options.device);
  m.numerics = train::inference_numerics(options.precision, options.memory_format, m.device, "serve");
  const store::BackboneRef& ref = m.backbone_ref;
  const std::string file = options.backbone_file.empty() ? ref.source : options.backbone_file;
  m.backbone = store::load_store_backbone(m.store, options.backbone_file);
  for (auto& p : m.backbone->parameters()) p.requires_grad_(false);
  m.backbone->eval();
  m.backbone->to(m.device);
  for (const auto& item : m.backbone->named_modules("", false)) {
    if (auto* bn = item.value()->as<torch::nn::BatchNorm2dImpl>()) m.norms[item.key()] = bn;
  }
  m.stats.budget = options.cache_bytes;
  log::info("engine: backbone ", ref.arch, ref.small_stem ? " (small stem)" : "", " from ", file, " on ",
            m.device.str(), " (", train::precision_name(m.numerics.autocast),
            m.numerics.channels_last ? ", channels-last" : "", "), ", m.store.tasks().size(), " tasks in ",
            options.store_dir);
}

Engine::~Engine() = default;

const store::BackboneRef& Engine::backbone() const { return impl_->backbone_ref; }
std::string Engine::device() const { return impl_->device.str(); }

std::vector<store::TaskEntry> Engine::tasks() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->store.tasks();
}

std::optional<store::TaskEntry> Engine::task(const std::string& name) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const store::TaskEntry* e = impl_->store.find(name);
  if (e == nullptr) return std::nullopt;
  return *e;
}

store::Adapter Engine::describe(const std::string& name) {
  const std::shared_ptr<const Prepared> p = impl_->get(name);
  return p->meta;
}

at::Tensor Engine::preprocess(const std::string& task, const at::Tensor& hwc) {
  const std::shared_ptr<const Prepared> p = impl_->get(task);  // held while its fields are read
  return apply_preprocess(p->meta.preprocess, hwc);
}

std::vector<at::Tensor> Engine::logits(const std::vector<std::string>& tasks, const at::Tensor& images) {
  return impl_->forward(tasks, images, nullptr);
}

std::vector<at::Tensor> Engine::Impl::forward(const std::vector<std::string>& tasks, const at::Tensor& images,
                                              std::vector<std::shared_ptr<const Prepared>>* used) {
  Impl& m = *this;
  CLR_CHECK(images.dim() == 4 && images.size(1) == 3 && images.scalar_type() == torch::kByte, ConfigError,
            "expected uint8 images [N, 3, S, S], got ", clr::describe(images));
  CLR_CHECK(static_cast<int64_t>(tasks.size()) == images.size(0), ConfigError, tasks.size(), " task names for ",
            images.size(0), " images");
  const int64_t n = images.size(0);
  std::vector<at::Tensor> out(static_cast<size_t>(n));
  if (n == 0) return out;
  // The batch's distinct tasks, then groups that can share one forward: the same
  // kind of adapter, input size and normalisation.
  std::vector<std::string> names;
  std::vector<std::shared_ptr<const Prepared>> prepared;
  std::vector<size_t> of(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    auto it = std::find(names.begin(), names.end(), tasks[static_cast<size_t>(i)]);
    if (it == names.end()) {
      names.push_back(tasks[static_cast<size_t>(i)]);
      prepared.push_back(m.get(names.back()));
      it = names.end() - 1;
    }
    of[static_cast<size_t>(i)] = static_cast<size_t>(it - names.begin());
  }
  for (size_t u = 0; u < prepared.size(); ++u) {
    CLR_CHECK(prepared[u]->meta.preprocess.input_size() == images.size(2) && images.size(2) == images.size(3),
              ConfigError, "task '", names[u], "' takes ", prepared[u]->meta.preprocess.input_size(), " px images, got ",
              images.size(2), "x", images.size(3));
  }
  auto group_key = [&](const Prepared& p) {  // the variant decides which sites carry kernels
    const auto& pre = p.meta.preprocess;
    std::ostringstream key;
    key << p.meta.variant << "/" << p.meta.kernel_size << std::hexfloat;
    for (int c = 0; c < 3; ++c) key << "/" << pre.mean[static_cast<size_t>(c)] << "," << pre.std[static_cast<size_t>(c)];
    return key.str();
  };
  std::map<std::string, std::vector<size_t>> groups;  // key -> distinct-task indices
  for (size_t u = 0; u < prepared.size(); ++u) groups[group_key(*prepared[u])].push_back(u);

  torch::NoGradGuard no_grad;
  std::lock_guard<std::mutex> forward_lock(m.forward_mu);
  for (const auto& [key, members] : groups) {
    std::vector<int64_t> rows, local;  // samples of this group, and their task index within it
    for (int64_t i = 0; i < n; ++i) {
      auto pos = std::find(members.begin(), members.end(), of[static_cast<size_t>(i)]);
      if (pos == members.end()) continue;
      rows.push_back(i);
      local.push_back(pos - members.begin());
    }
    std::vector<const Prepared*> group_tasks;
    for (size_t u : members) group_tasks.push_back(prepared[u].get());
    const Prepared& first = *group_tasks.front();
    const bool whole = static_cast<int64_t>(rows.size()) == n;
    at::Tensor x = whole ? images : images.index_select(0, torch::tensor(rows));
    const float mean[3] = {first.meta.preprocess.mean[0], first.meta.preprocess.mean[1], first.meta.preprocess.mean[2]};
    const float sd[3] = {first.meta.preprocess.std[0], first.meta.preprocess.std[1], first.meta.preprocess.std[2]};
    // Channels-last for a batch of one task only. A mixed batch folds its samples into
    // channels at every adapted site, which needs NCHW memory: in channels-last each
    // fold costs two copies (measured on an H100: 64 tasks at 43% of one task's rate
    // in channels-last, 81% in NCHW). The backbone's weights stay NCHW, so each
    // convolution takes the layout of its input.
    x = data::normalize(x.to(m.device), mean, sd);
    if (m.numerics.channels_last && group_tasks.size() == 1) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor index = torch::tensor(local).to(m.device);
    MixedHook hook(group_tasks, index, first.meta.kernel_size, m.backbone->conv_sites());
    const at::Tensor features = [&] {
      const models::ScopedConvHook attached(*m.backbone, &hook);
      const compat::AutocastGuard autocast(m.device.type(), m.numerics.autocast);
      return m.backbone->features(x).to(torch::kFloat);  // the heads in fp32
    }();
    // Heads: each task's rows of the features through its own linear layer. The rows
    // are put in task order with one gather, each task's block goes through its head
    // into one [rows, max K] tensor, and that comes back to the host in one copy (no
    // per-task transfers or synchronisations on a GPU).
    std::vector<int64_t> order, starts{0};
    for (size_t t = 0; t < group_tasks.size(); ++t) {
      for (size_t r = 0; r < rows.size(); ++r) {
        if (local[r] == static_cast<int64_t>(t)) order.push_back(static_cast<int64_t>(r));
      }
      starts.push_back(static_cast<int64_t>(order.size()));
    }
    int64_t kmax = 0;
    for (const Prepared* p : group_tasks) kmax = std::max(kmax, p->head_w.size(0));
    const at::Tensor sorted = group_tasks.size() == 1 ? features : features.index_select(0, torch::tensor(order).to(m.device));
    at::Tensor y = torch::zeros({static_cast<int64_t>(rows.size()), kmax}, sorted.options());
    for (size_t t = 0; t < group_tasks.size(); ++t) {
      const int64_t a = starts[t], len = starts[t + 1] - a;
      const Prepared& p = *group_tasks[t];
      y.narrow(0, a, len).narrow(1, 0, p.head_w.size(0)).copy_(torch::addmm(p.head_b, sorted.narrow(0, a, len), p.head_w.t()));
    }
    const at::Tensor host = y.to(torch::kCPU);
    for (size_t t = 0; t < group_tasks.size(); ++t) {
      const int64_t k = group_tasks[t]->head_w.size(0);
      for (int64_t j = starts[t]; j < starts[t + 1]; ++j) {
        out[static_cast<size_t>(rows[static_cast<size_t>(order[static_cast<size_t>(j)])])] = host[j].narrow(0, 0, k).clone();
      }
    }
  }
  if (used != nullptr) {  // the very versions that computed each sample
    used->clear();
    for (int64_t i = 0; i < n; ++i) used->push_back(prepared[of[static_cast<size_t>(i)]]);
  }
  return out;
}

std::vector<std::vector<TopClass>> Engine::predict(const std::vector<std::string>& tasks, const at::Tensor& images,
                                                   int64_t top_k) {
  CLR_CHECK(top_k >= 1, ConfigError, "top_k must be at least 1, got ", top_k);
  std::vector<std::shared_ptr<const Prepared>> used;
  const std::vector<at::Tensor> z = impl_->forward(tasks, images, &used);
  std::vector<std::vector<TopClass>> out;
  out.reserve(z.size());
  for (size_t i = 0; i < z.size(); ++i) {
    const auto& classes = used[i]->meta.classes;
    const at::Tensor p = torch::softmax(z[i], 0);
    const int64_t k = std::min<int64_t>(top_k, p.size(0));
    const auto top = p.topk(k);
    const at::Tensor values = std::get<0>(top), indices = std::get<1>(top);
    std::vector<TopClass> row;
    for (int64_t j = 0; j < k; ++j) {
      TopClass c;
      c.index = indices[j].item<int64_t>();
      c.name = classes.at(static_cast<size_t>(c.index));
      c.prob = values[j].item<float>();
      row.push_back(c);
    }
    out.push_back(std::move(row));
  }
  return out;
}

void Engine::predict_files(
    const std::string& task, const std::vector<std::string>& paths, int64_t top_k, int64_t batch,
    const std::function<void(const std::string& path, const std::vector<TopClass>& top, const std::string& error)>&
        each) {
  CLR_CHECK(this->task(task).has_value(), NotFoundError, "store '", impl_->options.store_dir, "' has no task '", task,
            "' (clr tasks list --store ", impl_->options.store_dir, ")");
  CLR_CHECK(top_k >= 1, ConfigError, "top_k must be at least 1, got ", top_k);
  using Top = std::vector<TopClass>;
  over_files<Top>(
      paths, batch, [&](const std::string& path) { return preprocess(task, data::read_image(path)); },
      [&](const std::vector<at::Tensor>& images) {
        return predict(std::vector<std::string>(images.size(), task), torch::stack(images), top_k);
      },
      [&](const std::string& path, const Top* top, const std::string& error) { each(path, top ? *top : Top{}, error); });
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

size_t Engine::reload() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> one(m.reload_mu);
  store::Store fresh = store::Store::open(m.options.store_dir);
  CLR_CHECK(fresh.backbone().fingerprint == m.backbone_ref.fingerprint, IncompatibleError, "store '",
            m.options.store_dir, "' now holds tasks for backbone ", fresh.backbone().fingerprint,
            ", not the one this engine serves (", m.backbone_ref.fingerprint, "); restart to serve it");
  std::lock_guard<std::mutex> lock(m.mu);
  ++m.generation;
  for (auto it = m.cache.begin(); it != m.cache.end();) {
    const store::TaskEntry* e = fresh.find(it->first);
    if (e == nullptr || e->sha256 != it->second.task->sha256) {
      m.stats.bytes -= it->second.task->bytes;
      m.lru.erase(it->second.pos);
      it = m.cache.erase(it);
    } else {
      ++it;
    }
  }
  m.stats.entries = static_cast<int64_t>(m.cache.size());
  m.store = std::move(fresh);
  return m.store.tasks().size();  // under the lock
}

CacheStats Engine::cache_stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  CacheStats s = impl_->stats;
  s.entries = static_cast<int64_t>(impl_->cache.size());
  return s;
}

std::string Engine::manifest_stamp() const { return stamp_of(impl_->options.store_dir + "/manifest.json"); }

}  // namespace clr::serve
