#include "clr/train/methods/replay.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/log.h"
#include "clr/data/image.h"
#include "clr/data/loader.h"
#include "clr/train/task_states.h"

namespace clr::train {

// ---------------------------------------------------------------- ReplayBuffer

ReplayBuffer::ReplayBuffer(int64_t capacity, int64_t logit_width, uint64_t seed)
    : capacity_(capacity), logit_width_(logit_width), rng_(seed * 1000003ull + 29) {
  CLR_CHECK(capacity_ >= 0, ConfigError, "the replay buffer size must be >= 0, got ", capacity_);
}

std::vector<std::pair<int64_t, int64_t>> ReplayBuffer::offer(const at::Tensor& images, const at::Tensor& labels,
                                                              int64_t task) {
  CLR_ASSERT(images.dim() == 4 && images.scalar_type() == at::kByte, "replay images must be uint8 [N,3,S,S]");
  CLR_ASSERT(labels.size(0) == images.size(0), "one label per image");
  std::map<int64_t, int64_t> written;  // slot -> index into images
  for (int64_t i = 0; i < images.size(0); ++i) {
    const int64_t n = seen_++;
    if (capacity_ == 0) continue;
    int64_t slot = n;
    if (n >= capacity_) {
      slot = static_cast<int64_t>(rng_() % static_cast<uint64_t>(n + 1));
      if (slot >= capacity_) continue;
    }
    written[slot] = i;
  }
  if (written.empty()) return {};
  if (!images_.defined()) {
    images_ = torch::zeros({capacity_, images.size(1), images.size(2), images.size(3)}, torch::kUInt8);
    labels_ = torch::zeros({capacity_}, torch::kLong);
    tasks_ = torch::zeros({capacity_}, torch::kLong);
    if (logit_width_ > 0) logits_ = torch::zeros({capacity_, logit_width_}, torch::kFloat);
  }
  CLR_CHECK(images.sizes().slice(1) == images_.sizes().slice(1), ConfigError,
            "replayed images must all have one size; the buffer holds ", describe(images_), ", offered ",
            describe(images));
  std::vector<int64_t> slots, index;
  for (const auto& [s, i] : written) {
    slots.push_back(s);
    index.push_back(i);
  }
  const at::Tensor s = torch::tensor(slots, torch::kLong), ix = torch::tensor(index, torch::kLong);
  images_.index_copy_(0, s, images.to(torch::kCPU).index_select(0, ix));
  labels_.index_copy_(0, s, labels.to(torch::kCPU, torch::kLong).index_select(0, ix));
  tasks_.index_fill_(0, s, task);
  if (logits_.defined()) logits_.index_fill_(0, s, 0.0);
  filled_ = std::min(seen_, capacity_);
  return {written.begin(), written.end()};
}

void ReplayBuffer::set_logits(const std::vector<int64_t>& slots, const at::Tensor& logits) {
  CLR_ASSERT(logits_.defined(), "this buffer stores no logits");
  CLR_ASSERT(logits.size(0) == static_cast<int64_t>(slots.size()) && logits.size(1) <= logit_width_,
             "logits do not fit the buffer");
  const at::Tensor s = torch::tensor(slots, torch::kLong);
  at::Tensor padded = torch::zeros({logits.size(0), logit_width_}, torch::kFloat);
  padded.narrow(1, 0, logits.size(1)).copy_(logits.detach().to(torch::kCPU, torch::kFloat));
  logits_.index_copy_(0, s, padded);
}

std::vector<int64_t> ReplayBuffer::sample(int64_t k) {
  const int64_t m = size();
  std::vector<int64_t> all(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) all[static_cast<size_t>(i)] = i;
  k = std::min(k, m);
  for (int64_t i = 0; i < k; ++i) {  // partial Fisher-Yates
    const auto j = i + static_cast<int64_t>(rng_() % static_cast<uint64_t>(m - i));
    std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(j)]);
  }
  all.resize(static_cast<size_t>(k));
  return all;
}

at::Tensor ReplayBuffer::images() const { return images_.defined() ? images_.narrow(0, 0, filled_) : at::Tensor(); }
at::Tensor ReplayBuffer::labels() const { return labels_.defined() ? labels_.narrow(0, 0, filled_) : at::Tensor(); }
at::Tensor ReplayBuffer::tasks() const { return tasks_.defined() ? tasks_.narrow(0, 0, filled_) : at::Tensor(); }
at::Tensor ReplayBuffer::logits() const { return logits_.defined() ? logits_.narrow(0, 0, filled_) : at::Tensor(); }

TensorMap ReplayBuffer::state() const {
  if (empty()) return {};
  TensorMap s{{"buffer.images", images().clone()},
              {"buffer.labels", labels().clone()},
              {"buffer.tasks", tasks().clone()},
              {"buffer.seen", torch::tensor({seen_}, torch::kLong)}};
  if (logits_.defined()) s.emplace("buffer.logits", logits().clone());
  return s;
}

TensorMap ReplayBuffer::rng_state() const {
  std::ostringstream os;
  os << rng_;
  const std::string text = os.str();
  return {{"buffer.rng", torch::tensor(std::vector<uint8_t>(text.begin(), text.end()), torch::kUInt8)}};
}

void ReplayBuffer::load_rng_state(const TensorMap& state) {
  const auto it = state.find("buffer.rng");
  CLR_CHECK(it != state.end(), ConfigError, "the checkpoint has no replay buffer generator ('buffer.rng')");
  const at::Tensor t = it->second.to(torch::kCPU).contiguous();
  CLR_CHECK(t.scalar_type() == torch::kUInt8 && t.dim() == 1, ConfigError, "checkpoint tensor 'buffer.rng' is ",
            describe(t), ", not the generator's text (uint8)");
  std::istringstream is(std::string(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()), t.numel()));
  std::mt19937_64 rng;
  is >> rng;
  CLR_CHECK(!is.fail(), ConfigError, "checkpoint tensor 'buffer.rng' is not a generator's state");
  rng_ = rng;
}

TensorMap ReplayBuffer::checkpoint() const {
  TensorMap s = state();
  s.merge(rng_state());
  return s;
}

void ReplayBuffer::resume(TensorMap& state) {
  load_rng_state(state);
  state.erase("buffer.rng");
  const auto get = [&](const char* key) {  // taken out of `state`
    const auto it = state.find(key);
    if (it == state.end()) return at::Tensor();
    const at::Tensor t = it->second.to(torch::kCPU);
    state.erase(it);
    return t;
  };
  const at::Tensor images = get("buffer.images"), labels = get("buffer.labels"), tasks = get("buffer.tasks"),
                   seen = get("buffer.seen"), logits = get("buffer.logits");
  images_ = labels_ = tasks_ = logits_ = at::Tensor();
  filled_ = seen_ = 0;
  if (!images.defined()) return;
  const int64_t m = images.dim() == 4 ? images.size(0) : -1;
  CLR_CHECK(m >= 1 && m <= capacity_ && images.scalar_type() == torch::kUInt8 && labels.defined() &&
                tasks.defined() && seen.defined() && labels.sizes() == at::IntArrayRef{m} &&
                tasks.sizes() == at::IntArrayRef{m} && seen.numel() == 1 &&
                logits.defined() == (logit_width_ > 0) &&
                (!logits.defined() || logits.sizes() == at::IntArrayRef({m, logit_width_})),
            ConfigError, "the checkpoint's replay buffer (", describe(images), ") does not fit a buffer of ",
            capacity_, " images", logit_width_ > 0 ? detail::concat(" with ", logit_width_, " logits each") : "");
  seen_ = seen.to(torch::kLong).item<int64_t>();
  CLR_CHECK(std::min(seen_, capacity_) == m, ConfigError, "the checkpoint's replay buffer holds ", m,
            " images after ", seen_, " offered, not ", std::min(seen_, capacity_));
  filled_ = m;
  images_ = torch::zeros({capacity_, images.size(1), images.size(2), images.size(3)}, torch::kUInt8);
  images_.narrow(0, 0, m).copy_(images);
  labels_ = torch::zeros({capacity_}, torch::kLong);
  labels_.narrow(0, 0, m).copy_(labels);
  tasks_ = torch::zeros({capacity_}, torch::kLong);
  tasks_.narrow(0, 0, m).copy_(tasks);
  if (logit_width_ > 0) {
    logits_ = torch::zeros({capacity_, logit_width_}, torch::kFloat);
    logits_.narrow(0, 0, m).copy_(logits);
  }
}

// ---------------------------------------------------------------- ER / DER++

void ReplayOptions::validate() const {
  CLR_CHECK(buffer >= 0, ConfigError, "the replay buffer (--buffer) must be >= 0 images, got ", buffer);
  CLR_CHECK(batch >= 0, ConfigError, "the replay batch (--replay-batch) must be >= 0, got ", batch);
  CLR_CHECK(alpha >= 0 && beta >= 0 && std::isfinite(alpha) && std::isfinite(beta), ConfigError,
            "derpp alpha and beta (--derpp-alpha, --derpp-beta) must be finite and >= 0, got ",
            alpha, " and ", beta);
}

namespace {
int64_t checked_buffer(const ReplayOptions& o) {
  o.validate();
  return o.buffer;
}
}  // namespace

ReplayMethod::ReplayMethod(models::ResNet backbone, int64_t backbone_params_with_fc, int64_t max_classes,
                           ReplayOptions options)
    : FinetuneMethod(std::move(backbone), FinetuneKind::kSgd, backbone_params_with_fc, max_classes),
      options_(options),
      buffer_(checked_buffer(options), options.derpp ? max_classes : 0, options.seed) {
  CLR_CHECK(!options_.derpp || max_classes >= 2, ConfigError, "derpp needs the widest task's class count");
}

std::vector<int64_t> ReplayMethod::replayed_tasks() const {
  std::vector<int64_t> out;
  if (buffer_.empty()) return out;
  const at::Tensor tasks = buffer_.tasks().contiguous();  // int64, CPU
  const std::set<int64_t> present(tasks.data_ptr<int64_t>(), tasks.data_ptr<int64_t>() + tasks.numel());
  return {present.begin(), present.end()};
}

std::vector<at::Tensor> ReplayMethod::trainable_parameters() {
  std::vector<at::Tensor> out = FinetuneMethod::trainable_parameters();
  // Old heads train only through replayed samples; a task the reservoir left out keeps
  // its head exactly (the recipe's L2 penalty would otherwise drift it under Adam).
  for (int64_t j : replayed_tasks()) {
    for (auto& p : head_of(j)->parameters()) out.push_back(p);
  }
  return out;
}

TensorMap ReplayMethod::snapshot() {
  TensorMap s = FinetuneMethod::snapshot();
  for (int64_t j : replayed_tasks()) {
    for (const auto& item : head_of(j)->named_parameters()) {
      s.emplace(detail::concat("heads.", j, ".", item.key()), item.value().detach().clone());
    }
  }
  return s;
}

void ReplayMethod::restore(const TensorMap& state) {
  TensorMap own;
  torch::NoGradGuard ng;
  for (const auto& [k, v] : state) {
    if (k.rfind("heads.", 0) != 0) {
      own.emplace(k, v);
      continue;
    }
    const size_t dot = k.find('.', 6);
    const int64_t j = std::stoll(k.substr(6, dot - 6));
    head_of(j)->named_parameters()[k.substr(dot + 1)].copy_(v);
  }
  FinetuneMethod::restore(own);
}

at::Tensor ReplayMethod::device_index(const std::vector<int64_t>& slots) const {
  return to_device_async(torch::tensor(slots, torch::kLong), device());
}

ReplayMethod::OwnLogits ReplayMethod::own_task_logits(const at::Tensor& features,
                                                      const std::vector<int64_t>& slots) const {
  const at::Tensor tasks = buffer_.tasks().contiguous(), labels = buffer_.labels().contiguous();  // int64, host
  const int64_t* task_of = tasks.data_ptr<int64_t>();
  const int64_t* label_of = labels.data_ptr<int64_t>();
  std::map<int64_t, int64_t> offset_of;  // task -> its first column
  for (int64_t slot : slots) offset_of.emplace(task_of[slot], 0);
  std::vector<at::Tensor> weights, biases;
  int64_t columns = 0;
  for (auto& [task, offset] : offset_of) {
    offset = columns;
    columns += classes_of(task);
    const torch::nn::Linear& head = head_of(task);
    weights.push_back(head->weight);
    biases.push_back(head->bias);
  }
  const auto n = static_cast<int64_t>(slots.size());
  at::Tensor plan = torch::empty({3, n}, torch::kLong);  // first column, class count, target column
  auto p = plan.accessor<int64_t, 2>();
  OwnLogits out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = slots[static_cast<size_t>(i)], task = task_of[slot];
    p[0][i] = offset_of.at(task);
    p[1][i] = classes_of(task);
    p[2][i] = p[0][i] + label_of[slot];
    out.columns_used += p[1][i];
  }
  const at::Tensor on = to_device_async(plan, device());
  out.first = on[0];
  out.classes = on[1];
  out.target = on[2];
  out.logits = torch::nn::functional::linear(features, torch::cat(weights), torch::cat(biases));
  return out;
}

at::Tensor ReplayMethod::replay_images(const std::vector<int64_t>& slots) const {
  CLR_ASSERT(device_images_.defined(), "the buffer's images are not on the device");
  at::Tensor x = device_images_.index_select(0, device_index(slots));
  const int64_t full = x.size(2), crop = options_.crop;
  if (crop > 0 && crop < full) {
    const int64_t o = (full - crop) / 2;  // centred, as the loader's evaluation crops
    x = x.slice(2, o, o + crop).slice(3, o, o + crop);
  }
  return data::normalize(x);
}

at::Tensor ReplayMethod::replay_cross_entropy(const at::Tensor& features, const std::vector<int64_t>& slots,
                                              bool sum) const {
  // Every sample through its own task's head: one product with all the heads
  // involved, the other tasks' columns masked out (-inf adds nothing to a softmax).
  const OwnLogits o = own_task_logits(features, slots);
  const at::Tensor column = torch::arange(o.logits.size(1), o.first.options()).unsqueeze(0);
  const at::Tensor other = column.lt(o.first.unsqueeze(1)).logical_or(column.ge((o.first + o.classes).unsqueeze(1)));
  const at::Tensor masked = o.logits.masked_fill(other, -std::numeric_limits<float>::infinity());
  const at::Tensor total = torch::nn::functional::cross_entropy(
      masked, o.target, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  return sum ? total : total / static_cast<double>(slots.size());
}

at::Tensor ReplayMethod::loss(const at::Tensor& images, const at::Tensor& labels) {
  // Replay as many images as the largest training batch seen (a short first batch does not fix it).
  batch_size_ = options_.batch > 0 ? options_.batch : std::max(batch_size_, images.size(0));
  if (buffer_.empty()) return FinetuneMethod::loss(images, labels);
  if (!options_.derpp) {
    const std::vector<int64_t> slots = buffer_.sample(batch_size_);
    const int64_t b = images.size(0);
    const at::Tensor features = backbone_->features(torch::cat({images, replay_images(slots)}));
    const at::Tensor current = torch::nn::functional::cross_entropy(
        head_logits(current_task(), features.narrow(0, 0, b)), labels,
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    const at::Tensor replayed = replay_cross_entropy(features.narrow(0, b, features.size(0) - b), slots, true);
    return (current + replayed) / static_cast<double>(b + static_cast<int64_t>(slots.size()));
  }
  at::Tensor l = FinetuneMethod::loss(images, labels);
  // Logit matching on one draw: squared error over each sample's own task's logits.
  const std::vector<int64_t> s1 = buffer_.sample(batch_size_);
  const at::Tensor f1 = backbone_->features(replay_images(s1));
  const at::Tensor stored = device_logits_.index_select(0, device_index(s1));  // [R, widest task], zero-padded
  const OwnLogits o = own_task_logits(f1, s1);
  // Column c of each sample's own logits (c < its class count; the rest masked out).
  const at::Tensor c = torch::arange(stored.size(1), o.first.options()).unsqueeze(0);
  const at::Tensor valid = c.lt(o.classes.unsqueeze(1));
  const at::Tensor own = o.logits.gather(1, torch::where(valid, o.first.unsqueeze(1) + c, o.first.unsqueeze(1)));
  const at::Tensor sse = ((own - stored) * valid.to(stored.scalar_type())).pow(2).sum();
  const int64_t count = o.columns_used;
  // Cross-entropy on a second, independent draw.
  const std::vector<int64_t> s2 = buffer_.sample(batch_size_);
  const at::Tensor ce = replay_cross_entropy(backbone_->features(replay_images(s2)), s2, false);
  return l + options_.alpha * (sse / static_cast<double>(count)) + options_.beta * ce;
}

void ReplayMethod::end_task(const TaskEnd& end) {
  CLR_ASSERT(end.train != nullptr, "end_task needs the training split");
  const data::PreparedSplit& train = *end.train;
  const int64_t task = current_task();
  const auto written = buffer_.offer(train.images, train.labels, task);
  if (options_.derpp && !written.empty()) {
    std::vector<int64_t> slots, index;
    for (const auto& [s, i] : written) {
      slots.push_back(s);
      index.push_back(i);
    }
    const at::Tensor ix = torch::tensor(index, torch::kLong);
    data::PreparedSplit chosen;
    chosen.images = train.images.index_select(0, ix);
    chosen.labels = train.labels.index_select(0, ix);
    std::vector<at::Tensor> out;
    torch::NoGradGuard ng;
    for_each_eval_batch(chosen, end, end.batch_size,
                        [&](const at::Tensor& x, const at::Tensor&) { out.push_back(logits(task, x).to(torch::kCPU)); });
    buffer_.set_logits(slots, torch::cat(out));
  }
  upload_buffer();
  log::info("  ", name(), ": buffer holds ", buffer_.size(), "/", buffer_.capacity(), " images after ",
            buffer_.seen(), " offered");
  FinetuneMethod::end_task(end);
}

void ReplayMethod::upload_buffer() {
  device_images_ = buffer_.empty() ? at::Tensor() : buffer_.images().to(device());
  device_logits_ = buffer_.empty() || !options_.derpp ? at::Tensor() : buffer_.logits().to(device());
}

TensorMap ReplayMethod::checkpoint() const {
  TensorMap s = FinetuneMethod::checkpoint();
  s.merge(buffer_.checkpoint());
  s.emplace("replay.batch", torch::tensor({batch_size_}, torch::kLong));
  return s;
}

void ReplayMethod::resume(const std::vector<TaskInfo>& done, const TensorMap& state) {
  if (done.empty() && state.empty()) return;  // the run's first checkpoint: nothing learned yet
  TensorMap rest = resume_finetune(done, state);
  buffer_.resume(rest);
  batch_size_ = replay_batch(rest);
  rest.erase("replay.batch");
  check_all_taken(rest, name());
  upload_buffer();
}

TensorMap ReplayMethod::step_state() const {
  TensorMap s = buffer_.rng_state();
  s.emplace("replay.batch", torch::tensor({batch_size_}, torch::kLong));
  return s;
}

void ReplayMethod::load_step_state(const TensorMap& state) {
  buffer_.load_rng_state(state);
  batch_size_ = replay_batch(state);
}

int64_t ReplayMethod::replay_batch(const TensorMap& state) {
  const auto it = state.find("replay.batch");
  CLR_CHECK(it != state.end() && it->second.numel() == 1, ConfigError, "the checkpoint has no replay batch size");
  const int64_t batch = it->second.to(torch::kLong).item<int64_t>();
  CLR_CHECK(batch >= 0, ConfigError, "the checkpoint's replay batch size is ", batch);
  return batch;
}

}  // namespace clr::train
