#!/usr/bin/env bash
# Run ON THE GPU MACHINE (docs/GPU.md): clr side by side with the authors' PyTorch CLR
# (bench/authors/README.md) and with a tuned PyTorch version of the same network, all in
# one call. Every measurement appends JSON lines to $OUT/side_by_side.jsonl; at the end
# bench/authors/summary.py prints the tables with ratios ($OUT/summary.md).
#   STAGES="step serve sequence" OUT=... [BIN=folder with clr, clr_bench_*] bash bench/authors/run.sh
# Without BIN it builds first (scripts/device/build_and_test.sh) and packs the binaries into
# $OUT/bin-authors.tgz, so that a later call can carry them and set BIN. Carry
# .deps/root-slim.tar.xz (the runtime libraries) and, for the sequence, nothing else: its
# image files are drawn there by bench/make_folder.py.
#   step      train step, images/s: clr fp32, fp32 channels-last, bf16 + channels-last (its
#             CUDA default); the authors' train() (fp32, as published); PyTorch tuned
#             (bf16 autocast + channels-last, bench/pytorch_step.py). ResNet-50 at 224 px,
#             batch 32 and 256; ResNet-18 at 224 px, batch 256; ResNet-18 small stem, 64 px, batch 32.
#   serve     one task and a batch mixing 64 tasks (clr_bench_serve, its CUDA default) against
#             PyTorch's forward of one task in bf16 + channels-last; ResNet-50 224 px, ResNet-18 64 px.
#   sequence  9 tasks of generated files at 64 px from the shipped backbone, the same recipe
#             (EPOCHS epochs, batch 32, Adam 1e-3, step schedule, best validation state): the
#             authors' loop on the files as their DataLoader reads them, the same loop on
#             tensors decoded once, `clr run`, and `clr run --parallel-tasks 8` (SIDES picks
#             some of authors-files authors-decoded clr clr-parallel8).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/device-out}"
STAGES="${STAGES:-step serve sequence}"
EPOCHS="${EPOCHS:-15}"
PER_CLASS="${PER_CLASS:-160}"
SIDES="${SIDES:-authors-files authors-decoded clr clr-parallel8}"  # of the sequence stage
DEVICE="${DEVICE:-cuda}"  # cpu: a smoke test of this script
J="$OUT/side_by_side.jsonl"
W="$PWD/device-work"
mkdir -p "$OUT" "$W"
start=$(date +%s)
stage() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/stages.log"; }
if [ ! -d bench/authors/code/network ]; then
  echo "no authors' code in bench/authors/code (bench/authors/README.md)" >&2
  exit 2
fi
[ "$DEVICE" = cpu ] && PY="${PYTHON:-/usr/bin/python3}" || PY="${PYTHON:-python3}"
if [ -z "${BIN:-}" ]; then
  stage "build"
  SKIP_TESTS=1 SKIP_BENCH=1 OUT="$OUT" bash scripts/device/build_and_test.sh > "$OUT/build-run.log" 2>&1 ||
    { stage "build failed"; tail -40 "$OUT/build-run.log"; exit 1; }
  tar -czf "$OUT/bin-authors.tgz" build-cuda/clr build-cuda/clr_bench_serve build-cuda/clr_bench_throughput
  BIN=build-cuda
  if [ "${GPU_TESTS:-1}" = 1 ]; then
    stage "gpu tests"
    ctest --test-dir build-cuda -L gpu -V 2>&1 | grep -E "\[gpu\]|Passed|Failed|Skipped" > "$OUT/gpu.log"
  fi
fi
mkdir -p .deps/root
[ -d .deps/root/usr ] || { [ -f .deps/root-slim.tar.xz ] && tar -xJf .deps/root-slim.tar.xz -C .deps/root; }
export LD_LIBRARY_PATH="$PWD/.deps/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/gpu-name.txt" 2>&1
A=bench/authors/harness.py
T="$BIN/clr_bench_throughput"

if [[ " $STAGES " == *" step "* ]]; then
  for cfg in "resnet50 224 32 20" "resnet50 224 256 20" "resnet18 224 256 20" "resnet18-small 64 32 50"; do
    read -r arch size batch steps <<< "$cfg"
    stem=()
    [ "$arch" = resnet18-small ] && { arch=resnet18; stem=(--small-stem); }
    stage "step $arch ${stem[*]} $size px batch $batch"
    common=(--arch "$arch" "${stem[@]}" --size "$size" --batch "$batch" --device "$DEVICE" --penalty 1e-5)
    timeout 120 "$T" "${common[@]}" --steps "$steps" --precision fp32 --json "$J" > /dev/null 2>> "$OUT/errors.log"
    timeout 120 "$T" "${common[@]}" --steps "$steps" --precision fp32 --channels-last --json "$J" > /dev/null 2>> "$OUT/errors.log"
    timeout 120 "$T" "${common[@]}" --steps "$steps" --precision bf16 --channels-last --json "$J" > /dev/null 2>> "$OUT/errors.log"
    timeout 150 "$PY" "$A" step "${common[@]}" --steps 10 --rounds 5 >> "$J" 2>> "$OUT/errors.log"
    timeout 120 "$PY" bench/pytorch_step.py "${common[@]}" --steps "$steps" --bf16 --channels-last >> "$J" 2>> "$OUT/errors.log"
  done
fi

if [[ " $STAGES " == *" serve "* ]]; then
  for cfg in "resnet50 224" "resnet18-small 64"; do
    read -r arch size <<< "$cfg"
    stem=()
    [ "$arch" = resnet18-small ] && { arch=resnet18; stem=(--small-stem); }
    stage "serve $arch ${stem[*]} $size px"
    timeout 200 "$BIN/clr_bench_serve" --arch "$arch" "${stem[@]}" --size "$size" --batch 64 --tasks 64 --steps 10 \
      --device "$DEVICE" --identify none 2>> "$OUT/errors.log" | grep '^{' >> "$J"
    timeout 100 "$PY" bench/pytorch_step.py --forward --arch "$arch" "${stem[@]}" --size "$size" --batch 64 \
      --steps 20 --device "$DEVICE" --bf16 --channels-last >> "$J" 2>> "$OUT/errors.log"
  done
fi

if [[ " $STAGES " == *" sequence "* ]]; then
  stage "sequence: drawing 9 tasks of files"
  "$PY" bench/make_folder.py --out "$W/seq" --tasks 9 --classes 4 --per-class "$PER_CLASS" --size 96 --val > /dev/null
  BACKBONE=models/resnet18-pretrain-64px.safetensors
  e2e() {  # side, then the command
    local side=$1
    shift
    local t0 t1
    rm -rf "${W:?}/$side"  # a fresh run: a warm machine keeps device-work from an earlier call
    t0=$(date +%s.%N)
    "$@" > "$W/$side.log" 2>&1
    local rc=$?
    t1=$(date +%s.%N)
    "$PY" - "$side" "$t0" "$t1" "$rc" "$W/$side.log" "$W/$side/results.json" "$EPOCHS" >> "$J" <<'PY'
import json, os, sys
side, t0, t1, rc, log, results, epochs = sys.argv[1:]
line = {"bench": "sequence", "side": side, "process_seconds": float(t1) - float(t0), "rc": int(rc), "epochs": int(epochs)}
if os.path.exists(results):
    r = json.load(open(results))
    line.update(average_accuracy=r["average_accuracy"], tasks=len(r["tasks"]),
                epochs_run=sum(len(t["epoch_seconds"]) for t in r["tasks"]))
else:
    last = [json.loads(l) for l in open(log) if l.startswith("{") and '"average_accuracy"' in l]
    if last:
        line.update(average_accuracy=last[-1]["average_accuracy"], tasks=last[-1]["tasks"],
                    epochs_run=sum(json.loads(l)["epochs"] for l in open(log) if l.startswith("{") and '"task"' in l))
print(json.dumps(line))
PY
  }
  recipe=(--size 64 --epochs "$EPOCHS" --batch 32)
  if [[ " $SIDES " == *" authors-files "* ]]; then
    stage "sequence: authors' loop on files"
    e2e authors-files timeout 420 "$PY" "$A" sequence --data "$W/seq" --small-stem --backbone "$BACKBONE" "${recipe[@]}" --device "$DEVICE"
  fi
  if [[ " $SIDES " == *" authors-decoded "* ]]; then
    stage "sequence: authors' loop on decoded tensors"
    e2e authors-decoded timeout 300 "$PY" "$A" sequence --data "$W/seq" --small-stem --backbone "$BACKBONE" "${recipe[@]}" --device "$DEVICE" --decoded
  fi
  if [[ " $SIDES " == *" clr "* ]]; then
    stage "sequence: clr run"
    e2e clr timeout 300 "$BIN/clr" run "$W/seq" --backbone "$BACKBONE" "${recipe[@]}" --device "$DEVICE" --out "$W/clr" --task-inference none
  fi
  if [[ " $SIDES " == *" clr-parallel8 "* ]]; then
    stage "sequence: clr run --parallel-tasks 8"
    e2e clr-parallel8 timeout 300 "$BIN/clr" run "$W/seq" --backbone "$BACKBONE" "${recipe[@]}" --device "$DEVICE" --out "$W/clr-parallel8" \
      --task-inference none --parallel-tasks 8
  fi
  cp "$W"/*.log "$OUT/" 2>/dev/null
fi
stage "done"
"$PY" bench/authors/summary.py "$J" | tee "$OUT/summary.md"
