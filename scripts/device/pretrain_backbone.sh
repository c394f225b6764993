#!/usr/bin/env bash
# Run ON THE GPU MACHINE after the build of build_and_test.sh: pretrains a ResNet-18
# (small stem, SIZE px) with `clr pretrain` on data disjoint from every suite task —
# the suite's pretraining set (from .deps/bundle-pretrain.tar.gz) plus procedural
# shapes — and leaves the weights in $OUT in parts of 15 MiB (join with cat).
#   MODE=supervised EPOCHS=15 scripts/device/pretrain_backbone.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/device-out}
W=${WORK:-/tmp/clr-pretrain}
SIZE=${SIZE:-64}
EPOCHS=${EPOCHS:-15}
MODE=${MODE:-supervised}
SHAPES_PER_CLASS=${SHAPES_PER_CLASS:-750}
CLR=${CLR:-$PWD/build-cuda/clr}
mkdir -p "$OUT" "$W/bundle"
tar -xzf .deps/bundle-pretrain.tar.gz -C "$W/bundle"
"$CLR" data build --bundle "$W/bundle" --set pretrain --out "$W/pretrain" --scale full --size "$SIZE" --overwrite \
  > "$W/data.log" 2>&1 || { tail -5 "$W/data.log"; exit 1; }
cat > "$W/pretrain.toml" <<TOML
# The suite's pretraining set (assets no benchmark task uses) and procedural shapes.
[data]
size = $SIZE
root = "$W/pretrain/imagefolder"

[[data.tasks]]
name = "shapes"
kind = "shapes"
classes = 40
train_per_class = $SHAPES_PER_CLASS
val_per_class = 25
size = $SIZE
seed = 1234
TOML
if [ "$MODE" = simclr ]; then
  FLAGS=(--mode simclr --batch 512 --lr 0.3 --temperature 0.2)
else
  FLAGS=(--batch 256 --lr 0.1 --hflip)
fi
start=$(date +%s)
CLR_NUM_THREADS=8 "$CLR" pretrain "$W/pretrain.toml" --arch resnet18 --small-stem --epochs "$EPOCHS" "${FLAGS[@]}" \
  --device cuda --fp16 --seed 0 --out "$W/$MODE.safetensors" > "$W/$MODE.json" 2> "$W/$MODE.log"
rc=$?
# One text report and the weights in parts: at most 8 files come back from $OUT, and
# build_and_test.sh leaves three there.
{
  echo "pretrain exit $rc after $(( $(date +%s) - start )) s"
  cat "$W/$MODE.json"
  cat "$W/pretrain.toml"
  grep -E "epoch [0-9]+/[0-9]+: [0-9]+/[0-9]+ img \(100%\)" "$W/$MODE.log" | sed 's/.*epoch/epoch/'
  (cd "$W" && sha256sum "$MODE.safetensors")
} | tee "$OUT/$MODE-report.txt"
split -b 15M "$W/$MODE.safetensors" "$OUT/$MODE.safetensors.part-"
