#!/usr/bin/env bash
# The sanitizer stage of the tests (issue 15): builds clr with clang, AddressSanitizer
# and UBSan in ./build-asan (CLR_SANITIZE, CLR_FUZZ), runs the unit tests under them and
# every libFuzzer target of fuzz/ for a short while from the committed corpus.
#
#   bash scripts/sanitize.sh [RUNS] [SECONDS]    # per fuzz target (default 20000 runs or 20 s)
#
# scripts/setup.sh --test runs it after the main test suite; fuzz/README.md has the
# long runs and their figures. Needs clang and libclang-rt-14-dev (setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20000}
SECONDS_EACH=${2:-20}
BUILD=${ASAN_BUILD_DIR:-build-asan}
CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLR_SANITIZE=ON -DCLR_FUZZ=ON \
  -DCLR_BUILD_BENCH=OFF -DCLR_WARNINGS_AS_ERRORS=ON > /dev/null
cmake --build "$BUILD" --target clr_fuzz clr_unit_tests clr_cli
# LibTorch itself is not instrumented: its containers cannot be checked for overflow, and
# it keeps allocations until exit.
export ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$PWD/fuzz/ubsan.supp
# Every unit test but two that check numerical equivalences over whole-network sgd runs
# (~200 s each here, ~10 minutes each under ASan); the code they run is run by the others.
ctest --test-dir "$BUILD" -L unit --output-on-failure -j "$(nproc)" --timeout 1800 \
  -E '^Baselines\.(ZeroWeightIsSgdBitForBit|SgdForgetsAConflictingSecondTask)$'
bash fuzz/run_all.sh "$BUILD" "$RUNS" "$SECONDS_EACH"
