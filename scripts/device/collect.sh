#!/usr/bin/env bash
# Run ON THE GPU MACHINE after suite_experiments.sh: packs what comes back through the
# device tool (at most 8 files of 16 MiB): the runs and logs without weights as one
# archive, and each pretrained backbone in parts of 15 MiB (join with cat; the SHA-256
# of the whole files is in sha256.txt).
set -uo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-$PWD/device-work}
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
tar -czf "$OUT/results.tar.gz" -C "$WORK" --exclude='*.safetensors' --exclude='./suite' --exclude='./pretrain' --exclude='./bundle-*' .
for b in sup ssl; do
  [ -f "$WORK/$b.safetensors" ] && split -b 15M "$WORK/$b.safetensors" "$OUT/$b.safetensors.part-"
done
(cd "$WORK" && sha256sum ./*.safetensors) > "$OUT/sha256.txt" 2>&1
ls -la "$OUT"
