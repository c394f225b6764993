// The paper's metrics on a hand-made accuracy matrix whose values are known: average
// accuracy, backward transfer, forgetting (the max over earlier rows, not just the
// diagonal) and the first task's curve.
#include <gtest/gtest.h>

#include "clr/eval/results.h"
#include "clr/eval/tensorboard.h"
#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "test_util.h"

namespace clr {
namespace {

eval::AccuracyMatrix matrix() {
  // Task 1 improves while task 2 is learned (0.95 is its best, not the diagonal's 0.9).
  return {{0.9, std::nullopt, std::nullopt, std::nullopt},
          {0.95, 0.8, std::nullopt, std::nullopt},
          {0.7, 0.6, 0.7, std::nullopt},
          {0.5, 0.7, 0.65, 0.4}};
}

TEST(Metrics, AverageAccuracyIsTheMeanOfTheLastRow) {
  EXPECT_NEAR(eval::average_accuracy(matrix()), (0.5 + 0.7 + 0.65 + 0.4) / 4, 1e-12);
}

TEST(Metrics, BackwardTransferComparesTheLastRowWithTheDiagonal) {
  EXPECT_NEAR(eval::backward_transfer(matrix()), ((0.5 - 0.9) + (0.7 - 0.8) + (0.65 - 0.7)) / 3, 1e-12);
  EXPECT_NEAR(eval::backward_transfer(matrix()), -0.55 / 3, 1e-12);
}

TEST(Metrics, ForgettingTakesTheBestEarlierAccuracyOfEachTask) {
  // task 1: 0.95 - 0.5; task 2: max(0.8, 0.6) - 0.7; task 3: 0.7 - 0.65.
  EXPECT_NEAR(eval::forgetting(matrix()), (0.45 + 0.1 + 0.05) / 3, 1e-12);
}

TEST(Metrics, FirstTaskCurveIsTheFirstColumn) {
  const std::vector<double> c = eval::first_task_curve(matrix());
  ASSERT_EQ(c.size(), 4u);
  EXPECT_DOUBLE_EQ(c[0], 0.9);
  EXPECT_DOUBLE_EQ(c[1], 0.95);
  EXPECT_DOUBLE_EQ(c[2], 0.7);
  EXPECT_DOUBLE_EQ(c[3], 0.5);
}

TEST(Metrics, PositiveTransferGivesPositiveBwtAndNegativeForgetting) {
  const eval::AccuracyMatrix r = {{0.5, std::nullopt}, {0.8, 0.6}};
  EXPECT_NEAR(eval::backward_transfer(r), 0.3, 1e-12);
  EXPECT_NEAR(eval::forgetting(r), -0.3, 1e-12);
  EXPECT_NEAR(eval::average_accuracy(r), 0.7, 1e-12);
}

TEST(Metrics, OneTaskHasNoTransferOrForgetting) {
  const eval::AccuracyMatrix r = {{0.42}};
  EXPECT_EQ(eval::backward_transfer(r), 0.0);
  EXPECT_EQ(eval::forgetting(r), 0.0);
  EXPECT_DOUBLE_EQ(eval::average_accuracy(r), 0.42);
}

}  // namespace

TEST(TensorBoard, EventFilesReadBackWithTheirChecksums) {
  EXPECT_EQ(eval::crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(eval::crc32c("", 0), 0u);
  test::TempDir dir("tensorboard");
  std::string file;
  {
    eval::TensorBoardWriter w(dir.file("board"));
    w.scalar("loss/digits", 1.25, 1);
    w.scalar("loss/digits", 0.5, 2);
    w.scalar("average_accuracy", 0.875, 3000000000ll);
    file = w.path();
  }
  EXPECT_NE(file.find("/events.out.tfevents."), std::string::npos);
  const auto s = eval::read_tensorboard_scalars(file);
  ASSERT_EQ(s.size(), 3u);  // the file_version record carries no scalar
  EXPECT_EQ(s[0].tag, "loss/digits");
  EXPECT_EQ(s[0].step, 1);
  EXPECT_EQ(s[0].value, 1.25f);
  EXPECT_EQ(s[1].value, 0.5f);
  EXPECT_EQ(s[2].tag, "average_accuracy");
  EXPECT_EQ(s[2].step, 3000000000ll);
  EXPECT_GT(s[2].wall_time, 1.7e9);
  // A flipped byte in an event fails its checksum.
  std::string bytes = read_file(file);
  bytes[bytes.size() - 6] ^= 0x01;
  write_file_atomic(file, bytes);
  EXPECT_NE(test::message_of<FormatError>([&] { eval::read_tensorboard_scalars(file); }).find("checksum"),
            std::string::npos);
}

}  // namespace clr
