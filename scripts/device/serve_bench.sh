#!/usr/bin/env bash
# Run ON THE GPU MACHINE (docs/GPU.md): the serving engine in fp32 and in its CUDA default
# (bf16 autocast, channels-last) side by side with PyTorch's forward of the same CLR
# network (bench/pytorch_step.py --forward, fp32 and bf16 + channels-last), one task and
# batches mixing 8 and 64 tasks, ResNet-50 at 224 px and ResNet-18 (small stem) at 64 px.
# Builds first unless BIN (a folder holding clr_bench_serve) is given; then the gpu tests.
# Results in $OUT: serve-*.txt (tables and JSON lines), gpu.log.
#   OUT=... bash scripts/device/serve_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
if [ -z "${BIN:-}" ]; then
  SKIP_TESTS=1 SKIP_BENCH=1 OUT="$OUT" bash scripts/device/build_and_test.sh > "$OUT/build-run.log" 2>&1
  BIN=build-cuda
  tar -czf "$OUT/bin-serve.tgz" build-cuda/clr build-cuda/clr_bench_serve build-cuda/clr_bench_throughput 2>/dev/null
  ctest --test-dir build-cuda -L gpu -V 2>&1 | grep -E "\[gpu\]|Passed|Failed|Skipped" > "$OUT/gpu.log"
fi
S="$BIN/clr_bench_serve"
run() {  # name, then clr_bench_serve's arguments
  local name=$1
  shift
  for p in "fp32 contiguous" "auto auto"; do
    read -r prec layout <<< "$p"
    echo "== $name, --precision $prec --memory-format $layout" >> "$OUT/serve-$name.txt"
    timeout 150 "$S" "$@" --device cuda --precision "$prec" --memory-format "$layout" >> "$OUT/serve-$name.txt" 2>&1
  done
  for flags in "" "--bf16 --channels-last"; do
    echo "== $name, PyTorch forward $flags" >> "$OUT/serve-$name.txt"
    timeout 100 python3 bench/pytorch_step.py --forward --device cuda --batch 64 --steps 20 $flags "${PT_ARGS[@]}" \
      >> "$OUT/serve-$name.txt" 2>&1
  done
}
PT_ARGS=(--arch resnet50 --size 224)
run r50 --arch resnet50 --size 224 --batch 64 --tasks 64 --steps 10
PT_ARGS=(--arch resnet18 --size 64 --small-stem)
run r18 --arch resnet18 --size 64 --small-stem --batch 64 --tasks 64 --steps 10
nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/gpu-name.txt"
