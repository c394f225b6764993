#!/usr/bin/env bash
# Run ON THE GPU MACHINE (docs/GPU.md): clean builds of this tree and of another source
# tree (BASE, e.g. an earlier commit: `git archive COMMIT | tar -x -C .deps/base` here,
# carried), side by side, both with warnings as errors against the CUDA LibTorch; the
# CPU time (user + sys) of each build is the compile-time figure (wall time depends on
# what runs beside it). Then the test suite of this tree (SKIP_TESTS=1: none). Results:
# $OUT/compile_time.txt, $OUT/*-build.log, $OUT/*-ninja.log (per step), $OUT/ctest.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/device-out}"
BASE="${BASE:-.deps/base}"
JOBS="${JOBS:-8}"
mkdir -p "$OUT" .deps/root
for f in .deps/debs/*.deb; do dpkg -x "$f" .deps/root; done
DEPS="$PWD/.deps/root/usr"
TORCH_CMAKE="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
python3 -c 'import torch; print("torch", torch.__version__)' > "$OUT/env.txt" 2>&1

build() {  # SOURCE BUILD_DIR LABEL
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_CMAKE;$DEPS" \
    -DOPENSSL_ROOT_DIR="$DEPS" -DCLR_GTEST_SOURCE_DIR="$DEPS/src/googletest" -DCLR_PYTHON="$(command -v python3)" \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DTORCH_CUDA_ARCH_LIST=9.0 -DCLR_WARNINGS_AS_ERRORS=ON > "$OUT/$3-configure.log" 2>&1
  local TIMEFORMAT="$3: clean build %R s wall, %U s user, %S s sys"
  { time cmake --build "$2" -j "$JOBS" > "$OUT/$3-build.log" 2>&1; echo "$3: build exit $?"; } 2>> "$OUT/compile_time.txt" \
    >> "$OUT/compile_time.txt"
  echo "$3: $(grep -c 'warning:' "$OUT/$3-build.log") warnings, $(grep -c '^\[' "$OUT/$3-build.log") build steps" \
    >> "$OUT/compile_time.txt"
}
build "$BASE" build-base base &
build . build-cuda new &
wait
cp build-base/.ninja_log "$OUT/base-ninja.log"; cp build-cuda/.ninja_log "$OUT/new-ninja.log"  # per-step times
cat "$OUT/compile_time.txt"
[ "${SKIP_TESTS:-0}" = 1 ] && exit 0
CLR_TEST_ALLOW_MISSING_SYSTEM_DATA=1 CLR_NUM_THREADS=2 timeout "${TEST_SECONDS:-300}" \
  ctest --test-dir build-cuda --output-on-failure -j "$(nproc)" --timeout 200 > "$OUT/ctest.log" 2>&1
tail -25 "$OUT/ctest.log"
