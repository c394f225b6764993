#!/usr/bin/env bash
# Run ON THE GPU MACHINE (docs/GPU.md): task inference measured (docs/RESULTS.md,
# docs/SERVING.md). Builds (unless BIN holds build-cuda's clr and clr_bench_serve), then
# side by side: the gpu tests and serving without a task (clr_bench_serve --identify,
# ResNet-18 at 64 px and ResNet-50 at 224 px, 64 tasks), while the CPU draws the 22-task
# suite at full scale from its bundle; then CLR on the suite as docs/RESULTS.md's runs
# (32 px, 5 epochs, fp32, seed 0, models/resnet18-pretrain-64px.safetensors) with every
# task-inference method. Carry [".deps/root-slim.tar.xz", ".deps/bundle-suite.tar.gz"].
#   OUT=... bash scripts/device/task_inference.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/device-out}"
W="$PWD/device-work"
rm -rf "$W"
mkdir -p "$OUT" "$W"
start=$(date +%s)
stage() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/stages.log"; }
if [ -z "${BIN:-}" ]; then
  stage "build"
  SKIP_TESTS=1 SKIP_BENCH=1 OUT="$OUT" bash scripts/device/build_and_test.sh > "$OUT/build-run.log" 2>&1 ||
    { stage "build failed"; tail -40 "$OUT/build-run.log"; exit 1; }
  tar -czf "$OUT/bin-ti.tgz" build-cuda/clr build-cuda/clr_bench_serve
  BIN=build-cuda
fi
mkdir -p .deps/root
[ -d .deps/root/usr ] || tar -xJf .deps/root-slim.tar.xz -C .deps/root
export LD_LIBRARY_PATH="$PWD/.deps/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
CLR="$BIN/clr"
stage "suite (full, 64 px) from its bundle, beside the gpu tests and the serving benchmark"
( mkdir -p "$W/bundle" && tar -xzf .deps/bundle-suite.tar.gz -C "$W/bundle" &&
  "$CLR" data build --bundle "$W/bundle" --out "$W/suite" --scale full --size 64 --overwrite > "$W/suite.log" 2>&1
  echo "suite exit $?" >> "$W/suite.log" ) &
suite=$!
if [ -d build-cuda/tests ]; then
  ctest --test-dir build-cuda -L gpu -V 2>&1 | grep -E "\[gpu\]|Passed|Failed|Skipped" > "$OUT/gpu.log"
fi
S="$BIN/clr_bench_serve"
timeout 150 "$S" --device cuda --arch resnet18 --small-stem --size 64 --batch 64 --tasks 64 --steps 10 --identify all \
  > "$OUT/serve-identify-r18.txt" 2>&1
timeout 150 "$S" --device cuda --arch resnet50 --size 224 --batch 64 --tasks 64 --steps 10 --identify gaussian \
  > "$OUT/serve-identify-r50.txt" 2>&1
stage "serving benchmarks done"
wait $suite
tail -2 "$W/suite.log" | tee -a "$OUT/stages.log"
stage "clr on the suite with every task-inference method"
left=$(( ${DEADLINE:-575} - ($(date +%s) - start) ))
timeout "$left" "$CLR" run "$W/suite/imagefolder" --backbone models/resnet18-pretrain-64px.safetensors \
  --size 32 --epochs 5 --patience 100 --device cuda --seed 0 --precision fp32 --memory-format contiguous \
  --task-inference gaussian,task-gaussian,energy,max-softmax --out "$W/clr" > "$OUT/clr-run.log" 2>&1
stage "clr run exit $?"
cp "$W/clr/results.json" "$OUT/clr-results.json" 2>/dev/null
grep -E "without a task oracle|task [0-9]+ done" "$OUT/clr-run.log" | tail -8 >> "$OUT/stages.log"
tar -czf "$OUT/clr-adapters.tgz" -C "$W/clr" adapters 2>/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/gpu-name.txt"
stage "done"
