// The data layer on real files made by tests/python/make_data.py (PIL, gzip, sqlite3).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/safetensors.h"
#include "clr/core/tensor_io.h"
#include "clr/data/image.h"
#include "clr/data/loader.h"
#include "clr/data/sources.h"
#include "clr/eval/results.h"
#include "clr/store/peft.h"
#include "test_util.h"

namespace clr {
namespace {

using test::test_data;

using test::message_of;

TEST(Image, DecodesEveryFormatLikePil) {
  const TensorMap ref = read_safetensors(test_data("images/decoded.safetensors")).tensors;
  for (const auto& [name, expected] : ref) {
    const at::Tensor got = data::read_image(test_data("images/" + name));
    ASSERT_EQ(got.sizes(), expected.sizes()) << name;
    // Every format exact, JPEG too: PIL and clr both decode it with libjpeg-turbo's
    // default (accurate integer IDCT, smooth chroma upsampling).
    EXPECT_EQ(test::max_abs_diff(got, expected), 0) << name;
  }
}

TEST(Image, CorruptAndNonImageFilesAreFormatErrorsNamingTheFile) {
  std::string m = message_of<FormatError>([] { data::read_image(test_data("images/corrupt.jpg")); });
  EXPECT_NE(m.find("corrupt.jpg"), std::string::npos) << m;
  m = message_of<FormatError>([] { data::read_image(test_data("images/notes.png")); });
  EXPECT_NE(m.find("notes.png"), std::string::npos) << m;
  EXPECT_THROW(data::read_image(test_data("images/missing.png")), NotFoundError);
}

// What clr_fuzz found (fuzz/README.md), kept as files of its corpus: each is refused with
// a FormatError naming the input, and nothing else escapes.
TEST(FuzzFindings, StayFormatErrors) {
  const std::string corpus = std::string(CLR_SOURCE_DIR) + "/fuzz/corpus/";
  int checked = 0;
  test::TempDir scratch("fuzz-findings");
  for (const char* target : {"image", "idx", "pth", "weights", "results", "peft"}) {
    for (const auto& name : list_directory(corpus + target)) {
      if (name.rfind("regress-", 0) != 0) continue;
      const std::string path = corpus + target + "/" + name;
      SCOPED_TRACE(path);
      const std::string t = target;
      std::string m;
      if (t == "image") {
        m = message_of<FormatError>([&] { data::read_image(path); });
      } else if (t == "idx") {
        try {
          data::read_idx_images(path);  // an IDX file of no images is one
        } catch (const FormatError& e) {
          m = e.what();
        }
        if (m.empty()) m = message_of<FormatError>([&] { data::read_idx_labels(path); });
      } else if (t == "results") {  // e.g. a "schema" that is a number
        m = message_of<FormatError>([&] { eval::read_results(path); });
      } else if (t == "peft") {  // the config, a NUL byte, the safetensors file (fuzz/targets.cpp)
        const std::string input = read_file(path), folder = scratch.file(name);
        const size_t nul = input.find('\0');
        make_directories(folder);
        write_file(folder + "/adapter_config.json", input.substr(0, nul));
        write_file(folder + "/adapter_model.safetensors", nul == std::string::npos ? "" : input.substr(nul + 1));
        m = message_of<FormatError>([&] { store::read_peft_folder(folder); });
      } else {
        m = message_of<FormatError>([&] { load_tensor_file(path); });
      }
      EXPECT_NE(m.find(name), std::string::npos) << m;
      ++checked;
    }
  }
  EXPECT_GE(checked, 8);
  // The JPEG one: a Huffman table of more than 256 codes, which stb_image wrote past
  // (libjpeg-turbo decodes JPEG now and refuses it); the GIF of 0 x 0 pixels.
  const std::string jpeg = corpus + "image/regress-a40a508e8f0b";
  std::string m = message_of<FormatError>([&] { data::read_image(jpeg); });
  EXPECT_NE(m.find("corrupt JPEG"), std::string::npos) << m;
  m = message_of<FormatError>([&] { data::read_image(corpus + "image/regress-d337057a4436"); });
  EXPECT_NE(m.find("has no pixels (0x0)"), std::string::npos) << m;
}

TEST(Image, ResizeMatchesPilBilinear) {
  const at::Tensor ours = data::resize_square(data::read_image(test_data("images/rgb.png")), 16).permute({1, 2, 0});
  const at::Tensor pil = read_safetensors(test_data("images/resized.safetensors")).tensors.at("rgb16");
  const at::Tensor d = (ours.to(torch::kFloat) - pil.to(torch::kFloat)).abs();
  EXPECT_LE(d.mean().item<double>(), 1.5);
  std::printf("[data] resize vs PIL bilinear: mean |diff| %.3f, max %.0f (uint8 levels)\n", d.mean().item<double>(),
              d.max().item<double>());
}

TEST(Sources, MultiTaskImageFolderFollowsOrderTxt) {
  const data::Sequence seq = data::read_imagefolder_tasks(test_data("seq"));
  ASSERT_EQ(seq.size(), 3u);
  EXPECT_EQ(seq[0].name, "gamma");
  EXPECT_EQ(seq[2].name, "alpha");
  EXPECT_EQ(seq[0].classes, (std::vector<std::string>{"class0", "class1", "class2", "class3"}));
  EXPECT_EQ(seq[0].train.size(), 32u);
  EXPECT_EQ(seq[0].test.size(), 16u);
  EXPECT_EQ(seq[0].val.size(), 0u);
  EXPECT_FALSE(data::is_single_task_folder(test_data("seq")));
  const data::Sequence single = data::read_imagefolder_tasks(test_data("seq/beta"));
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].name, "beta");
}

TEST(Sources, MissingSplitsAreCarvedOrRejected) {
  data::TaskData t = data::read_imagefolder_tasks(test_data("seq"))[2];  // alpha: 2 classes x 12 train
  data::TaskData copy = t;
  data::SplitOptions so;
  so.val_fraction = 0.25;
  data::complete_splits(t, so);
  EXPECT_EQ(t.val.size(), 6u);   // 3 of each class
  EXPECT_EQ(t.train.size(), 18u);
  data::complete_splits(copy, so);
  EXPECT_EQ(copy.val.paths, t.val.paths);  // deterministic
  data::TaskData no_test = data::read_imagefolder_tasks(test_data("seq"))[2];
  no_test.test = {};
  EXPECT_THROW(data::complete_splits(no_test, so), ConfigError);
  so.allow_missing_test = true;
  data::complete_splits(no_test, so);
  EXPECT_TRUE(no_test.test_is_val);
}

TEST(Sources, DirtyFolderCorruptJpegIsReportedAndGrayscalePngConverted) {
  data::TaskData t = data::read_imagefolder_tasks(test_data("dirty"))[0];
  std::string m = message_of<FormatError>([&] { data::prepare_split(t.train, t.origin, {}); });
  EXPECT_NE(m.find("broken.jpg"), std::string::npos) << m;
  data::PrepareOptions skip;
  skip.size = 16;
  skip.skip_corrupt = true;
  const data::PreparedSplit p = data::prepare_split(t.train, t.origin, skip);
  EXPECT_EQ(p.size(), static_cast<int64_t>(t.train.size()) - 1);
  ASSERT_EQ(p.skipped.size(), 1u);
  EXPECT_NE(p.skipped[0].find("broken.jpg"), std::string::npos);
  EXPECT_EQ(p.images.sizes(), (std::vector<int64_t>{p.size(), 3, 16, 16}));
}

TEST(Sources, ListFiles) {
  const data::Split s = data::read_list_file(test_data("lists/train.txt"));
  EXPECT_EQ(s.size(), 24u);
  EXPECT_EQ(s.labels.front(), 0);
  EXPECT_EQ(s.labels.back(), 1);
  EXPECT_NO_THROW(data::read_image(s.paths.front()));
}

TEST(Sources, IdxGzipped) {
  const TensorMap expected = read_safetensors(test_data("idx/expected.safetensors")).tensors;
  const at::Tensor images = data::read_idx_images(test_data("idx/images-idx3-ubyte.gz"));
  EXPECT_TRUE(test::bit_identical(images, expected.at("images")));
  const auto labels = data::read_idx_labels(test_data("idx/labels-idx1-ubyte.gz"));
  EXPECT_TRUE(test::bit_identical(torch::tensor(labels, torch::kLong), expected.at("labels")));
  const std::string m = message_of<FormatError>([] { data::read_idx_images(test_data("idx/truncated-idx3-ubyte")); });
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  EXPECT_THROW(data::read_idx_labels(test_data("idx/images-idx3-ubyte.gz")), FormatError);  // rank 3, not 1
}

TEST(Sources, DebianFashionMnistIfInstalled) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!file_exists(dir + "/t10k-labels-idx1-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const at::Tensor images = data::read_idx_images(dir + "/t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{10000, 28, 28, 1}));
  EXPECT_EQ(data::read_idx_labels(dir + "/t10k-labels-idx1-ubyte.gz").size(), 10000u);
}

TEST(Sources, CifarBinary) {
  const data::Split s = data::read_cifar_binary({test_data("cifar/data_batch_1.bin")}, false);
  const TensorMap expected = read_safetensors(test_data("cifar/expected.safetensors")).tensors;
  EXPECT_TRUE(test::bit_identical(s.images, expected.at("images")));
  EXPECT_TRUE(test::bit_identical(torch::tensor(s.labels, torch::kLong), expected.at("labels")));
  const data::Split c100 = data::read_cifar_binary({test_data("cifar/train.bin")}, true);
  EXPECT_EQ(c100.labels, (std::vector<int64_t>{50, 51, 52, 53}));
  EXPECT_THROW(data::read_cifar_binary({test_data("cifar/train.bin")}, false), FormatError);  // 3074-byte records
}

TEST(Sources, SkillCatalogWithTaskCsv) {
  data::SkillOptions o;
  o.task_csv = test_data("skill/tasks.csv");
  const data::Sequence seq = data::read_skill(test_data("skill"), o);
  ASSERT_EQ(seq.size(), 2u);
  EXPECT_EQ(seq[0].name, "cars");  // newid order
  EXPECT_EQ(seq[1].name, "birds");
  EXPECT_EQ(seq[1].classes, (std::vector<std::string>{"10", "11", "12"}));
  EXPECT_EQ(seq[1].train.size(), 17u);  // 3 x 6, one marked problem != 0
  EXPECT_EQ(seq[1].val.size(), 6u);
  EXPECT_EQ(seq[1].test.size(), 9u);
  EXPECT_NO_THROW(data::validate_sequence(seq));
  o.cap_per_split = 7;
  const data::Sequence capped = data::read_skill(test_data("skill"), o);
  EXPECT_EQ(capped[1].train.size(), 7u);
  std::vector<int> per_class(3, 0);
  for (int64_t l : capped[1].train.labels) ++per_class[static_cast<size_t>(l)];
  EXPECT_LE(*std::max_element(per_class.begin(), per_class.end()) - *std::min_element(per_class.begin(), per_class.end()), 1);
  o.task_csv.clear();
  o.cap_per_split = 0;
  EXPECT_EQ(data::read_skill(test_data("skill"), o).size(), 3u);
  EXPECT_THROW(data::read_skill(test_data("nothing-here"), o), NotFoundError);
}

TEST(Validation, ReportsEveryProblemAtOnce) {
  const data::Sequence seq = data::read_imagefolder_tasks(test_data("bad"));
  const std::string m = message_of<ConfigError>([&] { data::validate_sequence(seq); });
  EXPECT_NE(m.find("one_class"), std::string::npos) << m;
  EXPECT_NE(m.find("need >= 2"), std::string::npos) << m;
  EXPECT_NE(m.find("fake.png"), std::string::npos) << m;
  EXPECT_NE(m.find("class 'class2' has no training images"), std::string::npos) << m;
  EXPECT_NE(m.find("3 problem(s)"), std::string::npos) << m;
}

TEST(Loader, SeededShufflingAndPrefetchingCoverEveryImage) {
  data::TaskData t = data::read_imagefolder_tasks(test_data("seq"))[0];
  data::PrepareOptions po;
  po.size = 8;
  const data::PreparedSplit p = data::prepare_split(t.train, t.origin, po);
  data::LoaderOptions lo;
  lo.batch_size = 5;
  lo.shuffle = true;
  lo.seed = 3;
  data::BatchLoader loader(p, lo);
  EXPECT_EQ(loader.num_batches(), 7);
  auto labels_of_epoch = [&](int64_t epoch) {
    std::vector<int64_t> seen;
    loader.for_each_batch(epoch, [&](const at::Tensor& x, const at::Tensor& y) {
      EXPECT_EQ(x.scalar_type(), torch::kFloat);
      for (int64_t i = 0; i < y.size(0); ++i) seen.push_back(y[i].item<int64_t>());
    });
    return seen;
  };
  const auto a = labels_of_epoch(0), b = labels_of_epoch(0), c = labels_of_epoch(1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a.size(), 32u);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> all(p.labels.data_ptr<int64_t>(), p.labels.data_ptr<int64_t>() + p.size());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(sorted, all);
  // An exception thrown by the consumer stops the epoch cleanly.
  EXPECT_THROW(loader.for_each_batch(0, [](const at::Tensor&, const at::Tensor&) { throw ConfigError("stop"); }),
               ConfigError);
}

TEST(Loader, FlipsAreWholeHorizontalMirrors) {
  data::PreparedSplit p;
  p.images = torch::randint(0, 255, {4, 3, 5, 7}).to(torch::kUInt8);
  p.labels = torch::tensor(std::vector<int64_t>{0, 1, 2, 3}, torch::kLong);
  data::LoaderOptions lo;
  lo.batch_size = 4;
  lo.hflip = true;
  lo.seed = 2;
  data::BatchLoader loader(p, lo);
  const at::Tensor plain = data::normalize(p.images), mirrored = data::normalize(p.images.flip({3}));
  int flipped = 0, kept = 0;
  for (int64_t e = 0; e < 4; ++e) {
    loader.for_each_batch(e, [&](const at::Tensor& x, const at::Tensor&) {
      for (int64_t i = 0; i < 4; ++i) {
        if (test::bit_identical(x[i], mirrored[i])) ++flipped;
        else if (test::bit_identical(x[i], plain[i])) ++kept;
        else ADD_FAILURE() << "image " << i << " is neither itself nor its mirror";
      }
    });
  }
  EXPECT_GT(flipped, 0);
  EXPECT_GT(kept, 0);
}

TEST(Loader, CentredAndRandomCrops) {
  data::PreparedSplit p;
  p.images = torch::arange(2 * 3 * 6 * 6, torch::kLong).remainder(251).to(torch::kUInt8).view({2, 3, 6, 6});
  p.labels = torch::tensor(std::vector<int64_t>{0, 1}, torch::kLong);
  data::LoaderOptions lo;
  lo.batch_size = 2;
  lo.crop = 4;
  std::vector<at::Tensor> seen;
  data::BatchLoader centred(p, lo);
  centred.for_each_batch(0, [&](const at::Tensor& x, const at::Tensor&) { seen.push_back(x.clone()); });
  ASSERT_EQ(seen[0].sizes(), (std::vector<int64_t>{2, 3, 4, 4}));
  const at::Tensor expected = data::normalize(p.images.slice(2, 1, 5).slice(3, 1, 5));
  EXPECT_TRUE(test::bit_identical(seen[0], expected));
  lo.random_crop = true;
  lo.seed = 1;
  data::BatchLoader random(p, lo);
  std::vector<at::Tensor> epochs;
  for (int64_t e = 0; e < 4; ++e) {
    random.for_each_batch(e, [&](const at::Tensor& x, const at::Tensor&) { epochs.push_back(x.clone()); });
  }
  EXPECT_EQ(epochs[0].sizes(), (std::vector<int64_t>{2, 3, 4, 4}));
  bool any_different = false;
  for (size_t e = 1; e < epochs.size(); ++e) any_different |= !test::bit_identical(epochs[e], epochs[0]);
  EXPECT_TRUE(any_different);
  lo.crop = 7;
  data::BatchLoader too_big(p, lo);
  EXPECT_THROW(too_big.for_each_batch(0, [](const at::Tensor&, const at::Tensor&) {}), ConfigError);
}

TEST(Loader, DeviceAssemblyGivesTheHostsBatches) {
  // kDevice (gather, flip and crop by index on the device; here the CPU stands in)
  // must give the host thread's batches bit for bit, for every mix of augmentations.
  data::PreparedSplit p;
  p.images = torch::randint(0, 256, {13, 3, 9, 9}).to(torch::kUInt8);
  p.labels = torch::arange(13, torch::kLong);
  for (const int64_t crop : {0, 6, 9}) {
    for (const bool random_crop : {false, true}) {
      for (const bool hflip : {false, true}) {
        data::LoaderOptions lo;
        lo.batch_size = 4;  // a short last batch
        lo.shuffle = true;
        lo.hflip = hflip;
        lo.crop = crop;
        lo.random_crop = random_crop;
        lo.seed = 5;
        lo.assembly = data::LoaderOptions::Assembly::kHost;
        data::BatchLoader host(p, lo);
        lo.assembly = data::LoaderOptions::Assembly::kDevice;
        data::BatchLoader device(p, lo);
        for (int64_t e = 0; e < 3; ++e) {
          std::vector<at::Tensor> a, b;
          host.for_each_batch(e, [&](const at::Tensor& x, const at::Tensor& y) { a.push_back(torch::cat({x.flatten(), y.to(torch::kFloat)})); });
          device.for_each_batch(e, [&](const at::Tensor& x, const at::Tensor& y) { b.push_back(torch::cat({x.flatten(), y.to(torch::kFloat)})); });
          ASSERT_EQ(a.size(), 4u);
          ASSERT_EQ(a.size(), b.size());
          for (size_t i = 0; i < a.size(); ++i) {
            EXPECT_TRUE(test::bit_identical(a[i], b[i]))
                << "crop " << crop << " random " << random_crop << " flip " << hflip << " epoch " << e << " batch " << i;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace clr
