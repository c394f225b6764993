#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/hash.h"
#include "clr/core/log.h"
#include "clr/core/runtime.h"
#include "clr/core/safetensors.h"
#include "clr/core/tensor_io.h"
#include "test_util.h"

namespace clr {
namespace {

using test::message_of;

TEST(Error, CheckThrowsTheNamedTypeWithItsMessage) {
  const int channels = 1;
  const std::string msg = message_of<ConfigError>(
      [&] { CLR_CHECK(channels == 3, ConfigError, "expected 3 channels, got ", channels, " in 'x.png'"); });
  EXPECT_EQ(msg, "expected 3 channels, got 1 in 'x.png'");
  EXPECT_NO_THROW(CLR_CHECK(channels == 1, ConfigError, "unused"));
}

TEST(Error, AssertThrowsInternalErrorWithLocation) {
  const std::string msg = message_of<InternalError>([] { CLR_ASSERT(1 + 1 == 3, "arithmetic"); });
  EXPECT_NE(msg.find("1 + 1 == 3"), std::string::npos);
  EXPECT_NE(msg.find("core_test.cpp"), std::string::npos);
  EXPECT_NE(msg.find("arithmetic"), std::string::npos);
}

TEST(Error, KindsAreDistinct) {
  EXPECT_EQ(NotFoundError("x").kind(), ErrorKind::kNotFound);
  EXPECT_EQ(FormatError("x").kind(), ErrorKind::kFormat);
  EXPECT_EQ(IncompatibleError("x").kind(), ErrorKind::kIncompatible);
  EXPECT_STREQ(error_kind_name(ErrorKind::kFormat), "format error");
}

TEST(Log, ParsesLevelsAndRejectsOthers) {
  EXPECT_EQ(log::parse_level("debug"), log::Level::kDebug);
  EXPECT_EQ(log::parse_level("off"), log::Level::kOff);
  EXPECT_THROW(log::parse_level("verbose"), ConfigError);
}

TEST(Runtime, ThreadsFromFlagThenEnvironmentThenHardware) {
  ::unsetenv("CLR_NUM_THREADS");
  ::unsetenv("OMP_NUM_THREADS");
  EXPECT_EQ(runtime::resolve_threads(0).source, "hardware");
  const int hw = runtime::resolve_threads(0).intra_op;
  EXPECT_GE(hw, 1);
  EXPECT_EQ(runtime::resolve_threads(1).intra_op, 1);
  EXPECT_EQ(runtime::resolve_threads(1).source, "flag");
  // More than the hardware has is capped to it (99999 threads used to hang the process).
  EXPECT_EQ(runtime::resolve_threads(99999).intra_op, hw);
  EXPECT_EQ(runtime::resolve_threads(99999).source, "flag");
  ::setenv("CLR_NUM_THREADS", "1", 1);
  EXPECT_EQ(runtime::resolve_threads(0).intra_op, 1);
  EXPECT_EQ(runtime::resolve_threads(0).source, "CLR_NUM_THREADS");
  ::setenv("CLR_NUM_THREADS", "99999", 1);
  EXPECT_EQ(runtime::resolve_threads(0).intra_op, hw);
  ::setenv("CLR_NUM_THREADS", "two", 1);
  const std::string msg = message_of<ConfigError>([] { runtime::resolve_threads(0); });
  EXPECT_NE(msg.find("CLR_NUM_THREADS='two'"), std::string::npos);
  ::unsetenv("CLR_NUM_THREADS");
  runtime::configure_threads(1);
  EXPECT_EQ(at::get_num_threads(), 1);
}

TEST(Runtime, ParsesDevices) {
  EXPECT_TRUE(runtime::parse_device("cpu").is_cpu());
  EXPECT_THROW(runtime::parse_device("tpu"), ConfigError);
  EXPECT_THROW(runtime::parse_device("cuda:x"), ConfigError);
  if (!torch::cuda::is_available()) {
    EXPECT_THROW(runtime::parse_device("cuda"), NotFoundError);
  }
}

TEST(Hash, Sha256KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Hash, FingerprintDependsOnValuesNamesAndShapesNotLayout) {
  torch::manual_seed(0);
  at::Tensor w = torch::randn({4, 6});
  const std::string base = fingerprint({{"w", w}});
  EXPECT_EQ(base.rfind("sha256:", 0), 0u);
  EXPECT_EQ(fingerprint({{"w", w.t().contiguous().t()}}), base);  // non-contiguous, same values
  EXPECT_NE(fingerprint({{"v", w}}), base);
  EXPECT_NE(fingerprint({{"w", w.reshape({6, 4})}}), base);
  at::Tensor changed = w.clone();
  changed[2][3] += 1e-6f;
  EXPECT_NE(fingerprint({{"w", changed}}), base);
}

// A safetensors file of this header text and `data_bytes` zero bytes of data.
std::string with_header(const std::string& json, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  return out + json + std::string(data_bytes, '\0');
}

class SafetensorsTest : public ::testing::Test {
 protected:
  test::TempDir dir{"safetensors"};
};

TEST_F(SafetensorsTest, RoundTripsEveryDtypeAndMetadata) {
  torch::manual_seed(1);
  TensorMap t = {
      {"f32", torch::randn({3, 5})},
      {"f16", torch::randn({7}).to(torch::kHalf)},
      {"bf16", torch::randn({2, 2, 3}).to(torch::kBFloat16)},
      {"f64", torch::randn({2}, torch::kDouble)},
      {"i64", torch::arange(10, torch::kLong)},
      {"i32", torch::arange(-4, 4, torch::kInt)},
      {"u8", torch::randint(0, 255, {9}).to(torch::kByte)},
      {"i8", torch::randint(-100, 100, {4}).to(torch::kChar)},
      {"bool", torch::rand({5}) > 0.5},
      {"scalar", torch::tensor(3.5f).reshape({})},
      {"empty", torch::empty({0, 4})},
      {"strided", torch::randn({4, 3}).t()},
  };
  const std::string path = dir.file("a.safetensors");
  write_safetensors(path, t, {{"arch", "resnet18"}, {"note", "ünïcode ✓"}});
  const SafetensorsFile f = read_safetensors(path);
  ASSERT_EQ(f.tensors.size(), t.size());
  for (const auto& [k, v] : t) {
    ASSERT_TRUE(f.tensors.count(k)) << k;
    EXPECT_TRUE(test::bit_identical(f.tensors.at(k), v.contiguous())) << k;
  }
  EXPECT_EQ(f.metadata.at("note"), "ünïcode ✓");
  EXPECT_EQ(read_safetensors_metadata(path).at("arch"), "resnet18");
  EXPECT_EQ(fingerprint(f.tensors), fingerprint(t));
  EXPECT_EQ(detect_weight_format(path), WeightFormat::kSafetensors);
}

TEST_F(SafetensorsTest, HeaderIsAlignedTo8Bytes) {
  const std::string bytes = encode_safetensors({{"x", torch::ones({3})}});
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 12);
}

TEST_F(SafetensorsTest, TruncatedFileIsAFormatErrorNamingFileAndTensor) {
  const std::string good = encode_safetensors({{"a", torch::ones({4})}, {"b", torch::ones({1000})}});
  const std::string path = dir.file("cut.safetensors");
  write_file_atomic(path, good.substr(0, good.size() - 100));
  const std::string msg = message_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_NE(msg.find("cut.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'b'"), std::string::npos) << msg;

  write_file_atomic(path, good.substr(0, 20));  // inside the header
  EXPECT_NE(message_of<FormatError>([&] { read_safetensors(path); }).find("truncated"), std::string::npos);
  write_file_atomic(path, "abc");
  EXPECT_NE(message_of<FormatError>([&] { read_safetensors(path); }).find("at least 8"), std::string::npos);
}

TEST_F(SafetensorsTest, MalformedHeadersAreFormatErrors) {
  const std::string path = dir.file("bad.safetensors");
  write_file_atomic(path, with_header("{not json", 0));
  EXPECT_NE(message_of<FormatError>([&] { read_safetensors(path); }).find("not valid JSON"), std::string::npos);
  write_file_atomic(path, with_header(R"({"x":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}})", 1));
  EXPECT_NE(message_of<FormatError>([&] { read_safetensors(path); }).find("F8_E9"), std::string::npos);
  write_file_atomic(path, with_header(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4));
  const std::string msg = message_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_NE(msg.find("need 8"), std::string::npos) << msg;
}

// Issue 15, rows 10 and 11: offsets that overlap or leave a hole, and a shape whose
// byte count wraps past 64 bits, are refused before any tensor is allocated.
TEST_F(SafetensorsTest, OverlapsHolesAndWrappingShapesAreFormatErrors) {
  const std::string path = dir.file("tiles.safetensors");
  write_file_atomic(path, with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                      12));
  std::string msg = message_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_NE(msg.find("'b' (bytes 4-12) overlaps"), std::string::npos) << msg;
  write_file_atomic(path, with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                      12));
  msg = message_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_NE(msg.find("bytes 4-8 of the data belong to no tensor"), std::string::npos) << msg;
  write_file_atomic(path, with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 10));
  msg = message_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_NE(msg.find("the last 6 bytes"), std::string::npos) << msg;
  // [2^62 + 16, 4] of F32: 2^66 + 256 bytes, which wraps to 256 in 64 bits.
  write_file_atomic(path, with_header(R"({"a":{"dtype":"F32","shape":[4611686018427387920,4],)"
                                      R"("data_offsets":[0,256]}})",
                                      256));
  msg = message_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_NE(msg.find("more bytes than a 64-bit size holds"), std::string::npos) << msg;
  // Tensors of zero elements take no bytes anywhere.
  write_file_atomic(path, encode_safetensors({{"a", torch::ones({0})}, {"b", torch::ones({2})}, {"c", torch::ones({0, 3})}}));
  EXPECT_EQ(read_safetensors(path).tensors.size(), 3u);
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  const std::string msg = message_of<NotFoundError>([&] { read_safetensors(dir.file("nope.safetensors")); });
  EXPECT_NE(msg.find("nope.safetensors"), std::string::npos);
  EXPECT_THROW(load_tensor_file(dir.file("nope.pth")), NotFoundError);
}

TEST_F(SafetensorsTest, UnknownFormatIsRejected) {
  const std::string path = dir.file("weights.bin");
  write_file_atomic(path, std::string(64, 'z'));
  EXPECT_EQ(detect_weight_format(path), WeightFormat::kUnknown);
  EXPECT_THROW(load_tensor_file(path), FormatError);
}

TEST(AtomicFile, FailedWriteKeepsTheOldFileAndLeavesNoTemporary) {
  test::TempDir dir("atomic");
  const std::string path = dir.file("x.txt");
  write_file_atomic(path, "old");
  try {
    AtomicFile f(path);
    f.write("new, half written");
    throw std::runtime_error("simulated crash before commit");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(list_directory(dir.path()), std::vector<std::string>{"x.txt"});
  write_file_atomic(path, "new");
  EXPECT_EQ(read_file(path), "new");
  EXPECT_THROW(write_file_atomic(dir.file("no/such/dir/x"), "y"), NotFoundError);
}

TEST(Directories, MakeListAndRemoveTrees) {
  test::TempDir dir("dirs");
  const std::string deep = dir.file("a/b/c");
  make_directories(deep);
  make_directories(deep);  // idempotent
  EXPECT_TRUE(directory_exists(deep));
  write_file_atomic(deep + "/f", "x");
  write_file_atomic(dir.file("a/g"), "y");
  EXPECT_EQ(list_directory(dir.file("a")), (std::vector<std::string>{"b", "g"}));
  EXPECT_THROW(make_directories(dir.file("a/g/h")), NotFoundError);
  EXPECT_TRUE(remove_tree(dir.file("a")));
  EXPECT_FALSE(directory_exists(dir.file("a")));
  EXPECT_TRUE(remove_tree(dir.file("a")));  // already gone
  EXPECT_THROW(list_directory(dir.file("a")), NotFoundError);
}

}  // namespace
}  // namespace clr
