#!/usr/bin/env bash
# Run ON THE GPU MACHINE (docs/GPU.md): unpacks the carried .debs, builds clr against
# the CUDA LibTorch inside python torch, runs the test suite and the benchmarks.
# Results go to $OUT (or ./device-out). SKIP_TESTS=1: build only; SKIP_BENCH=1: no benchmarks.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT" .deps/root
# The packages as .debs (.deps/debs) or already unpacked and slimmed (.deps/root-slim.tar.xz,
# scripts/device/fetch_debs.sh): whichever was carried.
[ -f .deps/root-slim.tar.xz ] && tar -xJf .deps/root-slim.tar.xz -C .deps/root
shopt -s nullglob
for f in .deps/debs/*.deb; do dpkg -x "$f" .deps/root; done
shopt -u nullglob
DEPS="$PWD/.deps/root/usr"
TORCH_CMAKE="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
  g++ --version | head -1; cmake --version | head -1; nvcc --version | tail -1
} 2>&1 | tee "$OUT/env.txt"

set -e
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_CMAKE;$DEPS" \
  -DOPENSSL_ROOT_DIR="$DEPS" \
  -DCLR_GTEST_SOURCE_DIR="$DEPS/src/googletest" \
  -DCLR_PYTHON="$(command -v python3)" \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DTORCH_CUDA_ARCH_LIST=9.0 \
  -DCLR_PYTHON_MODULE=OFF -DCLR_INSTALL=OFF -DCLR_WARNINGS_AS_ERRORS=ON 2>&1 | tee "$OUT/configure.log"
cmake --build build-cuda 2>&1 | tee "$OUT/build.log" | grep -E "warning|error|FAILED" || true
set +e
[ "${SKIP_TESTS:-0}" = 1 ] && exit 0
CLR_TEST_ALLOW_MISSING_SYSTEM_DATA=1 CLR_NUM_THREADS=4 ctest --test-dir build-cuda --output-on-failure -j "$(nproc)" --timeout 400 2>&1 | tee "$OUT/ctest.log" | tail -30
ctest --test-dir build-cuda -L gpu -V 2>&1 | grep -E "\[gpu\]|Passed|Failed|Skipped" | tee "$OUT/gpu.log"
[ "${SKIP_BENCH:-0}" = 1 ] && exit 0
B=build-cuda/clr_bench_throughput
{
  $B --arch resnet18 --size 64 --small-stem --batch 32,256 --device cuda --steps 30
  $B --arch resnet50 --size 224 --batch 32,256 --device cuda --steps 30
  $B --arch resnet50 --size 224 --batch 32,256 --device cuda --steps 30 --channels-last
} 2>&1 | tee "$OUT/bench.txt"
