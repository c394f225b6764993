#!/usr/bin/env bash
# One device call of suite runs (docs/RESULTS.md), from carried binaries instead of a
# build: unpacks .deps/rt.tgz (the runtime libraries, scripts/device/fetch_debs.sh) and
# .deps/bin-new.tgz (build-cuda/clr of an earlier call), starts the CUDA Multi-Process
# Service so that the runs share the GPU at once (MPS=0: not), runs
# suite_experiments.sh from models/resnet18-pretrain-64px.safetensors at full scale,
# 32 px, 5 epochs, fp32, and packs what comes back into $OUT/runs.tgz. Carry
# [".deps/rt.tgz", ".deps/bin-new.tgz", ".deps/bundle-suite.tar.gz"] and run e.g.
#   METHODS="efts ewc" OPTS="clr-k5:--method clr --kernel 5 @F" DEADLINE=535 bash scripts/device/suite_call.sh
# (@F in OPTS stands for the fp32 flags the METHODS runs get).
set -u
rm -rf device-work  # a machine still held keeps the last call's runs
mkdir -p .deps/root && tar -xzf .deps/rt.tgz -C .deps/root && tar -xzf .deps/bin-new.tgz
export LD_LIBRARY_PATH=$PWD/.deps/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/machine.txt
mps=off
if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  # A daemon left by an earlier call on a machine still held counts as started.
  if { nvidia-cuda-mps-control -d || pgrep -f nvidia-cuda-mps-control >/dev/null; } && timeout 60 python3 -c "import torch; print(torch.ones(4, device='cuda').sum().item())"; then mps=on
  else echo quit | nvidia-cuda-mps-control; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; fi
fi
echo "mps $mps" | tee -a $OUT/machine.txt
ls build-cuda/clr || exit 1
F="--precision fp32 --memory-format contiguous"
export OPTIONS=$(echo "${OPTS:-}" | sed "s/@F/$F/g")
BACKBONE=$PWD/models/resnet18-pretrain-64px.safetensors SCALE=full SIZE=32 EPOCHS=5 JOBS=16 BACKBONE_RUNS=0 \
  DEADLINE=${DEADLINE:-540} TABULATE=0 SERVE_BENCH=0 WORK=$PWD/device-work RUN_FLAGS="$F" \
  bash scripts/device/suite_experiments.sh
tar -czf $OUT/runs.tgz -C device-work --exclude='*.safetensors' --exclude=./suite --exclude='./bundle-*' .
cat device-work/stages.log
