// The fine-tuning baselines behind the Method interface, through the real runner.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/hash.h"
#include "clr/core/progress.h"
#include "clr/core/safetensors.h"
#include "clr/data/synthetic.h"
#include "clr/eval/runner.h"
#include "clr/models/registry.h"
#include "clr/train/methods/finetune.h"
#include "test_util.h"

namespace clr {
namespace {

data::Sequence two_tasks() {
  data::Sequence seq;
  for (int t = 0; t < 2; ++t) {
    data::ShapesOptions o;
    o.classes = t == 0 ? 3 : 5;
    o.train_per_class = 8;
    o.val_per_class = 2;
    o.test_per_class = 4;
    o.size = 16;
    o.seed = 10 + t;
    data::TaskData task = data::make_shapes_task(o);
    task.name = "t" + std::to_string(t);
    seq.push_back(task);
  }
  return seq;
}

eval::Results run(train::Method& m, const std::string& out) {
  eval::RunOptions o;
  o.train.epochs = 2;
  o.train.batch_size = 8;
  o.train.lr = 1e-2;
  o.prepare.size = 16;
  o.out_dir = out;
  o.backbone_arch = "resnet18";
  o.device = "cpu";
  Progress::set_enabled(false);
  return eval::run_sequence(m, two_tasks(), o);
}

struct Case {
  const char* name;
  train::FinetuneKind kind;
  bool backbone_changes;
};

class Finetune : public ::testing::TestWithParam<Case> {};

TEST_P(Finetune, BackboneChangesOnlyForSgd) {
  const Case c = GetParam();
  torch::manual_seed(0);
  models::ResNet backbone = models::make_resnet("resnet18", 0, true);
  const std::string before = fingerprint(models::state_dict(*backbone));
  train::FinetuneMethod m(backbone, c.kind, 11689512, 5);
  test::TempDir out(c.name);
  const eval::Results r = run(m, out.path());
  EXPECT_EQ(r.method, c.name);
  EXPECT_EQ(fingerprint(models::state_dict(*backbone)) != before, c.backbone_changes) << c.name;
  if (c.kind == train::FinetuneKind::kLinear) {
    // A frozen backbone and a head per task: old tasks cannot change.
    EXPECT_EQ(*r.accuracy[1][0], *r.accuracy[0][0]);
  }
  if (c.kind == train::FinetuneKind::kSgdLastLayer) {
    EXPECT_EQ(r.tasks[0].extra_params, 512 * 5 + 5);  // the shared layer, counted once
    EXPECT_EQ(r.tasks[1].extra_params, 0);
    // Stored once too: the layer is cross-task state, and later tasks add nothing.
    EXPECT_EQ(r.tasks[0].stored_bytes, 4 * (512 * 5 + 5));
    EXPECT_EQ(r.tasks[1].stored_bytes, 0);
    EXPECT_TRUE(m.task_state(0).empty());
    EXPECT_TRUE(m.method_state().at("shared_head.weight").equal(
        read_safetensors(out.path() + "/method_state.safetensors").tensors.at("shared_head.weight")));
  } else {
    EXPECT_EQ(r.tasks[1].stored_bytes, 4 * (512 * 5 + 5));
    EXPECT_EQ(r.tasks[1].extra_params, 512 * 5 + 5);
  }
}

INSTANTIATE_TEST_SUITE_P(Baselines, Finetune,
                         ::testing::Values(Case{"sgd", train::FinetuneKind::kSgd, true},
                                           Case{"linear", train::FinetuneKind::kLinear, false},
                                           Case{"sgd-ll", train::FinetuneKind::kSgdLastLayer, false}),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (auto& ch : n) ch = ch == '-' ? '_' : ch;
                           return n;
                         });

TEST(Finetune, SgdLastLayerPredictsOnlyTheTasksClasses) {
  train::FinetuneMethod m(models::make_resnet("resnet18", 0, true), train::FinetuneKind::kSgdLastLayer, 1, 7);
  m.begin_task({0, "a", 3});
  m.end_task({});
  m.begin_task({1, "b", 7});
  m.end_task({});
  m.set_training(false);
  torch::NoGradGuard ng;
  const at::Tensor x = torch::randn({2, 3, 16, 16});
  EXPECT_EQ(m.predict(0, x).size(1), 3);
  EXPECT_EQ(m.predict(1, x).size(1), 7);
  EXPECT_THROW(m.begin_task({2, "c", 8}), ConfigError);
}

}  // namespace
}  // namespace clr
