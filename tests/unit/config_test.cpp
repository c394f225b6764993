// Settings structs and their one JSON conversion: TOML read into JSON, unknown keys and
// wrong types named, flags over a config, the stored config read back, the backbone
// file format.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/safetensors.h"
#include "clr/core/settings_io.h"
#include "clr/eval/run_config.h"
#include "clr/models/backbone.h"
#include "clr/models/registry.h"
#include "clr/train/pretrain.h"
#include "test_util.h"

namespace clr {
namespace {

using settings::Json;
using settings::SettingError;

std::string write_text(const test::TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.file(name);
  std::ofstream(path) << text;
  return path;
}

TEST(Settings, TomlBecomesJsonWithTheFilesTypes) {
  test::TempDir dir("settings");
  const Json j = settings::read_toml(write_text(dir, "a.toml", R"(
top = "x"
[train]
lr = 0.5
epochs = 3
hflip = true
[[data.tasks]]
name = "a"
labels = [1, 2]
)"));
  EXPECT_EQ(j.at("top"), "x");
  EXPECT_TRUE(j.at("train").at("lr").is_number_float());
  EXPECT_TRUE(j.at("train").at("epochs").is_number_integer());
  EXPECT_TRUE(j.at("train").at("hflip").is_boolean());
  EXPECT_EQ(j.at("data").at("tasks").at(0).at("labels"), Json::array({1, 2}));
}

TEST(Settings, NotTomlAndMissingFilesAreNamed) {
  test::TempDir dir("settings");
  const std::string bad = write_text(dir, "bad.toml", "[train\nlr = 1\n");
  const std::string m = test::message_of<ConfigError>([&] { settings::read_toml(bad); });
  EXPECT_NE(m.find("bad.toml' is not valid TOML"), std::string::npos) << m;
  EXPECT_NE(m.find("line 1"), std::string::npos) << m;
  EXPECT_THROW(settings::read_toml(dir.file("none.toml")), NotFoundError);
}

TEST(Settings, UnknownKeysAreNamedWithTheirPathAndTheKnownOnesListed) {
  eval::RunConfig c;
  Json j = {{"train", {{"lr", 0.1}, {"lrate", 2}}}};
  try {
    from_json(j, c);
    FAIL() << "no error";
  } catch (const SettingError& e) {
    EXPECT_EQ(e.kind(), SettingError::Kind::kUnknownKey);
    EXPECT_EQ(e.path(), "train.lrate");
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown key 'train.lrate'"), std::string::npos) << m;
    const Json known = train::TrainConfig{};
    for (const auto& [k, v] : known.items()) EXPECT_NE(m.find(k), std::string::npos) << k;
  }
  j = {{"data", {{"tasks", Json::array({Json{{"name", "a"}}, Json{{"kind", "idx"}, {"color", 1}}})}}}};
  const std::string m = test::message_of<ConfigError>([&] { from_json(j, c); });
  EXPECT_NE(m.find("'data.tasks[1].color'"), std::string::npos) << m;
  EXPECT_THROW(from_json(Json{{"serve", 1}}, c), SettingError);
}

TEST(Settings, WrongTypesAreNamedAndNeverConverted) {
  eval::RunConfig c;
  auto problem = [&](const Json& j) { return test::message_of<SettingError>([&] { from_json(j, c); }); };
  std::string m = problem({{"train", {{"epochs", 2.5}}}});
  EXPECT_NE(m.find("train.epochs has the wrong type"), std::string::npos) << m;
  EXPECT_NE(m.find("expected an integer"), std::string::npos) << m;
  m = problem({{"train", {{"lr", "0.1"}}}});
  EXPECT_NE(m.find("train.lr has the wrong type (string"), std::string::npos) << m;
  m = problem({{"run", {{"seed", -1}}}});
  EXPECT_NE(m.find("run.seed must not be negative"), std::string::npos) << m;
  m = problem({{"data", {{"allow_missing_test", 1}}}});
  EXPECT_NE(m.find("data.allow_missing_test"), std::string::npos) << m;
  m = problem({{"data", {{"tasks", Json::array({Json{{"labels", {1, "b"}}}})}}}});
  EXPECT_NE(m.find("data.tasks[0].labels[1]"), std::string::npos) << m;
  m = problem({{"data", {{"suite", {{"tasks", {"materials"}}}}}}});
  EXPECT_NE(m.find("data.suite.dir is required"), std::string::npos) << m;
  // A float field takes an integer; a list of strings takes one string.
  c = eval::RunConfig{};
  from_json(Json{{"train", {{"lr", 1}}}, {"data", {{"tasks", Json::array({Json{{"train", "a.txt"}}})}}}}, c);
  EXPECT_EQ(c.train.lr, 1.0);
  EXPECT_EQ(c.data.tasks.at(0).train, std::vector<std::string>{"a.txt"});
}

TEST(Settings, AbsentKeysKeepTheDefaultsAndTheJsonRoundTrips) {
  eval::RunConfig c;
  from_json(Json::object(), c);
  EXPECT_EQ(c.train.lr, train::TrainConfig{}.lr);
  EXPECT_EQ(c.run.method, "clr");
  EXPECT_FALSE(c.backbone.arch.has_value());

  c.run.seed = 7;
  c.train.batch_size = 5;
  c.method.ewc.lambda = 3.5;
  c.backbone.arch = "resnet34";
  data::TaskSpec t;
  t.kind = "shapes";
  t.classes.count = 4;
  t.seed = 9;
  c.data.tasks.push_back(t);
  data::TaskSpec g;
  g.kind = "glyphs";
  g.classes.names = {"x", "y"};
  c.data.tasks.push_back(g);
  c.data.suite = data::SuiteOptions{};
  c.data.suite->out = "d";
  c.data.suite->size = 40;
  const Json j = c;
  EXPECT_EQ(j.at("train").at("batch"), 5);  // the config's key, not the member's name
  EXPECT_EQ(j.at("method").at("ewc_lambda"), 3.5);
  eval::RunConfig back;
  from_json(j, back);
  EXPECT_EQ(Json(back), j);
  EXPECT_EQ(back.data.tasks.at(0).classes.count, 4);
  EXPECT_EQ(back.data.tasks.at(1).classes.names, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(back.data.suite->size, 40);
}

TEST(Settings, SuiteSizeFollowsTheDataSizeUnlessGiven) {
  data::DataConfig d;
  from_json(Json{{"size", 32}, {"suite", {{"dir", "s"}}}}, d);
  EXPECT_EQ(d.suite->size, 32);
  from_json(Json{{"suite", {{"dir", "s"}}}}, d);
  EXPECT_EQ(d.suite->size, 64);
  from_json(Json{{"size", 32}, {"suite", {{"dir", "s"}, {"size", 48}}}}, d);
  EXPECT_EQ(d.suite->size, 48);
}

TEST(RunConfig, FileValuesFlagsAndRelativePaths) {
  test::TempDir dir("runcfg");
  const std::string path = write_text(dir, "run.toml", R"(
[run]
out = "out"
seed = 3
[backbone]
arch = "resnet34"
[data]
size = 48
val_fraction = 0.2
[[data.tasks]]
kind = "list"
train = "lists/train.txt"
[train]
epochs = 4
[method]
buffer = 50
)");
  eval::RunConfig c = eval::read_run_config(path);
  EXPECT_EQ(c.run.out, dir.file("out"));
  EXPECT_EQ(c.data.tasks.at(0).train.at(0), dir.file("lists/train.txt"));
  EXPECT_EQ(c.data.size, 48);
  EXPECT_EQ(c.method.replay.buffer, 50);

  eval::RunOverrides f;
  f.epochs = 9;
  f.val_fraction = 0.0;  // a given zero is applied, never taken for "unset"
  f.ewc_lambda = 0.0;
  f.seed = 11;
  f.apply(c);
  c.finalize();
  EXPECT_EQ(c.train.epochs, 9);
  EXPECT_EQ(c.data.val_fraction, 0.0);
  EXPECT_EQ(c.method.ewc.lambda, 0.0);
  EXPECT_EQ(c.train.seed, 11u);
  EXPECT_EQ(c.method.seed, 11u);
  EXPECT_EQ(c.data.seed, 3u);  // generated tasks keep the file's seed: --seed does not change the data
  EXPECT_EQ(c.backbone.arch_name(), "resnet34");
  EXPECT_FALSE(c.backbone.has_small_stem());

  f = {};
  f.epochs = 0;
  f.apply(c);
  EXPECT_THROW(c.finalize(), ConfigError);
  f = {};
  f.val_fraction = 1.0;
  c = eval::read_run_config(path);
  f.apply(c);
  const std::string m = test::message_of<ConfigError>([&] { c.finalize(); });
  EXPECT_NE(m.find("data.val_fraction"), std::string::npos) << m;

  EXPECT_THROW(eval::read_run_config(dir.file("nothing.toml")), NotFoundError);
  c = eval::read_run_config(dir.path());  // a folder is an ImageFolder root
  EXPECT_EQ(c.data.root, dir.path());
}

TEST(BackboneFile, MetadataRoundTripsAndFillsTheConfig) {
  test::TempDir dir("backbone");
  const std::string path = dir.file("b.safetensors");
  models::BackboneFileInfo info;
  info.arch = "resnet18";
  info.small_stem = true;
  info.input_size = 32;
  info.classes = {"a/x", "b/\"y\""};
  info.seed = 5;
  info.epochs = 2;
  info.val_accuracy = 0.25;
  info.mode = "supervised";
  models::write_backbone_file(path, models::state_dict(*models::make_resnet("resnet18", 0, true)), info);
  const auto back = models::read_backbone_info(path);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->classes, info.classes);
  EXPECT_TRUE(back->small_stem);
  EXPECT_EQ(back->input_size, 32);
  EXPECT_DOUBLE_EQ(back->val_accuracy, 0.25);

  models::BackboneConfig c;
  c.weights = path;
  c.resolve();
  EXPECT_EQ(c.arch_name(), "resnet18");
  EXPECT_TRUE(c.has_small_stem());
  models::BackboneConfig given;  // what the config says wins over the file
  given.weights = path;
  given.small_stem = false;
  given.resolve();
  EXPECT_FALSE(given.has_small_stem());

  const TensorMap t = {{"x", torch::zeros({1})}};
  const std::string future = dir.file("future.safetensors");
  write_safetensors(future, t, {{"format", "clr.backbone/2"}, {"arch", "resnet18"}});
  std::string m = test::message_of<FormatError>([&] { models::read_backbone_info(future); });
  EXPECT_NE(m.find("clr.backbone/2"), std::string::npos) << m;
  const std::string broken = dir.file("broken.safetensors");
  write_safetensors(broken, t, {{"format", "clr.backbone/1"}, {"arch", "resnet18"}, {"small_stem", "maybe"}});
  m = test::message_of<FormatError>([&] { models::read_backbone_info(broken); });
  EXPECT_NE(m.find("small_stem"), std::string::npos) << m;
  const std::string plain = dir.file("plain.safetensors");
  write_safetensors(plain, t, {{"arch", "resnet50"}});
  EXPECT_FALSE(models::read_backbone_info(plain).has_value());

  models::BackboneConfig missing;
  missing.weights = dir.file("none.safetensors");
  EXPECT_THROW(missing.resolve(), NotFoundError);
}

TEST(PretrainConfig, ValidatesBeforeAnyWork) {
  train::PretrainConfig c;
  EXPECT_THROW(c.validate(), ConfigError);  // no out
  c.out = "x.safetensors";
  c.validate();
  c.mode = "moco";
  EXPECT_THROW(c.validate(), ConfigError);
  c.mode = "byol";
  c.validate();
  c.batch = 1;
  EXPECT_THROW(c.validate(), ConfigError);  // BYOL's BatchNorm heads need two rows
  c.mode = "simclr";
  EXPECT_THROW(c.validate(), ConfigError);
  c.select = "best";
  c.batch = 8;
  EXPECT_THROW(c.validate(), ConfigError);
  c.select = "auto";
  c.time_limit = -1;
  EXPECT_THROW(c.validate(), ConfigError);
  c.time_limit = 0;
  c.batch = 8;
  c.arch = "vgg";
  EXPECT_THROW(c.validate(), NotFoundError);
  const Json j = train::PretrainConfig{};
  EXPECT_TRUE(j.at("simclr").contains("temperature"));
}

}  // namespace
}  // namespace clr
