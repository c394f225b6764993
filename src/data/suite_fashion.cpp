// Suite task family: Fashion-MNIST (dataset-fashion-mnist), each image an asset,
// recoloured on random backgrounds; the dataset's own test images are the test split.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/path.h"
#include "clr/core/strings.h"
#include "clr/data/sources.h"
#include "detail/suite_recipe.h"

namespace clr::data::suite_internal {
namespace {

struct FashionData {
  Split train, test;
};

std::shared_ptr<FashionData> fashion(SuiteContext& ctx) {
  ctx.package("dataset-fashion-mnist");
  static std::map<std::string, std::shared_ptr<FashionData>> cache;
  const std::string dir = ctx.path("/usr/share/datasets/fashion-mnist/");
  auto& d = cache[dir];
  if (!d) {
    d = std::make_shared<FashionData>();
    d->train.images = read_idx_images(dir + "train-images-idx3-ubyte.gz");
    d->train.labels = read_idx_labels(dir + "train-labels-idx1-ubyte.gz");
    d->test.images = read_idx_images(dir + "t10k-images-idx3-ubyte.gz");
    d->test.labels = read_idx_labels(dir + "t10k-labels-idx1-ubyte.gz");
  }
  return d;
}

const char* kFashionNames[10] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                 "sandal",  "shirt",   "sneaker",  "bag",   "ankle-boot"};

SuiteRecipe fashion_task(const std::string& name, const std::string& description, std::vector<int64_t> labels,
                         int64_t per_class) {
  SuiteRecipe r;
  r.info = {name, "fashion", description, {"dataset-fashion-mnist"}};
  r.collect = [labels, per_class](SuiteContext& ctx, std::vector<std::string>& classes, std::vector<SuiteAsset>& assets) {
    const auto data = fashion(ctx);
    for (int64_t l : labels) classes.push_back(kFashionNames[l]);
    // Each image is its own asset; the dataset's own test images are the test split.
    for (int split : {0, 2}) {
      const Split& s = split == 0 ? data->train : data->test;
      std::vector<int64_t> taken(labels.size(), 0);
      const int64_t cap = split == 0 ? per_class : std::max<int64_t>(per_class / 3, 20);
      for (size_t i = 0; i < s.labels.size(); ++i) {
        const auto it = std::find(labels.begin(), labels.end(), s.labels[i]);
        if (it == labels.end()) continue;
        const auto c = static_cast<size_t>(it - labels.begin());
        if (taken[c]++ >= cap) continue;
        SuiteAsset a;
        a.cls = static_cast<int64_t>(c);
        a.group = detail::concat(split == 0 ? "train#" : "t10k#", i);
        a.key = a.group;
        a.split = split == 0 ? -2 : 2;  // -2: train or val, decided by the builder
        const at::Tensor img = s.images[static_cast<int64_t>(i)];
        a.load = [img] { return std::vector<at::Tensor>{img.squeeze(-1).to(torch::kFloat).div(255.0f)}; };
        assets.push_back(std::move(a));
      }
    }
  };
  r.draw = [](int64_t, const std::vector<const std::vector<at::Tensor>*>& pool, size_t pick, Rng& rng, int64_t size, std::vector<size_t>&) {
    at::Tensor mask = (*pool[pick])[0];
    if (rng.chance(0.5)) mask = mask.flip({1});
    return draw_mask(mask, rng, size, 0.7, 1.0, 0.15);
  };
  return r;
}

}  // namespace

void add_fashion_recipes(RecipeBook& book) {
  std::vector<SuiteRecipe>& out = book.suite;
  // ---- Fashion-MNIST (dataset-fashion-mnist), each image an asset, its own test set
  // Enough source images per class for a full-scale suite to draw each training image
  // from its own (train + val assets; a third as many test assets).
  out.push_back(fashion_task("fashion-tops", "t-shirt, pullover, coat or shirt (Fashion-MNIST, recoloured)", {0, 2, 4, 6}, 400));
  out.push_back(fashion_task("fashion-other", "trouser, dress, sandal, sneaker, bag or ankle boot (Fashion-MNIST, recoloured)",
                             {1, 3, 5, 7, 8, 9}, 350));
}

}  // namespace clr::data::suite_internal
