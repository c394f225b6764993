// main() of every test suite: threads are set the way the `clr` program sets them
// (hardware threads unless CLR_NUM_THREADS says otherwise), then GoogleTest runs.
#include <gtest/gtest.h>

#include "clr/core/runtime.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  clr::runtime::configure_threads(0);
  return RUN_ALL_TESTS();
}
