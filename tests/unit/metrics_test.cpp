// The paper's metrics on a hand-made accuracy matrix whose values are known: average
// accuracy, backward transfer, forgetting (the max over earlier rows, not just the
// diagonal) and the first task's curve.
#include <gtest/gtest.h>

#include "clr/eval/results.h"

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
}  // namespace clr
