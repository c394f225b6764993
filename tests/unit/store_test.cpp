// The adapter store: names, round trips, checksums, versions, backbone checks,
// crash safety of the write order, and several writers.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/safetensors.h"
#include "clr/store/peft.h"
#include "clr/store/store.h"
#include "test_util.h"

namespace clr {
namespace {

using store::Adapter;
using store::Store;

store::BackboneRef backbone_ref(const std::string& fp = "sha256:" + std::string(64, 'a')) {
  return {"resnet18", true, fp, 11689512, "/nowhere/backbone.safetensors"};
}

Adapter small_adapter(const std::string& name, int64_t classes = 3, uint64_t seed = 0) {
  torch::manual_seed(seed);
  Adapter a;
  a.task = name;
  a.variant = "clr";
  for (int64_t c = 0; c < classes; ++c) a.classes.push_back("class" + std::to_string(c));
  a.preprocess.resize = 32;
  a.backbone = backbone_ref();
  a.tensors = {{"clr.conv1.weight", torch::randn({4, 1, 3, 3})},
               {"bn.bn1.weight", torch::randn({4})},
               {"bn.bn1.num_batches_tracked", torch::tensor(int64_t{7})},
               {"head.weight", torch::randn({classes, 8})},
               {"head.bias", torch::randn({classes})}};
  a.metrics_json = R"({"test_accuracy": 0.5})";
  return a;
}

std::string bytes_of(const std::string& path) { return read_file(path); }

void overwrite_byte(const std::string& path, size_t from_end) {
  std::string b = read_file(path);
  b[b.size() - from_end] ^= 0x5a;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << b;
}

TEST(StoreNames, RuleKeepsTasksInsideTheStore) {
  for (const std::string& ok : std::vector<std::string>{"fashion-tops", "Task 1", "a.b_c+d", "数字", std::string(128, 'x')}) {
    EXPECT_EQ(store::task_name_problem(ok), "") << ok;
  }
  for (const std::string& bad : std::vector<std::string>{"", "../etc", "a/b", "a\\b", ".hidden", " lead", "trail ", "tab\there",
                                std::string(129, 'x'), "bad\xff", "half\xe6\x95"}) {
    EXPECT_NE(store::task_name_problem(bad), "") << bad;
  }
  EXPECT_NE(test::message_of<ConfigError>([] { store::check_task_name("a/../x"); }).find("path separator"),
            std::string::npos);
}

TEST(Store, RoundTripKeepsTensorsAndMetadata) {
  test::TempDir dir("store");
  Store s = Store::create(dir.file("s"), backbone_ref());
  Adapter a = small_adapter("alpha", 3, 1);
  const store::TaskEntry e = s.put(a);
  EXPECT_EQ(e.file, "tasks/alpha." + e.sha256.substr(0, 12) + ".safetensors");  // named by content
  EXPECT_TRUE(file_exists(dir.file("s/" + e.file)));
  EXPECT_EQ(e.classes, 3);

  const Store again = Store::open(dir.file("s"));
  ASSERT_EQ(again.tasks().size(), 1u);
  EXPECT_EQ(again.backbone().fingerprint, backbone_ref().fingerprint);
  EXPECT_EQ(again.backbone().source, "/nowhere/backbone.safetensors");
  const Adapter b = again.load("alpha");
  EXPECT_EQ(b.classes, a.classes);
  EXPECT_EQ(b.variant, "clr");
  EXPECT_EQ(b.preprocess.resize, 32);
  EXPECT_EQ(b.preprocess.crop, 0);
  EXPECT_EQ(nlohmann::json::parse(b.metrics_json)["test_accuracy"], 0.5);
  EXPECT_FALSE(b.created.empty());
  ASSERT_EQ(b.tensors.size(), a.tensors.size());
  for (const auto& [k, t] : a.tensors) EXPECT_TRUE(test::bit_identical(b.tensors.at(k), t)) << k;
  EXPECT_EQ(b.tensors_sha256, fingerprint(a.tensors));
  // The file is self-contained safetensors with its metadata.
  const Metadata md = read_safetensors_metadata(dir.file("s/" + e.file));
  EXPECT_EQ(md.at("format"), "clr.adapter");
  EXPECT_EQ(md.at("version"), "1");
  EXPECT_EQ(md.at("backbone_fingerprint"), backbone_ref().fingerprint);
  // The exported bytes decode to the same adapter.
  const Adapter c = store::decode_adapter(again.load_bytes("alpha"), "export");
  EXPECT_EQ(c.tensors_sha256, b.tensors_sha256);
}

TEST(Peft, FolderRoundTripIsLosslessAndTamperingIsRefused) {
  test::TempDir dir("peft");
  Store s = Store::create(dir.file("s"), backbone_ref());
  Adapter a = small_adapter("alpha", 3, 2);
  a.tensors.emplace("clr.layer1.0.conv1.weight", torch::randn({4, 1, 3, 3}));
  a.tensors.emplace("bn.layer1.0.downsample.1.running_mean", torch::randn({4}));
  a.mapper = {{"class_mean", torch::randn({3, 8}).to(torch::kHalf)}, {"variance", torch::rand({8})},
              {"class_count", torch::tensor({2, 3, 4})}};
  a.mapper_json = R"({"method":"gaussian"})";
  s.put(a);
  const std::string folder = dir.file("alpha-peft");
  store::export_adapter(s, "alpha", folder, nullptr, "peft");
  EXPECT_TRUE(store::is_peft_folder(folder));
  const SafetensorsFile model = read_safetensors(folder + "/adapter_model.safetensors");
  EXPECT_EQ(model.metadata, (Metadata{{"format", "pt"}}));
  for (const char* key : {"base_model.model.conv1.clr.weight", "base_model.model.layer1.0.conv1.clr.weight",
                          "base_model.model.bn1.weight", "base_model.model.bn1.num_batches_tracked",
                          "base_model.model.layer1.0.downsample.1.running_mean", "base_model.model.fc.weight",
                          "base_model.model.fc.bias"}) {
    EXPECT_TRUE(model.tensors.count(key)) << key;
  }
  const auto config = nlohmann::json::parse(read_file(folder + "/adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "CLR");
  EXPECT_EQ(config["target_modules"], nlohmann::json({"conv1", "layer1.0.conv1"}));
  EXPECT_EQ(config["modules_to_save"], nlohmann::json({"bn1", "layer1.0.downsample.1", "fc"}));
  EXPECT_EQ(config["base_model_name_or_path"], "backbone.safetensors");
  EXPECT_EQ(config["backbone_fingerprint"], backbone_ref().fingerprint);

  const Adapter stored = s.load("alpha");
  const Adapter back = store::read_peft_folder(folder);
  EXPECT_EQ(back.tensors_sha256, stored.tensors_sha256);
  EXPECT_EQ(back.mapper_sha256, stored.mapper_sha256);
  for (const auto& [k, t] : stored.tensors) EXPECT_TRUE(test::bit_identical(back.tensors.at(k), t)) << k;
  for (const auto& [k, t] : stored.mapper) EXPECT_TRUE(test::bit_identical(back.mapper.at(k), t)) << k;
  EXPECT_EQ(back.classes, stored.classes);
  EXPECT_EQ(back.metrics_json, stored.metrics_json);
  EXPECT_EQ(back.mapper_json, stored.mapper_json);
  EXPECT_EQ(back.created, stored.created);
  EXPECT_EQ(back.backbone.small_stem, stored.backbone.small_stem);
  // Imported into a store of the same backbone: the same task file, byte for byte.
  Store::create(dir.file("t"), backbone_ref());
  const store::TaskEntry e = store::import_adapter(dir.file("t"), folder);
  EXPECT_EQ(e.sha256, s.find("alpha")->sha256);

  // A tensor changed after export, or a folder that holds other files, is refused.
  overwrite_byte(folder + "/adapter_model.safetensors", 3);
  EXPECT_NE(test::message_of<FormatError>([&] { store::read_peft_folder(folder); }).find("does not hold the tensors"),
            std::string::npos);
  make_directories(dir.file("busy"));
  write_file_atomic(dir.file("busy/notes.txt"), "mine");
  EXPECT_NE(test::message_of<ConfigError>([&] { store::export_adapter(s, "alpha", dir.file("busy"), nullptr, "peft"); })
                .find("notes.txt"),
            std::string::npos);
}

TEST(Store, CorruptOrTruncatedFilesAreRefusedAndLeaveTheStoreAlone) {
  test::TempDir dir("store");
  Store s = Store::create(dir.file("s"), backbone_ref());
  s.put(small_adapter("alpha"));
  s.put(small_adapter("beta"));
  const std::string manifest = bytes_of(s.manifest_path());
  const std::string file = dir.file("s/" + s.find("alpha")->file);

  overwrite_byte(file, 3);  // inside the head's bytes
  std::string msg = test::message_of<FormatError>([&] { s.load("alpha"); });
  EXPECT_NE(msg.find("corrupt"), std::string::npos) << msg;
  // Even without the manifest's file checksum, the tensors' own checksum catches it.
  msg = test::message_of<FormatError>([&] { store::read_adapter_file(file); });
  EXPECT_NE(msg.find("corrupt"), std::string::npos) << msg;

  const std::string beta = dir.file("s/" + s.find("beta")->file);
  std::string b = read_file(beta);
  std::ofstream(beta, std::ios::binary | std::ios::trunc) << b.substr(0, b.size() / 2);
  msg = test::message_of<FormatError>([&] { s.load("beta"); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;

  const auto checks = s.verify();
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_FALSE(checks[0].ok);
  EXPECT_FALSE(checks[1].ok);
  EXPECT_EQ(bytes_of(s.manifest_path()), manifest);  // reads never write
}

TEST(Store, NewerFormatVersionsAreRefused) {
  test::TempDir dir("store");
  Store s = Store::create(dir.file("s"), backbone_ref());
  s.put(small_adapter("alpha"));
  // An adapter file from the future.
  SafetensorsFile f = read_safetensors(dir.file("s/" + s.find("alpha")->file));
  f.metadata["version"] = std::to_string(store::kAdapterVersion + 1);
  write_safetensors(dir.file("future.safetensors"), f.tensors, f.metadata);
  std::string msg = test::message_of<IncompatibleError>([&] { store::read_adapter_file(dir.file("future.safetensors")); });
  EXPECT_NE(msg.find("newer clr"), std::string::npos) << msg;
  // A manifest from the future.
  auto j = nlohmann::json::parse(read_file(s.manifest_path()));
  j["version"] = 2;
  write_file_atomic(s.manifest_path(), j.dump());
  msg = test::message_of<IncompatibleError>([&] { Store::open(dir.file("s")); });
  EXPECT_NE(msg.find("newer clr"), std::string::npos) << msg;
  // Not a store at all.
  write_file_atomic(s.manifest_path(), "{not json");
  EXPECT_THROW(Store::open(dir.file("s")), FormatError);
  EXPECT_THROW(Store::open(dir.file("nothing")), NotFoundError);
}

TEST(Store, ForeignBackbonesAreRefused) {
  test::TempDir dir("store");
  Store s = Store::create(dir.file("s"), backbone_ref());
  const std::string manifest = bytes_of(s.manifest_path());
  Adapter a = small_adapter("alpha");
  a.backbone.fingerprint = "sha256:" + std::string(64, 'b');
  const std::string msg = test::message_of<IncompatibleError>([&] { s.put(a); });
  EXPECT_NE(msg.find("backbone"), std::string::npos) << msg;
  EXPECT_EQ(bytes_of(s.manifest_path()), manifest);
  EXPECT_TRUE(list_directory(dir.file("s/tasks")).empty());
  EXPECT_THROW(Store::create(dir.file("s"), backbone_ref("sha256:" + std::string(64, 'c'))), IncompatibleError);
}

TEST(Store, ReplaceRemoveAndBadAdapters) {
  test::TempDir dir("store");
  Store s = Store::create(dir.file("s"), backbone_ref());
  const std::string first = s.put(small_adapter("alpha", 3, 1)).file;
  EXPECT_THROW(s.put(small_adapter("alpha", 3, 2)), ConfigError);  // exists
  const std::string second = s.put(small_adapter("alpha", 5, 2), /*replace=*/true).file;
  EXPECT_EQ(Store::open(dir.file("s")).load("alpha").classes.size(), 5u);
  // The new version was written under its own name before the manifest named it; the
  // old one went only after.
  EXPECT_NE(first, second);
  EXPECT_FALSE(file_exists(dir.file("s/" + first)));
  EXPECT_TRUE(file_exists(dir.file("s/" + second)));

  Adapter bad = small_adapter("x/../../escape");
  EXPECT_THROW(s.put(bad), ConfigError);
  bad = small_adapter("gamma", 3);
  bad.classes.pop_back();  // head of 3, 2 names
  EXPECT_THROW(s.put(bad), FormatError);
  bad = small_adapter("gamma");
  bad.variant = "sgd";
  EXPECT_THROW(s.put(bad), ConfigError);
  EXPECT_EQ(s.tasks().size(), 1u);

  s.remove("alpha");
  EXPECT_TRUE(Store::open(dir.file("s")).tasks().empty());
  EXPECT_FALSE(file_exists(dir.file("s/" + second)));
  EXPECT_THROW(s.remove("alpha"), NotFoundError);
  EXPECT_THROW(s.load("alpha"), NotFoundError);
}

TEST(Store, LeftoversOfAKilledWriterDoNotBreakIt) {
  test::TempDir dir("store");
  Store s = Store::create(dir.file("s"), backbone_ref());
  s.put(small_adapter("alpha"));
  // A writer killed after writing its temporary file, before the rename: the store
  // still reads as before, and verify names the leftover.
  std::ofstream(dir.file("s/tasks/beta.0123456789ab.safetensors.tmp.4242")) << "half";
  std::ofstream(dir.file("s/manifest.json.tmp.4242")) << "{";
  const Store again = Store::open(dir.file("s"));
  EXPECT_EQ(again.tasks().size(), 1u);
  EXPECT_NO_THROW(again.load("alpha"));
  const auto checks = again.verify();
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_TRUE(checks[0].ok);
  EXPECT_FALSE(checks[1].ok);
  EXPECT_NE(checks[1].problem.find("interrupted"), std::string::npos);
  // A task file written whose manifest line never came: not a task.
  const std::string gamma = dir.file("s/" + s.put(small_adapter("gamma")).file);
  const std::string kept = read_file(gamma);
  s.remove("gamma");
  std::ofstream(gamma, std::ios::binary) << kept;
  EXPECT_EQ(Store::open(dir.file("s")).find("gamma"), nullptr);
}

TEST(Store, TwoWritersKeepEachOthersTasks) {
  test::TempDir dir("store");
  Store a = Store::create(dir.file("s"), backbone_ref());
  Store b = Store::open(dir.file("s"));  // both read an empty manifest
  a.put(small_adapter("one"));
  b.put(small_adapter("two"));  // re-reads the manifest under the lock
  const Store c = Store::open(dir.file("s"));
  ASSERT_EQ(c.tasks().size(), 2u);
  EXPECT_NE(c.find("one"), nullptr);
  EXPECT_NE(c.find("two"), nullptr);
}

TEST(Store, ReadsTheFirstRunnerAdapterFiles) {
  test::TempDir dir("store");
  const Adapter a = small_adapter("old");
  nlohmann::json classes = a.classes;
  write_safetensors(dir.file("old.safetensors"), a.tensors,
                    {{"format", "clr.adapter/0"},
                     {"task", "old"},
                     {"classes", classes.dump()},
                     {"variant", "clr"},
                     {"backbone_arch", "resnet18"},
                     {"backbone_fingerprint", backbone_ref().fingerprint},
                     {"input_size", "28"},
                     {"resize", "32"},
                     {"mean", "[0.485, 0.456, 0.406]"},
                     {"std", "[0.229, 0.224, 0.225]"},
                     {"after_task", "1"},
                     {"created", "2026-11-25T00:00:00Z"}});
  const Adapter b = store::read_adapter_file(dir.file("old.safetensors"));
  EXPECT_EQ(b.preprocess.resize, 32);
  EXPECT_EQ(b.preprocess.crop, 28);
  EXPECT_EQ(b.kernel_size, 3);
  Store s = Store::create(dir.file("s"), backbone_ref());
  EXPECT_NO_THROW(s.put(b));
  EXPECT_EQ(s.load("old").tensors_sha256, fingerprint(a.tensors));
}

}  // namespace
}  // namespace clr
