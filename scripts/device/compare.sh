#!/usr/bin/env bash
# Run ON THE GPU MACHINE after build_and_test.sh (docs/RESULTS.md): every method on one
# sequence, each method a separate `clr run` process on the one GPU (JOBS at a time:
# batch-32 training of a small network leaves the GPU mostly idle, so processes side
# by side finish the comparison several times sooner), then `clr compare --reuse`
# tabulates the finished runs. The config's Debian data paths point at the files
# carried in .deps/share (scripts/device/fetch_debs.sh).
#
#   CONFIG=configs/sequence-10.toml NAME=seq10 JOBS=13 scripts/device/compare.sh [clr flags...]
#
# Everything (compare.json/csv, each run's results.json and log) comes back as one
# archive, $OUT/$NAME.tar.gz, plus $OUT/$NAME.txt with the table.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/device-out}"
CONFIG="${CONFIG:-configs/default.toml}"
NAME="${NAME:-compare}"
JOBS="${JOBS:-13}"
CLR="${CLR:-build-cuda/clr}"
mkdir -p "$OUT"
# A call that carries .deps replaces it there, so the libraries build_and_test.sh
# unpacked may be gone: unpack them again.
if [ ! -d .deps/root/usr ]; then
  mkdir -p .deps/root
  for f in .deps/debs/*.deb; do dpkg -x "$f" .deps/root; done
fi
DEVICE_CONFIG="${CONFIG%.toml}-device.toml"
sed "s|/usr/share|$PWD/.deps/share|g" "$CONFIG" > "$DEVICE_CONFIG"
RUN="$PWD/runs/$NAME"
rm -rf "$RUN"
mkdir -p "$RUN"
METHODS=$("$CLR" run --help | sed -n '/^Methods:/,/^Writes/p' | awk 'NR>1 && $1 !~ /^Writes/ {print $1}')
start=$(date +%s)
one() {  # one method, in its own process
  local m=$1; shift
  CLR_NUM_THREADS=1 "$CLR" run "$DEVICE_CONFIG" --method "$m" --device cuda --out "$RUN/$m" "$@" > "$RUN/$m.log" 2>&1
  echo "$m: exit $? after $(( $(date +%s) - start )) s"
}
export -f one; export CLR DEVICE_CONFIG RUN start
printf '%s\n' $METHODS | xargs -P "$JOBS" -I{} bash -c 'one "$@"' _ {} "$@"
echo "all runs: $(( $(date +%s) - start )) s wall"
"$CLR" compare "$DEVICE_CONFIG" --methods all --reuse --device cuda --out "$RUN" "$@" 2> "$RUN/compare.log" | tee "$OUT/$NAME.txt"
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a "$OUT/$NAME.txt"
tar -czf "$OUT/$NAME.tar.gz" -C "$PWD/runs" --exclude='*.safetensors' "$NAME"
