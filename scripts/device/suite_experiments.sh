#!/usr/bin/env bash
# Run ON THE GPU MACHINE after the build of build_and_test.sh (docs/RESULTS.md): the
# paper's experiments on the offline suite, drawn from the carried bundles.
#   1. the pretraining set and the suite (SCALE, 64 px) from .deps/bundle-pretrain.tar.gz
#      and .deps/bundle-suite.tar.gz (clr data bundle, made where the Debian packages are,
#      each packed into one tar: the device tool counts many small files by their
#      blocks; the suite's may arrive with a later device call, and is waited for);
#   2. two ResNet-18 backbones (small stem, 64 px) on data disjoint from every suite
#      task — procedural shapes plus the pretraining set: supervised and SimCLR, side
#      by side on the GPU;
#   3. every method on the suite from the supervised backbone (one process per method,
#      side by side), and CLR from the SimCLR and from a random backbone.
# Everything goes to $WORK (default ./device-work), a log line per stage to
# $WORK/stages.log; scripts/device/collect.sh packs what comes back.
#
#   SCALE=small EPOCHS=5 PRE_EPOCHS=20 scripts/device/suite_experiments.sh
#
# BACKBONE=file skips the pretraining (and the SimCLR and random-backbone CLR runs
# unless BACKBONE_RUNS=1): every method learns from that file. METHODS="clr sgd ...":
# only these (default: every method `clr run --help` lists). DEADLINE=s: runs still
# going that many seconds after the start are stopped (their results.json holds the
# tasks they finished) so that the call can pack what it has. TABULATE=0: no
# `clr compare` (when the methods are split over several calls). OPTIONS="label:flags;..."
# adds runs from the same backbone with other settings, e.g.
# OPTIONS="ccll-pretrained:--method ccll --ccll-base pretrained" (in runs/options/label).
# RUN_FLAGS="...": flags the METHODS runs get (e.g. "--precision fp32 --memory-format contiguous"
# to match runs made before bf16 and channels-last became the CUDA defaults).
set -uo pipefail
cd "${REPO:-$(dirname "$0")/../..}"
WORK=${WORK:-$PWD/device-work}
CLR=${CLR:-$PWD/build-cuda/clr}
SCALE=${SCALE:-small}
SIZE=${SIZE:-64}
EPOCHS=${EPOCHS:-5}
PRE_EPOCHS=${PRE_EPOCHS:-20}
SHAPES_PER_CLASS=${SHAPES_PER_CLASS:-500}
JOBS=${JOBS:-15}
BACKBONE=${BACKBONE:-}
BACKBONE_RUNS=${BACKBONE_RUNS:-$([ -z "$BACKBONE" ] && echo 1 || echo 0)}
DEADLINE=${DEADLINE:-100000}
mkdir -p "$WORK"
start=$(date +%s)
stage() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$WORK/stages.log"; }

if [ -z "$BACKBONE" ]; then
stage "pretraining set from its bundle"
mkdir -p "$WORK/bundle-pretrain" && tar -xzf .deps/bundle-pretrain.tar.gz -C "$WORK/bundle-pretrain"
"$CLR" data build --bundle "$WORK/bundle-pretrain" --set pretrain --out "$WORK/pretrain" --scale full --size "$SIZE" \
  --overwrite > "$WORK/pretrain-data.log" 2>&1 || { stage "pretraining set failed"; tail -5 "$WORK/pretrain-data.log"; exit 1; }
cat > "$WORK/pretrain.toml" <<EOF
# Pretraining data: the suite's pretraining set (assets no benchmark task uses) and
# procedural shapes (code-made), $SIZE px.
[data]
size = $SIZE
root = "$WORK/pretrain/imagefolder"

[[data.tasks]]
name = "shapes"
kind = "shapes"
classes = 40
train_per_class = $SHAPES_PER_CLASS
val_per_class = 25
size = $SIZE
seed = 1234
EOF

stage "pretraining: supervised and SimCLR side by side, $PRE_EPOCHS epochs"
CLR_NUM_THREADS=4 "$CLR" pretrain "$WORK/pretrain.toml" --arch resnet18 --small-stem --epochs "$PRE_EPOCHS" --batch 256 \
  --lr 0.1 --hflip --device cuda --fp16 --seed 0 --out "$WORK/sup.safetensors" > "$WORK/sup.json" 2> "$WORK/sup.log" &
sup=$!
CLR_NUM_THREADS=4 "$CLR" pretrain "$WORK/pretrain.toml" --arch resnet18 --small-stem --mode simclr --epochs "$PRE_EPOCHS" \
  --batch 512 --lr 0.3 --temperature 0.2 --device cuda --fp16 --seed 0 --out "$WORK/ssl.safetensors" \
  > "$WORK/ssl.json" 2> "$WORK/ssl.log" &
ssl=$!
wait $sup; stage "supervised done: exit $? $(tr -d '\n ' < "$WORK/sup.json" | head -c 400)"
wait $ssl; stage "simclr done: exit $? $(tr -d '\n ' < "$WORK/ssl.json" | head -c 400)"

BACKBONE=$WORK/sup.safetensors
fi

# The suite's bundle may come with a later device call (the tool carries 64 MiB a call).
for _ in $(seq 1 120); do [ -f .deps/bundle-suite.tar.gz ] && break; sleep 5; done
sleep 5
mkdir -p "$WORK/bundle-suite" && tar -xzf .deps/bundle-suite.tar.gz -C "$WORK/bundle-suite"
stage "suite ($SCALE, $SIZE px) from its bundle"
"$CLR" data build --bundle "$WORK/bundle-suite" --out "$WORK/suite" --scale "$SCALE" --size "$SIZE" --overwrite \
  > "$WORK/suite.log" 2>&1 || { stage "suite build failed"; tail -5 "$WORK/suite.log"; exit 1; }

stage "every method on the suite from the supervised backbone; CLR from SimCLR and random"
RUN="$WORK/runs"
mkdir -p "$RUN/sup" "$RUN/backbones" "$RUN/options"
METHODS=${METHODS:-$("$CLR" run --help | sed -n '/^Methods:/,/^Writes/p' | awk 'NR>1 && $1 !~ /^Writes/ {print $1}')}
COMMON=(--size "$SIZE" --epochs "$EPOCHS" --patience 100 --device cuda --seed 0)
one() {  # a method (or label=backbone) in its own process
  local m=$1 out=$2; shift 2
  local left=$(( DEADLINE - ($(date +%s) - start) ))
  [ "$left" -gt 0 ] || { echo "$(basename "$out"): not started (deadline)" | tee -a "$WORK/stages.log"; return; }
  CLR_NUM_THREADS=1 timeout "$left" "$CLR" run "$WORK/suite/imagefolder" "$@" --out "$out" > "$out.log" 2>&1
  local rc=$?  # 124: stopped at the deadline
  echo "$(basename "$out"): exit $rc after $(( $(date +%s) - start )) s" | tee -a "$WORK/stages.log"
}
{
  for m in $METHODS; do echo "$m $RUN/sup/$m --method $m --backbone $BACKBONE ${RUN_FLAGS:-}"; done
  [ -f "$WORK/ssl.safetensors" ] && echo "clr $RUN/backbones/clr-simclr --method clr --backbone $WORK/ssl.safetensors"
  [ "$BACKBONE_RUNS" = 1 ] && echo "clr $RUN/backbones/clr-random --method clr --backbone resnet18 --small-stem"
  IFS=';' read -ra opts <<< "${OPTIONS:-}"
  for o in "${opts[@]}"; do [ -n "$o" ] && echo "${o%%:*} $RUN/options/${o%%:*} --backbone $BACKBONE ${o#*:}"; done
} > "$WORK/jobs.txt"
export -f one; export CLR WORK start DEADLINE
while read -r m out rest; do
  echo "$m $out ${COMMON[*]} $rest"
done < "$WORK/jobs.txt" | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _
if [ "${TABULATE:-1}" = 1 ]; then
  stage "tabulating"
  "$CLR" compare "$WORK/suite/imagefolder" --methods all --reuse --backbone "$BACKBONE" "${COMMON[@]}" \
    --out "$RUN/sup" > "$WORK/compare-sup.txt" 2> "$WORK/compare-sup.log"
  cp -r "$RUN/sup/clr" "$RUN/backbones/clr-supervised" 2> /dev/null
fi
[ "${SERVE_BENCH:-1}" = 1 ] || { stage "done"; touch "$WORK/DONE"; exit 0; }
stage "serving benchmark on the GPU"
"${CLR%/clr}/clr_bench_serve" --small-stem --size 64 --batch 64 --tasks 64 --device cuda --steps 30 \
  > "$WORK/bench-serve-cuda.txt" 2> "$WORK/bench-serve-cuda.log"
"${CLR%/clr}/clr_bench_serve" --small-stem --size 32 --batch 64 --tasks 64 --device cuda --steps 30 \
  >> "$WORK/bench-serve-cuda.txt" 2>> "$WORK/bench-serve-cuda.log"
stage "done"
touch "$WORK/DONE"
