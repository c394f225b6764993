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
#include "detail/engine_impl.h"

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

namespace {

using engine_detail::apply_preprocess;
using engine_detail::over_files;

Kind kind_of(const std::string& variant) {
  if (variant == "clr" || variant == "clr-full") return Kind::kClr;
  if (variant == "residual") return Kind::kResidual;
  if (variant == "linear") return Kind::kLinear;
  throw IncompatibleError(detail::concat("variant '", variant, "' cannot be served"));
}

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
