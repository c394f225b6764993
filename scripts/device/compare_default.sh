#!/usr/bin/env bash
# Run ON THE GPU MACHINE after build_and_test.sh (docs/RESULTS.md): `clr compare` of
# every method on the default sequence, with the Debian data files carried in
# .deps/share (scripts/device/fetch_debs.sh copies them). Extra arguments go to
# clr compare (e.g. --epochs 60). Results (json, csv, logs; no adapters) go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/device-out}"
NAME="${NAME:-compare-default}"
mkdir -p "$OUT/$NAME"
sed "s|/usr/share|$PWD/.deps/share|g" configs/default.toml > configs/default-device.toml
RUN="$PWD/runs/$NAME"
rm -rf "$RUN"
set +e
/usr/bin/time -v build-cuda/clr compare configs/default-device.toml --methods all --device cuda --out "$RUN" "$@" \
  > "$OUT/$NAME/stdout.txt" 2> "$OUT/$NAME/stderr.txt"
echo "exit $?" >> "$OUT/$NAME/stdout.txt"
set -e
cp "$RUN"/compare.json "$RUN"/compare.csv "$OUT/$NAME/" 2>/dev/null || true
for d in "$RUN"/*/; do
  m=$(basename "$d")
  mkdir -p "$OUT/$NAME/$m"
  cp "$d"/results.json "$d"/log.txt "$OUT/$NAME/$m/" 2>/dev/null || true
done
nvidia-smi --query-gpu=name --format=csv,noheader >> "$OUT/$NAME/stdout.txt"
tail -25 "$OUT/$NAME/stdout.txt"
